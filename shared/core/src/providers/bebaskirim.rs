//! Bebas Kirim: fulfilment, warehouse and order events in an
//! `{event, timestamp, tenant_id, data}` envelope, authenticated by a static
//! secret in `Authorization`. No event id: the dedup key is derived.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Fields, Id, Lookup, ProviderSpec, ReadError, Reading, Resource, Rupiah, SchemeError,
    SchemeSetting, TypedEvent, Update, lenient_time, optional_text, path, rank_in, required_text,
    time_part, type_prefix, typed_as,
};
use crate::json;
use crate::key::KeyBuilder;
use crate::timestamp::Timestamp;
use crate::verify::Scheme;

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

/// The partial cancellation's attribute on the original order that lists its
/// cancellations, by work key, in the order they were first applied.
pub const PARTIAL_CANCELLATIONS: &str = "partial_cancellations";

/// The field of `data` holding the id of the entity an event of this kind is
/// about.
fn id_field(kind: &str) -> &'static str {
    match kind {
        "item" => "item_id",
        "purchase" => "purchase_id",
        "inbound" => "inbound_id",
        "transfer" => "transfer_id",
        "adjustment" => "adjustment_id",
        "outbound" => "outbound_id",
        _ => "order_id",
    }
}

/// The resource kind an event name concerns. AWB events and the partial
/// cancellation update their order.
pub fn resource_kind(event: &str) -> &str {
    match type_prefix(event) {
        "awb" | ORDER_CANCEL_PARTIAL => "order",
        other => other,
    }
}

/// Bebas Kirim's provider module.
pub struct BebasKirim;

const NAME: &str = "bebaskirim";

