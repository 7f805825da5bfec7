//! The DynamoDB backend: one table, keys `pk`/`sk`, no secondary index (an
//! index write is a second write unit per event; see `docs/cost.md`).
//!
//! | record    | pk                                  | sk                                 | TTL      |
//! |-----------|-------------------------------------|------------------------------------|----------|
//! | work      | `R#<provider>#<kind>#<id>`          | `W#<work_key>#<digest>`            | retention|
//! | resource  | `R#<provider>#<kind>#<id>`          | `S`                                | none     |
//! | event log | `T#<yyyy-mm-dd>#<shard>`            | the event id (`<time>-<hash>`)     | retention|
//! | conflict  | `X#<yyyy-mm>`                       | `<time>#<first id>#<second id>`    | retention|
//! | quarantine| `Q#<yyyy-mm>#<shard>`               | the quarantine id (`<time>-<req>`) | retention|
//! | outbox    | `O#<shard>`                         | `<time>#<request id>`              | none     |
//! | archived  | `A#<yyyy-mm-dd>#<shard>`            | `A`                                | archive  |
//!
//! Key parts are escaped (`%` as `%25`, `#` as `%23`) so that no two part
//! lists give one key. A resource's partition holds its state and the work of
//! every event on it: the resource story is one query. The event log is
//! spread over [`TIME_SHARDS`] partitions a day by the hash in the event id,
//! so no partition takes more than a sixteenth of the traffic; so are the
//! quarantine and the outbox, which take every delivery when a provider
//! changes its format or SQS is down (see `docs/scale.md`). Items store
//! short attribute names: a work record and the log entry of a 1 KB body
//! (deflated) each stay under the 1 KB of one write unit.

use std::collections::HashMap;
use std::io::{Read, Write};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use terima_core::{BodyRef, Clock, Provider, QueueMessage, Resource, SystemClock, Timestamp};
use terima_service::store::{
    AckStore, BackendError, ConflictRecord, Effect, EventFilter, EventLog, EventRecord, EventStore,
    EventView, Lease, LeaseRequest, Outbox, Page, QuarantineRecord, ResourceState, Retried, Seen,
    Story, TIME_SHARDS, WorkKey, WorkRecord, WorkStatus, event_id_parts, id_time, shard_of,
};

use crate::s3::S3Blobs;
use crate::{archive, markers};

pub type Item = HashMap<String, AttributeValue>;

const DAY_MS: i64 = 86_400_000;
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention_days: i64,
    /// Where stored bodies and the archive are, for the operator's reads.
    blobs: Option<S3Blobs>,
}

pub(crate) fn backend(operation: &'static str, e: impl std::fmt::Display) -> BackendError {
    BackendError::new("dynamodb", operation, e)
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_time(item: &Item, key: &str) -> Option<Timestamp> {
    get_n::<i64>(item, key).map(Timestamp::from_unix_millis)
}

fn get_bool(item: &Item, key: &str) -> bool {
    item.get(key)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

/// Escapes one part of a key.
pub(crate) fn esc(part: &str) -> String {
    part.replace('%', "%25").replace('#', "%23")
}

pub(crate) fn resource_pk(provider: Provider, kind: &str, id: &str) -> String {
    format!("R#{}#{}#{}", provider.name(), esc(kind), esc(id))
}

fn work_prefix(work_key: &str) -> String {
    format!("W#{}#", esc(work_key))
}

fn work_sk(key: &WorkKey) -> String {
    format!("{}{}", work_prefix(&key.work_key), key.digest)
}

pub(crate) fn log_pk(day: &str, shard: u32) -> String {
    format!("T#{day}#{shard:02}")
}

fn month_of(t: Timestamp) -> String {
    t.to_string()[..7].to_owned()
}

pub(crate) fn day_of(t: Timestamp) -> String {
    t.to_string()[..10].to_owned()
}

fn expires_secs(from: Timestamp, days: i64) -> i64 {
    (from.unix_millis() + days * DAY_MS) / 1_000
}

/// Shows the whole error chain of an SDK error, not just "service error".
pub(crate) struct DisplayErrorContext<E>(pub E);

impl<E: std::error::Error> std::fmt::Display for DisplayErrorContext<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&self.0)
        )
    }
}

/// An update expression's document path does not exist (a map attribute an
/// older item lacks).
fn is_missing_path<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(se)
        if se.err().code() == Some("ValidationException")
            && se.err().message().is_some_and(|m| m.contains("document path")))
}

fn is_condition_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// Raw deflate of a body: a 1 KB JSON body shrinks to about 450 bytes.
pub(crate) fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

