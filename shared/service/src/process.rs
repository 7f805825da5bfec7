//! The processor: the slow work for each queued event, at most once per
//! `work_key`, whatever the queue does.
//!
//! # Once-only
//!
//! SQS delivers at least once: a message can arrive twice, two copies can run
//! at the same time, and an invocation can die half-way. Each record goes
//! through a lease on its event record (one conditional write):
//!
//! - new event, or a failed attempt, or a holder whose lease has lapsed: the
//!   caller takes the lease (a lapsed one is a takeover, counted);
//! - work already completed: the message is acknowledged, nothing runs;
//! - a live holder: this copy is reported failed and retried later by SQS,
//!   by when the holder has completed (then: acknowledged) or died (then: its
//!   lease lapses and the retry takes over).
//!
//! Only the holder completes or releases the lease (the writes are conditional
//! on the owner), so a duplicate never clears a lease it does not hold. The
//! lease lasts longer than the processor's timeout, so a live holder never
//! loses it. The built-in work is idempotent by construction (monotonic,
//! version-checked projection writes; derived orders are create-only), so a
//! takeover after a death re-runs it harmlessly; the extension runs last and
//! receives the event's id to make its own side effects idempotent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::{self, StreamExt};
use terima_core::message::DecodeError;
use terima_core::{Clock, Inspected, QueueMessage, Timestamp, inspect};
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::ProcessorConfig;
use crate::metrics::{Metric, Metrics};
use crate::projection::{Update, follow_ups, merge, updates};
use crate::store::{
    BackendError, EventRecord, EventStore, Lease, LeaseRequest, ResourceState, event_id,
};

/// How many times a projection write is retried when another writer changed
/// the same resource in between.
const PROJECTION_RETRIES: usize = 8;

/// What the extension sees of one event.
pub struct WorkContext<'a> {
    /// `<provider>:<work_key>`: stable across retries, for idempotent side
    /// effects.
    pub event_id: &'a str,
    pub message: &'a QueueMessage,
    pub event: &'a Inspected,
    pub attempt: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExtensionError(pub String);

/// A team's own work per event, run after the built-in work under the same
/// once-only lease.
pub trait Extension: Send + Sync {
    fn handle(
        &self,
        ctx: &WorkContext<'_>,
    ) -> impl std::future::Future<Output = Result<(), ExtensionError>> + Send;
}

/// No extension.
impl Extension for () {
    async fn handle(&self, _: &WorkContext<'_>) -> Result<(), ExtensionError> {
        Ok(())
    }
}

/// Two extensions, run in order.
impl<A: Extension, B: Extension> Extension for (A, B) {
    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        self.0.handle(ctx).await?;
        self.1.handle(ctx).await
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
    #[error("queued body cannot be read as a {provider} event: {detail}")]
    Unreadable { provider: String, detail: String },
    #[error("another invocation holds the lease until {until}")]
    Busy { until: i64 },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("extension failed: {0}")]
    Extension(#[from] ExtensionError),
}

impl ProcessError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode(_) => "undecodable",
            Self::Unreadable { .. } => "unreadable",
            Self::Busy { .. } => "busy",
            Self::Backend(_) => "backend",
            Self::Extension(_) => "extension",
        }
    }
}

/// One record of a batch: the queue's id for it and its body.
pub struct Record {
    pub message_id: String,
    pub body: String,
}

pub struct Processor<S, E = ()> {
    config: ProcessorConfig,
    store: S,
    extension: E,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    owner_prefix: String,
    attempts: AtomicU64,
}

