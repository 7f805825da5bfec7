//! What each provider sends and how to read it. A provider is one module
//! implementing [`ProviderSpec`]: its verification schemes, its probe rule,
//! the headers its events depend on, how its routing facts (event type, keys,
//! resource, status, time) are read, what in a body is its meaning, its
//! projection rules and its status order. Shared code reaches a provider only
//! through [`Provider::spec`], the one registry.
//!
//! Adding a provider: a module here implementing [`ProviderSpec`], a variant
//! of [`Provider`] with its arm in [`Provider::spec`], a function crate under
//! `functions/`, a block in `template.yaml` and samples in `events/` (see
//! `docs/providers.md`).

pub mod bebaskirim;
pub mod bitbybit;
pub mod biteship;
pub mod oms;

use std::fmt;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{self, FieldError, ParseError};
use crate::timestamp::Timestamp;
use crate::verify::Scheme;

/// The providers Terima receives from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// The registry: everything provider-specific is behind this.
    pub fn spec(self) -> &'static dyn ProviderSpec {
        match self {
            Self::BebasKirim => &bebaskirim::BebasKirim,
            Self::BitByBit => &bitbybit::BitByBit,
            Self::Oms => &oms::Oms,
            Self::Biteship => &biteship::Biteship,
        }
    }

    /// The name used in routes (`/webhooks/<name>`), function names, keys and
    /// metrics.
    pub fn name(self) -> &'static str {
        self.spec().name()
    }

    /// The infix of this provider's configuration variables
    /// (`TERIMA_<INFIX>_SECRETS`).
    pub fn env_infix(self) -> &'static str {
        self.spec().env_infix()
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

impl Serialize for Provider {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown provider {name:?}")))
    }
}

/// Where configuration values come from: the process environment in the
/// functions and the CLI, a map in tests.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A configuration value a provider's schemes need, missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("{0} is not set")]
    Missing(String),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: String, reason: String },
}

/// One way a provider proves a delivery, with the variable that holds its
/// secrets (`TERIMA_OMS_SECRETS`, `TERIMA_OMS_TOKENS`).
#[derive(Clone, Debug)]
pub struct SchemeSetting {
    pub scheme: Scheme,
    pub secrets_var: String,
}

/// Everything Terima knows about one provider.
pub trait ProviderSpec: Sync {
    /// Lower-case name: routes, keys, metrics.
    fn name(&self) -> &'static str;
    /// As people write it: "Bebas Kirim".
    fn title(&self) -> &'static str;
    /// `TERIMA_<INFIX>_...` configuration variables.
    fn env_infix(&self) -> &'static str;
    /// Every event type in the provider's documentation.
    fn event_types(&self) -> &'static [&'static str];

    /// The schemes a delivery may pass, from configuration. Those whose
    /// secrets variable is unset are left out by the caller; at least one
    /// must remain.
    fn schemes(&self, settings: &dyn Lookup) -> Result<Vec<SchemeSetting>, SchemeError>;

    /// Whether the provider sends a delivery again after a non-2xx answer
    /// (or none). One that does not (Biteship: a person presses Resend)
    /// loses every event it is refused.
    fn retries(&self) -> bool {
        true
    }

    /// A request the provider sends to check the endpoint, answered 200 and
    /// nothing else, before verification.
    fn is_probe(&self, _body: &[u8]) -> bool {
        false
    }

    /// Request headers the event depends on after verification, carried in
    /// the queue message (lower-case names).
    fn meaningful_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads the routing facts from a verified body, leniently: a field
    /// Terima does not route on never matters, and a routing fact of an
    /// unexpected type is read when it can be (a number for a string) and
    /// named by its path when it cannot.
    fn read(
        &self,
        headers: &HeaderMap,
        body: &Value,
        notes: &mut Vec<String>,
    ) -> Result<Reading, ReadError>;

    /// The JSON paths `read` takes routing facts from, for this body (the
    /// property test leaves them alone and changes everything else).
    fn routing_paths(&self, headers: &HeaderMap, body: &Value) -> Vec<Vec<String>>;

    /// The part of a body that is the event, without what only describes one
    /// delivery of it (Akinon's `event.uuid`): two bodies with the same
    /// meaning are the same event.
    fn meaning(&self, body: &Value) -> Value {
        body.clone()
    }

    /// The changes one event makes to the resources it concerns.
    fn updates(&self, reading: &Reading, body: &Value, notes: &mut Vec<String>) -> Vec<Update>;

    /// Work that depends on the state the first update produced (a derived
    /// order from a partial cancellation).
    fn follow_ups(
        &self,
        _reading: &Reading,
        _body: &Value,
        _first_state: &Map<String, Value>,
        _notes: &mut Vec<String>,
    ) -> Vec<Update> {
        Vec::new()
    }

    /// The rank of a status in its resource's documented life, for two
    /// states with the same provider time (or none). Higher is later.
    fn status_rank(&self, kind: &str, status: &str) -> Option<u32>;

    /// The full typed view, for extensions; `Other` when the body does not
    /// fit the model.
    fn typed(&self, reading: &Reading, body: &Value) -> TypedEvent;
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