pub(crate) fn inflate(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

// ------------------------------------------------------------ work records

fn work_item(record: &WorkRecord, retention_days: i64) -> Item {
    let mut item = Item::new();
    let key = &record.key;
    item.insert(
        "pk".into(),
        s(resource_pk(
            key.provider,
            &key.resource.kind,
            &key.resource.id,
        )),
    );
    item.insert("sk".into(), s(work_sk(key)));
    item.insert("e".into(), s(&record.event_id));
    item.insert("t".into(), s(&record.event_type));
    if record.dedup_key != key.work_key {
        item.insert("dk".into(), s(&record.dedup_key));
    }
    item.insert("st".into(), s(record.status.as_str()));
    item.insert("n".into(), n(record.attempts));
    if let Some(owner) = &record.lease_owner {
        item.insert("lo".into(), s(owner));
    }
    if let Some(until) = record.lease_until {
        item.insert("lu".into(), n(until));
    }
    if let Some(error) = &record.error {
        item.insert("er".into(), s(error));
    }
    item.insert("ra".into(), n(record.received_at.unix_millis()));
    if let Some(at) = record.occurred_at {
        item.insert("oa".into(), n(at.unix_millis()));
    }
    if let Some(at) = record.processed_at {
        item.insert("pa".into(), n(at.unix_millis()));
    }
    if let Some(status) = &record.carried_status {
        item.insert("cs".into(), s(status));
    }
    if let Some(effect) = record.effect {
        item.insert("ef".into(), s(effect_text(effect)));
    }
    if record.replay {
        item.insert("rp".into(), AttributeValue::Bool(true));
    }
    item.insert(
        "expires_at".into(),
        n(expires_secs(record.received_at, retention_days)),
    );
    item
}

fn effect_text(effect: Effect) -> &'static str {
    match effect {
        Effect::Applied => "applied",
        Effect::Stale => "stale",
    }
}

fn unescape(part: &str) -> String {
    part.replace("%23", "#").replace("%25", "%")
}

/// The provider and resource of an item in a resource's partition.
fn resource_of(item: &Item) -> Option<(Provider, Resource)> {
    let mut pk = get_s(item, "pk")?.splitn(4, '#');
    let (_, provider, kind, id) = (pk.next()?, pk.next()?, pk.next()?, pk.next()?);
    Some((
        Provider::from_name(provider)?,
        Resource::new(unescape(kind), unescape(id)),
    ))
}

/// Reads a work record; the key comes from `pk`/`sk`.
fn work_from_item(item: &Item) -> Option<WorkRecord> {
    let mut pk = get_s(item, "pk")?.splitn(4, '#');
    let (_, provider, kind, id) = (pk.next()?, pk.next()?, pk.next()?, pk.next()?);
    let sk = get_s(item, "sk")?.strip_prefix("W#")?;
    let (work_key, digest) = sk.rsplit_once('#')?;
    let work_key = unescape(work_key);
    Some(WorkRecord {
        key: WorkKey {
            provider: Provider::from_name(provider)?,
            resource: Resource::new(unescape(kind), unescape(id)),
            work_key: work_key.clone(),
            digest: digest.to_owned(),
        },
        event_id: get_s(item, "e")?.to_owned(),
        event_type: get_s(item, "t")?.to_owned(),
        dedup_key: get_s(item, "dk").map_or(work_key, str::to_owned),
        status: WorkStatus::parse(get_s(item, "st")?)?,
        attempts: get_n(item, "n").unwrap_or_default(),
        lease_owner: get_s(item, "lo").map(str::to_owned),
        lease_until: get_n(item, "lu"),
        error: get_s(item, "er").map(str::to_owned),
        received_at: get_time(item, "ra")?,
        occurred_at: get_time(item, "oa"),
        processed_at: get_time(item, "pa"),
        carried_status: get_s(item, "cs").map(str::to_owned),
        effect: match get_s(item, "ef") {
            Some("applied") => Some(Effect::Applied),
            Some("stale") => Some(Effect::Stale),
            _ => None,
        },
        replay: get_bool(item, "rp"),
    })
}

// --------------------------------------------------------- event log items

fn event_item(event: &EventRecord, retention_days: i64) -> Result<Item, BackendError> {
    let (day, shard) = event_id_parts(&event.id)
        .ok_or_else(|| backend("put_item", format!("{:?} is not an event id", event.id)))?;
    let mut item = Item::new();
    item.insert("pk".into(), s(log_pk(&day, shard)));
    item.insert("sk".into(), s(&event.id));
    item.insert("p".into(), s(event.provider.name()));
    item.insert("t".into(), s(&event.event_type));
    if event.dedup_key != event.work_key {
        item.insert("dk".into(), s(&event.dedup_key));
    }
    item.insert("wk".into(), s(&event.work_key));
    item.insert("dg".into(), s(&event.digest));
    item.insert("rk".into(), s(&event.resource.kind));
    item.insert("ri".into(), s(&event.resource.id));
    if let Some(at) = event.occurred_at {
        item.insert("oa".into(), n(at.unix_millis()));
    }
    item.insert("ra".into(), n(event.received_at.unix_millis()));
    if let Some(status) = &event.status {
        item.insert("cs".into(), s(status));
    }
    match &event.body {
        BodyRef::Inline { text } => {
            // The digest of an inline body is the body's: not stored twice.
            item.insert(
                "z".into(),
                AttributeValue::B(Blob::new(deflate(text.as_bytes()))),
            );
        }
        BodyRef::Stored { key, size } => {
            item.insert("bk".into(), s(key));
            item.insert("bz".into(), n(size));
            item.insert("bs".into(), s(&event.body_sha256));
        }
    }
    if !event.headers.is_empty() {
        item.insert(
            "h".into(),
            s(serde_json::to_string(&event.headers).unwrap_or_default()),
        );
    }
    if event.replay {
        item.insert("rp".into(), AttributeValue::Bool(true));
    }
    item.insert("rq".into(), s(&event.request_id));
    item.insert(
        "expires_at".into(),
        n(expires_secs(event.received_at, retention_days)),
    );
    Ok(item)
}

