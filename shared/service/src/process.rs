//! The processor: the slow work for each queued event, once per work key and
//! meaning, whatever the queue does.
//!
//! # Once-only
//!
//! SQS delivers at least once, the ack path sends a message for every
//! delivery (duplicates included) and the outbox may send one twice: the
//! same event can arrive many times, two copies can run at once, and an
//! invocation can die half-way. Each event's work has one work record,
//! keyed by its work key and the digest of its meaning:
//!
//! - A copy whose work record says processed is acknowledged; nothing runs.
//! - An extension's work (a team's side effects) runs under a lease on the
//!   work record (one conditional write): a live holder makes a second copy
//!   fail and come back later; a dead holder's lease lapses and the next copy
//!   takes over. Only the holder completes or releases it, and the lease is
//!   longer than the processing deadline, so a live holder never loses it.
//!   A failed completion write is retried while the lease holds (five tries,
//!   backing off from 50 ms): one fault never runs the work twice. Only a
//!   store down for the rest of the lease lets a later copy run it again,
//!   with the same `event_id`, which is why side effects should key on it.
//! - The built-in work is idempotent by construction (monotonic,
//!   version-checked projection writes; derived orders are create-only), so
//!   an event that no extension claims needs no lease: the work runs, then
//!   one conditional write records it done unless another copy did first.
//!   Two copies at once both run it, to the same result.
//! - A second meaning for a recorded work key (a conflict) is other work:
//!   both bodies are logged and processed, and the projection orders them by
//!   the provider's own time; the pair is recorded for operators.
//!
//! The event log entry is written before the work, so a crash leaves the
//! body logged and the retry writes the same entry again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use terima_core::message::DecodeError;
use terima_core::{
    BodyRef, Clock, Inspected, QueueMessage, Timestamp, TypedEvent, Update, inspect,
};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::ProcessorConfig;
use crate::metrics::{Gathered, Metric, Metrics};
use crate::projection::merge;
use crate::store::{
    BackendError, Blobs, ConflictRecord, Effect, EventRecord, EventStore, Lease, LeaseRequest,
    ResourceState, WorkKey, WorkRecord, WorkStatus,
};

/// How many times a projection write is retried when another writer changed
/// the same resource in between.
const PROJECTION_RETRIES: usize = 8;
/// The first pause before retrying a failed completion write; it doubles.
const COMPLETION_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// At most this many completion writes are tried.
const COMPLETION_ATTEMPTS: usize = 5;

/// What the extension sees of one event.
pub struct WorkContext<'a> {
    /// The event record's id: stable across retries of this work, for
    /// idempotent side effects.
    pub event_id: &'a str,
    pub message: &'a QueueMessage,
    pub event: &'a Inspected,
    pub attempt: u32,
}

impl WorkContext<'_> {
    /// The full typed view of the event.
    pub fn typed(&self) -> TypedEvent {
        self.event.typed()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExtensionError(pub String);

/// A team's own work per event, run after the built-in work under a lease so
/// that it runs once.
pub trait Extension: Send + Sync {
    /// Whether this event has work for the extension. Events it does not
    /// claim take the lease-free path (one write less).
    fn applies(&self, event: &Inspected) -> bool;

    fn handle(
        &self,
        ctx: &WorkContext<'_>,
    ) -> impl std::future::Future<Output = Result<(), ExtensionError>> + Send;
}

/// No extension.
impl Extension for () {
    fn applies(&self, _: &Inspected) -> bool {
        false
    }

    async fn handle(&self, _: &WorkContext<'_>) -> Result<(), ExtensionError> {
        Ok(())
    }
}

/// Two extensions, run in order.
impl<A: Extension, B: Extension> Extension for (A, B) {
    fn applies(&self, event: &Inspected) -> bool {
        self.0.applies(event) || self.1.applies(event)
    }

    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        if self.0.applies(ctx.event) {
            self.0.handle(ctx).await?;
        }
        if self.1.applies(ctx.event) {
            self.1.handle(ctx).await?;
        }
        Ok(())
    }
}

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Processed {
    /// The work ran and completed now.
    Done,
    /// The work had already completed: acknowledged, nothing ran.
    AlreadyDone,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the stored body {key} is missing")]
    BodyMissing { key: String },
    #[error("the stored body {key} does not match its digest")]
    BodyCorrupt { key: String },
    #[error("queued body cannot be read as a {provider} event: {detail}")]
    Unreadable { provider: String, detail: String },
    #[error("another invocation holds the lease until {until}")]
    Busy { until: i64 },
    #[error("the work did not finish within {0:?}, before its lease could lapse")]
    Deadline(Duration),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("extension failed: {0}")]
    Extension(#[from] ExtensionError),
}

