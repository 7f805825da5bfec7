//! The DynamoDB backend: one table, keys `pk`/`sk`, two indexes.
//!
//! | record    | pk                              | sk                  | index keys                                          |
//! |-----------|---------------------------------|---------------------|-----------------------------------------------------|
//! | dedup     | `DEDUP#<provider>#<dedup_key>`  | `DEDUP`             | TTL on `expires_at`                                 |
//! | conflict  | `DEDUP#<provider>#<dedup_key>`  | `CONFLICT#<sha256>` | TTL on `expires_at`                                 |
//! | event     | `EVENT#<provider>#<work_key>`   | `EVENT`             | `gsi1`: resource, newest first; `gsi2`: day, time   |
//! | resource  | `RES#<provider>#<kind>#<id>`    | `STATE`             |                                                     |
//!
//! `gsi1` (`gsi1pk` = `RES#<provider>#<kind>#<id>`, `gsi1sk` = receive time
//! and work key) answers "all events of this order, newest first";
//! `gsi2` (`gsi2pk` = `DAY#<yyyy-mm-dd>`, `gsi2sk` = receive time, provider
//! and work key) answers time ranges, one query per day.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use terima_core::{Clock, Provider, SystemClock, Timestamp};
use terima_service::store::{
    BackendError, Claim, DedupRecord, DedupStore, EventFilter, EventRecord, EventStatus,
    EventStore, Lease, LeaseRequest, ResourceState, newest_first,
};

type Item = HashMap<String, AttributeValue>;

/// How far back an event listing without a start time looks, in days.
pub const DEFAULT_LOOKBACK_DAYS: i64 = 90;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn backend(operation: &'static str, e: impl std::fmt::Display) -> BackendError {
    BackendError::new("dynamodb", operation, e)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Option<T> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_time(item: &Item, key: &str) -> Option<Timestamp> {
    get_s(item, key).and_then(|t| Timestamp::parse(t).ok())
}

fn dedup_pk(provider: Provider, key: &str) -> String {
    format!("DEDUP#{provider}#{key}")
}

fn event_pk(provider: Provider, work_key: &str) -> String {
    format!("EVENT#{provider}#{work_key}")
}

fn resource_pk(provider: Provider, kind: &str, id: &str) -> String {
    format!("RES#{provider}#{kind}#{id}")
}

fn day_of(t: Timestamp) -> String {
    t.to_string()[..10].to_owned()
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("get_item", DisplayErrorContext(e)))?;
        Ok(out.item)
    }

    /// A conditional update that takes or releases a lease: true when the
    /// condition held.
    async fn owner_update(
        &self,
        operation: &'static str,
        provider: Provider,
        work_key: &str,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
        owner: &str,
    ) -> Result<bool, BackendError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(event_pk(provider, work_key)))
            .key("sk", s("EVENT"))
            .update_expression(expression)
            .condition_expression("lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":owner", s(owner));
        for (k, v) in values {
            request = request.expression_attribute_values(k, v);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(backend(operation, DisplayErrorContext(e))),
        }
    }

    async fn query_index(
        &self,
        index: &str,
        pk_name: &str,
        pk: String,
        range: Option<(String, String)>,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, BackendError> {
        let sk_name = pk_name.replace("pk", "sk");
        let mut events = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .scan_index_forward(false)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            request = match &range {
                Some((from, to)) => request
                    .key_condition_expression(format!(
                        "{pk_name} = :pk AND {sk_name} BETWEEN :from AND :to"
                    ))
                    .expression_attribute_values(":from", s(from.clone()))
                    .expression_attribute_values(":to", s(to.clone())),
                None => request.key_condition_expression(format!("{pk_name} = :pk")),
            };
            let out = request
                .send()
                .await
                .map_err(|e| backend("query", DisplayErrorContext(e)))?;
            events.extend(out.items().iter().filter_map(event_from_item));
            match out.last_evaluated_key {
                Some(key) if limit.is_none_or(|l| events.len() < l) => start = Some(key),
                _ => return Ok(events),
            }
        }
    }
}