pub(crate) fn event_item_record(item: &Item) -> Option<EventRecord> {
    let work_key = get_s(item, "wk")?.to_owned();
    let body = match (item.get("z").and_then(|v| v.as_b().ok()), get_s(item, "bk")) {
        (Some(z), _) => BodyRef::Inline {
            text: String::from_utf8(inflate(z.as_ref()).ok()?).ok()?,
        },
        (None, Some(key)) => BodyRef::Stored {
            key: key.to_owned(),
            size: get_n(item, "bz").unwrap_or_default(),
        },
        (None, None) => return None,
    };
    Some(EventRecord {
        id: get_s(item, "sk")?.to_owned(),
        provider: Provider::from_name(get_s(item, "p")?)?,
        event_type: get_s(item, "t")?.to_owned(),
        dedup_key: get_s(item, "dk").map_or_else(|| work_key.clone(), str::to_owned),
        work_key,
        digest: get_s(item, "dg")?.to_owned(),
        resource: Resource::new(get_s(item, "rk")?, get_s(item, "ri")?),
        occurred_at: get_time(item, "oa"),
        received_at: get_time(item, "ra")?,
        status: get_s(item, "cs").map(str::to_owned),
        body_sha256: match (&body, get_s(item, "bs")) {
            (_, Some(digest)) => digest.to_owned(),
            (BodyRef::Inline { text }, None) => terima_core::message::sha256_hex(text.as_bytes()),
            (BodyRef::Stored { .. }, None) => return None,
        },
        body,
        headers: get_s(item, "h")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default(),
        replay: get_bool(item, "rp"),
        request_id: get_s(item, "rq").unwrap_or_default().to_owned(),
    })
}

fn resource_from_item(item: &Item) -> Option<ResourceState> {
    match item.get("rz").and_then(|v| v.as_b().ok()) {
        Some(z) => serde_json::from_slice(&inflate(z.as_ref()).ok()?).ok(),
        None => serde_json::from_str(get_s(item, "r")?).ok(),
    }
}

fn json_record<T: serde::de::DeserializeOwned>(item: &Item) -> Option<T> {
    serde_json::from_str(get_s(item, "r")?).ok()
}

