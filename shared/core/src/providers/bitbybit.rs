//! BitByBit: commerce, CRM and WhatsApp message events. The body is the bare
//! resource (camelCase); the event type and id travel in headers, and the
//! body is signed with `t=<unix>,v1=<hex>`.

use serde::Deserialize;
use serde_json::Value;

use super::{
    Fields, Id, Lookup, ProviderSpec, ReadError, Reading, Resource, Rupiah, SchemeError,
    SchemeSetting, TypedEvent, Update, lenient_time, optional_text, path, rank_in, time_part,
    type_prefix, typed_as,
};
use crate::json;
use crate::key::KeyBuilder;
use crate::timestamp::Timestamp;
use crate::verify::{DEFAULT_TIMESTAMP_TOLERANCE_SECS, Scheme};

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

/// Fields that only a body of one kind carries: an event name is accepted
/// only on a body of its own shape, so a captured, signed body cannot be
/// relabelled as another kind (the event name travels in an unsigned header).
fn markers(kind: &str) -> &'static [&'static str] {
    match kind {
        "customer" => &["email", "phoneNumber", "firstName", "lastName", "addresses"],
        "order" => &[
            "orderId",
            "orderNumber",
            "lineItems",
            "fulfillmentStatus",
            "financialStatus",
        ],
        "product" => &["productId", "variants", "options", "name"],
        _ => &[],
    }
}

/// Checks that a known event name fits the body: `*.deleted` carries only the
/// id; a customer, order or product event carries no field that only another
/// kind has; a received message has a sender, a status update a status.
fn fits(event_type: &str, kind: &str, body: &Value) -> Result<(), String> {
    let Some(object) = body.as_object() else {
        return Err("the body is not an object".to_owned());
    };
    if event_type.ends_with(".deleted") {
        let extra: Vec<&String> = object.keys().filter(|k| *k != "id").collect();
        return if extra.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "a deletion carries only the id, this body also has {extra:?}"
            ))
        };
    }
    match event_type {
        "message.received" => {
            return object
                .contains_key("from")
                .then_some(())
                .ok_or_else(|| "a received message has a `from`".to_owned());
        }
        "message.status.updated" => {
            return object
                .contains_key("status")
                .then_some(())
                .ok_or_else(|| "a message status update has a `status`".to_owned());
        }
        _ => {}
    }
    let own = markers(kind);
    for other in ["customer", "order", "product"]
        .into_iter()
        .filter(|k| *k != kind)
    {
        let foreign: Vec<&&str> = markers(other)
            .iter()
            .filter(|m| object.contains_key(**m) && !own.contains(m))
            .collect();
        if !foreign.is_empty() {
            return Err(format!("{foreign:?} belong to a {other} body"));
        }
    }
    Ok(())
}

/// BitByBit's provider module.
pub struct BitByBit;

const NAME: &str = "bitbybit";

fn header<'h>(headers: &'h http::HeaderMap, name: &'static str) -> Result<&'h str, ReadError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ReadError::MissingHeader(name))
}

fn kind_of(event_type: &str) -> &str {
    type_prefix(event_type)
}

fn id_keys(kind: &str) -> [&'static str; 2] {
    if kind == "message" {
        ["messageId", "id"]
    } else {
        ["id", "messageId"]
    }
}

fn occurred_at(body: &Value) -> Option<Timestamp> {
    ["updatedAt", "receivedAt", "createdAt"]
        .iter()
        .find_map(|k| json::time(body.get(*k)))
}