/// The routing facts of one delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub event_type: String,
    /// Identifies the delivery: the provider's own event id where it sends
    /// one, otherwise derived from what identifies the state change (never
    /// from the arrival time). Retries of one delivery share it.
    pub dedup_key: String,
    /// Identifies the business work: equal to `dedup_key` except where a
    /// provider can send one state change under another id (Akinon
    /// re-triggers a lost task with a new uuid; a BitByBit id travels in an
    /// unsigned header): then it is derived from the signed content.
    pub work_key: String,
    pub resource: Resource,
    /// The provider's own time for the state this event carries.
    pub occurred_at: Option<Timestamp>,
    /// The status the event carries, normalised, if any.
    pub status: Option<String>,
}

/// A verified delivery, read: its routing facts, its parsed body, the digest
/// of its meaning, and notes about fields that were present but unusable.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspected {
    pub provider: Provider,
    pub reading: Reading,
    /// Hex SHA-256 of the canonical form of the body's meaning.
    pub digest: String,
    pub body: Value,
    pub notes: Vec<String>,
}

impl Inspected {
    pub fn typed(&self) -> TypedEvent {
        self.provider.spec().typed(&self.reading, &self.body)
    }
}

/// Why a verified body cannot be read: it is quarantined, not processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("body is {0}, not a JSON object")]
    NotAnObject(&'static str),
    #[error("{path} is missing, and {provider} always sends it")]
    Missing {
        path: String,
        provider: &'static str,
    },
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("header {0} is missing or not text")]
    MissingHeader(&'static str),
    #[error("the event name {event_type:?} does not fit the body: {detail}")]
    Mismatch { event_type: String, detail: String },
}

impl ReadError {
    /// A short, stable label for metrics and records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Parse(ParseError::NotUtf8) => "not_utf8",
            Self::Parse(ParseError::Syntax(_)) => "not_json",
            Self::Parse(ParseError::DuplicateKey { .. }) => "duplicate_key",
            Self::NotAnObject(_) => "not_an_object",
            Self::Missing { .. } => "missing_field",
            Self::Field(FieldError::WrongType { .. }) => "wrong_type",
            Self::Field(FieldError::OutOfRange { .. }) => "out_of_range",
            Self::MissingHeader(_) => "missing_header",
            Self::Mismatch { .. } => "event_mismatch",
        }
    }
}

/// Reads a verified delivery: parses the body once (refusing duplicate
/// keys), reads the routing facts and digests the meaning. Never called on
/// bytes that were not verified.
pub fn inspect(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Inspected, ReadError> {
    let value = json::parse(body)?;
    if !value.is_object() {
        return Err(ReadError::NotAnObject(json::type_name(&value)));
    }
    let spec = provider.spec();
    let mut notes = Vec::new();
    let reading = spec.read(headers, &value, &mut notes)?;
    let digest = json::digest(&spec.meaning(&value));
    Ok(Inspected {
        provider,
        reading,
        digest,
        body: value,
        notes,
    })
}

/// One change to one resource, as a provider's projection rules describe
/// it; `merge` in the processor applies it.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub kind: String,
    pub id: String,
    /// A status moves the status clock; `None` leaves it alone.
    pub status: Option<String>,
    /// The provider's time of this change: orders the status (when there is
    /// one) and each attribute by its own time.
    pub at: Option<Timestamp>,
    pub fields: Map<String, Value>,
    pub deleted: bool,
    /// Only create the resource; never change an existing one (an order
    /// derived from a partial cancellation).
    pub create_only: bool,
    /// Adds a value to an array attribute unless it is already there,
    /// whatever the order of events (the partial cancellations of an order).
    pub append: Option<(String, Value)>,
}

impl Update {
    /// An update of the reading's resource, carrying its status and time.
    pub fn of(reading: &Reading) -> Self {
        Self::new(
            &reading.resource.kind,
            &reading.resource.id,
            reading.status.clone(),
            reading.occurred_at,
        )
    }

    pub fn new(kind: &str, id: &str, status: Option<String>, at: Option<Timestamp>) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_owned(),
            status,
            at,
            fields: Map::new(),
            deleted: false,
            create_only: false,
            append: None,
        }
    }

    /// Without a status: an attribute change (a waybill, a customer edit).
    pub fn without_status(mut self) -> Self {
        self.status = None;
        self
    }

    /// Sets an attribute unless the value is null.
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        if !value.is_null() {
            self.fields.insert(key.to_owned(), value);
        }
        self
    }
}

/// Attribute readers for projection rules: a field that is there but
/// unusable is left out and noted, never fatal.
pub struct Fields<'a> {
    pub body: &'a Value,
    pub notes: &'a mut Vec<String>,
}

