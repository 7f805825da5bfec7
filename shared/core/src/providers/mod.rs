//! What each provider sends and how to read it: the event name, the dedup key,
//! the resource it concerns, and the typed payload.
//!
//! A provider is data plus a few functions. Adding one means a module here, a
//! variant of [`Provider`], and an arm in [`inspect`].

pub mod bebaskirim;
pub mod bitbybit;
pub mod biteship;
pub mod oms;

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::timestamp::Timestamp;

/// The providers Terima receives from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    BebasKirim,
    BitByBit,
    Oms,
    Biteship,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::BebasKirim,
        Provider::BitByBit,
        Provider::Oms,
        Provider::Biteship,
    ];

    /// The name used in routes (`/webhooks/<name>`), function names, keys and
    /// metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::BebasKirim => "bebaskirim",
            Self::BitByBit => "bitbybit",
            Self::Oms => "oms",
            Self::Biteship => "biteship",
        }
    }

    /// The infix of this provider's configuration variables
    /// (`TERIMA_<INFIX>_SECRETS`).
    pub fn env_infix(self) -> &'static str {
        match self {
            Self::BebasKirim => "BEBASKIRIM",
            Self::BitByBit => "BITBYBIT",
            Self::Oms => "OMS",
            Self::Biteship => "BITESHIP",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an event is about: `order` / `ORD-2024-001`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub kind: String,
    pub id: String,
}

impl Resource {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

/// A verified delivery, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspected {
    pub event_type: String,
    /// Identifies the delivery: the provider's own event id where it sends
    /// one, otherwise derived from what identifies the state change (never
    /// from the arrival time). Retries of one delivery share it.
    pub dedup_key: String,
    /// Identifies the business work. Equal to `dedup_key` except where a
    /// provider can re-send one state change under a new id (Akinon re-triggers
    /// a lost task with a new uuid): then it is derived from the content.
    pub work_key: String,
    pub resource: Resource,
    /// The provider's own time for the state this event carries, if it sends one.
    pub occurred_at: Option<Timestamp>,
    /// The status the event carries, normalised, if any.
    pub status: Option<String>,
    pub event: TypedEvent,
}

/// The typed payload of an event. Unknown event types, and payloads whose
/// shape no longer matches the model, are kept as raw JSON, never rejected.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedEvent {
    BebasKirim(bebaskirim::Event),
    BitByBit(bitbybit::Event),
    Oms(oms::Event),
    Biteship(biteship::Event),
}

impl TypedEvent {
    pub fn provider(&self) -> Provider {
        match self {
            Self::BebasKirim(_) => Provider::BebasKirim,
            Self::BitByBit(_) => Provider::BitByBit,
            Self::Oms(_) => Provider::Oms,
            Self::Biteship(_) => Provider::Biteship,
        }
    }
}

/// A verified body that cannot be read as the provider's event: answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body lacks {0}, which {1} always sends")]
    Missing(&'static str, Provider),
    #[error("header {0} is missing or not text")]
    MissingHeader(&'static str),
}

impl InspectError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "not_json",
            Self::Missing(..) => "missing_field",
            Self::MissingHeader(_) => "missing_header",
        }
    }
}

/// Reads a verified delivery: never called on bytes that were not verified.
pub fn inspect(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Inspected, InspectError> {
    match provider {
        Provider::BebasKirim => bebaskirim::inspect(body),
        Provider::BitByBit => bitbybit::inspect(headers, body),
        Provider::Oms => oms::inspect(body),
        Provider::Biteship => biteship::inspect(body),
    }
}

/// The request headers a provider's event depends on after verification,
/// carried in the queue message so the processor reads the event the same way.
pub fn meaningful_headers(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::BitByBit => &[
            bitbybit::ID_HEADER,
            bitbybit::EVENT_HEADER,
            bitbybit::TIMESTAMP_HEADER,
        ],
        Provider::Oms => &[oms::EVENT_HEADER],
        Provider::BebasKirim | Provider::Biteship => &[],
    }
}

