//! The storage design, as the coarse traits the ack path, the processor and
//! the operator's tools are written against. DynamoDB/SQS/S3, the embedded
//! store and the in-memory test store all implement them; the logic above
//! never knows which it talks to.
//!
//! Records:
//! - **work record**, key `(provider, resource, work_key, digest)`: the
//!   processor's once-only lock on one event's work (its lease, status,
//!   attempts, and the effect it had). The ack path reads it to answer
//!   `duplicate` or `conflict`. Kept for the retention period.
//! - **event record**, key: its [`event id`](event_id), which starts with the
//!   receive time: the event log entry with the verified body (inline, or a
//!   blob key). Written once by the processor. Kept for the retention
//!   period, then in the archive.
//! - **resource record**, key `(provider, kind, id)`: the projection. Kept.
//! - **conflict record**: one work key seen with two meanings; both bodies
//!   are in their own event records.
//! - **quarantine record**: a verified body that cannot be read, kept raw.
//! - **outbox record**: a message whose queue send failed, held for the
//!   sweeper.

use std::future::Future;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use terima_core::{BodyRef, Provider, QueueMessage, Resource, Timestamp};

/// A backend call that failed: answered 503 on the ack path only when nothing
/// durable holds the event, a per-message failure in the processor. Never a
/// reason to drop an event.
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

/// What the ack path learns about an event's work before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No work recorded for this work key.
    New,
    /// This meaning's work is recorded (done or under way).
    Duplicate,
    /// The work key is recorded, with another meaning only.
    Conflict,
}

impl Seen {
    /// From the digests recorded for a work key.
    pub fn from_digests<'a>(digest: &str, recorded: impl IntoIterator<Item = &'a str>) -> Self {
        let mut any = false;
        for d in recorded {
            if d == digest {
                return Self::Duplicate;
            }
            any = true;
        }
        if any { Self::Conflict } else { Self::New }
    }
}

/// The ack path's storage: one read per delivery, writes only when the queue
/// or the body's reading failed.
pub trait AckStore: Send + Sync {
    /// Whether the work of this event is recorded, and with which meaning.
    fn seen(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
        digest: &str,
    ) -> impl Future<Output = Result<Seen, BackendError>> + Send;