impl Fields<'_> {
    fn note(&mut self, e: FieldError) {
        self.notes.push(e.to_string());
    }

    /// Text (string or number) at `keys`.
    pub fn text(&mut self, keys: &[&str]) -> Value {
        match json::text(json::at(self.body, keys), &|| json::path_text(keys)) {
            Ok(v) => v.map_or(Value::Null, Value::String),
            Err(e) => {
                self.note(e);
                Value::Null
            }
        }
    }

    /// A whole amount at `keys`.
    pub fn whole(&mut self, keys: &[&str]) -> Value {
        match json::whole(json::at(self.body, keys), &|| json::path_text(keys)) {
            Ok(v) => v.map_or(Value::Null, Value::from),
            Err(e) => {
                self.note(e);
                Value::Null
            }
        }
    }

    pub fn boolean(&mut self, keys: &[&str]) -> Value {
        match json::boolean(json::at(self.body, keys), &|| json::path_text(keys)) {
            Ok(v) => v.map_or(Value::Null, Value::Bool),
            Err(e) => {
                self.note(e);
                Value::Null
            }
        }
    }

    /// The length of the array at `keys`, if it is one.
    pub fn count(&mut self, keys: &[&str]) -> Value {
        match json::at(self.body, keys) {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Array(items)) => Value::from(items.len()),
            Some(other) => {
                self.notes.push(format!(
                    "{} is {}, expected an array",
                    json::path_text(keys),
                    json::type_name(other)
                ));
                Value::Null
            }
        }
    }

    /// An array of strings at `keys` (tags); other items are left out.
    pub fn strings(&mut self, keys: &[&str]) -> Value {
        match json::at(self.body, keys) {
            Some(Value::Array(items)) => {
                Value::Array(items.iter().filter(|v| v.is_string()).cloned().collect())
            }
            _ => Value::Null,
        }
    }
}

/// Reads a required routing fact: absent or null is `Missing`, an unusable
/// type names its path.
pub(crate) fn required_text(
    body: &Value,
    keys: &[&str],
    provider: &'static str,
) -> Result<String, ReadError> {
    match json::text(json::at(body, keys), &|| json::path_text(keys))? {
        Some(text) if !text.trim().is_empty() => Ok(text),
        _ => Err(ReadError::Missing {
            path: json::path_text(keys),
            provider,
        }),
    }
}

/// Reads an optional routing fact: an unusable type reads as absent, with a
/// note naming it.
pub(crate) fn optional_text(
    body: &Value,
    keys: &[&str],
    notes: &mut Vec<String>,
) -> Option<String> {
    json::text(json::at(body, keys), &|| json::path_text(keys)).unwrap_or_else(|e| {
        notes.push(e.to_string());
        None
    })
}

/// The text of a timestamp used inside a key: normalised, so `...00Z` and
/// `...00.000Z` give one key.
pub(crate) fn time_part(t: Option<Timestamp>) -> String {
    t.map(|t| t.unix_millis().to_string()).unwrap_or_default()
}

/// The part of an event type before its first dot: `order.status` → `order`.
pub(crate) fn type_prefix(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// Owned path segments, for [`ProviderSpec::routing_paths`].
pub(crate) fn path(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// The position of `status` in a documented order, counting from 1.
pub(crate) fn rank_in(order: &[&str], status: &str) -> Option<u32> {
    order
        .iter()
        .position(|s| *s == status)
        .and_then(|p| u32::try_from(p + 1).ok())
}

/// The typed payload of an event, for extensions. Unknown event types, and
/// payloads whose shape does not match the model, are kept as raw JSON.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedEvent {
    BebasKirim(bebaskirim::Event),
    BitByBit(bitbybit::Event),
    Oms(oms::Event),
    Biteship(biteship::Event),
}

/// An identifier that arrives as a string or a number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        json::text(Some(&value), &|| "$".to_owned())
            .map_err(serde::de::Error::custom)?
            .map(Id)
            .ok_or_else(|| serde::de::Error::custom("an id is null"))
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
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        json::whole(Some(&value), &|| "$".to_owned())
            .map_err(serde::de::Error::custom)?
            .map(Rupiah)
            .ok_or_else(|| serde::de::Error::custom("an amount is null"))
    }
}

/// Deserialises an optional timestamp leniently: null, absent or unreadable
/// all give `None` (the body keeps the original text).
pub fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Ok(json::time(Option::<Value>::deserialize(d)?.as_ref()))
}

/// The typed view of `body`, or `None` when it does not fit `T`.
pub(crate) fn typed_as<T: serde::de::DeserializeOwned>(body: &Value) -> Option<T> {
    T::deserialize(body).ok()
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
            assert_eq!(serde_json::from_str::<Provider>(&json).expect("parses"), p);
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
    fn bodies_that_are_not_objects_name_what_they_are() {
        for (body, found) in [
            (&b"[1]"[..], "an array"),
            (b"\"x\"", "a string"),
            (b"7", "a number"),
        ] {
            assert_eq!(
                inspect(Provider::Biteship, &HeaderMap::new(), body),
                Err(ReadError::NotAnObject(found))
            );
        }
    }
}
