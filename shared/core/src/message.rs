//! The queue message: everything the processor needs about one accepted
//! delivery. Provider functions write it, the processor reads it, and the
//! embedded default stores it; this is the only definition.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::providers::{Inspected, Provider, Resource, meaningful_headers};
use crate::timestamp::Timestamp;

/// The version of this format; a reader refuses versions it does not know.
pub const MESSAGE_VERSION: u32 = 1;

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
    pub received_at: Timestamp,
    /// Hex SHA-256 of `body`: tells a retry from a conflicting delivery.
    pub body_sha256: String,
    /// The raw body exactly as verified. Accepted bodies are JSON, so UTF-8.
    pub body: String,
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

impl QueueMessage {
    /// Builds the message for a verified, inspected delivery. `body` must be
    /// the verified bytes; inspection already proved them to be JSON.
    pub fn new(
        provider: Provider,
        inspected: &Inspected,
        headers: &HeaderMap,
        body: &str,
        received_at: Timestamp,
        request_id: &str,
    ) -> Self {
        let headers = meaningful_headers(provider)
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        Self {
            v: MESSAGE_VERSION,
            provider,
            event_type: inspected.event_type.clone(),
            dedup_key: inspected.dedup_key.clone(),
            work_key: inspected.work_key.clone(),
            resource: inspected.resource.clone(),
            occurred_at: inspected.occurred_at,
            received_at,
            body_sha256: sha256_hex(body.as_bytes()),
            body: body.to_owned(),
            headers,
            replay: false,
            request_id: request_id.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!())
    }

    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let message: Self = serde_json::from_str(text)?;
        if message.v != MESSAGE_VERSION {
            return Err(DecodeError::Version(message.v));
        }
        if sha256_hex(message.body.as_bytes()) != message.body_sha256 {
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
