//! Akinon OMS (dj-whisperer): `{"event": {"type", "uuid"}, "payload"}`,
//! optionally signed with `X-Whisperer-Signature: sha256=<hex>`.

use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Fields, Id, Lookup, ProviderSpec, ReadError, Reading, Resource, SchemeError, SchemeSetting,
    TypedEvent, Update, lenient_time, optional_text, path, rank_in, required_text, time_part,
    type_prefix, typed_as,
};
use crate::json;
use crate::key::KeyBuilder;
use crate::timestamp::Timestamp;
use crate::verify::Scheme;

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

/// `8-4-4-4-12` and plain 32-digit uuids name the same event.
fn normalise_uuid(uuid: &str) -> String {
    let compact: String = uuid.chars().filter(|c| *c != '-').collect();
    if compact.len() == 32 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        compact.to_ascii_lowercase()
    } else {
        uuid.to_owned()
    }
}

/// Akinon OMS's provider module.
pub struct Oms;

const NAME: &str = "oms";

/// Where a static token travels when a subscription has no `secret_key`.
pub const TOKEN_HEADER_VAR: &str = "TERIMA_OMS_HEADER";
pub const TOKENS_VAR: &str = "TERIMA_OMS_TOKENS";

impl ProviderSpec for Oms {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Akinon OMS"
    }

    fn env_infix(&self) -> &'static str {
        "OMS"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    /// Each subscription has its own settings: a `secret_key` (then the body
    /// is signed, `X-Whisperer-Signature`) and/or `additional_headers` (a
    /// static token in a header the user named). Both may be configured; a
    /// delivery passing either is accepted.
    fn schemes(&self, settings: &dyn Lookup) -> Result<Vec<SchemeSetting>, SchemeError> {
        let mut schemes = vec![SchemeSetting {
            scheme: Scheme::BodyHmac {
                header: HeaderName::from_static(SIGNATURE_HEADER),
            },
            secrets_var: "TERIMA_OMS_SECRETS".to_owned(),
        }];
        match (
            settings.get(TOKEN_HEADER_VAR),
            settings.get(TOKENS_VAR).is_some(),
        ) {
            (Some(name), _) => {
                let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    SchemeError::Invalid {
                        var: TOKEN_HEADER_VAR.to_owned(),
                        reason: format!("{name:?} is not a valid HTTP header name"),
                    }
                })?;
                schemes.push(SchemeSetting {
                    scheme: Scheme::StaticToken {
                        header,
                        bearer: false,
                    },
                    secrets_var: TOKENS_VAR.to_owned(),
                });
            }
            (None, true) => {
                return Err(SchemeError::Missing(format!(
                    "{TOKEN_HEADER_VAR} (the header that carries {TOKENS_VAR})"
                )));
            }
            (None, false) => {}
        }
        Ok(schemes)
    }

    fn meaningful_headers(&self) -> &'static [&'static str] {
        &[EVENT_HEADER]
    }

    /// The dedup key is `event.uuid`, the same on every retry. The work key
    /// is what changed (type, id, state, `modified_date`) when the payload
    /// says so: a lost task re-triggered under a new uuid is the same work.
    fn read(
        &self,
        _headers: &HeaderMap,
        body: &Value,
        notes: &mut Vec<String>,
    ) -> Result<Reading, ReadError> {
        let event_type = required_text(body, &["event", "type"], NAME)?;
        // A blank uuid is no event id: as a dedup key it would make every
        // such delivery a duplicate of the first one.
        let uuid = required_text(body, &["event", "uuid"], NAME)?;
        let dedup_key = KeyBuilder::new()
            .part(&normalise_uuid(uuid.trim()))
            .finish();
        if !json::at(body, &["payload"]).is_some_and(Value::is_object) {
            return Err(ReadError::Missing {
                path: "$.payload".to_owned(),
                provider: NAME,
            });
        }
        let kind = type_prefix(&event_type).to_owned();
        let known = EVENT_TYPES.contains(&event_type.as_str());
        let id = if known {
            required_text(body, &["payload", "id"], NAME)?
        } else {
            optional_text(body, &["payload", "id"], notes).unwrap_or_else(|| "unknown".to_owned())
        };
        let state = optional_text(body, &["payload", "state", "enum_value"], notes);
        let modified = json::time(json::at(body, &["payload", "modified_date"]));
        let work_key = if state.is_some() || modified.is_some() {
            KeyBuilder::new()
                .part(&event_type)
                .part(&id)
                .part(state.as_deref().unwrap_or(""))
                .part(&time_part(modified))
                .finish()
        } else {
            dedup_key.clone()
        };
        Ok(Reading {
            event_type,
            dedup_key,
            work_key,
            resource: Resource::new(kind, id),
            occurred_at: modified,
            status: state,
        })
    }

    fn routing_paths(&self, _headers: &HeaderMap, _body: &Value) -> Vec<Vec<String>> {
        vec![
            path(&["event", "type"]),
            path(&["event", "uuid"]),
            path(&["payload", "id"]),
            path(&["payload", "state", "enum_value"]),
            path(&["payload", "modified_date"]),
        ]
    }

    /// The uuid names one delivery task, not the event: a re-triggered task
    /// with the same payload is the same event.
    fn meaning(&self, body: &Value) -> Value {
        let mut meaning = body.clone();
        if let Some(event) = meaning.get_mut("event").and_then(Value::as_object_mut) {
            event.remove("uuid");
        }
        meaning
    }

    fn updates(&self, reading: &Reading, body: &Value, notes: &mut Vec<String>) -> Vec<Update> {
        let base = Update::of(reading);
        let mut f = Fields { body, notes };
        if !EVENT_TYPES.contains(&reading.event_type.as_str()) {
            return vec![base];
        }
        let update = match reading.resource.kind.as_str() {
            "package" => base
                .field("number", f.text(&["payload", "number"]))
                .field("order_number", f.text(&["payload", "order_number"]))
                .field("awb_number", f.text(&["payload", "awb_number"]))
                .field("state_label", f.text(&["payload", "state", "label"])),
            "shipment" => base
                .field("package", f.text(&["payload", "package"]))
                .field("tracking_number", f.text(&["payload", "tracking_number"]))
                .field("cargo_company", f.text(&["payload", "cargo_company"]))
                .field("state_label", f.text(&["payload", "state", "label"])),
            "transfer" => base
                .field("number", f.text(&["payload", "number"]))
                .field("from_location", f.text(&["payload", "from_location"]))
                .field("to_location", f.text(&["payload", "to_location"]))
                .field("state_label", f.text(&["payload", "state", "label"])),
            _ => base
                .field("code", f.text(&["payload", "code"]))
                .field("name", f.text(&["payload", "name"]))
                .field("is_active", f.boolean(&["payload", "is_active"])),
        };
        vec![update]
    }

    fn status_rank(&self, kind: &str, status: &str) -> Option<u32> {
        status_rank(kind, status)
    }

    fn typed(&self, reading: &Reading, body: &Value) -> TypedEvent {
        fn parse<T: serde::de::DeserializeOwned>(raw: &Value, wrap: fn(T) -> Payload) -> Payload {
            typed_as(raw).map_or_else(|| Payload::Other(raw.clone()), wrap)
        }
        let payload = body.get("payload").cloned().unwrap_or(Value::Null);
        let typed = if !EVENT_TYPES.contains(&reading.event_type.as_str()) {
            Payload::Other(payload)
        } else {
            match reading.resource.kind.as_str() {
                "package" => parse(&payload, Payload::Package),
                "shipment" => parse(&payload, Payload::Shipment),
                "transfer" => parse(&payload, Payload::Transfer),
                _ => parse(&payload, Payload::StockLocation),
            }
        };
        TypedEvent::Oms(Event {
            event_type: reading.event_type.clone(),
            uuid: reading.dedup_key.clone(),
            payload: typed,
        })
    }
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
    rank_in(order, status)
}
