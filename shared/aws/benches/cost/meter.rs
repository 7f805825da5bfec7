//! Counts what the real SDK clients do: every request per operation, the
//! DynamoDB capacity each one consumes by DynamoDB's own rules, the SQS
//! request units, and how long calls are in flight.
//!
//! DynamoDB's capacity rules (developer guide, "Read/write capacity mode"):
//! - a write consumes 1 unit per started KB of the item, the larger of the
//!   item before and after (an update, a conditional write that failed); a
//!   delete consumes the deleted item's size; a transaction doubles it;
//! - a strongly consistent read consumes 1 unit per started 4 KB (an
//!   eventually consistent one half that), a query the sum of the items it
//!   returned, rounded up once; a missing item still costs the minimum.
//!
//! The item before and after a write is read with a second client that
//! this meter does not count (blocking the caller: see
//! `model::with_own_emulator` for the emulator this needs); the time those
//! reads take is set aside.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's size of an item: attribute names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits = n
                .trim_start_matches('-')
                .replace('.', "")
                .trim_start_matches('0')
                .trim_end_matches('0')
                .len()
                .max(1);
            digits.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.len() * 2,
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

pub fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

pub fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// What a run consumed.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Requests per `service:operation`.
    pub requests: BTreeMap<String, u64>,
    pub write_units: f64,
    pub read_units: f64,
    /// SQS sends as billed: each started 64 KB of payload is one request.
    pub sqs_send_units: f64,
    /// Payload bytes written to S3.
    pub s3_put_bytes: u64,
}

impl Tally {
    pub fn count(&self, key: &str) -> u64 {
        self.requests.get(key).copied().unwrap_or_default()
    }

    pub fn add(&mut self, other: &Tally) {
        for (k, v) in &other.requests {
            *self.requests.entry(k.clone()).or_default() += v;
        }
        self.write_units += other.write_units;
        self.read_units += other.read_units;
        self.sqs_send_units += other.sqs_send_units;
        self.s3_put_bytes += other.s3_put_bytes;
    }
}

/// Time spent talking to AWS since the last reset.
#[derive(Debug, Default)]
struct Clock {
    /// Calls in flight, the meter's own lookups included.
    busy: usize,
    busy_since: Option<Instant>,
    busy_total: Duration,
    /// Calls of the code under measure in flight.
    calls: usize,
    /// Times the code's calls went from none in flight to one: sequential
    /// round trips.
    waves: u64,
    calls_total: u64,
}

#[derive(Default)]
struct State {
    tally: Tally,
    clock: Clock,
}

/// The meter: an SDK interceptor shared by the DynamoDB, SQS and S3 clients.
#[derive(Clone)]
pub struct Meter {
    state: Arc<Mutex<State>>,
    /// The uncounted client for item sizes before and after writes.
    shadow: aws_sdk_dynamodb::Client,
}

/// Where a round of calls stands, for one invocation's duration.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    busy: Duration,
    waves: u64,
    calls: u64,
}

/// One measured invocation.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    /// Time on this machine's CPU, calls excluded.
    pub compute: Duration,
    /// Round trips one after the other.
    pub waves: u64,
    pub calls: u64,
}

/// What the meter keeps between the start and the end of one operation.
#[derive(Clone, Debug)]
struct Pending {
    key: String,
    consistent: bool,
    /// Write targets (table, key) with the item size before.
    writes: Vec<(String, Item, usize, Option<usize>, f64)>,
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

impl Meter {
    pub fn new(shadow: aws_sdk_dynamodb::Client) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            shadow,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, tally: &Tally) {
        self.state().tally.add(tally);
    }

    pub fn take(&self) -> Tally {
        std::mem::take(&mut self.state().tally)
    }

    pub fn mark(&self) -> Mark {
        let state = self.state();
        let clock = &state.clock;
        Mark {
            busy: clock.busy_total + clock.busy_since.map(|s| s.elapsed()).unwrap_or_default(),
            waves: clock.waves,
            calls: clock.calls_total,
        }
    }

    /// The invocation between `start` (taken when it began) and now.
    pub fn invocation(&self, start: Mark, began: Instant) -> Invocation {
        let wall = began.elapsed();
        let end = self.mark();
        Invocation {
            compute: wall.saturating_sub(end.busy - start.busy),
            waves: end.waves - start.waves,
            calls: end.calls - start.calls,
        }
    }

    fn busy(&self, counted: bool, delta: isize) {
        let mut state = self.state();
        let now = Instant::now();
        let clock = &mut state.clock;
        if delta > 0 {
            if clock.busy == 0 {
                clock.busy_since = Some(now);
            }
            clock.busy += 1;
            if counted {
                if clock.calls == 0 {
                    clock.waves += 1;
                }
                clock.calls += 1;
                clock.calls_total += 1;
            }
        } else {
            clock.busy = clock.busy.saturating_sub(1);
            if counted {
                clock.calls = clock.calls.saturating_sub(1);
            }
            if clock.busy == 0
                && let Some(since) = clock.busy_since.take()
            {
                clock.busy_total += now - since;
            }
        }
    }