/// An identifier that arrives as a string or a number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            #[serde(borrow)]
            Text(Cow<'a, str>),
            Int(i64),
            Uint(u64),
        }
        Ok(Self(match Raw::deserialize(d)? {
            Raw::Text(t) => t.into_owned(),
            Raw::Int(n) => n.to_string(),
            Raw::Uint(n) => n.to_string(),
        }))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An amount of money in whole rupiah. Floats with no fraction and numeric
/// strings are accepted, since senders differ; a fraction is refused rather
/// than rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Rupiah(pub i64);

impl<'de> Deserialize<'de> for Rupiah {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Int(i64),
            Float(f64),
            #[serde(borrow)]
            Text(Cow<'a, str>),
        }
        let whole = |f: f64| {
            (f.fract() == 0.0 && f.abs() < 9.0e15)
                .then_some(f as i64)
                .ok_or_else(|| serde::de::Error::custom("amount has a fraction of a rupiah"))
        };
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Float(f) => whole(f).map(Self),
            Raw::Text(t) => t
                .trim()
                .parse::<i64>()
                .map(Self)
                .map_err(|_| serde::de::Error::custom("amount is not a whole number")),
        }
    }
}

/// Deserialises an optional timestamp leniently: null, absent or unreadable
/// all give `None` (the raw JSON keeps the original text).
pub fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<'a> {
        #[serde(borrow)]
        Text(Cow<'a, str>),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Raw<'de>>::deserialize(d)? {
        Some(Raw::Text(t)) => Timestamp::parse(&t).ok(),
        Some(Raw::Other(_)) | None => None,
    })
}

/// Deserialises an optional text-like field leniently: strings and numbers
/// give their text; null, absent or any other type give `None`. Used for the
/// fields keys are read from, so that one oddly typed field never turns a
/// readable event into a 400.
pub fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<'a> {
        #[serde(borrow)]
        Text(Cow<'a, str>),
        Int(i64),
        Uint(u64),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Raw<'de>>::deserialize(d)? {
        Some(Raw::Text(t)) => Some(t.into_owned()),
        Some(Raw::Int(n)) => Some(n.to_string()),
        Some(Raw::Uint(n)) => Some(n.to_string()),
        Some(Raw::Other(_)) | None => None,
    })
}

/// A key the provider sent (an event id), bounded like a derived one: a
/// DynamoDB key has at most 2048 bytes.
pub(crate) fn provider_key(key: &str) -> String {
    derived_key(&[key])
}

/// Joins the parts of a derived key; long keys are hashed so that a key always
/// fits a DynamoDB partition key.
pub(crate) fn derived_key(parts: &[&str]) -> String {
    const MAX: usize = 256;
    let key = parts.join("|");
    if key.len() <= MAX {
        key
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// The text of a timestamp used inside a derived key: normalised when it
/// parses, so `...00Z` and `...00.000Z` give one key.
pub(crate) fn time_part(t: Option<Timestamp>) -> String {
    t.map(|t| t.unix_millis().to_string()).unwrap_or_default()
}

pub(crate) fn body_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

pub(crate) fn not_json(e: serde_json::Error) -> InspectError {
    InspectError::NotJson(e.to_string())
}

/// The part of an event type before its first dot: `order.status` → `order`.
pub(crate) fn type_prefix(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_name(p.name()), Some(p));
            let json = serde_json::to_string(&p).expect("serialises");
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert_eq!(Provider::from_name("shopee"), None);
    }

    #[test]
    fn rupiah_accepts_integers_in_any_clothing() {
        let parse = |s: &str| serde_json::from_str::<Rupiah>(s);
        assert_eq!(parse("150000").expect("int").0, 150_000);
        assert_eq!(parse("150000.0").expect("float").0, 150_000);
        assert_eq!(parse("\"150000\"").expect("text").0, 150_000);
        assert!(parse("1.5").is_err());
        assert!(parse("\"lots\"").is_err());
    }

    #[test]
    fn long_derived_keys_are_hashed() {
        let long = "x".repeat(300);
        let key = derived_key(&["a", &long]);
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        assert_eq!(derived_key(&["a", "b"]), "a|b");
    }
}