fn json_text(value: &impl serde::Serialize) -> String {
    // The records are plain data and always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, retention_days: i64) -> Self {
        Self {
            client,
            table: table.into(),
            retention_days,
            blobs: None,
        }
    }

    /// Lets the operator's reads fetch stored bodies and the archive.
    pub fn with_blobs(mut self, blobs: S3Blobs) -> Self {
        self.blobs = Some(blobs);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn retention_days(&self) -> i64 {
        self.retention_days
    }

    pub(crate) async fn get(
        &self,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| backend("get_item", DisplayErrorContext(e)))?;
        Ok(out.item)
    }

    /// A resource's state item, only the works recorded in it (eventually
    /// consistent: half a read unit).
    async fn get_markers(&self, pk: String) -> Result<Option<Item>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("S"))
            .projection_expression("#wm")
            .expression_attribute_names("#wm", markers::ATTRIBUTE)
            .send()
            .await
            .map_err(|e| backend("get_item", DisplayErrorContext(e)))?;
        Ok(out.item)
    }

    /// The conditional update of a resource's state item, before its
    /// expression.
    fn state_update(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(resource_pk(state.provider, &state.kind, &state.id)))
            .key("sk", s("S"))
            .expression_attribute_values(":v", n(state.version))
            .expression_attribute_values(
                ":r",
                AttributeValue::B(Blob::new(deflate(json_text(state).as_bytes()))),
            );
        match expected {
            None => update.condition_expression("attribute_not_exists(pk)"),
            Some(v) => update
                .condition_expression("v = :expected")
                .expression_attribute_values(":expected", n(v)),
        }
    }

    pub(crate) async fn put_item(
        &self,
        operation: &'static str,
        item: Item,
    ) -> Result<(), BackendError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend(operation, DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Every item of a partition whose sort key starts with `prefix`
    /// (`None`: all), in key order or reversed.
    pub(crate) async fn query_all(
        &self,
        pk: String,
        prefix: Option<String>,
        consistent: bool,
    ) -> Result<Vec<Item>, BackendError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            request = match &prefix {
                Some(prefix) => request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix.clone())),
                None => request.key_condition_expression("pk = :pk"),
            };
            let out = request
                .send()
                .await
                .map_err(|e| backend("query", DisplayErrorContext(e)))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }

    /// Up to `limit` items of one partition with `lower <= sk < upper`,
    /// newest (highest key) first.
    pub(crate) async fn query_range_desc(
        &self,
        pk: String,
        lower: &str,
        upper: &str,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), BackendError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":lower", s(lower))
                .expression_attribute_values(":upper", s(upper))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("query", DisplayErrorContext(e)))?;
            items.extend(
                out.items
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| get_s(i, "sk").is_some_and(|sk| sk < upper)),
            );
            match out.last_evaluated_key {
                Some(key) if items.len() < limit => start = Some(key),
                Some(_) => return Ok((items, true)),
                None => return Ok((items, false)),
            }
        }
    }

    /// Up to `limit` items of one partition after `after` (exclusive), in
    /// key order; `true` when there are more.
    pub(crate) async fn query_range_asc(
        &self,
        pk: String,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), BackendError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = (!after.is_empty()).then(|| {
            Item::from([
                ("pk".to_owned(), s(pk.clone())),
                ("sk".to_owned(), s(after)),
            ])
        });
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("query", DisplayErrorContext(e)))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if items.len() < limit => start = Some(key),
                Some(_) => return Ok((items, true)),
                None => return Ok((items, false)),
            }
        }
    }

    /// The work records of these keys (at most 100 per call). Each key is
    /// asked for once: BatchGetItem refuses a list with a key twice, and two
    /// entries of one work (a delivery that raced another) need not be
    /// neighbours in a list.
    async fn batch_works(
        &self,
        keys: Vec<WorkKey>,
    ) -> Result<HashMap<WorkKey, WorkRecord>, BackendError> {
        // Each work item, and each resource's state item for the works
        // recorded inside it; every key once (BatchGetItem refuses a list
        // with a key twice).
        let mut wanted = std::collections::BTreeSet::new();
        for k in &keys {
            let pk = resource_pk(k.provider, &k.resource.kind, &k.resource.id);
            wanted.insert((pk.clone(), work_sk(k)));
            wanted.insert((pk, "S".to_owned()));
        }
        let wanted: Vec<(String, String)> = wanted.into_iter().collect();
        let mut found: HashMap<WorkKey, WorkRecord> = HashMap::new();
        let mut inside: Vec<WorkRecord> = Vec::new();
        for chunk in wanted.chunks(100) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))]))
                .collect();
            while !pending.is_empty() {
                let keys_and = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .build()
                    .map_err(|e| backend("batch_get_item", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys_and)
                    .send()
                    .await
                    .map_err(|e| backend("batch_get_item", DisplayErrorContext(e)))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    if get_s(&item, "sk") == Some("S") {
                        if let Some((provider, resource)) = resource_of(&item) {
                            inside.extend(markers::records(provider, &resource, &item));
                        }
                    } else if let Some(work) = work_from_item(&item) {
                        found.insert(work.key.clone(), work);
                    }
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        for record in inside {
            match found.get(&record.key) {
                Some(existing) if existing.status == WorkStatus::Processed => {}
                _ => {
                    found.insert(record.key.clone(), record);
                }
            }
        }
        Ok(found)
    }

    pub(crate) async fn views_of(
        &self,
        events: Vec<EventRecord>,
    ) -> Result<Vec<EventView>, BackendError> {
        let works = self
            .batch_works(events.iter().map(EventRecord::work_key).collect())
            .await?;
        Ok(events
            .into_iter()
            .map(|event| EventView {
                work: works.get(&event.work_key()).cloned(),
                event,
                archived: false,
            })
            .collect())
    }

    /// A conditional update of a work record: true when the condition held.
    async fn update_work(
        &self,
        operation: &'static str,
        key: &WorkKey,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, BackendError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                s(resource_pk(
                    key.provider,
                    &key.resource.kind,
                    &key.resource.id,
                )),
            )
            .key("sk", s(work_sk(key)))
            .update_expression(update)
            .condition_expression(condition);
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(backend(operation, DisplayErrorContext(e))),
        }
    }

    fn blobs(&self) -> Result<&S3Blobs, BackendError> {
        self.blobs
            .as_ref()
            .ok_or_else(|| BackendError::new("s3", "get_object", "TERIMA_BUCKET is not set"))
    }
}

impl AckStore for DynamoStore {
    /// One query reading only the sort keys of the work key's records: an
    /// eventually consistent half read unit.
    async fn seen(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
        digest: &str,
    ) -> Result<Seen, BackendError> {
        let prefix = work_prefix(work_key);
        let pk = resource_pk(provider, &resource.kind, &resource.id);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s(prefix.clone()))
            .projection_expression("sk")
            .send();
        let (out, state) = futures_util::try_join!(
            Box::pin(async {
                query
                    .await
                    .map_err(|e| backend("query", DisplayErrorContext(e)))
            }),
            Box::pin(self.get_markers(pk)),
        )?;
        let items = out.items.unwrap_or_default();
        let inside = state
            .map(|state| markers::records(provider, resource, &state))
            .unwrap_or_default();
        Ok(Seen::from_digests(
            digest,
            items
                .iter()
                .filter_map(|i| get_s(i, "sk")?.strip_prefix(prefix.as_str()))
                .chain(
                    inside
                        .iter()
                        .filter(|w| w.key.work_key == work_key)
                        .map(|w| w.key.digest.as_str()),
                ),
        ))
    }

    async fn hold(&self, message: &QueueMessage) -> Result<(), BackendError> {
        let text = message.encode();
        let shard = shard_of(&message.request_id);
        let item = Item::from([
            ("pk".to_owned(), s(format!("O#{shard}"))),
            (
                "sk".to_owned(),
                s(format!(
                    "{}#{}",
                    id_time(message.received_at),
                    message.request_id
                )),
            ),
            ("m".to_owned(), s(text)),
        ]);
        self.put_item("hold", item).await
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> Result<(), BackendError> {
        let item = Item::from([
            (
                "pk".to_owned(),
                s(quarantine_pk(&month_of(record.received_at), &record.id)),
            ),
            ("sk".to_owned(), s(&record.id)),
            ("r".to_owned(), s(json_text(record))),
            (
                "expires_at".to_owned(),
                n(expires_secs(record.received_at, self.retention_days)),
            ),
        ]);
        self.put_item("quarantine", item).await
    }
}

