//! The built-in work: from one event, the changes to the state of the
//! resources it concerns, and the rule that keeps that state from moving
//! backwards.
//!
//! Order of states: the provider's own time decides (`updated_at`,
//! `modified_date`, `updatedAt`, Bebas Kirim's envelope `timestamp`). When
//! two states carry the same time, or one carries none, the documented order
//! of statuses decides ([`terima_core::status_rank`]). A state that neither
//! can place after the current one is ignored (and counted as stale); its
//! event stays in the event log.

use serde_json::{Map, Value, json};
use terima_core::providers::{bebaskirim, bitbybit, biteship, oms};
use terima_core::{Inspected, Provider, Timestamp, TypedEvent, status_rank};

use crate::store::ResourceState;

/// One change to one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub kind: String,
    pub id: String,
    pub status: Option<String>,
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
    fn new(kind: &str, id: &str, status: Option<String>, at: Option<Timestamp>) -> Self {
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

    fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        if !value.is_null() {
            self.fields.insert(key.to_owned(), value);
        }
        self
    }
}

/// Is a state at `(at, rank)` later than the current one?
pub fn is_newer(
    at: Option<Timestamp>,
    rank: Option<u32>,
    current_at: Option<Timestamp>,
    current_rank: Option<u32>,
) -> bool {
    match (at, current_at) {
        (Some(a), Some(b)) if a != b => a > b,
        _ => match (rank, current_rank) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

/// Applies `update` to `current`. Returns the new state, or `None` when it
/// changes nothing (a stale or repeated state).
pub fn merge(
    provider: Provider,
    current: Option<&ResourceState>,
    update: &Update,
    event_id: &str,
) -> Option<ResourceState> {
    let rank = update
        .status
        .as_deref()
        .and_then(|s| status_rank(provider, &update.kind, s));
    let Some(current) = current else {
        let mut fields = update.fields.clone();
        if let Some((key, value)) = &update.append {
            fields.insert(key.clone(), Value::Array(vec![value.clone()]));
        }
        return Some(ResourceState {
            provider,
            kind: update.kind.clone(),
            id: update.id.clone(),
            status: update.status.clone(),
            updated_at: update.at,
            rank,
            deleted: update.deleted,
            field_times: update
                .at
                .map(|at| fields.keys().map(|k| (k.clone(), at)).collect())
                .unwrap_or_default(),
            fields,
            last_event: event_id.to_owned(),
            version: 1,
        });
    };
    if update.create_only {
        return None;
    }
    let newer = match update.status {
        Some(_) => is_newer(update.at, rank, current.updated_at, current.rank),
        // Events without a status (a waybill, a customer edit) are placed by
        // their time alone.
        None => {
            matches!((update.at, current.updated_at), (Some(a), Some(b)) if a > b)
                || (update.at.is_some() && current.updated_at.is_none())
        }
    };
    let mut next = current.clone();
    if newer {
        if update.status.is_some() {
            next.status = update.status.clone();
            next.rank = rank;
        }
        if update.at.is_some() {
            next.updated_at = update.at;
        }
    }
    // An attribute is taken when the state lacks it (a waybill that arrives
    // after the status), or from an event newer than the one that set it:
    // by their own times when both have one, else as the status goes.
    for (key, value) in &update.fields {
        let take = match (update.at, current.field_times.get(key)) {
            _ if !current.fields.contains_key(key) => true,
            (Some(at), Some(set_at)) => at > *set_at,
            _ => newer,
        };
        if take {
            next.fields.insert(key.clone(), value.clone());
            if let Some(at) = update.at {
                next.field_times.insert(key.clone(), at);
            }
        }
    }
    if let Some((key, value)) = &update.append {
        let list = next
            .fields
            .entry(key.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        match list {
            Value::Array(items) if !items.contains(value) => items.push(value.clone()),
            Value::Array(_) => {}
            other => *other = Value::Array(vec![value.clone()]),
        }
    }
    // Deletion is final: a late update does not bring a resource back.
    next.deleted |= update.deleted;
    if next == *current {
        return None;
    }
    next.last_event = event_id.to_owned();
    next.version = current.version + 1;
    Some(next)
}

/// The updates one event makes. Only non-personal attributes are kept:
/// numbers, statuses, waybills, amounts; never names, phones, emails,
/// addresses or message text.
pub fn updates(inspected: &Inspected) -> Vec<Update> {
    let kind = inspected.resource.kind.as_str();
    let id = inspected.resource.id.as_str();
    let at = inspected.occurred_at;
    let base = || Update::new(kind, id, inspected.status.clone(), at);
    match &inspected.event {
        TypedEvent::BebasKirim(e) => bebas_kirim(e, base(), inspected),
        TypedEvent::BitByBit(e) => vec![bit_by_bit(e, base())],
        TypedEvent::Oms(e) => vec![akinon(&e.payload, base())],
        TypedEvent::Biteship(e) => vec![biteship_order(e, base())],
    }
}

fn bebas_kirim(e: &bebaskirim::Event, base: Update, inspected: &Inspected) -> Vec<Update> {
    use bebaskirim::Data;
    let update = match &e.data {
        Data::Item(i) => base
            .field("sku", i.sku.clone())
            .field("brand", i.brand.clone())
            .field("category", i.category.clone())
            .field("base_price", i.base_price.map(|r| r.0))
            .field("publish_price", i.publish_price.map(|r| r.0)),
        Data::Purchase(p) => base
            .field("purchase_number", p.purchase_number.clone())
            .field("total_amount", p.total_amount.map(|r| r.0))
            .field("line_count", p.items.len()),
        Data::Inbound(s) | Data::Transfer(s) => base
            .field("reference_number", s.reference_number.clone())
            .field("line_count", s.items.len()),
        Data::Adjustment(a) => base
            .field("adjustment_number", a.adjustment_number.clone())
            .field("type", a.kind.clone())
            .field("total_amount", a.total_amount.map(|r| r.0)),
        Data::Outbound(o) => base
            .field("reference_number", o.reference_number.clone())
            .field("courier", o.courier.clone())
            .field("tracking_number", o.tracking_number.clone()),
        Data::Order(o) => base.field("order_number", o.order_number.clone()),
        // An AWB is an attribute of its order, not a status of it.
        Data::Awb(a) => Update {
            status: None,
            ..base
        }
        .field("order_number", a.order_number.clone())
        .field("awb_number", a.awb_number.clone())
        .field("logistic_provider", a.logistic_provider.clone())
        .field("logistic_service", a.logistic_service.clone()),
        Data::OrderCancelPartial(c) => return cancel_partial(c, base, inspected),
        Data::Other(_) => base,
    };
    vec![update]
}

/// The attribute of an order that lists its partial cancellations, by
/// event, in the order they were first applied.
pub const PARTIAL_CANCELLATIONS: &str = "partial_cancellations";

/// The original order records what was cancelled, and which cancellation
/// this was; the derived order follows in [`follow_ups`].
fn cancel_partial(
    c: &bebaskirim::OrderCancelPartial,
    base: Update,
    inspected: &Inspected,
) -> Vec<Update> {
    let mut original = base
        .field("order_number", c.order_number.clone())
        .field("cancelled_items", json!(c.cancelled_items))
        .field("remaining_items", json!(c.remaining_items));
    original.append = Some((
        PARTIAL_CANCELLATIONS.to_owned(),
        inspected.work_key.clone().into(),
    ));
    vec![original]
}

/// Work that depends on the state the first update produced: for a partial
/// cancellation, a new order from the remaining items, numbered
/// `<order_number>-<n>` (and `<order_id>-<n>`) where `n` counts the order's
/// partial cancellations, so the invoice-number structure is kept. A retry
/// finds its event already listed and derives the same order again, which
/// `create_only` makes a no-op.
pub fn follow_ups(inspected: &Inspected, first: &ResourceState) -> Vec<Update> {
    let TypedEvent::BebasKirim(bebaskirim::Event {
        data: bebaskirim::Data::OrderCancelPartial(c),
        ..
    }) = &inspected.event
    else {
        return Vec::new();
    };
    let position = first
        .fields
        .get(PARTIAL_CANCELLATIONS)
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .position(|v| v.as_str() == Some(&inspected.work_key))
        });
    let Some(position) = position else {
        return Vec::new();
    };
    let n = position + 1;
    let line_total: i64 = c
        .remaining_items
        .iter()
        .map(|l| l.price.map_or(0, |p| p.0) * l.quantity.unwrap_or(0))
        .sum();
    let mut derived = Update::new(
        "order",
        &format!("{}-{n}", c.order_id),
        Some("to_process".to_owned()),
        inspected.occurred_at,
    )
    .field(
        "order_number",
        c.order_number.as_ref().map(|num| format!("{num}-{n}")),
    )
    .field("items", json!(c.remaining_items))
    .field("total_amount", line_total)
    .field("derived_from", c.order_id.0.clone());
    derived.create_only = true;
    vec![derived]
}

fn bit_by_bit(e: &bitbybit::Event, base: Update) -> Update {
    use bitbybit::Event;
    match e {
        Event::Customer(c) => Update {
            status: None,
            ..base
        }
        .field("tags", json!(c.tags)),
        Event::Deleted { .. } => Update {
            status: None,
            deleted: true,
            ..base
        },
        Event::Order(o) => base
            .field("order_number", o.order_number.clone())
            .field("fulfillment_status", o.fulfillment_status.clone())
            .field("financial_status", o.financial_status.clone())
            .field("total", o.total.map(|r| r.0))
            .field("currency", o.currency.clone())
            .field("line_count", o.line_items.len()),
        Event::Product(p) => base
            .field("product_id", p.product_id.clone())
            .field("name", p.name.clone())
            .field("variant_count", p.variants.len()),
        Event::MessageReceived(m) => Update {
            status: Some("received".to_owned()),
            ..base
        }
        .field("source", m.source.clone()),
        Event::MessageStatus(m) => base.field("template_name", m.template_name.clone()),
        Event::Other(_) => base,
    }
}

fn akinon(payload: &oms::Payload, base: Update) -> Update {
    use oms::Payload;
    let label = |s: &Option<oms::State>| s.as_ref().and_then(|s| s.label.clone());
    match payload {
        Payload::Package(p) => base
            .field("number", p.number.clone())
            .field("order_number", p.order_number.clone())
            .field("awb_number", p.awb_number.clone())
            .field("state_label", label(&p.state)),
        Payload::Shipment(s) => base
            .field("package", s.package.as_ref().map(|p| p.0.clone()))
            .field("tracking_number", s.tracking_number.clone())
            .field("cargo_company", s.cargo_company.clone())
            .field("state_label", label(&s.state)),
        Payload::Transfer(t) => base
            .field("number", t.number.clone())
            .field(
                "from_location",
                t.from_location.as_ref().map(|l| l.0.clone()),
            )
            .field("to_location", t.to_location.as_ref().map(|l| l.0.clone()))
            .field("state_label", label(&t.state)),
        Payload::StockLocation(l) => base
            .field("code", l.code.clone())
            .field("name", l.name.clone())
            .field("is_active", l.is_active),
        Payload::Other(_) => base,
    }
}

fn biteship_order(e: &biteship::Event, base: Update) -> Update {
    base.field("courier_waybill_id", e.courier_waybill_id.clone())
        .field("courier_tracking_id", e.courier_tracking_id.clone())
        .field("courier_company", e.courier_company.clone())
        .field("courier_type", e.courier_type.clone())
        .field("order_price", e.order_price.map(|r| r.0))
        .field("price", e.price.map(|r| r.0))
        .field("shipment_fee", e.shipment_fee.map(|r| r.0))
        .field("cash_on_delivery_fee", e.cash_on_delivery_fee.map(|r| r.0))
        .field(
            "proof_of_delivery_fee",
            e.proof_of_delivery_fee.map(|r| r.0),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Option<Timestamp> {
        Timestamp::parse(text).ok()
    }

    #[test]
    fn time_decides_then_rank() {
        let early = ts("2024-01-20T15:00:00Z");
        let late = ts("2024-01-20T16:00:00Z");
        assert!(is_newer(late, Some(1), early, Some(9)), "time beats rank");
        assert!(
            !is_newer(early, Some(9), late, Some(1)),
            "an older time loses"
        );
        assert!(is_newer(late, Some(5), late, Some(4)), "rank breaks a tie");
        assert!(
            !is_newer(late, Some(4), late, Some(4)),
            "a repeat is not newer"
        );
        assert!(
            is_newer(None, Some(9), late, Some(5)),
            "no time: rank decides"
        );
        assert!(
            !is_newer(None, None, None, Some(1)),
            "an unknown status cannot be placed"
        );
    }

    fn biteship_state(status: &str, rank: u32) -> ResourceState {
        ResourceState {
            provider: Provider::Biteship,
            kind: "order".into(),
            id: "o1".into(),
            status: Some(status.into()),
            updated_at: None,
            rank: Some(rank),
            deleted: false,
            fields: Map::new(),
            field_times: Default::default(),
            last_event: "e0".into(),
            version: 3,
        }
    }

    #[test]
    fn a_late_waybill_fills_in_without_moving_the_status_back() {
        let current = biteship_state("delivered", 9);
        let update = Update::new("order", "o1", Some("allocated".into()), None)
            .field("courier_waybill_id", "WB1");
        let next = merge(Provider::Biteship, Some(&current), &update, "e1").expect("waybill added");
        assert_eq!(next.status.as_deref(), Some("delivered"));
        assert_eq!(next.fields["courier_waybill_id"], "WB1");
        assert_eq!(next.version, 4);
        assert_eq!(
            merge(Provider::Biteship, Some(&next), &update, "e1"),
            None,
            "a repeat changes nothing"
        );
    }

    #[test]
    fn deletion_sticks() {
        let mut current = biteship_state("picked", 5);
        current.deleted = true;
        let update = Update::new("order", "o1", Some("delivered".into()), None);
        let next = merge(Provider::Biteship, Some(&current), &update, "e2").expect("status moves");
        assert!(next.deleted);
    }
}
