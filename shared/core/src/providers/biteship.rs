//! Biteship: flat shipping events (`order.status`, `order.price`,
//! `order.waybill_id`), authenticated by a static header whose name and value
//! the user chose. No event id and, in the documentation, no timestamp.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::{
    Id, InspectError, Inspected, Provider, Resource, Rupiah, TypedEvent, body_digest, derived_key,
    lenient_time, not_json, time_part,
};
use crate::timestamp::Timestamp;

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

#[derive(Deserialize)]
struct Keys {
    event: Option<String>,
    order_id: Option<Id>,
}

pub(super) fn inspect(body: &[u8]) -> Result<Inspected, InspectError> {
    let missing = |what| InspectError::Missing(what, Provider::Biteship);
    let keys: Keys = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => missing("a JSON object"),
        _ => not_json(e),
    })?;
    let event_type = keys.event.ok_or(missing("event"))?;
    let order_id = keys.order_id.ok_or(missing("order_id"))?;
    let event = serde_json::from_slice::<Event>(body).unwrap_or_else(|_| Event {
        event: event_type.clone(),
        order_id: order_id.clone(),
        status: None,
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
        updated_at: None,
        unreadable: serde_json::from_slice(body).ok(),
    });
    let dedup_key = dedup_key(&event_type, &order_id.0, &event, body);
    Ok(Inspected {
        work_key: dedup_key.clone(),
        dedup_key,
        resource: Resource::new("order", order_id.0),
        occurred_at: event.updated_at,
        status: event.status.as_ref().map(|s| s.as_str().to_owned()),
        event: TypedEvent::Biteship(event),
        event_type,
    })
}

/// No event id: the state change is what the event carries. With an
/// `updated_at` that and the status identify it; without, the fields the
/// event exists to report do.
fn dedup_key(event_type: &str, order_id: &str, event: &Event, body: &[u8]) -> String {
    let status = event.status.as_ref().map(Status::as_str).unwrap_or("");
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let money = |v: Option<Rupiah>| v.map(|r| r.0.to_string()).unwrap_or_default();
    if event.unreadable.is_some() || !EVENT_TYPES.contains(&event_type) {
        return derived_key(&[order_id, event_type, &body_digest(body)]);
    }
    if event.updated_at.is_some() {
        return derived_key(&[order_id, event_type, status, &time_part(event.updated_at)]);
    }
    match event_type {
        "order.price" => derived_key(&[
            order_id,
            event_type,
            status,
            &money(event.price),
            &money(event.shipment_fee),
            &money(event.cash_on_delivery_fee),
            &money(event.proof_of_delivery_fee),
        ]),
        "order.waybill_id" => derived_key(&[
            order_id,
            event_type,
            status,
            &text(&event.courier_waybill_id),
        ]),
        _ => derived_key(&[
            order_id,
            event_type,
            status,
            &text(&event.courier_waybill_id),
            &text(&event.courier_driver_plate_number),
        ]),
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
