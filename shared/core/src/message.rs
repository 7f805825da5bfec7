//! The queue message: everything the processor needs about one accepted
//! delivery. Provider functions write it, the processor reads it, the outbox
//! and the embedded default store it; this is the only definition.
//!
//! A body travels inline when the encoded message stays under
//! [`INLINE_MESSAGE_LIMIT`]; a larger one is stored first (S3, or the
//! embedded store's blob table) and the message carries its key: a claim
//! check. Either way the message, the outbox item and the event record stay
//! far below every service's size limit.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::providers::{Inspected, Provider, Resource};
use crate::timestamp::Timestamp;

/// The version of this format; a reader refuses versions it does not know.
pub const MESSAGE_VERSION: u32 = 2;

/// The largest encoded message that carries its body inline. SQS takes
/// 1 MiB and bills each 64 KiB; a DynamoDB item (the outbox) takes 400 KB.
/// JSON escaping can make a message up to six times its body, so the check
/// is on the encoded size.
pub const INLINE_MESSAGE_LIMIT: usize = 192 * 1024;

/// Where the verified body is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BodyRef {
    /// The body itself. Accepted bodies are verified UTF-8 JSON.
    Inline { text: String },
    /// A key in the blob store (`claim/...` in S3).
    Stored { key: String, size: usize },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    pub v: u32,
    pub provider: Provider,
    pub event_type: String,
    pub dedup_key: String,
    pub work_key: String,
    pub resource: Resource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub received_at: Timestamp,
    /// Hex SHA-256 of the raw body bytes: checks the body wherever it is.
    pub body_sha256: String,
    /// Hex SHA-256 of the body's meaning (canonical JSON): the same event
    /// however it was serialised.
    pub digest: String,
    pub body: BodyRef,
    /// The verified headers the event depends on, lower-case names.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Set when an operator replayed the event from the event log.
    #[serde(default)]
    pub replay: bool,
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not a Terima queue message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message format version {0} is not supported")]
    Version(u32),
    #[error("message body digest does not match its body")]
    Digest,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The blob key a stored body gets: unique per delivery, grouped by day for
/// the bucket's lifecycle rules and for people.
pub fn claim_key(
    provider: Provider,
    received_at: Timestamp,
    request_id: &str,
    sha: &str,
) -> String {
    let day = &received_at.to_string()[..10];
    let id: String = request_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("claim/{day}/{provider}/{id}-{}", &sha[..16])
}

impl QueueMessage {
    /// Builds the message for a verified, inspected delivery with its body
    /// inline. `body` must be the verified bytes; inspection already proved
    /// them to be UTF-8 JSON.
    pub fn new(
        inspected: &Inspected,
        headers: &HeaderMap,
        body: &str,
        received_at: Timestamp,
        request_id: &str,
    ) -> Self {
        let provider = inspected.provider;
        let headers = provider
            .spec()
            .meaningful_headers()
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        let reading = &inspected.reading;
        Self {
            v: MESSAGE_VERSION,
            provider,
            event_type: reading.event_type.clone(),
            dedup_key: reading.dedup_key.clone(),
            work_key: reading.work_key.clone(),
            resource: reading.resource.clone(),
            occurred_at: reading.occurred_at,
            status: reading.status.clone(),
            received_at,
            body_sha256: sha256_hex(body.as_bytes()),
            digest: inspected.digest.clone(),
            body: BodyRef::Inline {
                text: body.to_owned(),
            },
            headers,
            replay: false,
            request_id: request_id.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!())
    }

    /// Whether the encoded message is too large to carry its body.
    pub fn needs_claim_check(&self) -> bool {
        self.encode().len() > INLINE_MESSAGE_LIMIT
    }

    /// Replaces an inline body by a reference to where it was stored.
    pub fn with_stored_body(mut self, key: String) -> Self {
        let size = match &self.body {
            BodyRef::Inline { text } => text.len(),
            BodyRef::Stored { size, .. } => *size,
        };
        self.body = BodyRef::Stored { key, size };
        self
    }

    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let message: Self = serde_json::from_str(text)?;
        if message.v != MESSAGE_VERSION {
            return Err(DecodeError::Version(message.v));
        }
        if let BodyRef::Inline { text } = &message.body
            && sha256_hex(text.as_bytes()) != message.body_sha256
        {
            return Err(DecodeError::Digest);
        }
        Ok(message)
    }

    /// The carried headers as a map, to read the event again.
    pub fn header_map(&self) -> HeaderMap {
        self.headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect()
    }
}
