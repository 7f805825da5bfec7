//! Biteship: flat shipping events (`order.status`, `order.price`,
//! `order.waybill_id`), authenticated by a static header whose name and value
//! the user chose. No event id and, in the documentation, no timestamp.

use std::fmt;

use http::HeaderMap;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{
    Fields, Id, Lookup, ProviderSpec, ReadError, Reading, Resource, Rupiah, SchemeError,
    SchemeSetting, TypedEvent, Update, lenient_time, optional_text, path, required_text, time_part,
    typed_as,
};
use crate::json;
use crate::key::KeyBuilder;
use crate::timestamp::Timestamp;
use crate::verify::Scheme;

pub const EVENT_TYPES: [&str; 3] = ["order.status", "order.price", "order.waybill_id"];

/// Saving a webhook in the dashboard sends an empty body or `{}` without the
/// secret header, and expects a 200.
pub fn is_installation_probe(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return true;
    }
    trimmed.starts_with(b"{")
        && trimmed.ends_with(b"}")
        && trimmed[1..trimmed.len() - 1].trim_ascii().is_empty()
}

/// A shipping status, normalised: `pickingUp` and `picking_up` are one
/// status. A status this version does not know is kept as it came.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Confirmed,
    Scheduled,
    Allocated,
    PickingUp,
    Picked,
    Cancelled,
    OnHold,
    DroppingOff,
    ReturnInTransit,
    Returned,
    Rejected,
    Disposed,
    CourierNotFound,
    Delivered,
    Other(String),
}

