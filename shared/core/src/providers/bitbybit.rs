//! BitByBit: commerce, CRM and WhatsApp message events. The body is the bare
//! resource (camelCase); the event type and id travel in headers, and the
//! body is signed with `t=<unix>,v1=<hex>`.

use serde::Deserialize;

use super::{
    Id, InspectError, Inspected, Provider, Resource, Rupiah, TypedEvent, lenient_text,
    lenient_time, not_json,
};
use crate::timestamp::Timestamp;

pub const ID_HEADER: &str = "x-bitbybit-webhook-id";
pub const EVENT_HEADER: &str = "x-bitbybit-webhook-event";
pub const TIMESTAMP_HEADER: &str = "x-bitbybit-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-bitbybit-webhook-signature";

pub const EVENT_TYPES: [&str; 10] = [
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "order.created",
    "order.updated",
    "product.created",
    "product.updated",
    "product.deleted",
    "message.received",
    "message.status.updated",
];

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Customer(Customer),
    /// `customer.deleted` and `product.deleted` carry only the id.
    Deleted {
        kind: String,
        id: String,
    },
    Order(Box<Order>),
    Product(Product),
    MessageReceived(MessageReceived),
    MessageStatus(MessageStatus),
    /// Unknown event type, or a payload that no longer fits the model.
    Other(serde_json::Value),
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub province: Option<String>,
    pub country: Option<String>,
    pub zip: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: Id,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCustomer {
    pub id: Option<Id>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub id: Option<Id>,
    pub quantity: Option<i64>,
    pub price: Option<Rupiah>,
    pub title: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Id,
    pub order_id: Option<String>,
    pub order_number: Option<String>,
    pub status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub financial_status: Option<String>,
    pub total: Option<Rupiah>,
    pub currency: Option<String>,
    pub customer: Option<OrderCustomer>,
    #[serde(default)]
    pub line_items: Vec<LineItem>,
    pub shipping_address: Option<Address>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    pub id: Option<Id>,
    pub key: Option<String>,
    pub price: Option<Rupiah>,
    pub inventory_sku: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: Id,
    pub product_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub media: Option<serde_json::Value>,
    pub status: Option<String>,
    #[serde(default)]
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub options: Vec<serde_json::Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub types: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReceived {
    pub message_id: Id,
    pub from: Option<String>,
    pub body: Option<String>,
    pub source: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub received_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatus {
    pub message_id: Id,
    pub status: Option<String>,
    pub to: Option<String>,
    pub template_name: Option<String>,
}

/// Ids, status and times, read from any BitByBit body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keys {
    id: Option<Id>,
    message_id: Option<Id>,
    #[serde(default, deserialize_with = "lenient_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    updated_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    received_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    created_at: Option<Timestamp>,
}

fn header<'h>(headers: &'h http::HeaderMap, name: &'static str) -> Result<&'h str, InspectError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(InspectError::MissingHeader(name))
}

pub(super) fn inspect(headers: &http::HeaderMap, body: &[u8]) -> Result<Inspected, InspectError> {
    let event_type = header(headers, EVENT_HEADER)?.to_owned();
    let dedup_key = super::provider_key(header(headers, ID_HEADER)?);
    let keys: Keys = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            InspectError::Missing("a JSON object", Provider::BitByBit)
        }
        _ => not_json(e),
    })?;
    let kind = super::type_prefix(&event_type).to_owned();
    let id = if kind == "message" {
        keys.message_id.as_ref().or(keys.id.as_ref())
    } else {
        keys.id.as_ref().or(keys.message_id.as_ref())
    };
    let id = match id {
        Some(id) => id.0.clone(),
        None if EVENT_TYPES.contains(&event_type.as_str()) => {
            return Err(InspectError::Missing("id", Provider::BitByBit));
        }
        None => "unknown".to_owned(),
    };
    let event = typed(&event_type, &kind, &id, body);
    Ok(Inspected {
        work_key: dedup_key.clone(),
        dedup_key,
        resource: Resource::new(kind, id),
        occurred_at: keys.updated_at.or(keys.received_at).or(keys.created_at),
        status: keys.status,
        event: TypedEvent::BitByBit(event),
        event_type,
    })
}

fn typed(event_type: &str, kind: &str, id: &str, body: &[u8]) -> Event {
    fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], wrap: fn(T) -> Event) -> Event {
        serde_json::from_slice(body)
            .map(wrap)
            .unwrap_or_else(|_| other(body))
    }
    match event_type {
        "customer.created" | "customer.updated" => parse(body, Event::Customer),
        "customer.deleted" | "product.deleted" => Event::Deleted {
            kind: kind.to_owned(),
            id: id.to_owned(),
        },
        "order.created" | "order.updated" => parse(body, |o| Event::Order(Box::new(o))),
        "product.created" | "product.updated" => parse(body, Event::Product),
        "message.received" => parse(body, Event::MessageReceived),
        "message.status.updated" => parse(body, Event::MessageStatus),
        _ => other(body),
    }
}

fn other(body: &[u8]) -> Event {
    Event::Other(serde_json::from_slice(body).unwrap_or(serde_json::Value::Null))
}

/// Outbound message statuses only move forward; other kinds carry
/// `updatedAt` and need no ranking.
pub fn status_rank(kind: &str, status: &str) -> Option<u32> {
    let order: &[&str] = match kind {
        "message" => &["queued", "sent", "delivered", "read", "failed"],
        "order" => &["pending", "active", "fulfilled", "completed", "cancelled"],
        _ => &[],
    };
    order
        .iter()
        .position(|s| *s == status)
        .map(|p| p as u32 + 1)
}
