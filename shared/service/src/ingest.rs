//! The ack path: verify, read, enqueue, answer.
//!
//! # Why an acknowledged event is never lost, whatever the provider's retry policy
//!
//! Biteship never retries on its own: a 5xx answered to it is an event lost
//! until a person presses Resend. So the ack path answers 2xx exactly when
//! the event is durably held somewhere that brings it to the processor
//! without outside help, and 503 only when nothing holds it.
//!
//! For a verified delivery the handler:
//!
//! 1. Reads it. A body that cannot be read (not JSON, a duplicated key, a
//!    missing routing fact) is stored raw in quarantine with the reason and
//!    answered `200 quarantined`: the provider's bytes are kept, and
//!    `terima quarantine retry` reads them again after a fix. Only when the
//!    quarantine write fails is the answer 503.
//! 2. Stores a body too large to travel inline in the blob store first (S3:
//!    the claim check); if that fails, nothing holds the event: 503.
//! 3. Sends the queue message and, at the same time, reads whether the
//!    event's work is already recorded (one round trip for both).
//! 4. If the send succeeded, the queue holds the event (and its dead-letter
//!    queue after that): the answer is 2xx, whatever the read did.
//! 5. If the send failed or timed out, the message is written to the outbox
//!    (a DynamoDB item); once that write returns, the answer is 2xx and the
//!    sweeper sends the message. A send that timed out but landed is sent a
//!    second time: the processor absorbs the copy (its work record).
//! 6. If the outbox write fails too, nothing durable is known to hold the
//!    event: the answer is 503. (If that write landed anyway, the sweeper
//!    still sends it: a 503 may end in an event processed, never the
//!    reverse.)
//! 7. A function killed between any two steps gave no answer, so nothing was
//!    promised; a provider that retries sends it again.
//!
//! SDK retries help inside one call but share a process-wide quota that runs
//! out during an outage, so the outbox, not the retries, is the safety net.
//!
//! The answer's label comes from the read in step 3: `duplicate` when this
//! meaning's work is recorded, `conflict` when the work key is recorded only
//! with another meaning (both bodies are then processed and logged; the state
//! follows the provider's own ordering), else `accepted`. The read never
//! decides whether the event is kept: the processor's work record makes the
//! business work happen once per work key and meaning, however many copies
//! the queue holds. A fresh event costs one round trip; a duplicate the same.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;

use http::HeaderMap;
use serde_json::json;
use terima_core::message::claim_key;
use terima_core::{
    Clock, Inspected, Provider, QueueMessage, ReadError, Resource, Timestamp, Verification,
    VerifyError, inspect,
};
use tracing::{debug, error, warn};

use crate::config::EndpointConfig;
use crate::metrics::{Metric, Metrics, Point};
use crate::store::{
    AckStore, BackendError, Blobs, QuarantineRecord, QuarantinedBody, Queue, Seen, WorkKey,
    event_id, quarantine_id,
};

/// What happened to one delivery. The one place that maps it to HTTP is
/// [`Outcome::status`].
#[derive(Debug)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Conflict,
    /// A verified body that cannot be read, kept raw.
    Quarantined(ReadError),
    /// Biteship's installation probe.
    Ignored,
    TooLarge {
        limit: usize,
    },
    Unauthorized(VerifyError),
    Unavailable(BackendError),
}

impl Outcome {
    pub fn status(&self) -> u16 {
        match self {
            Self::Accepted
            | Self::Duplicate
            | Self::Conflict
            | Self::Quarantined(_)
            | Self::Ignored => 200,
            Self::TooLarge { .. } => 413,
            Self::Unauthorized(_) => 401,
            Self::Unavailable(_) => 503,
        }
    }

    /// The label used in the response, the log and the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
            Self::Quarantined(_) => "quarantined",
            Self::Ignored => "ignored",
            Self::TooLarge { .. } => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The reason class of a refusal or a quarantine.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Quarantined(e) => Some(e.reason()),
            Self::Unauthorized(e) => Some(e.reason()),
            Self::TooLarge { .. } => Some("too_large"),
            Self::Unavailable(e) => Some(e.backend),
            _ => None,
        }
    }

    /// A small JSON body. A 401 never says why; a 503 never says what failed.
    pub fn body(&self, request_id: &str) -> String {
        let mut body = json!({ "status": self.label(), "request_id": request_id });
        match self {
            Self::TooLarge { limit } => {
                body["error"] = format!("body larger than {limit} bytes").into()
            }
            Self::Quarantined(e) => {
                body["reason"] = e.reason().into();
                body["error"] = e.to_string().into();
            }
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
    /// What the delivery was, for a local inspector (`terima serve`'s
    /// console shows every delivery, refused ones included, which are never
    /// stored). The Lambda ignores it.
    pub delivered: Delivered,
}

/// One delivery as the ack path saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// [`Outcome::label`].
    pub outcome: &'static str,
    /// Why it was refused or quarantined (`bad_signature`, `not_json`, ...).
    pub reason: Option<&'static str>,
    /// The id the processor logs it under
    /// ([`event_id`](crate::store::event_id), deterministic), or its
    /// quarantine record's id.
    pub record_id: Option<String>,
    pub event_type: Option<String>,
    pub resource: Option<Resource>,
}