    /// The size of an item now, read with the uncounted client.
    fn size_now(&self, table: &str, key: &Item) -> usize {
        self.busy(false, 1);
        let shadow = self.shadow.clone();
        let request = shadow
            .get_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            .consistent_read(true);
        let item = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(request.send())
                .ok()
                .and_then(|out| out.item)
        });
        self.busy(false, -1);
        item.as_ref().map(item_size).unwrap_or_default()
    }

    fn record(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.state().tally);
    }
}

/// `service:operation` of an input, for the operations Terima makes.
fn operation_of(input: &Input) -> &'static str {
    macro_rules! find {
        ($($name:literal => $ty:ty),* $(,)?) => {
            $(if input.downcast_ref::<$ty>().is_some() {
                return $name;
            })*
        };
    }
    use aws_sdk_dynamodb::operation as ddb;
    use aws_sdk_s3::operation as s3;
    use aws_sdk_sqs::operation as sqs;
    find!(
        "DynamoDB:GetItem" => ddb::get_item::GetItemInput,
        "DynamoDB:PutItem" => ddb::put_item::PutItemInput,
        "DynamoDB:UpdateItem" => ddb::update_item::UpdateItemInput,
        "DynamoDB:DeleteItem" => ddb::delete_item::DeleteItemInput,
        "DynamoDB:Query" => ddb::query::QueryInput,
        "DynamoDB:Scan" => ddb::scan::ScanInput,
        "DynamoDB:BatchGetItem" => ddb::batch_get_item::BatchGetItemInput,
        "DynamoDB:BatchWriteItem" => ddb::batch_write_item::BatchWriteItemInput,
        "DynamoDB:TransactWriteItems" => ddb::transact_write_items::TransactWriteItemsInput,
        "SQS:SendMessage" => sqs::send_message::SendMessageInput,
        "SQS:SendMessageBatch" => sqs::send_message_batch::SendMessageBatchInput,
        "SQS:ReceiveMessage" => sqs::receive_message::ReceiveMessageInput,
        "SQS:DeleteMessage" => sqs::delete_message::DeleteMessageInput,
        "SQS:DeleteMessageBatch" => sqs::delete_message_batch::DeleteMessageBatchInput,
        "SQS:ChangeMessageVisibility" => sqs::change_message_visibility::ChangeMessageVisibilityInput,
        "S3:PutObject" => s3::put_object::PutObjectInput,
        "S3:GetObject" => s3::get_object::GetObjectInput,
        "S3:HeadObject" => s3::head_object::HeadObjectInput,
        "S3:ListObjectsV2" => s3::list_objects_v2::ListObjectsV2Input,
    );
    "other"
}

fn key_of(item: &Item) -> Item {
    item.iter()
        .filter(|(k, _)| *k == "pk" || *k == "sk")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The writes an input makes: (table, key, new item when known, factor).
fn writes_of(input: &Input) -> Vec<(String, Item, Option<usize>, f64)> {
    use aws_sdk_dynamodb::operation::{
        batch_write_item::BatchWriteItemInput, delete_item::DeleteItemInput,
        put_item::PutItemInput, transact_write_items::TransactWriteItemsInput,
        update_item::UpdateItemInput,
    };
    let mut writes = Vec::new();
    if let Some(put) = input.downcast_ref::<PutItemInput>() {
        let item = put.item.clone().unwrap_or_default();
        writes.push((
            put.table_name.clone().unwrap_or_default(),
            key_of(&item),
            Some(item_size(&item)),
            1.0,
        ));
    } else if let Some(update) = input.downcast_ref::<UpdateItemInput>() {
        writes.push((
            update.table_name.clone().unwrap_or_default(),
            update.key.clone().unwrap_or_default(),
            None,
            1.0,
        ));
    } else if let Some(delete) = input.downcast_ref::<DeleteItemInput>() {
        writes.push((
            delete.table_name.clone().unwrap_or_default(),
            delete.key.clone().unwrap_or_default(),
            Some(0),
            1.0,
        ));
    } else if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
        for (table, requests) in batch.request_items.clone().unwrap_or_default() {
            for request in requests {
                if let Some(put) = request.put_request {
                    writes.push((
                        table.clone(),
                        key_of(&put.item),
                        Some(item_size(&put.item)),
                        1.0,
                    ));
                }
                if let Some(delete) = request.delete_request {
                    writes.push((table.clone(), delete.key, Some(0), 1.0));
                }
            }
        }
    } else if let Some(transaction) = input.downcast_ref::<TransactWriteItemsInput>() {
        for item in transaction.transact_items.clone().unwrap_or_default() {
            if let Some(put) = item.put {
                writes.push((
                    put.table_name,
                    key_of(&put.item),
                    Some(item_size(&put.item)),
                    2.0,
                ));
            }
            if let Some(update) = item.update {
                writes.push((update.table_name, update.key, None, 2.0));
            }
            if let Some(delete) = item.delete {
                writes.push((delete.table_name, delete.key, Some(0), 2.0));
            }
            if let Some(check) = item.condition_check {
                writes.push((check.table_name, check.key, Some(0), 2.0));
            }
        }
    }
    writes
}