impl Outbox for DynamoStore {
    async fn held(&self, limit: usize) -> Result<Vec<(String, String)>, BackendError> {
        let mut held = Vec::new();
        for shard in 0..TIME_SHARDS {
            let pk = format!("O#{shard}");
            for item in self.query_all(pk.clone(), None, true).await? {
                if held.len() >= limit {
                    return Ok(held);
                }
                if let (Some(sk), Some(message)) = (get_s(&item, "sk"), get_s(&item, "m")) {
                    held.push((format!("{pk}|{sk}"), message.to_owned()));
                }
            }
        }
        Ok(held)
    }

    async fn release(&self, handle: &str) -> Result<(), BackendError> {
        let (pk, sk) = handle
            .split_once('|')
            .ok_or_else(|| backend("delete_item", format!("{handle:?} is not an outbox handle")))?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| backend("delete_item", DisplayErrorContext(e)))?;
        Ok(())
    }
}

impl EventStore for DynamoStore {
    async fn works(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> Result<Vec<WorkRecord>, BackendError> {
        // Eventually consistent: a stale answer only means the conditional
        // write that follows decides. The work items and the state item
        // (the works recorded with it) are read at once.
        let pk = resource_pk(provider, &resource.kind, &resource.id);
        // Boxed: two SDK calls side by side make a future too large for a
        // debug build's stack.
        let (items, state) = futures_util::try_join!(
            Box::pin(self.query_all(pk.clone(), Some(work_prefix(work_key)), false)),
            Box::pin(self.get_markers(pk)),
        )?;
        let mut works: Vec<WorkRecord> = items.iter().filter_map(work_from_item).collect();
        if let Some(state) = state {
            let inside = markers::records(provider, resource, &state)
                .into_iter()
                .filter(|w| w.key.work_key == work_key)
                .collect();
            markers::merge(&mut works, inside);
        }
        Ok(works)
    }

    async fn log(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.put_item("log", event_item(event, self.retention_days)?)
            .await
    }

    async fn unlog(&self, event: &EventRecord) -> Result<(), BackendError> {
        let (day, shard) = event_id_parts(&event.id)
            .ok_or_else(|| backend("delete_item", format!("{:?} is not an event id", event.id)))?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(log_pk(&day, shard)))
            .key("sk", s(&event.id))
            .send()
            .await
            .map_err(|e| backend("delete_item", DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let r = &request.record;
        let until = request.now + request.lease_millis;
        let item = work_item(r, self.retention_days);
        let mut set: Vec<String> = Vec::new();
        let mut values: Vec<(String, AttributeValue)> = Vec::new();
        for (name, value) in item {
            if matches!(
                name.as_str(),
                "pk" | "sk" | "n" | "st" | "lo" | "lu" | "rp" | "er"
            ) {
                continue;
            }
            set.push(format!("{name} = if_not_exists({name}, :{name})"));
            values.push((format!(":{name}"), value));
        }
        set.push("st = :processing".into());
        set.push("n = if_not_exists(n, :zero) + :one".into());
        set.push("lo = :owner".into());
        set.push("lu = :until".into());
        values.push((":processing".into(), s(WorkStatus::Processing.as_str())));
        values.push((":processed".into(), s(WorkStatus::Processed.as_str())));
        values.push((":zero".into(), n(0)));
        values.push((":one".into(), n(1)));
        values.push((":owner".into(), s(&request.owner)));
        values.push((":until".into(), n(until)));
        values.push((":now".into(), n(request.now)));
        // An operator's replay is remembered on the work it re-runs.
        if r.replay {
            set.push("rp = :replay".into());
            values.push((":replay".into(), AttributeValue::Bool(true)));
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                s(resource_pk(
                    r.key.provider,
                    &r.key.resource.kind,
                    &r.key.resource.id,
                )),
            )
            .key("sk", s(work_sk(&r.key)))
            .update_expression(format!("SET {} REMOVE er", set.join(", ")))
            .condition_expression(
                "attribute_not_exists(pk) OR (st <> :processed AND \
                 (attribute_not_exists(lu) OR lu <= :now))",
            )
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        match update.send().await {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                Ok(Lease::Acquired {
                    attempts: get_n::<u32>(&old, "n").unwrap_or(0) + 1,
                    takeover: old.contains_key("lo"),
                })
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let old = match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(ex) => ex.item,
                    _ => None,
                }
                // A condition can only fail on an existing item, which the
                // request asks DynamoDB to return; without it the outcome is
                // unknown, so the caller retries rather than guessing.
                .ok_or_else(|| {
                    backend(
                        "update_item",
                        "condition failed but the existing item was not returned",
                    )
                })?;
                if get_s(&old, "st") == Some(WorkStatus::Processed.as_str()) {
                    Ok(Lease::Done)
                } else {
                    Ok(Lease::Busy {
                        until: get_n(&old, "lu").unwrap_or(until),
                    })
                }
            }
            Err(e) => Err(backend("update_item", DisplayErrorContext(e))),
        }
    }