impl ProviderSpec for BebasKirim {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Bebas Kirim"
    }

    fn env_infix(&self) -> &'static str {
        "BEBASKIRIM"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    /// The partner dashboard's secret in `Authorization`; the provider's own
    /// pages disagree about a `Bearer ` prefix, so both are accepted.
    fn schemes(&self, _settings: &dyn Lookup) -> Result<Vec<SchemeSetting>, SchemeError> {
        Ok(vec![SchemeSetting {
            scheme: Scheme::StaticToken {
                header: http::header::AUTHORIZATION,
                bearer: true,
            },
            secrets_var: "TERIMA_BEBASKIRIM_SECRETS".to_owned(),
        }])
    }

    /// No event id: the key is what identifies the state change (tenant,
    /// event, entity, AWB, `data.updated_at` or the envelope's `timestamp`);
    /// with no time at all, the meaning of the body.
    fn read(
        &self,
        _headers: &HeaderMap,
        body: &Value,
        notes: &mut Vec<String>,
    ) -> Result<Reading, ReadError> {
        let event_type = required_text(body, &["event"], NAME)?;
        if !json::at(body, &["data"]).is_some_and(Value::is_object) {
            return Err(ReadError::Missing {
                path: "$.data".to_owned(),
                provider: NAME,
            });
        }
        let kind = resource_kind(&event_type).to_owned();
        let known = EVENT_TYPES.contains(&event_type.as_str());
        let id = if known {
            required_text(body, &["data", id_field(&kind)], NAME)?
        } else {
            optional_text(body, &["data", id_field(&kind)], notes)
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let tenant = optional_text(body, &["tenant_id"], notes).unwrap_or_default();
        let changed_at = json::time(json::at(body, &["data", "updated_at"]))
            .or(json::time(body.get("timestamp")));
        let awb = optional_text(body, &["data", "awb_number"], notes).unwrap_or_default();
        let key = KeyBuilder::new().part(&tenant).part(&event_type);
        let dedup_key = if changed_at.is_some() {
            key.part(&kind)
                .part(&id)
                .part(&awb)
                .part(&time_part(changed_at))
                .finish()
        } else {
            // Nothing says when the change happened: only the same body is
            // the same delivery.
            key.part(&json::digest(body)).finish()
        };
        Ok(Reading {
            event_type,
            work_key: dedup_key.clone(),
            dedup_key,
            resource: Resource::new(kind, id),
            occurred_at: changed_at,
            status: optional_text(body, &["data", "status"], notes),
        })
    }

    fn routing_paths(&self, _headers: &HeaderMap, body: &Value) -> Vec<Vec<String>> {
        let event_type = body.get("event").and_then(Value::as_str).unwrap_or("");
        let kind = resource_kind(event_type);
        let mut paths = vec![
            path(&["event"]),
            path(&["tenant_id"]),
            path(&["timestamp"]),
            path(&["data", id_field(kind)]),
            path(&["data", "status"]),
            path(&["data", "updated_at"]),
            path(&["data", "awb_number"]),
        ];
        if json::time(json::at(body, &["data", "updated_at"]))
            .or(json::time(body.get("timestamp")))
            .is_none()
        {
            // The key is the digest of the whole body.
            paths.push(Vec::new());
        }
        paths
    }

    fn updates(&self, reading: &Reading, body: &Value, notes: &mut Vec<String>) -> Vec<Update> {
        let base = Update::of(reading);
        let mut f = Fields { body, notes };
        let event_type = reading.event_type.as_str();
        if !EVENT_TYPES.contains(&event_type) {
            return vec![base];
        }
        let update = match (event_type, type_prefix(event_type)) {
            (ORDER_CANCEL_PARTIAL, _) => {
                let mut original = base
                    .field("order_number", f.text(&["data", "order_number"]))
                    .field("cancelled_items", order_lines(&mut f, "cancelled_items"))
                    .field("remaining_items", order_lines(&mut f, "remaining_items"));
                original.append = Some((
                    PARTIAL_CANCELLATIONS.to_owned(),
                    reading.work_key.clone().into(),
                ));
                original
            }
            (_, "item") => base
                .field("sku", f.text(&["data", "sku"]))
                .field("brand", f.text(&["data", "brand"]))
                .field("category", f.text(&["data", "category"]))
                .field("base_price", f.whole(&["data", "base_price"]))
                .field("publish_price", f.whole(&["data", "publish_price"])),
            (_, "purchase") => base
                .field("purchase_number", f.text(&["data", "purchase_number"]))
                .field("total_amount", f.whole(&["data", "total_amount"]))
                .field("line_count", f.count(&["data", "items"])),
            (_, "inbound") => base
                .field("reference_number", f.text(&["data", "reference_number"]))
                .field("line_count", f.count(&["data", "items"])),
            (_, "transfer") => base
                .field("reference_number", f.text(&["data", "transfer_number"]))
                .field("line_count", f.count(&["data", "items"])),
            (_, "adjustment") => base
                .field("adjustment_number", f.text(&["data", "adjustment_number"]))
                .field("type", f.text(&["data", "type"]))
                .field("total_amount", f.whole(&["data", "total_amount"])),
            (_, "outbound") => base
                .field("reference_number", f.text(&["data", "reference_number"]))
                .field("courier", f.text(&["data", "courier"]))
                .field("tracking_number", f.text(&["data", "tracking_number"])),
            // An AWB is an attribute of its order, not a status of it: it
            // never moves the order's status clock.
            (_, "awb") => base
                .without_status()
                .field("order_number", f.text(&["data", "order_number"]))
                .field("awb_number", f.text(&["data", "awb_number"]))
                .field("logistic_provider", f.text(&["data", "logistic_provider"]))
                .field("logistic_service", f.text(&["data", "logistic_service"])),
            _ => base.field("order_number", f.text(&["data", "order_number"])),
        };
        vec![update]
    }

    /// A partial cancellation derives a new order from the remaining items,
    /// numbered `<order_number>-<n>` (and `<order_id>-<n>`) where `n` counts
    /// the order's partial cancellations, so the invoice-number structure is
    /// kept. A retry finds its event already listed and derives the same
    /// order again, which `create_only` makes a no-op.
    fn follow_ups(
        &self,
        reading: &Reading,
        body: &Value,
        first_state: &Map<String, Value>,
        notes: &mut Vec<String>,
    ) -> Vec<Update> {
        if reading.event_type != ORDER_CANCEL_PARTIAL {
            return Vec::new();
        }
        let position = first_state
            .get(PARTIAL_CANCELLATIONS)
            .and_then(Value::as_array)
            .and_then(|list| {
                list.iter()
                    .position(|v| v.as_str() == Some(&reading.work_key))
            });
        let Some(position) = position else {
            return Vec::new();
        };
        let n = position + 1;
        let mut f = Fields { body, notes };
        let items = order_lines(&mut f, "remaining_items");
        let total = line_total(&items, f.notes);
        let order_number = match f.text(&["data", "order_number"]) {
            Value::String(number) => Value::String(format!("{number}-{n}")),
            _ => Value::Null,
        };
        let mut derived = Update::new(
            "order",
            &format!("{}-{n}", reading.resource.id),
            Some("to_process".to_owned()),
            reading.occurred_at,
        )
        .field("order_number", order_number)
        .field("items", items)
        .field("total_amount", total)
        .field("derived_from", reading.resource.id.clone());
        derived.create_only = true;
        vec![derived]
    }

    fn status_rank(&self, kind: &str, status: &str) -> Option<u32> {
        status_rank(kind, status)
    }

    fn typed(&self, reading: &Reading, body: &Value) -> TypedEvent {
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        TypedEvent::BebasKirim(Event {
            event: reading.event_type.clone(),
            timestamp: json::time(body.get("timestamp")),
            tenant_id: body
                .get("tenant_id")
                .and_then(|t| json::text(Some(t), &String::new).ok().flatten()),
            data: typed_data(&reading.event_type, &data),
        })
    }
}