/// Whether a read asks for strong consistency.
fn consistent_read(input: &Input) -> bool {
    use aws_sdk_dynamodb::operation::{get_item::GetItemInput, query::QueryInput, scan::ScanInput};
    input
        .downcast_ref::<GetItemInput>()
        .map(|g| g.consistent_read)
        .or_else(|| {
            input
                .downcast_ref::<QueryInput>()
                .map(|q| q.consistent_read)
        })
        .or_else(|| input.downcast_ref::<ScanInput>().map(|s| s.consistent_read))
        .flatten()
        .unwrap_or(false)
}

/// Read units of an operation's output.
fn reads_of(consistent: bool, output: &Output) -> f64 {
    use aws_sdk_dynamodb::operation::{
        batch_get_item::BatchGetItemOutput, get_item::GetItemOutput, query::QueryOutput,
        scan::ScanOutput,
    };
    if let Some(get) = output.downcast_ref::<GetItemOutput>() {
        return read_units(
            get.item.as_ref().map(item_size).unwrap_or_default(),
            consistent,
        );
    }
    if let Some(query) = output.downcast_ref::<QueryOutput>() {
        let bytes = query.items.iter().flatten().map(item_size).sum();
        return read_units(bytes, consistent);
    }
    if let Some(scan) = output.downcast_ref::<ScanOutput>() {
        let bytes = scan.items.iter().flatten().map(item_size).sum();
        return read_units(bytes, consistent);
    }
    if let Some(batch) = output.downcast_ref::<BatchGetItemOutput>() {
        // BatchGetItem reads each item on its own (eventually consistent
        // unless asked; Terima's batch reads are not).
        return batch
            .responses
            .iter()
            .flat_map(|r| r.values())
            .flatten()
            .map(|i| read_units(item_size(i), false))
            .sum();
    }
    0.0
}

/// SQS request units of a send: each started 64 KB of payload is one.
fn sqs_units(input: &Input) -> f64 {
    use aws_sdk_sqs::operation::{
        send_message::SendMessageInput, send_message_batch::SendMessageBatchInput,
    };
    let chunks = |bytes: usize| bytes.div_ceil(64 * 1024).max(1) as f64;
    if let Some(send) = input.downcast_ref::<SendMessageInput>() {
        let attributes: usize = send
            .message_attributes
            .iter()
            .flatten()
            .map(|(k, v)| {
                k.len() + v.data_type.len() + v.string_value.as_ref().map_or(0, String::len)
            })
            .sum();
        return chunks(send.message_body.as_ref().map_or(0, String::len) + attributes);
    }
    if let Some(batch) = input.downcast_ref::<SendMessageBatchInput>() {
        let bytes = batch
            .entries
            .iter()
            .flatten()
            .map(|e| e.message_body.len())
            .sum();
        return chunks(bytes);
    }
    0.0
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "terima-cost-meter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let key = operation_of(input).to_owned();
        let writes = writes_of(input)
            .into_iter()
            .map(|(table, key, after, factor)| {
                let before = self.size_now(&table, &key);
                (table, key, before, after, factor)
            })
            .collect();
        if key.starts_with("SQS:SendMessage") {
            let units = sqs_units(input);
            self.record(|t| t.sqs_send_units += units);
        }
        if let Some(put) = input.downcast_ref::<aws_sdk_s3::operation::put_object::PutObjectInput>()
        {
            let bytes = put.body.bytes().map_or(0, <[u8]>::len) as u64;
            self.record(|t| t.s3_put_bytes += bytes);
        }
        let consistent = consistent_read(input);
        cfg.interceptor_state().store_put(Pending {
            key,
            consistent,
            writes,
        });
        self.busy(true, 1);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Each attempt is a billed request.
        if let Some(pending) = cfg.load::<Pending>() {
            let key = pending.key.clone();
            self.record(|t| *t.requests.entry(key).or_default() += 1);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.busy(true, -1);
        let Some(pending) = cfg.load::<Pending>().cloned() else {
            return Ok(());
        };
        let succeeded = matches!(context.output_or_error(), Some(Ok(_)));
        let mut units = 0.0;
        for (table, key, before, after, factor) in pending.writes {
            let after = match after {
                _ if !succeeded => before,
                Some(size) => size,
                None => self.size_now(&table, &key),
            };
            units += write_units(before.max(after)) * factor;
        }
        let reads = match context.output_or_error() {
            Some(Ok(output)) => reads_of(pending.consistent, output),
            _ => 0.0,
        };
        self.record(|t| {
            t.write_units += units;
            t.read_units += reads;
        });
        Ok(())
    }
}