    async fn complete(
        &self,
        key: &WorkKey,
        owner: &str,
        now: Timestamp,
        effect: Effect,
    ) -> Result<bool, BackendError> {
        self.update_work(
            "complete",
            key,
            "SET st = :processed, pa = :now, ef = :effect REMOVE lo, lu, er",
            "lo = :owner",
            vec![
                (":processed", s(WorkStatus::Processed.as_str())),
                (":now", n(now.unix_millis())),
                (":effect", s(effect_text(effect))),
                (":owner", s(owner)),
            ],
        )
        .await
    }

    async fn finish(&self, record: &WorkRecord) -> Result<bool, BackendError> {
        let item = work_item(record, self.retention_days);
        let mut set: Vec<String> = Vec::new();
        let mut values: Vec<(String, AttributeValue)> = Vec::new();
        for (name, value) in item {
            if matches!(name.as_str(), "pk" | "sk" | "n" | "rp") {
                continue;
            }
            set.push(format!("{name} = :{name}"));
            values.push((format!(":{name}"), value));
        }
        set.push("n = if_not_exists(n, :zero) + :one".into());
        values.push((":zero".into(), n(0)));
        values.push((":one".into(), n(1)));
        values.push((
            ":processed_status".into(),
            s(WorkStatus::Processed.as_str()),
        ));
        if record.replay {
            set.push("rp = :rp".into());
            values.push((":rp".into(), AttributeValue::Bool(true)));
        }
        let mut remove = Vec::new();
        for name in ["lo", "lu", "er"] {
            if !values.iter().any(|(k, _)| k == &format!(":{name}")) {
                remove.push(name);
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let values_ref: Vec<(&str, AttributeValue)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        self.update_work(
            "finish",
            &record.key,
            &expression,
            "attribute_not_exists(pk) OR st <> :processed_status",
            values_ref,
        )
        .await
    }

    async fn fail(
        &self,
        key: &WorkKey,
        owner: Option<&str>,
        error: &str,
    ) -> Result<bool, BackendError> {
        let mut values = vec![
            (":failed", s(WorkStatus::Failed.as_str())),
            (":error", s(error)),
        ];
        let condition = match owner {
            Some(owner) => {
                values.push((":owner", s(owner)));
                "lo = :owner"
            }
            None => {
                values.push((":processed", s(WorkStatus::Processed.as_str())));
                "attribute_exists(pk) AND st <> :processed"
            }
        };
        self.update_work(
            "fail",
            key,
            "SET st = :failed, er = :error REMOVE lo, lu",
            condition,
            values,
        )
        .await
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        Ok(self
            .get(resource_pk(provider, kind, id), "S", true)
            .await?
            .as_ref()
            .and_then(resource_from_item))
    }

    async fn resource_to_update(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        Ok(self
            .get(resource_pk(provider, kind, id), "S", false)
            .await?
            .as_ref()
            .and_then(resource_from_item))
    }

    async fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        // An update, not a put: the works recorded in the item stay.
        let update = self
            .state_update(state, expected)
            .update_expression("SET v = :v, rz = :r, #wm = if_not_exists(#wm, :empty) REMOVE r")
            .expression_attribute_names("#wm", markers::ATTRIBUTE)
            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()));
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(backend("update_item", DisplayErrorContext(e))),
        }
    }

    async fn put_resource_and_finish(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
        work: &WorkRecord,
    ) -> Result<bool, BackendError> {
        let entry = markers::entry(work);
        let pk = resource_pk(state.provider, &state.kind, &state.id);
        let state_bytes = deflate(json_text(state).as_bytes()).len();
        let Some(room) = markers::room(pk.len(), state_bytes, work.key.digest.len() + entry.len())
        else {
            // The state leaves no room in its write unit: the work gets an
            // item of its own.
            return Ok(self.put_resource(state, expected).await?
                && self.finish(work).await.map(|_| true)?);
        };
        let update = self
            .state_update(state, expected)
            .expression_attribute_names("#wm", markers::ATTRIBUTE)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let update = match expected {
            // A new item starts its map with this work.
            None => update
                .update_expression("SET v = :v, rz = :r, #wm = :works")
                .expression_attribute_values(
                    ":works",
                    AttributeValue::M(HashMap::from([(work.key.digest.clone(), s(entry))])),
                ),
            // A full map takes no more: the condition says so, and the work
            // gets an item of its own.
            Some(_) => update
                .update_expression("SET v = :v, rz = :r, #wm.#digest = :entry REMOVE r")
                .condition_expression("v = :expected AND size(#wm) < :room")
                .expression_attribute_names("#digest", &work.key.digest)
                .expression_attribute_values(":entry", s(entry))
                .expression_attribute_values(":room", n(room)),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let old = match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(ex) => ex.item,
                    _ => None,
                };
                let version = old.as_ref().and_then(|o| get_n::<u64>(o, "v"));
                if version.is_some() && version == expected {
                    // The version held: the map was full.
                    Ok(self.put_resource(state, expected).await?
                        && self.finish(work).await.map(|_| true)?)
                } else {
                    Ok(false)
                }
            }
            // A state item written before works were kept in it has no map.
            Err(e) if is_missing_path(&e) => Ok(self.put_resource(state, expected).await?
                && self.finish(work).await.map(|_| true)?),
            Err(e) => Err(backend("update_item", DisplayErrorContext(e))),
        }
    }

    async fn record_conflict(&self, conflict: &ConflictRecord) -> Result<(), BackendError> {
        let item = Item::from([
            (
                "pk".to_owned(),
                s(format!("X#{}", month_of(conflict.detected_at))),
            ),
            (
                "sk".to_owned(),
                s(format!(
                    "{}#{}#{}",
                    id_time(conflict.detected_at),
                    conflict.first_event_id,
                    conflict.second_event_id
                )),
            ),
            ("r".to_owned(), s(json_text(conflict))),
            (
                "expires_at".to_owned(),
                n(expires_secs(conflict.detected_at, self.retention_days)),
            ),
        ]);
        self.put_item("record_conflict", item).await
    }
}

