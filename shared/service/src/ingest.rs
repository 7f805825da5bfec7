//! The ack path: verify, read, deduplicate, enqueue, answer.
//!
//! # Why an acknowledged event is never lost, in one round trip
//!
//! For a verified, readable delivery the handler issues two calls at once and
//! waits for both: a conditional write of the dedup record, and the send of
//! the queue message. Then:
//!
//! 1. The answer is 2xx only if *this request's* send succeeded. So every event
//!    answered 2xx has a message in the queue, whatever the dedup write did,
//!    and the queue keeps it (with a dead-letter queue) until the processor
//!    completes it. Nothing answered 2xx can be lost.
//! 2. If the send fails or times out, the answer is 503, so the provider
//!    retries. A dedup record written by the failed attempt does not block the
//!    retry: the retry sends again (point 1), and merely reports `duplicate`.
//! 3. If the dedup write fails but the send succeeded, the answer is also 503:
//!    the handler cannot tell a fresh delivery from a conflict. The retry sends
//!    a second copy of the message; the processor absorbs it (below).
//! 4. If the function is killed between any two steps, the provider got no
//!    answer and retries: same as point 2 or 3.
//! 5. Duplicates are answered `200 duplicate` but their message is still sent
//!    (the send is already under way when the dedup answer arrives). So the
//!    queue may hold several copies of one event; the processor makes the
//!    business work happen once per `work_key` with a lease in its own table
//!    (see `process`), which is what makes once-only processing possible
//!    here: the ack path never relies on the dedup record to prevent work.
//!
//! The dedup record exists to answer `duplicate`, and to detect the same key
//! arriving with a different body: that is recorded as a conflict (one more
//! write, on that rare path only), logged and counted.
//!
//! A fresh event and a duplicate therefore cost one round trip each: the two
//! calls overlap. Doing the dedup write first and sending only when fresh would
//! save queue messages but cost two sequential round trips, and would need a
//! second state on the record to survive a failed send.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::json;
use terima_core::providers::biteship;
use terima_core::{Clock, Provider, QueueMessage, Timestamp, VerifyError, inspect};
use tracing::{error, info, warn};

use crate::config::EndpointConfig;
use crate::metrics::{Metric, Metrics};
use crate::store::{BackendError, Claim, DedupRecord, DedupStore, Queue};

/// What happened to one delivery. The one place that maps it to HTTP is
/// [`Outcome::status`].
#[derive(Debug)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Conflict,
    /// Biteship's installation probe.
    Ignored,
    TooLarge {
        limit: usize,
    },
    Unauthorized(VerifyError),
    Invalid(String, &'static str),
    Unavailable(BackendError),
}

impl Outcome {
    pub fn status(&self) -> u16 {
        match self {
            Self::Accepted | Self::Duplicate | Self::Conflict | Self::Ignored => 200,
            Self::TooLarge { .. } => 413,
            Self::Unauthorized(_) => 401,
            Self::Invalid(..) => 400,
            Self::Unavailable(_) => 503,
        }
    }

    /// The label used in the response, the log and the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
            Self::Ignored => "ignored",
            Self::TooLarge { .. } => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Invalid(..) => "invalid",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// A small JSON body. A 401 never says why; a 503 never says what failed.
    pub fn body(&self, request_id: &str) -> String {
        let mut body = json!({ "status": self.label(), "request_id": request_id });
        match self {
            Self::TooLarge { limit } => {
                body["error"] = format!("body larger than {limit} bytes").into()
            }
            Self::Invalid(message, _) => body["error"] = message.clone().into(),
            _ => {}
        }
        body.to_string()
    }
}

/// An answer ready for any HTTP front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One provider's endpoint, generic over its backends.
pub struct Ingest<S, Q> {
    config: EndpointConfig,
    store: S,
    queue: Q,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl<S: DedupStore, Q: Queue> Ingest<S, Q> {
    pub fn new(
        config: EndpointConfig,
        store: S,
        queue: Q,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            store,
            queue,
            clock,
            metrics,
        }
    }

    pub fn provider(&self) -> Provider {
        self.config.provider
    }