/// A list of order lines, each read field by field: a line with one odd
/// field keeps the others.
fn order_lines(f: &mut Fields<'_>, list: &str) -> Value {
    let Some(Value::Array(lines)) = json::at(f.body, &["data", list]) else {
        return Value::Null;
    };
    let lines = lines.clone();
    Value::Array(
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut out = Map::new();
                let at = |field: &str| format!("$.data.{list}[{i}].{field}");
                for field in ["sku", "product_name"] {
                    match json::text(line.get(field), &|| at(field)) {
                        Ok(v) => {
                            out.insert(field.to_owned(), v.map_or(Value::Null, Value::String));
                        }
                        Err(e) => f.notes.push(e.to_string()),
                    }
                }
                for field in ["quantity", "price"] {
                    match json::whole(line.get(field), &|| at(field)) {
                        Ok(v) => {
                            out.insert(field.to_owned(), v.map_or(Value::Null, Value::from));
                        }
                        Err(e) => f.notes.push(e.to_string()),
                    }
                }
                Value::Object(out)
            })
            .collect(),
    )
}

/// The sum of price × quantity over lines, checked: an overflow is noted and
/// gives no total rather than a wrong one.
fn line_total(items: &Value, notes: &mut Vec<String>) -> Value {
    let Some(lines) = items.as_array() else {
        return Value::Null;
    };
    let total = lines.iter().try_fold(0i64, |sum, line| {
        let price = line.get("price").and_then(Value::as_i64).unwrap_or(0);
        let quantity = line.get("quantity").and_then(Value::as_i64).unwrap_or(0);
        price.checked_mul(quantity).and_then(|v| sum.checked_add(v))
    });
    match total {
        Some(total) => Value::from(total),
        None => {
            notes.push("the remaining items' total overflows a 64-bit amount".to_owned());
            Value::Null
        }
    }
}

fn typed_data(event_type: &str, data: &Value) -> Data {
    fn parse<T: serde::de::DeserializeOwned>(data: &Value, wrap: fn(T) -> Data) -> Data {
        typed_as(data).map_or_else(|| Data::Other(data.clone()), wrap)
    }
    if !EVENT_TYPES.contains(&event_type) {
        return Data::Other(data.clone());
    }
    match (event_type, type_prefix(event_type)) {
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
    rank_in(order, status)
}