/// The months from `now` back over the retention period, newest first.
fn recent_months(now: Timestamp, retention_days: i64) -> Vec<String> {
    let mut months = Vec::new();
    let mut day = now.unix_millis();
    let oldest = day - (retention_days + 31) * DAY_MS;
    while day >= oldest {
        let month = month_of(Timestamp::from_unix_millis(day));
        if months.last() != Some(&month) {
            months.push(month);
        }
        day -= DAY_MS;
    }
    months
}

impl EventLog for DynamoStore {
    async fn event(&self, id: &str) -> Result<Option<EventView>, BackendError> {
        let Some((day, shard)) = event_id_parts(id) else {
            return Ok(None);
        };
        if let Some(item) = self.get(log_pk(&day, shard), id, false).await? {
            let Some(event) = event_item_record(&item) else {
                return Err(backend("get_item", format!("event {id} is not readable")));
            };
            return Ok(self.views_of(vec![event]).await?.pop());
        }
        match &self.blobs {
            Some(blobs) => archive::find(blobs, id).await,
            None => Ok(None),
        }
    }

    async fn events(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EventView>, BackendError> {
        if let Some((kind, id)) = &filter.resource {
            return self.resource_events(filter, kind, id, after, limit).await;
        }
        let now = Timestamp::from_unix_millis(SystemClock.now_millis());
        let newest = filter.until.unwrap_or(now);
        let live_floor =
            Timestamp::from_unix_millis(now.unix_millis() - self.retention_days * DAY_MS);
        let oldest = filter.since.unwrap_or(live_floor);
        let lower = id_time(oldest);
        let mut upper = match (filter.until.map(id_time), after) {
            (Some(u), Some(a)) => u.min(a.to_owned()),
            (Some(u), None) => u,
            (None, Some(a)) => a.to_owned(),
            (None, None) => "~".to_owned(),
        };
        let mut items: Vec<EventView> = Vec::new();
        let mut day = newest.unix_millis().div_euclid(DAY_MS);
        let first_day = oldest.unix_millis().div_euclid(DAY_MS);
        let live_first = live_floor.unix_millis().div_euclid(DAY_MS);
        while day >= first_day && items.len() <= limit {
            let day_text = day_of(Timestamp::from_unix_millis(day * DAY_MS));
            let need = limit + 1 - items.len();
            let (found, more) = if day >= live_first {
                let shards = futures_util::future::try_join_all((0..TIME_SHARDS).map(|shard| {
                    self.query_range_desc(log_pk(&day_text, shard), &lower, &upper, need)
                }))
                .await?;
                let more = shards.iter().any(|(_, more)| *more);
                let mut events: Vec<EventRecord> = shards
                    .into_iter()
                    .flat_map(|(items, _)| items)
                    .filter_map(|i| event_item_record(&i))
                    .collect();
                events.sort_by(|a, b| b.id.cmp(&a.id));
                let more = more || events.len() > need;
                events.truncate(need);
                (self.views_of(events).await?, more)
            } else {
                match &self.blobs {
                    Some(blobs) => {
                        let mut views =
                            archive::day(blobs, &day_text, &lower, &upper, need).await?;
                        let more = views.len() > need;
                        views.truncate(need);
                        (views, more)
                    }
                    None => (Vec::new(), false),
                }
            };
            if let Some(last) = found.last() {
                upper = last.event.id.clone();
            }
            let exhausted = !more;
            items.extend(found.into_iter().filter(|v| v.matches(filter)));
            if exhausted {
                day -= 1;
                upper = upper.min(id_time(Timestamp::from_unix_millis(day * DAY_MS + DAY_MS)));
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more
            .then(|| items.last().map(|v| v.event.id.clone()))
            .flatten();
        Ok(Page { items, next })
    }

    async fn story(&self, provider: Provider, kind: &str, id: &str) -> Result<Story, BackendError> {
        let items = self
            .query_all(resource_pk(provider, kind, id), None, true)
            .await?;
        let mut story = Story::default();
        let mut inside = Vec::new();
        for item in &items {
            match get_s(item, "sk") {
                Some("S") => {
                    story.state = resource_from_item(item);
                    inside = resource_of(item)
                        .map(|(provider, resource)| markers::records(provider, &resource, item))
                        .unwrap_or_default();
                }
                Some(sk) if sk.starts_with("W#") => story.works.extend(work_from_item(item)),
                _ => {}
            }
        }
        markers::merge(&mut story.works, inside);
        story.works.sort_by_key(|w| w.received_at);
        Ok(story)
    }

    async fn body(&self, event: &EventRecord) -> Result<Option<Vec<u8>>, BackendError> {
        match &event.body {
            BodyRef::Inline { text } => Ok(Some(text.as_bytes().to_vec())),
            BodyRef::Stored { key, .. } => {
                terima_service::store::Blobs::get(self.blobs()?, key).await
            }
        }
    }

    async fn conflicts(&self, limit: usize) -> Result<Vec<ConflictRecord>, BackendError> {
        let now = Timestamp::from_unix_millis(SystemClock.now_millis());
        let mut all = Vec::new();
        for month in recent_months(now, self.retention_days) {
            let mut items: Vec<ConflictRecord> = self
                .query_all(format!("X#{month}"), None, false)
                .await?
                .iter()
                .filter_map(json_record)
                .collect();
            items.reverse();
            all.extend(items);
            if all.len() >= limit {
                break;
            }
        }
        all.truncate(limit);
        Ok(all)
    }

    async fn quarantined(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<QuarantineRecord>, BackendError> {
        let now = Timestamp::from_unix_millis(SystemClock.now_millis());
        let upper = after.unwrap_or("~");
        let mut items = Vec::new();
        for month in recent_months(now, self.retention_days) {
            let need = limit + 1 - items.len();
            let shards = futures_util::future::try_join_all((0..TIME_SHARDS).map(|shard| {
                self.query_range_desc(format!("Q#{month}#{shard}"), "0", upper, need)
            }))
            .await?;
            let mut found: Vec<QuarantineRecord> = shards
                .iter()
                .flat_map(|(items, _)| items)
                .filter_map(json_record::<QuarantineRecord>)
                .collect();
            found.sort_by(|a, b| b.id.cmp(&a.id));
            found.truncate(need);
            items.extend(found);
            if items.len() > limit {
                break;
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more.then(|| items.last().map(|q| q.id.clone())).flatten();
        Ok(Page { items, next })
    }

    async fn quarantined_one(&self, id: &str) -> Result<Option<QuarantineRecord>, BackendError> {
        let Some(month) = quarantine_month(id) else {
            return Ok(None);
        };
        Ok(self
            .get(quarantine_pk(&month, id), id, true)
            .await?
            .as_ref()
            .and_then(json_record))
    }

    async fn mark_retried(&self, id: &str, retried: &Retried) -> Result<(), BackendError> {
        let Some(mut record) = self.quarantined_one(id).await? else {
            return Ok(());
        };
        record.retried = Some(retried.clone());
        self.quarantine(&record).await
    }
}

/// The partition of a quarantined body: its month and its request's shard.
fn quarantine_pk(month: &str, id: &str) -> String {
    let request_id = id.split_once('-').map_or(id, |(_, request)| request);
    format!("Q#{month}#{}", shard_of(request_id))
}

/// `2024-01` from a quarantine id `20240120T153000000-...`.
fn quarantine_month(id: &str) -> Option<String> {
    let digits = id.get(..6)?;
    digits
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| format!("{}-{}", &digits[..4], &digits[4..6]))
}

impl DynamoStore {
    /// The events of one resource, through its work records.
    async fn resource_events(
        &self,
        filter: &EventFilter,
        kind: &str,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EventView>, BackendError> {
        let providers: Vec<Provider> = filter
            .provider
            .map(|p| vec![p])
            .unwrap_or_else(|| Provider::ALL.to_vec());
        let mut views = Vec::new();
        for provider in providers {
            let story = self.story(provider, kind, id).await?;
            for work in story.works {
                let Some((day, shard)) = event_id_parts(&work.event_id) else {
                    continue;
                };
                let event = match self.get(log_pk(&day, shard), &work.event_id, false).await? {
                    Some(item) => event_item_record(&item),
                    None => None,
                };
                if let Some(event) = event {
                    views.push(EventView {
                        event,
                        work: Some(work),
                        archived: false,
                    });
                }
            }
        }
        views.retain(|v| v.matches(filter));
        Ok(terima_service::store::page_of(views, after, limit))
    }
}