    pub fn body_limit(&self) -> usize {
        self.config.body_limit
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// Handles one delivery and reports it in the log and the metrics.
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8], request_id: &str) -> Reply {
        let outcome = self.outcome(headers, body, request_id).await;
        self.report(&outcome, request_id);
        Reply {
            status: outcome.status(),
            body: outcome.body(request_id),
        }
    }

    async fn outcome(&self, headers: &HeaderMap, body: &[u8], request_id: &str) -> Outcome {
        let provider = self.config.provider;
        if body.len() > self.config.body_limit {
            return Outcome::TooLarge {
                limit: self.config.body_limit,
            };
        }
        if provider == Provider::Biteship && biteship::is_installation_probe(body) {
            return Outcome::Ignored;
        }
        let verified = match self
            .config
            .verification
            .verify(headers, body, self.clock.as_ref())
        {
            Ok(verified) => verified,
            Err(e) => return Outcome::Unauthorized(e),
        };
        if let Some(index) = verified.secret_index {
            self.metrics
                .count(provider, Metric::SecretMatched, Some(&index.to_string()));
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return Outcome::Invalid("body is not UTF-8 JSON".to_owned(), "not_json");
        };
        let inspected = match inspect(provider, headers, body) {
            Ok(inspected) => inspected,
            Err(e) => return Outcome::Invalid(e.to_string(), e.reason()),
        };
        let now = Timestamp::from_unix_millis(self.clock.now_millis());
        let message = QueueMessage::new(provider, &inspected, headers, text, now, request_id);
        self.dedup_and_send(&message).await
    }

    /// Deduplicates and enqueues a message that is not a delivery: an
    /// operator's replay from the event log (`terima replay`). The same path
    /// as a verified delivery, reported the same way.
    pub async fn enqueue(&self, message: &QueueMessage) -> Outcome {
        let outcome = self.dedup_and_send(message).await;
        self.report(&outcome, &message.request_id);
        outcome
    }

    async fn dedup_and_send(&self, message: &QueueMessage) -> Outcome {
        let provider = message.provider;
        let request_id = message.request_id.as_str();
        let text = message.body.as_str();
        let now = message.received_at;
        let record = DedupRecord {
            provider,
            dedup_key: message.dedup_key.clone(),
            event_type: message.event_type.clone(),
            body_sha256: message.body_sha256.clone(),
            received_at: now,
            expires_at: now.unix_millis() / 1_000 + self.config.dedup_ttl_secs,
            request_id: request_id.to_owned(),
        };
        let (claim, sent) = tokio::join!(self.store.claim(&record), self.queue.send(message));
        if let Err(e) = sent {
            return Outcome::Unavailable(e);
        }
        match claim {
            Err(e) => Outcome::Unavailable(e),
            Ok(Claim::Fresh) => {
                info!(
                    provider = %provider,
                    event_type = %message.event_type,
                    dedup_key = %message.dedup_key,
                    resource_kind = %message.resource.kind,
                    resource_id = %message.resource.id,
                    request_id,
                    "accepted"
                );
                Outcome::Accepted
            }
            Ok(Claim::Existing { body_sha256 }) if body_sha256 == record.body_sha256 => {
                Outcome::Duplicate
            }
            Ok(Claim::Existing { .. }) => match self.store.record_conflict(&record, text).await {
                Ok(()) => Outcome::Conflict,
                Err(e) => Outcome::Unavailable(e),
            },
        }
    }

    fn report(&self, outcome: &Outcome, request_id: &str) {
        let provider = self.config.provider;
        match outcome {
            Outcome::Unauthorized(e) => {
                warn!(provider = %provider, request_id, reason = e.reason(), detail = %e, "rejected: verification failed");
                self.metrics
                    .count(provider, Metric::Rejected, Some(e.reason()));
            }
            Outcome::Invalid(message, reason) => {
                warn!(provider = %provider, request_id, reason, detail = %message, "rejected: unreadable body");
                self.metrics.count(provider, Metric::Rejected, Some(reason));
            }
            Outcome::TooLarge { .. } => {
                warn!(provider = %provider, request_id, "rejected: body too large");
                self.metrics
                    .count(provider, Metric::Rejected, Some("too_large"));
            }
            Outcome::Unavailable(e) => {
                error!(provider = %provider, request_id, backend = e.backend, operation = e.operation, detail = %e.message, "backend failed; answered 503");
                self.metrics
                    .count(provider, Metric::BackendError, Some(e.backend));
            }
            Outcome::Conflict => {
                warn!(provider = %provider, request_id, "conflict: a delivered key arrived with a different body");
                self.metrics.count(provider, Metric::Conflict, None);
            }
            Outcome::Accepted => self.metrics.count(provider, Metric::Accepted, None),
            Outcome::Duplicate => self.metrics.count(provider, Metric::Duplicate, None),
            Outcome::Ignored => self.metrics.count(provider, Metric::Ignored, None),
        }
    }
}