impl ProcessError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode(_) => "undecodable",
            Self::BodyMissing { .. } | Self::BodyCorrupt { .. } => "body",
            Self::Unreadable { .. } => "unreadable",
            Self::Busy { .. } => "busy",
            Self::Deadline(_) => "deadline",
            Self::Backend(_) => "backend",
            Self::Extension(_) => "extension",
        }
    }
}

/// How the built-in work of an event ended.
enum Finish {
    /// Done, and recorded with the state it produced.
    Recorded(Effect),
    /// Done; the caller records it.
    Pending(Effect),
    /// Another copy of the event recorded it first.
    AlreadyDone,
}

fn warn_unread(event: &Inspected, notes: &[String]) {
    if !notes.is_empty() {
        warn!(
            provider = %event.provider,
            event_type = %event.reading.event_type,
            unread = ?notes,
            "some fields could not be read; the others were applied"
        );
    }
}

/// One record of a batch: the queue's id for it and its body.
pub struct Record {
    pub message_id: String,
    pub body: String,
}

pub struct Processor<S, B, E = ()> {
    config: ProcessorConfig,
    store: S,
    blobs: B,
    extension: E,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// This batch's counts, reported when it ends.
    gathered: Gathered,
    owner_prefix: String,
    attempts: AtomicU64,
}