impl Status {
    const KNOWN: [(&'static str, Status); 14] = [
        ("confirmed", Status::Confirmed),
        ("scheduled", Status::Scheduled),
        ("allocated", Status::Allocated),
        ("picking_up", Status::PickingUp),
        ("picked", Status::Picked),
        ("cancelled", Status::Cancelled),
        ("on_hold", Status::OnHold),
        ("dropping_off", Status::DroppingOff),
        ("return_in_transit", Status::ReturnInTransit),
        ("returned", Status::Returned),
        ("rejected", Status::Rejected),
        ("disposed", Status::Disposed),
        ("courier_not_found", Status::CourierNotFound),
        ("delivered", Status::Delivered),
    ];

    pub fn parse(text: &str) -> Self {
        let snake = to_snake_case(text.trim());
        Self::KNOWN
            .iter()
            .find(|(name, _)| *name == snake)
            .map(|(_, status)| status.clone())
            .unwrap_or(Status::Other(text.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Status::Other(text) => text,
            known => Self::KNOWN
                .iter()
                .find(|(_, s)| s == known)
                .map(|(name, _)| *name)
                .unwrap_or_default(),
        }
    }

    /// The documented order of a shipment's life, used when deliveries carry
    /// no time of their own. Terminal statuses rank above every status that
    /// can precede them.
    pub fn rank(&self) -> Option<u32> {
        Some(match self {
            Status::Confirmed => 1,
            Status::Scheduled => 2,
            Status::Allocated => 3,
            Status::PickingUp => 4,
            Status::Picked => 5,
            Status::OnHold => 6,
            Status::DroppingOff => 7,
            Status::CourierNotFound => 8,
            Status::Delivered => 9,
            Status::ReturnInTransit => 10,
            Status::Returned => 11,
            Status::Rejected => 12,
            Status::Cancelled => 13,
            Status::Disposed => 14,
            Status::Other(_) => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Status::parse(&text))
    }
}

fn to_snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c == ' ' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// One Biteship event. The three documented events share one flat shape; a
/// field a given event does not send is `None`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Event {
    pub event: String,
    pub order_id: Id,
    pub status: Option<Status>,
    pub sub_status: Option<String>,
    pub courier_tracking_id: Option<String>,
    pub courier_waybill_id: Option<String>,
    pub courier_company: Option<String>,
    pub courier_type: Option<String>,
    pub courier_driver_name: Option<String>,
    pub courier_driver_phone: Option<String>,
    pub courier_driver_photo_url: Option<String>,
    pub courier_driver_plate_number: Option<String>,
    pub courier_link: Option<String>,
    pub order_price: Option<Rupiah>,
    pub price: Option<Rupiah>,
    pub cash_on_delivery_fee: Option<Rupiah>,
    pub proof_of_delivery_fee: Option<Rupiah>,
    /// Biteship's spelling.
    #[serde(rename = "shippment_fee")]
    pub shipment_fee: Option<Rupiah>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
    /// Set when the body did not fit the model: the raw JSON is kept.
    #[serde(skip)]
    pub unreadable: Option<serde_json::Value>,
}

/// Biteship's provider module.
pub struct Biteship;

const NAME: &str = "biteship";

/// The header name typed in Biteship's dashboard ("Headers Signature Key").
pub const HEADER_VAR: &str = "TERIMA_BITESHIP_HEADER";

/// The amounts an `order.price` event exists to report (`shippment_fee` is
/// Biteship's spelling).
const PRICE_FIELDS: [&str; 4] = [
    "price",
    "shippment_fee",
    "cash_on_delivery_fee",
    "proof_of_delivery_fee",
];

fn status_of(body: &Value, notes: &mut Vec<String>) -> Option<String> {
    optional_text(body, &["status"], notes).map(|s| Status::parse(&s).as_str().to_owned())
}

impl ProviderSpec for Biteship {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Biteship"
    }

    fn env_infix(&self) -> &'static str {
        "BITESHIP"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    /// A static header whose name and value the user typed in the dashboard.
    fn schemes(&self, settings: &dyn Lookup) -> Result<Vec<SchemeSetting>, SchemeError> {
        let name = settings
            .get(HEADER_VAR)
            .ok_or_else(|| SchemeError::Missing(HEADER_VAR.to_owned()))?;
        let header = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            SchemeError::Invalid {
                var: HEADER_VAR.to_owned(),
                reason: format!("{name:?} is not a valid HTTP header name"),
            }
        })?;
        Ok(vec![SchemeSetting {
            scheme: Scheme::StaticToken {
                header,
                bearer: false,
            },
            secrets_var: "TERIMA_BITESHIP_SECRETS".to_owned(),
        }])
    }

    /// Biteship calls each webhook once; a failed delivery waits in the
    /// dashboard's Events Log for a person to press Resend.
    fn retries(&self) -> bool {
        false
    }

    fn is_probe(&self, body: &[u8]) -> bool {
        is_installation_probe(body)
    }

    /// No event id: with an `updated_at`, the order, event, status and time
    /// identify the change; without, the fields the event exists to report.
    /// The driver's plate number is personal data: only its digest is in a
    /// key.
    fn read(
        &self,
        _headers: &HeaderMap,
        body: &Value,
        notes: &mut Vec<String>,
    ) -> Result<Reading, ReadError> {
        let event_type = required_text(body, &["event"], NAME)?;
        let order_id = required_text(body, &["order_id"], NAME)?;
        let status = status_of(body, notes);
        let updated_at = json::time(body.get("updated_at"));
        let mut field = |name: &str| optional_text(body, &[name], notes).unwrap_or_default();
        let key = KeyBuilder::new()
            .part(&order_id)
            .part(&event_type)
            .part(status.as_deref().unwrap_or(""));
        let key = if !EVENT_TYPES.contains(&event_type.as_str()) {
            key.part(&json::digest(body))
        } else if updated_at.is_some() {
            key.part(&time_part(updated_at))
        } else {
            match event_type.as_str() {
                "order.price" => PRICE_FIELDS.iter().fold(key, |k, f| k.part(&field(f))),
                "order.waybill_id" => key.part(&field("courier_waybill_id")),
                _ => key
                    .part(&field("courier_waybill_id"))
                    .private_part(&field("courier_driver_plate_number")),
            }
        };
        let key = key.finish();
        Ok(Reading {
            event_type,
            work_key: key.clone(),
            dedup_key: key,
            resource: Resource::new("order", order_id),
            occurred_at: updated_at,
            status,
        })
    }

    fn routing_paths(&self, _headers: &HeaderMap, body: &Value) -> Vec<Vec<String>> {
        let mut paths = vec![
            path(&["event"]),
            path(&["order_id"]),
            path(&["status"]),
            path(&["updated_at"]),
        ];
        if json::time(body.get("updated_at")).is_none() {
            for field in PRICE_FIELDS
                .iter()
                .chain(["courier_waybill_id", "courier_driver_plate_number"].iter())
            {
                paths.push(path(&[field]));
            }
        }
        let event = body.get("event").and_then(Value::as_str).unwrap_or("");
        if !EVENT_TYPES.contains(&event) {
            paths.push(Vec::new());
        }
        paths
    }

    fn updates(&self, reading: &Reading, body: &Value, notes: &mut Vec<String>) -> Vec<Update> {
        let mut f = Fields { body, notes };
        vec![
            Update::of(reading)
                .field("courier_waybill_id", f.text(&["courier_waybill_id"]))
                .field("courier_tracking_id", f.text(&["courier_tracking_id"]))
                .field("courier_company", f.text(&["courier_company"]))
                .field("courier_type", f.text(&["courier_type"]))
                .field("order_price", f.whole(&["order_price"]))
                .field("price", f.whole(&["price"]))
                .field("shipment_fee", f.whole(&["shippment_fee"]))
                .field("cash_on_delivery_fee", f.whole(&["cash_on_delivery_fee"]))
                .field("proof_of_delivery_fee", f.whole(&["proof_of_delivery_fee"])),
        ]
    }

    fn status_rank(&self, _kind: &str, status: &str) -> Option<u32> {
        Status::parse(status).rank()
    }

    fn typed(&self, reading: &Reading, body: &Value) -> TypedEvent {
        TypedEvent::Biteship(typed_as::<Event>(body).unwrap_or_else(|| Event {
            event: reading.event_type.clone(),
            order_id: Id(reading.resource.id.clone()),
            status: reading.status.as_deref().map(Status::parse),
            sub_status: None,
            courier_tracking_id: None,
            courier_waybill_id: None,
            courier_company: None,
            courier_type: None,
            courier_driver_name: None,
            courier_driver_phone: None,
            courier_driver_photo_url: None,
            courier_driver_plate_number: None,
            courier_link: None,
            order_price: None,
            price: None,
            cash_on_delivery_fee: None,
            proof_of_delivery_fee: None,
            shipment_fee: None,
            updated_at: reading.occurred_at,
            unreadable: Some(body.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_normalise_from_both_spellings() {
        for (camel, snake) in [
            ("pickingUp", "picking_up"),
            ("droppingOff", "dropping_off"),
            ("returnInTransit", "return_in_transit"),
            ("onHold", "on_hold"),
            ("courierNotFound", "courier_not_found"),
        ] {
            assert_eq!(Status::parse(camel), Status::parse(snake));
            assert_eq!(Status::parse(camel).as_str(), snake);
        }
        assert_eq!(
            Status::parse("lost_in_space"),
            Status::Other("lost_in_space".into())
        );
        assert_eq!(Status::parse("lost_in_space").rank(), None);
    }

    #[test]
    fn probes_are_empty_or_empty_objects() {
        for probe in [&b""[..], b"{}", b" { } \n", b"\n"] {
            assert!(is_installation_probe(probe), "{probe:?}");
        }
        for not_probe in [&b"{\"event\":\"order.status\"}"[..], b"[]", b"{"] {
            assert!(!is_installation_probe(not_probe), "{not_probe:?}");
        }
    }
}