impl<S: EventStore, E: Extension> Processor<S, E> {
    pub fn new(
        config: ProcessorConfig,
        store: S,
        extension: E,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        // Unique per process: a lease owner names one attempt of one process.
        let owner_prefix = format!("{:x}-{:x}", std::process::id(), clock.now_millis());
        Self {
            config,
            store,
            extension,
            clock,
            metrics,
            owner_prefix,
            attempts: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Processes a batch with bounded concurrency and returns the ids of the
    /// records that failed, to be retried one by one by the queue.
    pub async fn process_batch(&self, records: Vec<Record>) -> Vec<String> {
        let results: Vec<(String, Result<Processed, ProcessError>)> = stream::iter(records)
            .map(|record| async move {
                let span = info_span!("record", message_id = %record.message_id);
                let result = self.process(&record.body).instrument(span).await;
                (record.message_id, result)
            })
            // Zero would never start a record and the batch would hang.
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        results
            .into_iter()
            .filter_map(|(id, result)| result.is_err().then_some(id))
            .collect()
    }

    /// Processes one queued message.
    pub async fn process(&self, body: &str) -> Result<Processed, ProcessError> {
        let result = self.process_inner(body).await;
        match &result {
            Ok(Processed::Done) => {}
            Ok(Processed::AlreadyDone) => info!("already processed; acknowledged"),
            Err(e @ ProcessError::Busy { .. }) => {
                info!(detail = %e, "in progress elsewhere; will retry")
            }
            Err(e) => error!(reason = e.reason(), detail = %e, "processing failed; will retry"),
        }
        result
    }

    async fn process_inner(&self, body: &str) -> Result<Processed, ProcessError> {
        let message = QueueMessage::decode(body)?;
        let provider = message.provider;
        let event =
            inspect(provider, &message.header_map(), message.body.as_bytes()).map_err(|e| {
                ProcessError::Unreadable {
                    provider: provider.to_string(),
                    detail: e.to_string(),
                }
            })?;
        let owner = format!(
            "{}-{}",
            self.owner_prefix,
            self.attempts.fetch_add(1, Ordering::Relaxed)
        );
        let request = LeaseRequest {
            record: EventRecord::from_message(&message),
            owner: owner.clone(),
            now: self.clock.now_millis(),
            lease_millis: self.config.lease_millis,
        };
        let attempt = match self.store.acquire(&request).await? {
            Lease::Done => {
                self.metrics
                    .count(provider, Metric::DuplicateDelivery, None);
                return Ok(Processed::AlreadyDone);
            }
            Lease::Busy { until } => return Err(ProcessError::Busy { until }),
            Lease::Acquired { attempts, takeover } => {
                if takeover {
                    warn!(event_type = %message.event_type, attempts, "took over a lapsed lease");
                    self.metrics.count(provider, Metric::LeaseTakeover, None);
                }
                if attempts > 1 {
                    self.metrics.count(provider, Metric::Retried, None);
                }
                attempts
            }
        };
        let id = event_id(provider, &message.work_key);
        let work = async {
            self.project(&event, &id).await?;
            let ctx = WorkContext {
                event_id: &id,
                message: &message,
                event: &event,
                attempt,
            };
            self.extension.handle(&ctx).await?;
            Ok::<(), ProcessError>(())
        };
        if let Err(e) = work.await {
            self.metrics
                .count(provider, Metric::Failed, Some(e.reason()));
            // If even the release fails, the lease lapses on its own.
            if let Err(release) = self
                .store
                .fail(provider, &message.work_key, &owner, &e.to_string())
                .await
            {
                error!(detail = %release, "could not record the failure; the lease will lapse");
            }
            return Err(e);
        }
        let now = Timestamp::from_unix_millis(self.clock.now_millis());
        if !self
            .store
            .complete(provider, &message.work_key, &owner, now)
            .await?
        {
            error!(event_type = %message.event_type, "lease lost before completion: the lease is shorter than the work");
        }
        info!(
            provider = %provider,
            event_type = %message.event_type,
            resource_kind = %message.resource.kind,
            resource_id = %message.resource.id,
            attempt,
            "processed"
        );
        self.metrics.count(provider, Metric::Processed, None);
        Ok(Processed::Done)
    }

    async fn project(&self, event: &Inspected, id: &str) -> Result<(), ProcessError> {
        let mut first_state = None;
        for update in updates(event) {
            let state = self.apply(event, &update, id).await?;
            first_state.get_or_insert(state);
        }
        if let Some(Some(first)) = first_state {
            for update in follow_ups(event, &first) {
                self.apply(event, &update, id).await?;
            }
        }
        Ok(())
    }

    /// Applies one update with optimistic concurrency; returns the resource's
    /// state afterwards.
    async fn apply(
        &self,
        event: &Inspected,
        update: &Update,
        id: &str,
    ) -> Result<Option<ResourceState>, ProcessError> {
        let provider = event.event.provider();
        for _ in 0..PROJECTION_RETRIES {
            let current = self
                .store
                .resource(provider, &update.kind, &update.id)
                .await?;
            let Some(next) = merge(provider, current.as_ref(), update, id) else {
                if current.is_some() && !update.create_only {
                    self.metrics
                        .count(provider, Metric::StaleUpdateIgnored, None);
                }
                return Ok(current);
            };
            if self
                .store
                .put_resource(&next, current.map(|c| c.version))
                .await?
            {
                return Ok(Some(next));
            }
        }
        Err(ProcessError::Backend(BackendError::new(
            "projection",
            "put_resource",
            "too many concurrent writers on one resource",
        )))
    }
}