    /// Holds a message whose send failed, until the sweeper sends it (the
    /// outbox). Once this returns, the event is durably held.
    fn hold(&self, message: &QueueMessage)
    -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Keeps a verified body that cannot be read.
    fn quarantine(
        &self,
        record: &QuarantineRecord,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Where accepted events wait for the processor.
pub trait Queue: Send + Sync {
    fn send(&self, message: &QueueMessage)
    -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Bodies too large to travel inline (the claim check).
pub trait Blobs: Send + Sync {
    fn put(&self, key: &str, bytes: &[u8])
    -> impl Future<Output = Result<(), BackendError>> + Send;

    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;
}

/// The outbox, from the sweeper's side.
pub trait Outbox: Send + Sync {
    /// Up to `limit` held messages, oldest first, with a handle each.
    fn held(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(String, String)>, BackendError>> + Send;

    /// Drops a held message once it is sent.
    fn release(&self, handle: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The state of one event's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkStatus {
    /// A holder is working on it (or died doing so: its lease lapses).
    Processing,
    Processed,
    /// The last attempt failed; the queue retries.
    Failed,
}

impl WorkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Processing, Self::Processed, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// What an event did to its resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// It changed the resource's state.
    Applied,
    /// It changed nothing: the state already held something newer (a late
    /// delivery) or the same.
    Stale,
}

/// Identifies one event's work.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkKey {
    pub provider: Provider,
    pub resource: Resource,
    pub work_key: String,
    /// The meaning's digest: a conflicting body is other work.
    pub digest: String,
}

/// The processor's record of one event's work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkRecord {
    pub key: WorkKey,
    /// The event record of the processing that took this work.
    pub event_id: String,
    pub event_type: String,
    pub dedup_key: String,
    pub status: WorkStatus,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    /// Unix milliseconds when the lease lapses.
    pub lease_until: Option<i64>,
    pub error: Option<String>,
    pub received_at: Timestamp,
    pub occurred_at: Option<Timestamp>,
    pub processed_at: Option<Timestamp>,
    /// The status the event carried.
    pub carried_status: Option<String>,
    pub effect: Option<Effect>,
    pub replay: bool,
}

/// One entry of the event log: an event as received, with its body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub provider: Provider,
    pub event_type: String,
    pub dedup_key: String,
    pub work_key: String,
    pub digest: String,
    pub resource: Resource,
    pub occurred_at: Option<Timestamp>,
    pub received_at: Timestamp,
    /// The status the event carried.
    pub status: Option<String>,
    pub body_sha256: String,
    pub body: BodyRef,
    /// The verified headers the event depends on.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub replay: bool,
    pub request_id: String,
}

/// The sortable, time-first id of an event record:
/// `20240120T153000000-3fa2c4e19b07`. Two deliveries of one event processed
/// from the same message get the same id.
pub fn event_id(received_at: Timestamp, key: &WorkKey) -> String {
    let mut hasher = Sha256::new();
    for part in [
        key.provider.name(),
        &key.resource.kind,
        &key.resource.id,
        &key.work_key,
        &key.digest,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let hash = hex::encode(&hasher.finalize()[..6]);
    format!("{}-{hash}", id_time(received_at))
}

/// The time an id starts with: `2024-01-20T15:30:00.000Z` is
/// `20240120T153000000`. Ids of events received at or after `t` sort at or
/// after it.
pub fn id_time(t: Timestamp) -> String {
    t.to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect()
}

/// How many partitions one day of the event log is spread over (see
/// `docs/scale.md`): no partition takes more than 1/16 of the events.
pub const TIME_SHARDS: u32 = 16;

/// The shard of a key among [`TIME_SHARDS`] partitions, for records that
/// every delivery may write at once: the outbox during an SQS outage, the
/// quarantine when a provider changes its format.
pub fn shard_of(key: &str) -> u32 {
    u32::from(Sha256::digest(key.as_bytes())[0]) % TIME_SHARDS
}

/// The day (`2024-01-20`) and shard of an event id, or `None` when the text
/// is not one.
pub fn event_id_parts(id: &str) -> Option<(String, u32)> {
    let (time, hash) = id.split_once('-')?;
    let bytes = time.as_bytes();
    if time.len() != 18 || bytes.get(8) != Some(&b'T') || hash.len() != 12 {
        return None;
    }
    if !time
        .chars()
        .enumerate()
        .all(|(i, c)| i == 8 || c.is_ascii_digit())
    {
        return None;
    }
    let shard = u32::from_str_radix(hash.get(..2)?, 16).ok()? % TIME_SHARDS;
    Some((
        format!("{}-{}-{}", &time[..4], &time[4..6], &time[6..8]),
        shard,
    ))
}

impl EventRecord {
    pub fn from_message(message: &QueueMessage) -> Self {
        Self {
            id: event_id(message.received_at, &WorkKey::of(message)),
            provider: message.provider,
            event_type: message.event_type.clone(),
            dedup_key: message.dedup_key.clone(),
            work_key: message.work_key.clone(),
            digest: message.digest.clone(),
            resource: message.resource.clone(),
            occurred_at: message.occurred_at,
            received_at: message.received_at,
            status: message.status.clone(),
            body_sha256: message.body_sha256.clone(),
            body: message.body.clone(),
            headers: message.headers.clone(),
            replay: message.replay,
            request_id: message.request_id.clone(),
        }
    }

    /// The queue message this event was processed from, again.
    pub fn message(&self) -> QueueMessage {
        QueueMessage {
            v: terima_core::message::MESSAGE_VERSION,
            provider: self.provider,
            event_type: self.event_type.clone(),
            dedup_key: self.dedup_key.clone(),
            work_key: self.work_key.clone(),
            resource: self.resource.clone(),
            occurred_at: self.occurred_at,
            status: self.status.clone(),
            received_at: self.received_at,
            body_sha256: self.body_sha256.clone(),
            digest: self.digest.clone(),
            body: self.body.clone(),
            headers: self.headers.clone(),
            replay: self.replay,
            request_id: self.request_id.clone(),
        }
    }

    pub fn work_key(&self) -> WorkKey {
        WorkKey {
            provider: self.provider,
            resource: self.resource.clone(),
            work_key: self.work_key.clone(),
            digest: self.digest.clone(),
        }
    }
}

impl WorkKey {
    pub fn of(message: &QueueMessage) -> Self {
        Self {
            provider: message.provider,
            resource: message.resource.clone(),
            work_key: message.work_key.clone(),
            digest: message.digest.clone(),
        }
    }
}

impl WorkRecord {
    /// A new record for the work of `event`, not yet taken.
    pub fn new(event: &EventRecord) -> Self {
        Self {
            key: event.work_key(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            dedup_key: event.dedup_key.clone(),
            status: WorkStatus::Processing,
            attempts: 0,
            lease_owner: None,
            lease_until: None,
            error: None,
            received_at: event.received_at,
            occurred_at: event.occurred_at,
            processed_at: None,
            carried_status: event.status.clone(),
            effect: None,
            replay: event.replay,
        }
    }
}

/// Asking for the lease on an event's work.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    /// The record to create if the work is new.
    pub record: WorkRecord,
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
    /// The provider's time of the status held, if it sent one.
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

/// One work key seen with two meanings: both are processed, and the state
/// follows the provider's own ordering of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    pub provider: Provider,
    pub resource: Resource,
    pub work_key: String,
    /// The event recorded first, and the one that conflicts with it.
    pub first_event_id: String,
    pub second_event_id: String,
    pub detected_at: Timestamp,
}

/// A verified body that could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// Sortable, time-first: `20240120T153000000-<request id>`.
    pub id: String,
    pub provider: Provider,
    pub received_at: Timestamp,
    pub request_id: String,
    /// `ReadError::reason()`.
    pub reason: String,
    /// The error, with the JSON path.
    pub detail: String,
    /// The verified headers the body may depend on.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The raw body: text, or base64 when it is not UTF-8.
    pub body: QuarantinedBody,
    /// Set once a retry read it and queued it.
    pub retried: Option<Retried>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum QuarantinedBody {
    Text { text: String },
    Base64 { base64: String },
    Stored { key: String, size: usize },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retried {
    pub at: Timestamp,
    pub work_key: String,
    pub outcome: String,
}

pub fn quarantine_id(received_at: Timestamp, request_id: &str) -> String {
    let compact = id_time(received_at);
    let safe: String = request_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{compact}-{safe}")
}

/// Filters for listing the event log. Every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub provider: Option<Provider>,
    pub event_type: Option<String>,
    /// The work's status (`received`: no work recorded yet).
    pub status: Option<ListedStatus>,
    /// All events of one resource.
    pub resource: Option<(String, String)>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
}

/// The status shown for a listed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListedStatus {
    /// Logged, no work record (yet).
    Received,
    Processing,
    Processed,
    Failed,
}

impl ListedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Processing => "processing",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Received,
            Self::Processing,
            Self::Processed,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn of(work: Option<&WorkRecord>) -> Self {
        match work.map(|w| w.status) {
            None => Self::Received,
            Some(WorkStatus::Processing) => Self::Processing,
            Some(WorkStatus::Processed) => Self::Processed,
            Some(WorkStatus::Failed) => Self::Failed,
        }
    }
}

