//! Bebas Kirim: fulfilment, warehouse and order events in an
//! `{event, timestamp, tenant_id, data}` envelope, authenticated by a static
//! secret in `Authorization`. No event id: the dedup key is derived.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    Id, InspectError, Inspected, Provider, Resource, Rupiah, TypedEvent, body_digest, derived_key,
    lenient_text, lenient_time, not_json, time_part,
};
use crate::timestamp::Timestamp;

/// Every event name in the provider's documentation.
pub const EVENT_TYPES: [&str; 33] = [
    "item.created",
    "item.published",
    "item.archived",
    "purchase.created",
    "purchase.approved",
    "purchase.rejected",
    "purchase.completed",
    "inbound.created",
    "inbound.received",
    "inbound.completed",
    "transfer.created",
    "transfer.approved",
    "transfer.rejected",
    "transfer.completed",
    "adjustment.created",
    "adjustment.approved",
    "adjustment.rejected",
    "adjustment.completed",
    "outbound.created",
    "outbound.completed",
    "order.draft",
    "order.to_process",
    "order.in_process",
    "order.packed",
    "order.ready_for_pickup",
    "order.pending_waybill",
    "order.shipped",
    "order.refunded",
    "order.returned",
    "order.completed",
    "order_cancel_partial",
    "awb.generated",
    "awb.changed",
];

/// The name of the partial cancellation event (underscores, not dots).
pub const ORDER_CANCEL_PARTIAL: &str = "order_cancel_partial";

