//! Akinon OMS (dj-whisperer): `{"event": {"type", "uuid"}, "payload"}`,
//! optionally signed with `X-Whisperer-Signature: sha256=<hex>`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    Id, InspectError, Inspected, Provider, Resource, TypedEvent, derived_key, lenient_text,
    lenient_time, not_json, time_part,
};
use crate::timestamp::Timestamp;

pub const EVENT_HEADER: &str = "x-whisperer-event";
pub const SIGNATURE_HEADER: &str = "x-whisperer-signature";

pub const EVENT_TYPES: [&str; 18] = [
    "package.created",
    "package.status.transitioned",
    "package.status.packed",
    "package.status.cancelled",
    "package.status.shipped",
    "package.status.packed_for_refund",
    "package.shipment.awb_number",
    "shipment.created",
    "shipment.status.updated",
    "shipment.cancelled",
    "transfer.status.created",
    "transfer.status.transitioned",
    "transfer.status.in_transit",
    "transfer.status.transferred",
    "transfer.status.cancelled",
    "transfer.status.ready_to_shipment",
    "stock_location.created",
    "stock_location.updated",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_type: String,
    /// The sender's event id, normalised to 32 lowercase hex digits when it is
    /// a uuid.
    pub uuid: String,
    pub payload: Payload,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Package(Package),
    Shipment(Shipment),
    Transfer(Transfer),
    StockLocation(StockLocation),
    /// Unknown event type, or a payload that no longer fits the model.
    Other(serde_json::Value),
}

/// Akinon's enum fields: `enum_value` may look numeric (`"920"`) or be a word.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct State {
    pub enum_value: Option<Id>,
    pub label: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NamedRef {
    pub id: Option<Id>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Package {
    pub id: Id,
    pub number: Option<String>,
    pub order_number: Option<String>,
    pub state: Option<State>,
    pub stock_location: Option<NamedRef>,
    #[serde(default)]
    pub items: Vec<serde_json::Value>,
    pub awb_number: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_date: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub modified_date: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Shipment {
    pub id: Id,
    pub package: Option<Id>,
    pub tracking_number: Option<String>,
    pub cargo_company: Option<String>,
    pub state: Option<State>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub modified_date: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Transfer {
    pub id: Id,
    pub number: Option<String>,
    pub from_location: Option<Id>,
    pub to_location: Option<Id>,
    pub state: Option<State>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub modified_date: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StockLocation {
    pub id: Id,
    pub name: Option<String>,
    pub code: Option<String>,
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub modified_date: Option<Timestamp>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: Option<EventHead>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EventHead {
    #[serde(rename = "type")]
    kind: Option<String>,
    uuid: Option<Id>,
}

#[derive(Deserialize, Default)]
struct Keys {
    id: Option<Id>,
    #[serde(default)]
    state: KeyState,
    #[serde(default, deserialize_with = "lenient_time")]
    modified_date: Option<Timestamp>,
}

/// The state as the keys need it; any other shape reads as no state.
#[derive(Default)]
struct KeyState(Option<String>);

impl<'de> Deserialize<'de> for KeyState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default, deserialize_with = "lenient_text")]
            enum_value: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            State(Raw),
            Other(serde::de::IgnoredAny),
        }
        Ok(match Option::<Shape>::deserialize(d)? {
            Some(Shape::State(raw)) => Self(raw.enum_value),
            Some(Shape::Other(_)) | None => Self(None),
        })
    }
}

/// `8-4-4-4-12` and plain 32-digit uuids name the same event.
fn normalise_uuid(uuid: &str) -> String {
    let compact: String = uuid.chars().filter(|c| *c != '-').collect();
    if compact.len() == 32 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        compact.to_ascii_lowercase()
    } else {
        uuid.to_owned()
    }
}

pub(super) fn inspect(body: &[u8]) -> Result<Inspected, InspectError> {
    let missing = |what| InspectError::Missing(what, Provider::Oms);
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(not_json)?;
    let head = envelope.event.ok_or(missing("event"))?;
    let event_type = head.kind.ok_or(missing("event.type"))?;
    // A blank uuid is no event id: as a dedup key it would make every such
    // delivery a duplicate of the first one.
    let uuid = head
        .uuid
        .filter(|uuid| !uuid.0.trim().is_empty())
        .ok_or(missing("event.uuid"))?;
    let uuid = super::provider_key(&normalise_uuid(&uuid.0));
    let payload = envelope.payload.ok_or(missing("payload"))?;
    let keys: Keys = serde_json::from_str(payload.get()).unwrap_or_default();
    let kind = super::type_prefix(&event_type).to_owned();
    let state = keys.state.0;
    // A lost task re-triggered under a new uuid carries the same state: key
    // the work on what changed, when the payload says it.
    let work_key = match (&keys.id, &state, keys.modified_date) {
        (Some(id), state, modified) if state.is_some() || modified.is_some() => derived_key(&[
            &event_type,
            &id.0,
            state.as_deref().unwrap_or(""),
            &time_part(modified),
        ]),
        _ => uuid.clone(),
    };
    let id = match keys.id {
        Some(id) => id.0,
        None if EVENT_TYPES.contains(&event_type.as_str()) => return Err(missing("payload.id")),
        None => "unknown".to_owned(),
    };
    let typed = typed_payload(&kind, &event_type, payload);
    Ok(Inspected {
        dedup_key: uuid.clone(),
        work_key,
        resource: Resource::new(kind, id),
        occurred_at: keys.modified_date,
        status: state,
        event: TypedEvent::Oms(Event {
            event_type: event_type.clone(),
            uuid,
            payload: typed,
        }),
        event_type,
    })
}

fn typed_payload(kind: &str, event_type: &str, payload: &RawValue) -> Payload {
    fn parse<T: for<'de> Deserialize<'de>>(raw: &RawValue, wrap: fn(T) -> Payload) -> Payload {
        serde_json::from_str(raw.get())
            .map(wrap)
            .unwrap_or_else(|_| other(raw))
    }
    if !EVENT_TYPES.contains(&event_type) {
        return other(payload);
    }
    match kind {
        "package" => parse(payload, Payload::Package),
        "shipment" => parse(payload, Payload::Shipment),
        "transfer" => parse(payload, Payload::Transfer),
        _ => parse(payload, Payload::StockLocation),
    }
}

fn other(raw: &RawValue) -> Payload {
    Payload::Other(serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null))
}

/// Akinon sends `modified_date` on every object, so ranks only break ties.
/// Package states are numeric codes that grow along the flow.
pub fn status_rank(kind: &str, status: &str) -> Option<u32> {
    if let Ok(code) = status.parse::<u32>() {
        return Some(code);
    }
    let order: &[&str] = match kind {
        "transfer" => &[
            "waiting",
            "transitioned",
            "ready_to_shipment",
            "in_transit",
            "transferred",
            "cancelled",
        ],
        "shipment" => &["created", "in_transit", "delivered", "cancelled"],
        _ => &["waiting"],
    };
    order
        .iter()
        .position(|s| *s == status)
        .map(|p| p as u32 + 1)
}