/// An event with its work record, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub event: EventRecord,
    pub work: Option<WorkRecord>,
    /// Read from the archive: the event log entry had expired.
    #[serde(default)]
    pub archived: bool,
}

impl EventView {
    pub fn status(&self) -> ListedStatus {
        ListedStatus::of(self.work.as_ref())
    }

    /// Another event record holds this event's work: a second delivery of
    /// the same event that raced the first through the processor.
    pub fn is_duplicate_entry(&self) -> bool {
        self.work
            .as_ref()
            .is_some_and(|w| w.event_id != self.event.id)
    }

    pub fn matches(&self, filter: &EventFilter) -> bool {
        let e = &self.event;
        filter.provider.is_none_or(|p| p == e.provider)
            && filter
                .event_type
                .as_ref()
                .is_none_or(|t| *t == e.event_type)
            && filter.status.is_none_or(|s| s == self.status())
            && filter
                .resource
                .as_ref()
                .is_none_or(|(k, i)| *k == e.resource.kind && *i == e.resource.id)
            && filter.since.is_none_or(|t| e.received_at >= t)
            && filter.until.is_none_or(|t| e.received_at < t)
    }
}

/// One page of a listing, newest first; `next` continues it.
#[derive(Clone, Debug, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor for the next page (the last id returned), if there may be
    /// more.
    pub next: Option<String>,
}

/// A resource's story: its state and every piece of work on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Story {
    pub state: Option<ResourceState>,
    pub works: Vec<WorkRecord>,
}