impl ProviderSpec for BitByBit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "BitByBit"
    }

    fn env_infix(&self) -> &'static str {
        "BITBYBIT"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    /// `t=<unix>,v1=<hex>`: HMAC-SHA256 over `"<t>.<body>"`, within a
    /// tolerance (BitByBit recommends 300 s).
    fn schemes(&self, settings: &dyn Lookup) -> Result<Vec<SchemeSetting>, SchemeError> {
        let var = "TERIMA_BITBYBIT_TOLERANCE_SECS";
        let tolerance_secs = match settings.get(var) {
            None => DEFAULT_TIMESTAMP_TOLERANCE_SECS,
            Some(text) => text.trim().parse().map_err(|_| SchemeError::Invalid {
                var: var.to_owned(),
                reason: format!("expected a whole number of seconds, got {text:?}"),
            })?,
        };
        Ok(vec![SchemeSetting {
            scheme: Scheme::TimestampedHmac {
                header: http::HeaderName::from_static(SIGNATURE_HEADER),
                tolerance_secs,
            },
            secrets_var: "TERIMA_BITBYBIT_SECRETS".to_owned(),
        }])
    }

    fn meaningful_headers(&self) -> &'static [&'static str] {
        &[ID_HEADER, EVENT_HEADER, TIMESTAMP_HEADER]
    }

    /// The dedup key is the delivery id header, so a retry is a duplicate.
    /// The event name and id are not signed, so the work key comes from the
    /// signed body: the kind, the id and the body's own time (else its status
    /// or its meaning). A captured request replayed under a new id, or under
    /// another name of the same kind, has the same work key and runs nothing;
    /// a name of another kind does not fit the body and is quarantined.
    fn read(
        &self,
        headers: &http::HeaderMap,
        body: &Value,
        notes: &mut Vec<String>,
    ) -> Result<Reading, ReadError> {
        let event_type = header(headers, EVENT_HEADER)?.to_owned();
        let dedup_key = KeyBuilder::new().part(header(headers, ID_HEADER)?).finish();
        let kind = kind_of(&event_type).to_owned();
        let known = EVENT_TYPES.contains(&event_type.as_str());
        if known {
            fits(&event_type, &kind, body).map_err(|detail| ReadError::Mismatch {
                event_type: event_type.clone(),
                detail,
            })?;
        }
        let [first, second] = id_keys(&kind);
        let id =
            match optional_text(body, &[first], notes).or(optional_text(body, &[second], notes)) {
                Some(id) if !id.trim().is_empty() => id,
                _ if known => {
                    return Err(ReadError::Missing {
                        path: format!("$.{first}"),
                        provider: NAME,
                    });
                }
                _ => "unknown".to_owned(),
            };
        let status = optional_text(body, &["status"], notes);
        let at = occurred_at(body);
        let work = KeyBuilder::new().part(&kind).part(&id);
        let work_key = if event_type.ends_with(".deleted") {
            work.part("deleted").finish()
        } else if at.is_some() {
            work.part(&time_part(at)).finish()
        } else if let Some(status) = &status {
            work.part("status").part(status).finish()
        } else {
            work.part(&json::digest(body)).finish()
        };
        Ok(Reading {
            event_type,
            dedup_key,
            work_key,
            resource: Resource::new(kind, id),
            occurred_at: at,
            status,
        })
    }

    fn routing_paths(&self, headers: &http::HeaderMap, body: &Value) -> Vec<Vec<String>> {
        let event_type = header(headers, EVENT_HEADER).unwrap_or("");
        let kind = kind_of(event_type);
        let mut paths = vec![
            path(&["id"]),
            path(&["messageId"]),
            path(&["status"]),
            path(&["updatedAt"]),
            path(&["receivedAt"]),
            path(&["createdAt"]),
        ];
        // The shape check reads which keys are present.
        for marker in markers(kind).iter().chain(["from"].iter()) {
            paths.push(path(&[marker]));
        }
        for other in ["customer", "order", "product"] {
            for marker in markers(other) {
                paths.push(path(&[marker]));
            }
        }
        if !event_type.ends_with(".deleted")
            && occurred_at(body).is_none()
            && body.get("status").is_none()
        {
            // The work key is the digest of the whole body.
            paths.push(Vec::new());
        }
        paths
    }

    fn updates(&self, reading: &Reading, body: &Value, notes: &mut Vec<String>) -> Vec<Update> {
        let base = Update::of(reading);
        let mut f = Fields { body, notes };
        let update = match reading.event_type.as_str() {
            "customer.created" | "customer.updated" => {
                base.without_status().field("tags", f.strings(&["tags"]))
            }
            "customer.deleted" | "product.deleted" => {
                let mut deleted = base.without_status();
                deleted.deleted = true;
                deleted
            }
            "order.created" | "order.updated" => base
                .field("order_number", f.text(&["orderNumber"]))
                .field("fulfillment_status", f.text(&["fulfillmentStatus"]))
                .field("financial_status", f.text(&["financialStatus"]))
                .field("total", f.whole(&["total"]))
                .field("currency", f.text(&["currency"]))
                .field("line_count", f.count(&["lineItems"])),
            "product.created" | "product.updated" => base
                .field("product_id", f.text(&["productId"]))
                .field("name", f.text(&["name"]))
                .field("variant_count", f.count(&["variants"])),
            "message.received" => Update {
                status: Some("received".to_owned()),
                ..base
            }
            .field("source", f.text(&["source"])),
            "message.status.updated" => base.field("template_name", f.text(&["templateName"])),
            _ => base,
        };
        vec![update]
    }

    fn status_rank(&self, kind: &str, status: &str) -> Option<u32> {
        status_rank(kind, status)
    }

    fn typed(&self, reading: &Reading, body: &Value) -> TypedEvent {
        fn parse<T: serde::de::DeserializeOwned>(body: &Value, wrap: fn(T) -> Event) -> Event {
            typed_as(body).map_or_else(|| Event::Other(body.clone()), wrap)
        }
        TypedEvent::BitByBit(match reading.event_type.as_str() {
            "customer.created" | "customer.updated" => parse(body, Event::Customer),
            "customer.deleted" | "product.deleted" => Event::Deleted {
                kind: reading.resource.kind.clone(),
                id: reading.resource.id.clone(),
            },
            "order.created" | "order.updated" => parse(body, |o| Event::Order(Box::new(o))),
            "product.created" | "product.updated" => parse(body, Event::Product),
            "message.received" => parse(body, Event::MessageReceived),
            "message.status.updated" => parse(body, Event::MessageStatus),
            _ => Event::Other(body.clone()),
        })
    }
}

/// Outbound message statuses only move forward; other kinds carry
/// `updatedAt` and need no ranking.
pub fn status_rank(kind: &str, status: &str) -> Option<u32> {
    let order: &[&str] = match kind {
        "message" => &["queued", "sent", "delivered", "read", "failed"],
        "order" => &["pending", "active", "fulfilled", "completed", "cancelled"],
        _ => &[],
    };
    rank_in(order, status)
}
