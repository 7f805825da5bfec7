//! The storage design, as the coarse traits the ack path and the processor are
//! written against. DynamoDB/SQS, the embedded store and the in-memory test
//! store all implement them; the logic above never knows which it talks to.
//!
//! Records (one table in every backend):
//! - dedup record, key `(provider, dedup_key)`, written on the ack path,
//!   expiring after the retry window: tells a retry or a duplicate from a fresh
//!   delivery, and a conflicting body from a retry;
//! - event record, key `(provider, work_key)`: the event log entry and the
//!   processor's lease, never expiring;
//! - resource record, key `(provider, kind, id)`: the projection.

use std::future::Future;

use serde::{Deserialize, Serialize};
use terima_core::{Provider, QueueMessage, Timestamp};

/// A backend call that failed: answered 503 on the ack path, a per-message
/// failure in the processor. Never a reason to drop an event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend} {operation} failed: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub operation: &'static str,
    pub message: String,
}

impl BackendError {
    pub fn new(backend: &'static str, operation: &'static str, message: impl ToString) -> Self {
        Self {
            backend,
            operation,
            message: message.to_string(),
        }
    }
}

/// What the ack path records for one delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DedupRecord {
    pub provider: Provider,
    pub dedup_key: String,
    pub event_type: String,
    pub body_sha256: String,
    pub received_at: Timestamp,
    /// Unix seconds after which the record no longer counts (and the TTL
    /// attribute in DynamoDB).
    pub expires_at: i64,
    pub request_id: String,
}

/// The outcome of a conditional dedup write.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// No live record had this key: this delivery is the first.
    Fresh,
    /// A live record exists; its body digest tells a retry from a conflict.
    Existing { body_sha256: String },
}

/// Ack-path idempotency: one conditional write per delivery.
pub trait DedupStore: Send + Sync {
    /// Writes `record` unless a live (unexpired) record has its key.
    fn claim(
        &self,
        record: &DedupRecord,
    ) -> impl Future<Output = Result<Claim, BackendError>> + Send;

    /// Keeps a delivery whose key was seen with another body, for an operator.
    fn record_conflict(
        &self,
        record: &DedupRecord,
        body: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Where accepted events wait for the processor.
pub trait Queue: Send + Sync {
    fn send(&self, message: &QueueMessage)
    -> impl Future<Output = Result<(), BackendError>> + Send;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Received,
    Processed,
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Received, Self::Processed, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One unique event in the log, with the processor's lease on its work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub provider: Provider,
    pub event_type: String,
    pub dedup_key: String,
    pub work_key: String,
    pub resource_kind: String,
    pub resource_id: String,
    /// The provider's own time for the event, if it sent one.
    pub occurred_at: Option<Timestamp>,
    pub received_at: Timestamp,
    pub processed_at: Option<Timestamp>,
    pub attempts: u32,
    pub status: EventStatus,
    pub error: Option<String>,
    pub replay: bool,
    pub payload: String,
    pub lease_owner: Option<String>,
    /// Unix milliseconds when the lease lapses.
    pub lease_until: Option<i64>,
}

impl EventRecord {
    /// The id an operator uses for this event: `<provider>:<work_key>`.
    pub fn id(&self) -> String {
        event_id(self.provider, &self.work_key)
    }

    pub fn from_message(message: &QueueMessage) -> Self {
        Self {
            provider: message.provider,
            event_type: message.event_type.clone(),
            dedup_key: message.dedup_key.clone(),
            work_key: message.work_key.clone(),
            resource_kind: message.resource.kind.clone(),
            resource_id: message.resource.id.clone(),
            occurred_at: message.occurred_at,
            received_at: message.received_at,
            processed_at: None,
            attempts: 0,
            status: EventStatus::Received,
            error: None,
            replay: message.replay,
            payload: message.body.clone(),
            lease_owner: None,
            lease_until: None,
        }
    }
}

pub fn event_id(provider: Provider, work_key: &str) -> String {
    format!("{provider}:{work_key}")
}

/// Splits an operator's event id back into its parts.
pub fn parse_event_id(id: &str) -> Option<(Provider, &str)> {
    let (provider, key) = id.split_once(':')?;
    let provider = Provider::from_name(provider)?;
    (!key.is_empty()).then_some((provider, key))
}

/// Asking for the lease on an event's work.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    /// The record to create if the event is new.
    pub record: EventRecord,
    pub owner: String,
    /// Unix milliseconds.
    pub now: i64,
    pub lease_millis: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lease {
    /// The caller holds the lease. `takeover` when a dead holder's lease had
    /// expired; `attempts` counts this one.
    Acquired { attempts: u32, takeover: bool },
    /// The work already completed: nothing to do.
    Done,
    /// Another live holder is working on it: try again later.
    Busy { until: i64 },
}

/// The current state of one resource, as projected from its events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub provider: Provider,
    pub kind: String,
    pub id: String,
    pub status: Option<String>,
    /// The provider's time of the state held, if it sent one.
    pub updated_at: Option<Timestamp>,
    /// The status's place in its documented order, for ties and for
    /// providers that send no time.
    pub rank: Option<u32>,
    pub deleted: bool,
    /// Non-personal attributes (numbers, waybills, prices, item lists).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The provider's time of the event that set each attribute, where it
    /// sent one: an attribute that changes on its own (an AWB number) is
    /// ordered by its own time, not by the status's.
    #[serde(default)]
    pub field_times: std::collections::BTreeMap<String, Timestamp>,
    /// The event that last changed this state.
    pub last_event: String,
    /// Optimistic-concurrency counter: every write increments it.
    pub version: u64,
}

/// Filters for listing the event log. Every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub provider: Option<Provider>,
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    /// `(kind, id)`: all events of one resource.
    pub resource: Option<(String, String)>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
    pub limit: Option<usize>,
}