/// A condition can only fail on an existing item, which the request asks
/// DynamoDB to return; without it the outcome is unknown, so the caller
/// retries (503 on the ack path) rather than guessing. Provider functions may
/// only `PutItem`, so there is no read to fall back on.
fn missing_old_item(operation: &'static str) -> BackendError {
    backend(
        operation,
        "condition failed but the existing item was not returned",
    )
}

/// Shows the whole error chain of an SDK error, not just "service error".
struct DisplayErrorContext<E>(E);

impl<E: std::error::Error> std::fmt::Display for DisplayErrorContext<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&self.0)
        )
    }
}

impl DedupStore for DynamoStore {
    async fn claim(&self, record: &DedupRecord) -> Result<Claim, BackendError> {
        let now = record.received_at.unix_millis() / 1_000;
        let pk = dedup_pk(record.provider, &record.dedup_key);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk.clone()))
            .item("sk", s("DEDUP"))
            .item("provider", s(record.provider.name()))
            .item("dedup_key", s(&record.dedup_key))
            .item("event_type", s(&record.event_type))
            .item("body_sha256", s(&record.body_sha256))
            .item("received_at", s(record.received_at.to_string()))
            .item("expires_at", n(record.expires_at))
            .item("request_id", s(&record.request_id))
            // TTL deletion is lazy: an expired record may linger, and no
            // longer counts.
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Fresh),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let old = match e.into_err() {
                    PutItemError::ConditionalCheckFailedException(ex) => ex.item,
                    _ => None,
                };
                let body_sha256 = old
                    .as_ref()
                    .and_then(|item| get_s(item, "body_sha256"))
                    .ok_or_else(|| missing_old_item("put_item"))?
                    .to_owned();
                Ok(Claim::Existing { body_sha256 })
            }
            Err(e) => Err(backend("put_item", DisplayErrorContext(e))),
        }
    }

    async fn record_conflict(&self, record: &DedupRecord, body: &str) -> Result<(), BackendError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(dedup_pk(record.provider, &record.dedup_key)))
            .item("sk", s(format!("CONFLICT#{}", record.body_sha256)))
            .item("provider", s(record.provider.name()))
            .item("event_type", s(&record.event_type))
            .item("received_at", s(record.received_at.to_string()))
            .item("expires_at", n(record.expires_at))
            .item("request_id", s(&record.request_id))
            .item("body", s(body))
            .send()
            .await
            .map_err(|e| backend("put_item", DisplayErrorContext(e)))?;
        Ok(())
    }
}

fn event_from_item(item: &Item) -> Option<EventRecord> {
    Some(EventRecord {
        provider: Provider::from_name(get_s(item, "provider")?)?,
        event_type: get_s(item, "event_type")?.to_owned(),
        dedup_key: get_s(item, "dedup_key")?.to_owned(),
        work_key: get_s(item, "work_key")?.to_owned(),
        resource_kind: get_s(item, "resource_kind")?.to_owned(),
        resource_id: get_s(item, "resource_id")?.to_owned(),
        occurred_at: get_time(item, "occurred_at"),
        received_at: get_time(item, "received_at")?,
        processed_at: get_time(item, "processed_at"),
        attempts: get_n(item, "attempts").unwrap_or_default(),
        status: EventStatus::parse(get_s(item, "status")?)?,
        error: get_s(item, "error").map(str::to_owned),
        replay: item
            .get("replay")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        payload: get_s(item, "payload").unwrap_or_default().to_owned(),
        lease_owner: get_s(item, "lease_owner").map(str::to_owned),
        lease_until: get_n(item, "lease_until"),
    })
}