impl<S: EventStore, B: Blobs, E: Extension> Processor<S, B, E> {
    pub fn new(
        config: ProcessorConfig,
        store: S,
        blobs: B,
        extension: E,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        // Unique per process: a lease owner names one attempt of one process.
        let owner_prefix = format!("{:x}-{:x}", std::process::id(), clock.now_millis());
        Self {
            config,
            store,
            blobs,
            extension,
            clock,
            metrics,
            gathered: Gathered::default(),
            owner_prefix,
            attempts: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// Processes a batch with bounded concurrency and returns the ids of the
    /// records that failed, to be retried one by one by the queue.
    pub async fn process_batch(&self, records: Vec<Record>) -> Vec<String> {
        // Copies of one event in one batch (a provider's retry beside the
        // delivery it repeats, an outbox resend beside its send) run once:
        // the others share its outcome. Run side by side, each would write
        // a log entry of its own.
        let mut firsts: Vec<Record> = Vec::new();
        let mut copies: Vec<(String, usize)> = Vec::new();
        let mut seen: HashMap<WorkKey, usize> = HashMap::new();
        for record in records {
            let key = QueueMessage::decode(&record.body)
                .ok()
                .map(|m| WorkKey::of(&m));
            match key.as_ref().and_then(|k| seen.get(k)) {
                Some(&first) => copies.push((record.message_id, first)),
                None => {
                    if let Some(key) = key {
                        seen.insert(key, firsts.len());
                    }
                    firsts.push(record);
                }
            }
        }
        let results: Vec<(usize, String, bool)> = stream::iter(firsts.into_iter().enumerate())
            .map(|(index, record)| async move {
                let span = info_span!("record", message_id = %record.message_id);
                let result = self.process_record(&record.body).instrument(span).await;
                (index, record.message_id, result.is_err())
            })
            // Zero would never start a record and the batch would hang.
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        // One metric report for the batch.
        self.gathered.flush(self.metrics);
        let failed: Vec<usize> = results
            .iter()
            .filter(|(_, _, failed)| *failed)
            .map(|(index, _, _)| *index)
            .collect();
        results
            .into_iter()
            .filter(|(_, _, failed)| *failed)
            .map(|(_, id, _)| id)
            .chain(
                copies
                    .into_iter()
                    .filter(|(_, first)| failed.contains(first))
                    .map(|(id, _)| id),
            )
            .collect()
    }

    /// Processes one queued message.
    pub async fn process(&self, body: &str) -> Result<Processed, ProcessError> {
        let result = self.process_record(body).await;
        self.gathered.flush(self.metrics);
        result
    }

    async fn process_record(&self, body: &str) -> Result<Processed, ProcessError> {
        // On the heap: a record's future is large, and a batch polls several
        // at once on one stack.
        let result = Box::pin(self.process_inner(body)).await;
        match &result {
            Ok(Processed::Done) => {}
            Ok(Processed::AlreadyDone) => debug!("already processed; acknowledged"),
            Err(e @ ProcessError::Busy { .. }) => {
                info!(detail = %e, "in progress elsewhere; will retry")
            }
            Err(e) => error!(reason = e.reason(), detail = %e, "processing failed; will retry"),
        }
        result
    }

    async fn body_of(&self, message: &QueueMessage) -> Result<Vec<u8>, ProcessError> {
        match &message.body {
            BodyRef::Inline { text } => Ok(text.as_bytes().to_vec()),
            BodyRef::Stored { key, .. } => {
                let bytes = self
                    .blobs
                    .get(key)
                    .await?
                    .ok_or_else(|| ProcessError::BodyMissing { key: key.clone() })?;
                if terima_core::message::sha256_hex(&bytes) != message.body_sha256 {
                    return Err(ProcessError::BodyCorrupt { key: key.clone() });
                }
                Ok(bytes)
            }
        }
    }

    async fn process_inner(&self, text: &str) -> Result<Processed, ProcessError> {
        let message = QueueMessage::decode(text)?;
        let provider = message.provider;
        let body = self.body_of(&message).await?;
        let inspected = inspect(provider, &message.header_map(), &body).map_err(|e| {
            ProcessError::Unreadable {
                provider: provider.to_string(),
                detail: e.to_string(),
            }
        })?;
        let key = WorkKey::of(&message);
        let recorded = self
            .store
            .works(provider, &key.resource, &key.work_key)
            .await?;
        if recorded
            .iter()
            .any(|w| w.key.digest == key.digest && w.status == WorkStatus::Processed)
        {
            self.gathered
                .count(provider, Metric::DuplicateDelivery, None);
            return Ok(Processed::AlreadyDone);
        }
        let event = EventRecord::from_message(&message);
        if let Some(first) = recorded.iter().find(|w| w.key.digest != key.digest)
            && !recorded.iter().any(|w| w.key.digest == key.digest)
        {
            warn!(event_type = %message.event_type, first = %first.event_id, second = %event.id, "conflict: one work key with two meanings; both are processed");
            self.store
                .record_conflict(&ConflictRecord {
                    provider,
                    resource: key.resource.clone(),
                    work_key: key.work_key.clone(),
                    first_event_id: first.event_id.clone(),
                    second_event_id: event.id.clone(),
                    detected_at: Timestamp::from_unix_millis(self.clock.now_millis()),
                })
                .await?;
        }
        let deadline =
            Duration::from_millis(u64::try_from(self.config.deadline_millis()).unwrap_or(u64::MAX));
        if self.extension.applies(&inspected) {
            self.with_lease(&message, &inspected, &event, deadline)
                .await
        } else {
            self.without_lease(&message, &inspected, &event, deadline)
                .await
        }
    }

    /// The built-in work only: idempotent, so no lease.
    async fn without_lease(
        &self,
        message: &QueueMessage,
        inspected: &Inspected,
        event: &EventRecord,
        deadline: Duration,
    ) -> Result<Processed, ProcessError> {
        let provider = message.provider;
        let work = async {
            self.store.log(event).await?;
            self.project_and_finish(inspected, event).await
        };
        let finish = match tokio::time::timeout(deadline, work).await {
            Ok(Ok(finish)) => finish,
            Ok(Err(e)) => return Err(self.failed(event, None, e).await),
            Err(_) => {
                return Err(self
                    .failed(event, None, ProcessError::Deadline(deadline))
                    .await);
            }
        };
        let effect = match finish {
            Finish::Recorded(effect) => {
                self.done(message, effect, 1);
                return Ok(Processed::Done);
            }
            Finish::AlreadyDone => {
                self.withdraw(event).await;
                self.gathered
                    .count(provider, Metric::DuplicateDelivery, None);
                return Ok(Processed::AlreadyDone);
            }
            Finish::Pending(effect) => effect,
        };
        if !self.store.finish(&self.processed(event, effect)).await? {
            self.withdraw(event).await;
            self.gathered
                .count(provider, Metric::DuplicateDelivery, None);
            return Ok(Processed::AlreadyDone);
        }
        self.done(message, effect, 1);
        Ok(Processed::Done)
    }

    /// Another delivery of this event recorded its work while this one ran
    /// beside it: this delivery's log entry goes, so that the event is
    /// logged once (under the delivery that recorded it). Best effort: a
    /// second entry for one event is untidy, not wrong.
    async fn withdraw(&self, event: &EventRecord) {
        let recorded = match self
            .store
            .works(event.provider, &event.resource, &event.work_key)
            .await
        {
            Ok(works) => works
                .into_iter()
                .find(|w| w.key.digest == event.digest && w.status == WorkStatus::Processed),
            Err(e) => {
                warn!(detail = %e, "could not check which delivery recorded the work");
                return;
            }
        };
        if recorded.is_some_and(|w| w.event_id != event.id)
            && let Err(e) = self.store.unlog(event).await
        {
            warn!(detail = %e, "could not remove a second log entry of one event");
        }
    }

    /// The work record of an event processed now.
    fn processed(&self, event: &EventRecord, effect: Effect) -> WorkRecord {
        let mut record = WorkRecord::new(event);
        record.status = WorkStatus::Processed;
        record.attempts = 1;
        record.processed_at = Some(Timestamp::from_unix_millis(self.clock.now_millis()));
        record.effect = Some(effect);
        record
    }

    /// The built-in projection of an event whose one update is its own
    /// resource (every provider's events today), with the work recorded in
    /// the same write as the state it produced. Follow-ups (create-only
    /// derived orders) are written first, from the state this event
    /// produces, so the recording write is the last: a crash before it
    /// leaves the event to run again, and running it again changes nothing
    /// twice. Anything else takes the general projection, recorded after.
    async fn project_and_finish(
        &self,
        inspected: &Inspected,
        event: &EventRecord,
    ) -> Result<Finish, ProcessError> {
        let provider = inspected.provider;
        let spec = provider.spec();
        let mut notes = inspected.notes.clone();
        let mut updates = spec.updates(&inspected.reading, &inspected.body, &mut notes);
        let own = matches!(updates.as_slice(), [u] if u.kind == event.resource.kind && u.id == event.resource.id);
        let update = match updates.pop() {
            Some(update) if own => update,
            last => {
                updates.extend(last);
                let effect = self
                    .project_updates(inspected, &event.id, updates, notes)
                    .await?;
                return Ok(Finish::Pending(effect));
            }
        };
        for attempt in 0..PROJECTION_RETRIES {
            // The first read may be a moment old (see `apply`).
            let current = if attempt == 0 {
                self.store
                    .resource_to_update(provider, &update.kind, &update.id)
                    .await?
            } else {
                self.store
                    .resource(provider, &update.kind, &update.id)
                    .await?
            };
            let next = merge(provider, current.as_ref(), &update, &event.id);
            if next.is_none() && attempt == 0 {
                continue;
            }
            if next.is_none() && self.is_recorded(event).await? {
                return Ok(Finish::AlreadyDone);
            }
            let mut attempt_notes = notes.clone();
            if let Some(state) = next.as_ref().or(current.as_ref()) {
                for follow_up in spec.follow_ups(
                    &inspected.reading,
                    &inspected.body,
                    &state.fields,
                    &mut attempt_notes,
                ) {
                    self.apply(inspected, &follow_up, &event.id).await?;
                }
            }
            let Some(next) = next else {
                warn_unread(inspected, &attempt_notes);
                return Ok(Finish::Pending(Effect::Stale));
            };
            let record = self.processed(event, Effect::Applied);
            if self
                .store
                .put_resource_and_finish(&next, current.map(|c| c.version), &record)
                .await?
            {
                warn_unread(inspected, &attempt_notes);
                return Ok(Finish::Recorded(Effect::Applied));
            }
            // Someone wrote in between: perhaps another copy of this event.
            if self.is_recorded(event).await? {
                return Ok(Finish::AlreadyDone);
            }
        }
        Err(ProcessError::Backend(BackendError::new(
            "projection",
            "put_resource",
            "too many concurrent writers on one resource",
        )))
    }

    /// Whether this event's work is recorded as processed.
    async fn is_recorded(&self, event: &EventRecord) -> Result<bool, ProcessError> {
        Ok(self
            .store
            .works(event.provider, &event.resource, &event.work_key)
            .await?
            .iter()
            .any(|w| w.key.digest == event.digest && w.status == WorkStatus::Processed))
    }

    /// Built-in work and the extension's, under a lease.
    async fn with_lease(
        &self,
        message: &QueueMessage,
        inspected: &Inspected,
        event: &EventRecord,
        deadline: Duration,
    ) -> Result<Processed, ProcessError> {
        let provider = message.provider;
        let owner = format!(
            "{}-{}",
            self.owner_prefix,
            self.attempts.fetch_add(1, Ordering::Relaxed)
        );
        let request = LeaseRequest {
            record: WorkRecord::new(event),
            owner: owner.clone(),
            now: self.clock.now_millis(),
            lease_millis: self.config.lease_millis,
        };
        let started = request.now;
        let attempt = match self.store.acquire(&request).await? {
            Lease::Done => {
                self.gathered
                    .count(provider, Metric::DuplicateDelivery, None);
                return Ok(Processed::AlreadyDone);
            }
            Lease::Busy { until } => return Err(ProcessError::Busy { until }),
            Lease::Acquired { attempts, takeover } => {
                if takeover {
                    warn!(event_type = %message.event_type, attempts, "took over a lapsed lease");
                    self.gathered.count(provider, Metric::LeaseTakeover, None);
                }
                if attempts > 1 {
                    self.gathered.count(provider, Metric::Retried, None);
                }
                attempts
            }
        };
        let work = async {
            self.store.log(event).await?;
            let effect = self.project(inspected, &event.id).await?;
            let ctx = WorkContext {
                event_id: &event.id,
                message,
                event: inspected,
                attempt,
            };
            self.extension.handle(&ctx).await?;
            Ok::<Effect, ProcessError>(effect)
        };
        let effect = match tokio::time::timeout(deadline, work).await {
            Ok(Ok(effect)) => effect,
            Ok(Err(e)) => return Err(self.failed(event, Some(&owner), e).await),
            Err(_) => {
                return Err(self
                    .failed(event, Some(&owner), ProcessError::Deadline(deadline))
                    .await);
            }
        };
        if !self.complete(event, &owner, effect, started).await? {
            error!(event_type = %message.event_type, "lease lost before completion: the lease is shorter than the work");
        }
        self.done(message, effect, attempt);
        Ok(Processed::Done)
    }

    /// Records the work done. The side effects have happened: a failed write
    /// here would let the lease lapse and the work run again, so a transient
    /// error is retried while the lease still holds.
    async fn complete(
        &self,
        event: &EventRecord,
        owner: &str,
        effect: Effect,
        started: i64,
    ) -> Result<bool, ProcessError> {
        let mut pause = COMPLETION_FIRST_PAUSE;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = self.clock.now_millis();
            match self
                .store
                .complete(
                    &event.work_key(),
                    owner,
                    Timestamp::from_unix_millis(now),
                    effect,
                )
                .await
            {
                Ok(held) => return Ok(held),
                Err(e) => {
                    let left = started + self.config.lease_millis - now;
                    let pause_millis = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
                    if attempt >= COMPLETION_ATTEMPTS || left <= pause_millis * 2 {
                        return Err(e.into());
                    }
                    warn!(detail = %e, "could not record the completion; retrying while the lease holds");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }

    /// Records a failed attempt (best effort) and passes the error on.
    async fn failed(
        &self,
        event: &EventRecord,
        owner: Option<&str>,
        e: ProcessError,
    ) -> ProcessError {
        self.gathered
            .count(event.provider, Metric::Failed, Some(e.reason()));
        // If even this fails, a lease lapses on its own and the queue retries.
        if let Err(release) = self
            .store
            .fail(&event.work_key(), owner, &e.to_string())
            .await
        {
            error!(detail = %release, "could not record the failure");
        }
        e
    }

    fn done(&self, message: &QueueMessage, effect: Effect, attempt: u32) {
        let provider = message.provider;
        debug!(
            provider = %provider,
            event_type = %message.event_type,
            resource_kind = %message.resource.kind,
            resource_id = %message.resource.id,
            attempt,
            ?effect,
            "processed"
        );
        if effect == Effect::Stale {
            self.gathered
                .count(provider, Metric::StaleUpdateIgnored, None);
        }
        self.gathered.count(provider, Metric::Processed, None);
    }

    /// Applies the provider's projection rules for this event; returns
    /// whether it changed any resource.
    async fn project(&self, event: &Inspected, id: &str) -> Result<Effect, ProcessError> {
        let mut notes = event.notes.clone();
        let updates = event
            .provider
            .spec()
            .updates(&event.reading, &event.body, &mut notes);
        self.project_updates(event, id, updates, notes).await
    }

    async fn project_updates(
        &self,
        event: &Inspected,
        id: &str,
        updates: Vec<Update>,
        mut notes: Vec<String>,
    ) -> Result<Effect, ProcessError> {
        let spec = event.provider.spec();
        let mut effect = Effect::Stale;
        let mut first_state = None;
        for update in updates {
            let (state, changed) = self.apply(event, &update, id).await?;
            if changed {
                effect = Effect::Applied;
            }
            first_state.get_or_insert(state);
        }
        if let Some(Some(first)) = first_state {
            for update in spec.follow_ups(&event.reading, &event.body, &first.fields, &mut notes) {
                self.apply(event, &update, id).await?;
            }
        }
        warn_unread(event, &notes);
        Ok(effect)
    }

    /// Applies one update with optimistic concurrency; returns the resource's
    /// state afterwards and whether this call changed it.
    async fn apply(
        &self,
        event: &Inspected,
        update: &Update,
        id: &str,
    ) -> Result<(Option<ResourceState>, bool), ProcessError> {
        let provider = event.provider;
        for attempt in 0..PROJECTION_RETRIES {
            // The first read may be a moment old: a write based on it is
            // conditional, and a "nothing to change" from it is checked
            // against a consistent read before it is believed (follow-ups
            // read the state it returns).
            let current = if attempt == 0 {
                self.store
                    .resource_to_update(provider, &update.kind, &update.id)
                    .await?
            } else {
                self.store
                    .resource(provider, &update.kind, &update.id)
                    .await?
            };
            let Some(next) = merge(provider, current.as_ref(), update, id) else {
                if attempt == 0 {
                    continue;
                }
                return Ok((current, false));
            };
            if self
                .store
                .put_resource(&next, current.map(|c| c.version))
                .await?
            {
                return Ok((Some(next), true));
            }
        }
        Err(ProcessError::Backend(BackendError::new(
            "projection",
            "put_resource",
            "too many concurrent writers on one resource",
        )))
    }
}