/// The processor's storage.
pub trait EventStore: Send + Sync {
    /// Every work record of one work key (one per meaning).
    fn works(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> impl Future<Output = Result<Vec<WorkRecord>, BackendError>> + Send;

    /// Writes an event log entry. Writing the same id again is harmless.
    fn log(&self, event: &EventRecord) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Removes an event log entry: a delivery's entry, written before its
    /// work, when another delivery of the same event recorded that work
    /// first. Removing an entry that is not there is harmless.
    fn unlog(&self, event: &EventRecord) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Creates the work record if new and takes its lease if nobody live
    /// holds it and the work is not done. One conditional write.
    fn acquire(
        &self,
        request: &LeaseRequest,
    ) -> impl Future<Output = Result<Lease, BackendError>> + Send;

    /// Marks the work done and drops the lease, only if `owner` still holds
    /// it. Returns false when the lease was lost.
    fn complete(
        &self,
        key: &WorkKey,
        owner: &str,
        now: Timestamp,
        effect: Effect,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Records a completed work that needed no lease (its work is idempotent
    /// by construction), unless it is already done. One conditional write;
    /// false when another copy completed it first.
    fn finish(
        &self,
        record: &WorkRecord,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Marks the attempt failed and drops the lease so that a retry can take
    /// it at once: only if `owner` still holds it, or (no lease) unless the
    /// work is done.
    fn fail(
        &self,
        key: &WorkKey,
        owner: Option<&str>,
        error: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ResourceState>, BackendError>> + Send;

    /// The state a projection starts from, which may be a moment old where
    /// a strongly consistent read costs more (DynamoDB: half the read
    /// units). The projection's write is conditional on the version, so a
    /// stale state costs a retry, which reads with [`EventStore::resource`].
    fn resource_to_update(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<ResourceState>, BackendError>> + Send {
        self.resource(provider, kind, id)
    }

    /// Writes `state` if the stored version is still `expected` (`None`: no
    /// record yet). Returns false when someone else wrote in between.
    fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Writes `state` as [`EventStore::put_resource`] does and records
    /// `work` as processed with it: one write where the backend can keep an
    /// event's record beside the state it produced (DynamoDB: a write unit
    /// less per event). Returns false, recording nothing, when the version is
    /// no longer `expected`.
    fn put_resource_and_finish(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
        work: &WorkRecord,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send {
        async move {
            if !self.put_resource(state, expected).await? {
                return Ok(false);
            }
            self.finish(work).await?;
            Ok(true)
        }
    }

    /// Records that a work key was seen with another meaning. Recording the
    /// same pair again is harmless.
    fn record_conflict(
        &self,
        conflict: &ConflictRecord,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// What operators and the inspector read and change.
pub trait EventLog: Send + Sync {
    fn event(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<EventView>, BackendError>> + Send;

    /// Events matching `filter`, newest first, after the cursor `after` (an
    /// event id), at most `limit`.
    fn events(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<EventView>, BackendError>> + Send;

    fn story(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = Result<Story, BackendError>> + Send;

    /// The raw body of an event, wherever it is.
    fn body(
        &self,
        event: &EventRecord,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;

    /// Conflicts, newest first.
    fn conflicts(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ConflictRecord>, BackendError>> + Send;

    /// Quarantined bodies, newest first, after the cursor `after`.
    fn quarantined(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<QuarantineRecord>, BackendError>> + Send;

    fn quarantined_one(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<QuarantineRecord>, BackendError>> + Send;

    /// Records the outcome of a retry on a quarantine record.
    fn mark_retried(
        &self,
        id: &str,
        retried: &Retried,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The lease rules, for backends that apply them inside a transaction of
/// their own (the embedded store, the in-memory store). DynamoDB expresses the
/// same rules as a condition expression. Returns the outcome and the record
/// to write, if any.
pub fn lease_transition(
    existing: Option<&WorkRecord>,
    request: &LeaseRequest,
) -> (Lease, Option<WorkRecord>) {
    let until = request.now + request.lease_millis;
    match existing {
        None => {
            let mut record = request.record.clone();
            record.status = WorkStatus::Processing;
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
        Some(e) if e.status == WorkStatus::Processed => (Lease::Done, None),
        Some(e) if e.lease_until.is_some_and(|u| u > request.now) => (
            Lease::Busy {
                until: e.lease_until.unwrap_or_default(),
            },
            None,
        ),
        Some(e) => {
            let mut record = e.clone();
            // An operator's replay is remembered on the work it re-ran.
            record.replay |= request.record.replay;
            record.status = WorkStatus::Processing;
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
    existing: Option<&WorkRecord>,
    owner: &str,
    now: Timestamp,
    effect: Effect,
) -> Option<WorkRecord> {
    let e = existing.filter(|e| e.lease_owner.as_deref() == Some(owner))?;
    let mut record = e.clone();
    record.status = WorkStatus::Processed;
    record.processed_at = Some(now);
    record.effect = Some(effect);
    record.error = None;
    record.lease_owner = None;
    record.lease_until = None;
    Some(record)
}

/// A lease-free completion: written unless the work is already done.
pub fn finish_transition(existing: Option<&WorkRecord>, record: &WorkRecord) -> Option<WorkRecord> {
    match existing {
        Some(e) if e.status == WorkStatus::Processed => None,
        Some(e) => {
            let mut next = record.clone();
            next.attempts = e.attempts + 1;
            next.replay |= e.replay;
            Some(next)
        }
        None => Some(record.clone()),
    }
}

/// Failure: only the holder releases; without a lease, only work not done.
pub fn fail_transition(
    existing: Option<&WorkRecord>,
    owner: Option<&str>,
    error: &str,
) -> Option<WorkRecord> {
    let e = existing?;
    let allowed = match owner {
        Some(owner) => e.lease_owner.as_deref() == Some(owner),
        None => e.status != WorkStatus::Processed,
    };
    if !allowed {
        return None;
    }
    let mut record = e.clone();
    record.status = WorkStatus::Failed;
    record.error = Some(error.to_owned());
    record.lease_owner = None;
    record.lease_until = None;
    Some(record)
}

/// Sorts newest first (by id, which starts with the receive time) and keeps
/// the page after `after`.
pub fn page_of(mut events: Vec<EventView>, after: Option<&str>, limit: usize) -> Page<EventView> {
    events.retain(|e| after.is_none_or(|a| e.event.id.as_str() < a));
    events.sort_by(|a, b| b.event.id.cmp(&a.event.id));
    let more = events.len() > limit;
    events.truncate(limit);
    let next = more
        .then(|| events.last().map(|e| e.event.id.clone()))
        .flatten();
    Page {
        items: events,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WorkKey {
        WorkKey {
            provider: Provider::Biteship,
            resource: Resource::new("order", "o1"),
            work_key: "k".into(),
            digest: "d".into(),
        }
    }

    fn record(replay: bool) -> WorkRecord {
        WorkRecord {
            key: key(),
            event_id: "e".into(),
            event_type: "order.status".into(),
            dedup_key: "k".into(),
            status: WorkStatus::Processing,
            attempts: 0,
            lease_owner: None,
            lease_until: None,
            error: None,
            received_at: Timestamp::from_unix_millis(0),
            occurred_at: None,
            processed_at: None,
            carried_status: None,
            effect: None,
            replay,
        }
    }

    fn request(replay: bool, now: i64) -> LeaseRequest {
        LeaseRequest {
            record: record(replay),
            owner: format!("owner-{now}"),
            now,
            lease_millis: 10,
        }
    }

    #[test]
    fn a_replay_is_remembered_on_the_work_it_re_runs() {
        let (_, first) = lease_transition(None, &request(false, 0));
        let failed = fail_transition(first.as_ref(), Some("owner-0"), "boom");
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

    #[test]
    fn a_lease_free_finish_never_overwrites_done_work() {
        let mut done = record(false);
        done.status = WorkStatus::Processed;
        assert_eq!(finish_transition(Some(&done), &record(false)), None);
        let mut failed = record(false);
        failed.status = WorkStatus::Failed;
        failed.attempts = 2;
        let mut finished = record(false);
        finished.status = WorkStatus::Processed;
        let next = finish_transition(Some(&failed), &finished).expect("written");
        assert_eq!(next.attempts, 3);
        assert_eq!(next.status, WorkStatus::Processed);
        assert_eq!(fail_transition(Some(&done), None, "x"), None);
    }

    #[test]
    fn event_ids_sort_by_time_and_name_their_partition() {
        let early = event_id(Timestamp::from_unix_millis(1_705_764_600_000), &key());
        let late = event_id(Timestamp::from_unix_millis(1_705_764_600_001), &key());
        assert!(early < late, "{early} {late}");
        assert!(early.starts_with("20240120T153000000-"), "{early}");
        let (day, shard) = event_id_parts(&early).expect("an event id");
        assert_eq!(day, "2024-01-20");
        assert!(shard < TIME_SHARDS);
        for bad in [
            "",
            "x-y",
            "20240120T153000000-zz",
            "2024012OT153000000-3fa2c4e19b07",
        ] {
            assert_eq!(event_id_parts(bad), None, "{bad}");
        }
        assert_eq!(Seen::from_digests("a", ["b", "a"]), Seen::Duplicate);
        assert_eq!(Seen::from_digests("a", ["b"]), Seen::Conflict);
        assert_eq!(Seen::from_digests("a", []), Seen::New);
    }
}