impl EventFilter {
    pub fn matches(&self, e: &EventRecord) -> bool {
        self.provider.is_none_or(|p| p == e.provider)
            && self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
            && self.status.is_none_or(|s| s == e.status)
            && self
                .resource
                .as_ref()
                .is_none_or(|(k, i)| *k == e.resource_kind && *i == e.resource_id)
            && self.since.is_none_or(|t| e.received_at >= t)
            && self.until.is_none_or(|t| e.received_at < t)
    }
}

/// The processor's storage: the event log with its leases, and projections.
pub trait EventStore: Send + Sync {
    /// Creates the event record if new and takes its lease if nobody live holds
    /// it and the work is not done. One conditional write.
    fn acquire(
        &self,
        request: &LeaseRequest,
    ) -> impl Future<Output = Result<Lease, BackendError>> + Send;

    /// Marks the work done and drops the lease, only if `owner` still holds
    /// it. Returns false when the lease was lost.
    fn complete(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Marks the attempt failed and drops the lease so that a retry can take
    /// it at once, only if `owner` still holds it.
    fn fail(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        error: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    fn event(
        &self,
        provider: Provider,
        work_key: &str,
    ) -> impl Future<Output = Result<Option<EventRecord>, BackendError>> + Send;

    /// The matching events, newest first (by receive time).
    fn events(
        &self,
        filter: &EventFilter,
    ) -> impl Future<Output = Result<Vec<EventRecord>, BackendError>> + Send;

    fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ResourceState>, BackendError>> + Send;

    /// Writes `state` if the stored version is still `expected` (`None`: no
    /// record yet). Returns false when someone else wrote in between.
    fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
}

/// The lease rules, for backends that apply them inside a transaction of
/// their own (the embedded store, the in-memory store). DynamoDB expresses the
/// same rules as a condition expression. Returns the outcome and the record
/// to write, if any.
pub fn lease_transition(
    existing: Option<&EventRecord>,
    request: &LeaseRequest,
) -> (Lease, Option<EventRecord>) {
    let until = request.now + request.lease_millis;
    match existing {
        None => {
            let mut record = request.record.clone();
            record.attempts = 1;
            record.lease_owner = Some(request.owner.clone());
            record.lease_until = Some(until);
            (
                Lease::Acquired {
                    attempts: 1,
                    takeover: false,
                },
                Some(record),
            )
        }
        Some(e) if e.status == EventStatus::Processed => (Lease::Done, None),
        Some(e) if e.lease_until.is_some_and(|u| u > request.now) => (
            Lease::Busy {
                until: e.lease_until.unwrap_or_default(),
            },
            None,
        ),
        Some(e) => {
            let mut record = e.clone();
            // An operator's replay is remembered on the event it re-ran.
            record.replay |= request.record.replay;
            record.attempts += 1;
            record.lease_owner = Some(request.owner.clone());
            record.lease_until = Some(until);
            (
                Lease::Acquired {
                    attempts: record.attempts,
                    takeover: e.lease_owner.is_some(),
                },
                Some(record),
            )
        }
    }
}

/// Completion: only the holder completes.
pub fn complete_transition(
    existing: Option<&EventRecord>,
    owner: &str,
    now: Timestamp,
) -> Option<EventRecord> {
    let e = existing.filter(|e| e.lease_owner.as_deref() == Some(owner))?;
    let mut record = e.clone();
    record.status = EventStatus::Processed;
    record.processed_at = Some(now);
    record.error = None;
    record.lease_owner = None;
    record.lease_until = None;
    Some(record)
}

/// Failure: only the holder releases.
pub fn fail_transition(
    existing: Option<&EventRecord>,
    owner: &str,
    error: &str,
) -> Option<EventRecord> {
    let e = existing.filter(|e| e.lease_owner.as_deref() == Some(owner))?;
    let mut record = e.clone();
    record.status = EventStatus::Failed;
    record.error = Some(error.to_owned());
    record.lease_owner = None;
    record.lease_until = None;
    Some(record)
}

/// Sorts newest first and applies the limit.
pub fn newest_first(mut events: Vec<EventRecord>, limit: Option<usize>) -> Vec<EventRecord> {
    events.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then_with(|| b.work_key.cmp(&a.work_key))
    });
    if let Some(limit) = limit {
        events.truncate(limit);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use terima_core::Resource;

    fn request(replay: bool, now: i64) -> LeaseRequest {
        let inspected_message = QueueMessage {
            v: terima_core::message::MESSAGE_VERSION,
            provider: Provider::Biteship,
            event_type: "order.status".into(),
            dedup_key: "k".into(),
            work_key: "k".into(),
            resource: Resource::new("order", "o1"),
            occurred_at: None,
            received_at: Timestamp::from_unix_millis(now),
            body_sha256: String::new(),
            body: String::new(),
            headers: Default::default(),
            replay,
            request_id: "r".into(),
        };
        LeaseRequest {
            record: EventRecord::from_message(&inspected_message),
            owner: format!("owner-{now}"),
            now,
            lease_millis: 10,
        }
    }

    #[test]
    fn a_replay_is_remembered_on_the_event_it_re_runs() {
        let (_, first) = lease_transition(None, &request(false, 0));
        let failed = fail_transition(first.as_ref(), "owner-0", "boom");
        assert_eq!(failed.as_ref().map(|r| r.replay), Some(false));
        let (lease, replayed) = lease_transition(failed.as_ref(), &request(true, 100));
        assert_eq!(
            lease,
            Lease::Acquired {
                attempts: 2,
                takeover: false
            }
        );
        assert_eq!(replayed.map(|r| r.replay), Some(true));
    }
}