/// A Bebas Kirim event: the envelope and its typed `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event: String,
    pub timestamp: Option<Timestamp>,
    pub tenant_id: Option<String>,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Item(Item),
    Purchase(Purchase),
    Inbound(Stock),
    Transfer(Stock),
    Adjustment(Adjustment),
    Outbound(Outbound),
    Order(Order),
    OrderCancelPartial(OrderCancelPartial),
    Awb(Awb),
    /// An event this version does not know, or a payload that no longer fits
    /// the model: kept as JSON.
    Other(serde_json::Value),
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Location {
    pub id: Option<Id>,
    pub code: Option<String>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Dimensions {
    pub length: Option<f64>,
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub unit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Item {
    pub item_id: Id,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub brand: Option<String>,
    pub base_price: Option<Rupiah>,
    pub publish_price: Option<Rupiah>,
    pub weight: Option<f64>,
    pub dimensions: Option<Dimensions>,
    pub featured_image_url: Option<String>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PurchaseLine {
    pub item_id: Option<Id>,
    pub quantity: Option<i64>,
    pub unit_price: Option<Rupiah>,
    pub discount_percent: Option<f64>,
    pub discount_amount: Option<Rupiah>,
    pub total_price: Option<Rupiah>,
    pub notes: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Purchase {
    pub purchase_id: Id,
    pub purchase_number: Option<String>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expected_delivery: Option<Timestamp>,
    pub subtotal: Option<Rupiah>,
    pub total_discount: Option<Rupiah>,
    pub total_amount: Option<Rupiah>,
    pub notes: Option<String>,
    #[serde(default)]
    pub items: Vec<PurchaseLine>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StockLine {
    pub id: Option<Id>,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub quantity: Option<i64>,
    pub unit: Option<String>,
    pub unit_price: Option<Rupiah>,
    pub expected_quantity: Option<i64>,
    pub good_received_quantity: Option<i64>,
    pub damaged_received_quantity: Option<i64>,
    pub grid_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub received_at: Option<Timestamp>,
    pub received_by: Option<String>,
}

/// An inbound shipment or a warehouse transfer: one shape in the seed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Stock {
    #[serde(alias = "inbound_id", alias = "transfer_id")]
    pub id: Id,
    #[serde(alias = "transfer_number")]
    pub reference_number: Option<String>,
    pub status: Option<String>,
    pub location: Option<Location>,
    pub from_location: Option<Location>,
    pub to_location: Option<Location>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expected_arrival: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub actual_arrival: Option<Timestamp>,
    #[serde(default)]
    pub items: Vec<StockLine>,
    pub notes: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AdjustmentLine {
    pub id: Option<Id>,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub quantity: Option<i64>,
    pub unit_cost: Option<Rupiah>,
    pub total_cost: Option<Rupiah>,
    pub notes: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Adjustment {
    pub adjustment_id: Id,
    pub adjustment_number: Option<String>,
    pub location: Option<Location>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub stock_source: Option<String>,
    pub reason: Option<String>,
    pub status: Option<String>,
    pub total_amount: Option<Rupiah>,
    pub item_count: Option<i64>,
    #[serde(default)]
    pub items: Vec<AdjustmentLine>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OutboundLine {
    pub id: Option<Id>,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub quantity: Option<i64>,
    pub unit: Option<String>,
    pub unit_price: Option<Rupiah>,
    pub shipped_quantity: Option<i64>,
    pub received_quantity: Option<i64>,
    pub pending_quantity: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Outbound {
    pub outbound_id: Id,
    pub transfer_id: Option<Id>,
    pub reference_number: Option<String>,
    pub status: Option<String>,
    pub source_warehouse: Option<Location>,
    pub destination_warehouse: Option<Location>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expected_departure: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub actual_departure: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expected_arrival: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub actual_arrival: Option<Timestamp>,
    #[serde(default)]
    pub items: Vec<OutboundLine>,
    pub courier: Option<String>,
    pub tracking_number: Option<String>,
    pub priority: Option<String>,
    pub notes: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Order {
    pub order_id: Id,
    pub order_number: Option<String>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
pub struct OrderLine {
    pub sku: Option<String>,
    pub product_name: Option<String>,
    pub quantity: Option<i64>,
    pub price: Option<Rupiah>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OrderCancelPartial {
    pub order_id: Id,
    pub order_number: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub cancelled_items: Vec<OrderLine>,
    #[serde(default)]
    pub remaining_items: Vec<OrderLine>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Awb {
    pub order_id: Id,
    pub order_number: Option<String>,
    pub awb_number: Option<String>,
    pub status: Option<String>,
    pub logistic_provider: Option<String>,
    pub logistic_service: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<Timestamp>,
}

/// What the dedup key and the resource are read from: only ids and times, so
/// it parses whenever the envelope does.
#[derive(Deserialize)]
struct Envelope<'a> {
    event: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    timestamp: Option<Timestamp>,
    tenant_id: Option<Id>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Keys {
    order_id: Option<Id>,
    item_id: Option<Id>,
    purchase_id: Option<Id>,
    inbound_id: Option<Id>,
    transfer_id: Option<Id>,
    adjustment_id: Option<Id>,
    outbound_id: Option<Id>,
    #[serde(default, deserialize_with = "lenient_text")]
    awb_number: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    updated_at: Option<Timestamp>,
}

impl Keys {
    /// The id of the entity an event of this kind is about.
    fn id_for(&self, kind: &str) -> Option<&Id> {
        match kind {
            "item" => self.item_id.as_ref(),
            "purchase" => self.purchase_id.as_ref(),
            "inbound" => self.inbound_id.as_ref(),
            "transfer" => self.transfer_id.as_ref(),
            "adjustment" => self.adjustment_id.as_ref(),
            "outbound" => self.outbound_id.as_ref(),
            _ => self.order_id.as_ref(),
        }
    }
}

/// The resource kind an event name concerns. AWB events and the partial
/// cancellation update their order.
pub fn resource_kind(event: &str) -> &str {
    match super::type_prefix(event) {
        "awb" | ORDER_CANCEL_PARTIAL => "order",
        other => other,
    }
}

pub(super) fn inspect(body: &[u8]) -> Result<Inspected, InspectError> {
    let missing = |what| InspectError::Missing(what, Provider::BebasKirim);
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(not_json)?;
    let event_type = envelope.event.ok_or(missing("event"))?;
    let data = envelope.data.ok_or(missing("data"))?;
    let keys: Keys = serde_json::from_str(data.get()).unwrap_or_default();
    let kind = resource_kind(&event_type);
    let known = EVENT_TYPES.contains(&event_type.as_str());
    let id = match (keys.id_for(kind), known) {
        (Some(id), _) => id.0.clone(),
        (None, true) => return Err(missing("the entity id in data")),
        (None, false) => "unknown".to_owned(),
    };
    let tenant = envelope.tenant_id.map(|t| t.0).unwrap_or_default();
    let changed_at = keys.updated_at.or(envelope.timestamp);
    let awb = keys.awb_number.as_deref().unwrap_or("");
    let dedup_key = if changed_at.is_some() {
        derived_key(&[&tenant, &event_type, kind, &id, awb, &time_part(changed_at)])
    } else {
        // Nothing says when the change happened: only identical bytes are
        // the same delivery.
        derived_key(&[&tenant, &event_type, &body_digest(body)])
    };
    let typed = typed_data(&event_type, data);
    Ok(Inspected {
        event_type: event_type.clone(),
        work_key: dedup_key.clone(),
        dedup_key,
        resource: Resource::new(kind, id),
        occurred_at: changed_at,
        status: keys.status,
        event: TypedEvent::BebasKirim(Event {
            event: event_type,
            timestamp: envelope.timestamp,
            tenant_id: (!tenant.is_empty()).then_some(tenant),
            data: typed,
        }),
    })
}

fn typed_data(event_type: &str, data: &RawValue) -> Data {
    fn parse<T: for<'de> Deserialize<'de>>(data: &RawValue, wrap: fn(T) -> Data) -> Data {
        serde_json::from_str(data.get())
            .map(wrap)
            .unwrap_or_else(|_| other(data))
    }
    if !EVENT_TYPES.contains(&event_type) {
        return other(data);
    }
    match (event_type, super::type_prefix(event_type)) {
        (ORDER_CANCEL_PARTIAL, _) => parse(data, Data::OrderCancelPartial),
        (_, "item") => parse(data, Data::Item),
        (_, "purchase") => parse(data, Data::Purchase),
        (_, "inbound") => parse(data, Data::Inbound),
        (_, "transfer") => parse(data, Data::Transfer),
        (_, "adjustment") => parse(data, Data::Adjustment),
        (_, "outbound") => parse(data, Data::Outbound),
        (_, "awb") => parse(data, Data::Awb),
        _ => parse(data, Data::Order),
    }
}

fn other(data: &RawValue) -> Data {
    Data::Other(serde_json::from_str(data.get()).unwrap_or(serde_json::Value::Null))
}

/// The order of an order's statuses, for when two deliveries carry the same
/// `updated_at`. Returns `None` for a status it does not know.
pub fn status_rank(kind: &str, status: &str) -> Option<u32> {
    let order: &[&str] = match kind {
        "order" => &[
            "draft",
            "to_process",
            "in_process",
            "packed",
            "ready_for_pickup",
            "pending_waybill",
            "shipped",
            "partial_cancelled",
            "completed",
            "returned",
            "refunded",
        ],
        "item" => &["draft", "published", "archived"],
        "inbound" => &["pending", "created", "received", "completed"],
        "outbound" => &["pending", "created", "shipped", "completed"],
        _ => &["pending", "created", "approved", "rejected", "completed"],
    };
    order
        .iter()
        .position(|s| *s == status)
        .map(|p| p as u32 + 1)
}