fn resource_from_item(item: &Item) -> Option<ResourceState> {
    Some(ResourceState {
        provider: Provider::from_name(get_s(item, "provider")?)?,
        kind: get_s(item, "kind")?.to_owned(),
        id: get_s(item, "id")?.to_owned(),
        status: get_s(item, "status").map(str::to_owned),
        updated_at: get_time(item, "updated_at"),
        rank: get_n(item, "rank"),
        deleted: item
            .get("deleted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        fields: get_s(item, "fields")
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_default(),
        field_times: get_s(item, "field_times")
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_default(),
        last_event: get_s(item, "last_event").unwrap_or_default().to_owned(),
        version: get_n(item, "version")?,
    })
}

impl EventStore for DynamoStore {
    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let r = &request.record;
        let received = r.received_at.to_string();
        let until = request.now + request.lease_millis;
        let mut values: Vec<(&str, AttributeValue)> = vec![
            (":provider", s(r.provider.name())),
            (":event_type", s(&r.event_type)),
            (":dedup_key", s(&r.dedup_key)),
            (":work_key", s(&r.work_key)),
            (":kind", s(&r.resource_kind)),
            (":id", s(&r.resource_id)),
            (":received_at", s(received.clone())),
            (":replay", AttributeValue::Bool(r.replay)),
            (":payload", s(&r.payload)),
            (":received", s(EventStatus::Received.as_str())),
            (":processed", s(EventStatus::Processed.as_str())),
            (":zero", n(0)),
            (":one", n(1)),
            (":owner", s(&request.owner)),
            (":until", n(until)),
            (":now", n(request.now)),
            (
                ":gsi1pk",
                s(resource_pk(r.provider, &r.resource_kind, &r.resource_id)),
            ),
            (":gsi1sk", s(format!("{received}#{}", r.work_key))),
            (":gsi2pk", s(format!("DAY#{}", day_of(r.received_at)))),
            (
                ":gsi2sk",
                s(format!("{received}#{}#{}", r.provider, r.work_key)),
            ),
        ];
        let mut set = String::from(
            "provider = if_not_exists(provider, :provider), event_type = if_not_exists(event_type, :event_type), \
             dedup_key = if_not_exists(dedup_key, :dedup_key), work_key = if_not_exists(work_key, :work_key), \
             resource_kind = if_not_exists(resource_kind, :kind), resource_id = if_not_exists(resource_id, :id), \
             received_at = if_not_exists(received_at, :received_at), \
             payload = if_not_exists(payload, :payload), #status = if_not_exists(#status, :received), \
             attempts = if_not_exists(attempts, :zero) + :one, lease_owner = :owner, lease_until = :until, \
             gsi1pk = if_not_exists(gsi1pk, :gsi1pk), gsi1sk = if_not_exists(gsi1sk, :gsi1sk), \
             gsi2pk = if_not_exists(gsi2pk, :gsi2pk), gsi2sk = if_not_exists(gsi2sk, :gsi2sk)",
        );
        // An operator's replay is remembered on the event it re-runs.
        set.push_str(if r.replay {
            ", replay = :replay"
        } else {
            ", replay = if_not_exists(replay, :replay)"
        });
        if let Some(at) = r.occurred_at {
            set.push_str(", occurred_at = if_not_exists(occurred_at, :occurred_at)");
            values.push((":occurred_at", s(at.to_string())));
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(event_pk(r.provider, &r.work_key)))
            .key("sk", s("EVENT"))
            .update_expression(format!("SET {set}"))
            .condition_expression(
                "attribute_not_exists(pk) OR (#status <> :processed AND \
                 (attribute_not_exists(lease_until) OR lease_until <= :now))",
            )
            .expression_attribute_names("#status", "status")
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        match update.send().await {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let attempts = get_n::<u32>(&old, "attempts").unwrap_or(0) + 1;
                Ok(Lease::Acquired {
                    attempts,
                    takeover: old.contains_key("lease_owner"),
                })
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let old = match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(ex) => ex.item,
                    _ => None,
                }
                .ok_or_else(|| missing_old_item("update_item"))?;
                if get_s(&old, "status") == Some(EventStatus::Processed.as_str()) {
                    Ok(Lease::Done)
                } else {
                    Ok(Lease::Busy {
                        until: get_n(&old, "lease_until").unwrap_or(until),
                    })
                }
            }
            Err(e) => Err(backend("update_item", DisplayErrorContext(e))),
        }
    }

    async fn complete(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        self.owner_update(
            "complete",
            provider,
            work_key,
            "SET #status = :processed, processed_at = :now REMOVE lease_owner, lease_until, #error",
            vec![
                (":processed", s(EventStatus::Processed.as_str())),
                (":now", s(now.to_string())),
            ],
            owner,
        )
        .await
    }

    async fn fail(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        error: &str,
    ) -> Result<bool, BackendError> {
        self.owner_update(
            "fail",
            provider,
            work_key,
            "SET #status = :failed, #error = :error REMOVE lease_owner, lease_until",
            vec![
                (":failed", s(EventStatus::Failed.as_str())),
                (":error", s(error)),
            ],
            owner,
        )
        .await
    }

    async fn event(
        &self,
        provider: Provider,
        work_key: &str,
    ) -> Result<Option<EventRecord>, BackendError> {
        Ok(self
            .get(event_pk(provider, work_key), "EVENT")
            .await?
            .as_ref()
            .and_then(event_from_item))
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, BackendError> {
        // Sort keys start with the receive time: `0` sorts before any year.
        let lower = filter
            .since
            .map(|t| t.to_string())
            .unwrap_or_else(|| "0".to_owned());
        // `~` sorts after every digit and letter: the end of any key range.
        let upper = filter
            .until
            .map(|t| t.to_string())
            .unwrap_or_else(|| "~".to_owned());
        let matching = |events: Vec<EventRecord>| -> Vec<EventRecord> {
            events.into_iter().filter(|e| filter.matches(e)).collect()
        };
        if let Some((kind, id)) = &filter.resource {
            let providers: Vec<Provider> = filter
                .provider
                .map(|p| vec![p])
                .unwrap_or_else(|| Provider::ALL.to_vec());
            let mut events = Vec::new();
            for provider in providers {
                let found = self
                    .query_index(
                        "gsi1",
                        "gsi1pk",
                        resource_pk(provider, kind, id),
                        Some((lower.clone(), upper.clone())),
                        None,
                    )
                    .await?;
                events.extend(matching(found));
            }
            return Ok(newest_first(events, filter.limit));
        }
        let now = Timestamp::from_unix_millis(SystemClock.now_millis());
        let last = filter.until.unwrap_or(now);
        let first = filter.since.unwrap_or(Timestamp::from_unix_millis(
            last.unix_millis() - DEFAULT_LOOKBACK_DAYS * 86_400_000,
        ));
        let mut events = Vec::new();
        let mut day = last.unix_millis().div_euclid(86_400_000);
        while day >= first.unix_millis().div_euclid(86_400_000) {
            let bucket = format!(
                "DAY#{}",
                day_of(Timestamp::from_unix_millis(day * 86_400_000))
            );
            let found = self
                .query_index(
                    "gsi2",
                    "gsi2pk",
                    bucket,
                    Some((lower.clone(), upper.clone())),
                    None,
                )
                .await?;
            events.extend(matching(found));
            if filter.limit.is_some_and(|l| events.len() >= l) {
                break;
            }
            day -= 1;
        }
        Ok(newest_first(events, filter.limit))
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        Ok(self
            .get(resource_pk(provider, kind, id), "STATE")
            .await?
            .as_ref()
            .and_then(resource_from_item))
    }

    async fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(resource_pk(state.provider, &state.kind, &state.id)))
            .item("sk", s("STATE"))
            .item("provider", s(state.provider.name()))
            .item("kind", s(&state.kind))
            .item("id", s(&state.id))
            .item("deleted", AttributeValue::Bool(state.deleted))
            .item(
                "fields",
                s(serde_json::Value::Object(state.fields.clone()).to_string()),
            )
            .item("field_times", s(json_text(&state.field_times)))
            .item("last_event", s(&state.last_event))
            .item("version", n(state.version))
            .set_item_opt("status", state.status.as_deref().map(s))
            .set_item_opt("updated_at", state.updated_at.map(|t| s(t.to_string())))
            .set_item_opt("rank", state.rank.map(n));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(backend("put_item", DisplayErrorContext(e))),
        }
    }
}

fn json_text(value: &impl serde::Serialize) -> String {
    // Maps of strings to timestamps always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

/// Adds an attribute only when it has a value.
trait SetItemOpt {
    fn set_item_opt(self, key: &str, value: Option<AttributeValue>) -> Self;
}

impl SetItemOpt for aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    fn set_item_opt(self, key: &str, value: Option<AttributeValue>) -> Self {
        match value {
            Some(v) => self.item(key, v),
            None => self,
        }
    }
}