/// What the report of one delivery says besides its outcome.
#[derive(Debug, Default)]
struct Notes {
    /// The queue send failed and the outbox holds the event.
    held: bool,
    /// What was read of the delivery, for [`Reply::delivered`].
    delivered: Delivered,
    /// Backend calls that failed without changing the answer.
    failures: Vec<BackendError>,
    scheme: Option<&'static str>,
    secret_index: Option<usize>,
}

/// One provider's endpoint, generic over its backends.
pub struct Ingest<S, Q, B> {
    config: EndpointConfig,
    store: S,
    queue: Q,
    blobs: B,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl<S: AckStore, Q: Queue, B: Blobs> Ingest<S, Q, B> {
    pub fn new(
        config: EndpointConfig,
        store: S,
        queue: Q,
        blobs: B,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            store,
            queue,
            blobs,
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
        let started = Instant::now();
        let mut notes = Notes::default();
        let outcome = self.outcome(headers, body, request_id, &mut notes).await;
        self.report(&outcome, &notes, request_id, Some(started));
        let mut delivered = std::mem::take(&mut notes.delivered);
        delivered.outcome = outcome.label();
        delivered.reason = outcome.reason();
        Reply {
            status: outcome.status(),
            body: outcome.body(request_id),
            delivered,
        }
    }

    async fn outcome(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        request_id: &str,
        notes: &mut Notes,
    ) -> Outcome {
        let provider = self.config.provider;
        if body.len() > self.config.body_limit {
            return Outcome::TooLarge {
                limit: self.config.body_limit,
            };
        }
        if provider.spec().is_probe(body) {
            return Outcome::Ignored;
        }
        match self
            .config
            .verification
            .verify(headers, body, self.clock.as_ref())
        {
            Ok(verified) => {
                // Which scheme matched is news only where there is a choice
                // (Akinon's HMAC and token): elsewhere it costs log bytes and
                // says nothing.
                if matches!(&self.config.verification, Verification::Enforced(v) if v.len() > 1) {
                    notes.scheme = verified.scheme;
                }
                notes.secret_index = verified.secret_index;
            }
            Err(e) => return Outcome::Unauthorized(e),
        }
        let now = Timestamp::from_unix_millis(self.clock.now_millis());
        let inspected = match inspect(provider, headers, body) {
            Ok(inspected) => inspected,
            Err(e) => {
                notes.delivered.record_id = Some(quarantine_id(now, request_id));
                return self.quarantine(headers, body, e, now, request_id).await;
            }
        };
        let Ok(text) = std::str::from_utf8(body) else {
            unreachable!("inspect parsed the body as UTF-8 JSON")
        };
        let message = QueueMessage::new(&inspected, headers, text, now, request_id);
        notes.delivered = Delivered {
            record_id: Some(event_id(message.received_at, &WorkKey::of(&message))),
            event_type: Some(message.event_type.clone()),
            resource: Some(message.resource.clone()),
            ..Delivered::default()
        };
        self.accept(message, &inspected, notes).await
    }

    /// Stores the body if it is too large to travel inline, then enqueues.
    async fn accept(
        &self,
        message: QueueMessage,
        inspected: &Inspected,
        notes: &mut Notes,
    ) -> Outcome {
        let message = if message.needs_claim_check() {
            let key = claim_key(
                message.provider,
                message.received_at,
                &message.request_id,
                &message.body_sha256,
            );
            let terima_core::BodyRef::Inline { text } = &message.body else {
                unreachable!("a new message carries its body inline")
            };
            if let Err(e) = self.blobs.put(&key, text.as_bytes()).await {
                return Outcome::Unavailable(e);
            }
            message.with_stored_body(key)
        } else {
            message
        };
        debug!(notes = ?inspected.notes, "read");
        self.dedup_and_send(&message, notes).await
    }

    /// Enqueues a message that is not a delivery: an operator's replay from
    /// the event log, or a quarantined body read again. The same path as a
    /// verified delivery, reported the same way.
    pub async fn enqueue(&self, message: &QueueMessage) -> Outcome {
        let mut notes = Notes::default();
        let outcome = self.dedup_and_send(message, &mut notes).await;
        self.report(&outcome, &notes, &message.request_id, None);
        outcome
    }

    async fn dedup_and_send(&self, message: &QueueMessage, notes: &mut Notes) -> Outcome {
        let (seen, sent) = tokio::join!(
            self.store.seen(
                message.provider,
                &message.resource,
                &message.work_key,
                &message.digest
            ),
            self.queue.send(message)
        );
        if let Err(e) = sent {
            notes.failures.push(e);
            match self.store.hold(message).await {
                Ok(()) => notes.held = true,
                Err(e) => return Outcome::Unavailable(e),
            }
        }
        match seen {
            Ok(Seen::New) => Outcome::Accepted,
            Ok(Seen::Duplicate) => Outcome::Duplicate,
            Ok(Seen::Conflict) => Outcome::Conflict,
            Err(e) => {
                notes.failures.push(e);
                Outcome::Accepted
            }
        }
    }

    async fn quarantine(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        error: ReadError,
        now: Timestamp,
        request_id: &str,
    ) -> Outcome {
        let provider = self.config.provider;
        let body_ref = match std::str::from_utf8(body) {
            Ok(text) if text.len() <= terima_core::message::INLINE_MESSAGE_LIMIT / 2 => {
                QuarantinedBody::Text {
                    text: text.to_owned(),
                }
            }
            Err(_) if body.len() <= terima_core::message::INLINE_MESSAGE_LIMIT / 4 => {
                QuarantinedBody::Base64 {
                    base64: base64::engine::general_purpose::STANDARD.encode(body),
                }
            }
            _ => {
                let key = format!("claim/quarantine/{}", quarantine_id(now, request_id));
                if let Err(e) = self.blobs.put(&key, body).await {
                    return Outcome::Unavailable(e);
                }
                QuarantinedBody::Stored {
                    key,
                    size: body.len(),
                }
            }
        };
        let record = QuarantineRecord {
            id: quarantine_id(now, request_id),
            provider,
            received_at: now,
            request_id: request_id.to_owned(),
            reason: error.reason().to_owned(),
            detail: error.to_string(),
            headers: provider
                .spec()
                .meaningful_headers()
                .iter()
                .filter_map(|name| {
                    let value = headers.get(*name)?.to_str().ok()?;
                    Some(((*name).to_owned(), value.to_owned()))
                })
                .collect(),
            body: body_ref,
            retried: None,
        };
        match self.store.quarantine(&record).await {
            Ok(()) => Outcome::Quarantined(error),
            Err(e) => Outcome::Unavailable(e),
        }
    }

    /// One log line where something needs attention, and one metric line.
    fn report(&self, outcome: &Outcome, notes: &Notes, request_id: &str, started: Option<Instant>) {
        let provider = self.config.provider;
        let mut points: Vec<Point<'_>> = Vec::new();
        let index = notes.secret_index.map(|i| i.to_string());
        match outcome {
            Outcome::Unauthorized(e) => {
                warn!(provider = %provider, request_id, reason = e.reason(), detail = %e, "rejected: verification failed");
                points.push(Point::with_detail(Metric::Rejected, e.reason()));
            }
            Outcome::TooLarge { .. } => {
                warn!(provider = %provider, request_id, "rejected: body too large");
                points.push(Point::with_detail(Metric::Rejected, "too_large"));
            }
            Outcome::Quarantined(e) => {
                warn!(provider = %provider, request_id, reason = e.reason(), detail = %e, "quarantined: verified body cannot be read");
                points.push(Point::with_detail(Metric::Quarantined, e.reason()));
            }
            Outcome::Unavailable(e) => {
                error!(provider = %provider, request_id, backend = e.backend, operation = e.operation, detail = %e.message, "nothing durable holds the event; answered 503");
                points.push(Point::count(Metric::Unavailable));
                points.push(Point::with_detail(Metric::BackendError, e.backend));
            }
            Outcome::Conflict => {
                warn!(provider = %provider, request_id, "conflict: this work was recorded with a different body");
                points.push(Point::count(Metric::Conflict));
            }
            Outcome::Accepted => points.push(Point::count(Metric::Accepted)),
            Outcome::Duplicate => points.push(Point::count(Metric::Duplicate)),
            Outcome::Ignored => points.push(Point::count(Metric::Ignored)),
        }
        for failure in &notes.failures {
            warn!(provider = %provider, request_id, backend = failure.backend, operation = failure.operation, detail = %failure.message, "backend call failed; the answer did not depend on it");
        }
        if let Some(failure) = notes.failures.first()
            && !matches!(outcome, Outcome::Unavailable(_))
        {
            points.push(Point::with_detail(Metric::BackendError, failure.backend));
        }
        if notes.held {
            warn!(provider = %provider, request_id, "queue send failed; the outbox holds the event");
            points.push(Point::count(Metric::HeldInOutbox));
        }
        if let Some(scheme) = notes.scheme {
            points.push(Point::with_detail(Metric::Verified, scheme));
        }
        // Only a secret other than the first is counted: during a rotation
        // the old one's count falls to nothing, and the usual case costs no
        // log bytes.
        if let Some(index) = index.as_deref().filter(|i| *i != "0") {
            points.push(Point::with_detail(Metric::SecretMatched, index));
        }
        if let Some(started) = started {
            // A tenth of a millisecond is as fine as an ack time means.
            let millis = started.elapsed().as_secs_f64() * 1_000.0;
            points.push(Point::value(
                Metric::AckMillis,
                (millis * 10.0).round() / 10.0,
            ));
        }
        self.metrics.emit(provider, &points);
    }
}
