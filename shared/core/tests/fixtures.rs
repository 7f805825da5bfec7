//! Every fixture under `tests/fixtures/<provider>/` read through
//! `terima_core::inspect`: the typed variant, the event type, the resource, the
//! status, the provider time and the keys.
//!
//! The expected values below were written from the fixture generator
//! (`tests/fixtures/generate.py`) and `shared/docs/providers.md`, not from the
//! code under test. Times are milliseconds since the epoch, computed with
//! Python's `datetime`; the ISO text they come from is in the comment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use terima_core::providers::{Rupiah, bebaskirim, bitbybit, biteship, oms};
use terima_core::{Inspected, Provider, ReadError, Resource, Timestamp, TypedEvent, inspect};

/// A reading with its typed view, flat, as the tests compare it.
#[derive(Clone, Debug, PartialEq)]
struct Read {
    event_type: String,
    dedup_key: String,
    work_key: String,
    resource: Resource,
    occurred_at: Option<Timestamp>,
    status: Option<String>,
    digest: String,
    event: TypedEvent,
}

fn flat(inspected: Inspected) -> Read {
    let event = inspected.typed();
    let r = inspected.reading;
    Read {
        event_type: r.event_type,
        dedup_key: r.dedup_key,
        work_key: r.work_key,
        resource: r.resource,
        occurred_at: r.occurred_at,
        status: r.status,
        digest: inspected.digest,
        event,
    }
}

/// One fixture file and what reading it must give.
struct Expect {
    provider: Provider,
    /// The file name without `.json`.
    stem: &'static str,
    event_type: &'static str,
    /// The typed variant, by name (`Other` is the unknown-event fallback).
    variant: &'static str,
    kind: &'static str,
    id: &'static str,
    occurred_at_ms: Option<i64>,
    status: Option<&'static str>,
}

const BK: Provider = Provider::BebasKirim;
const BB: Provider = Provider::BitByBit;
const OMS: Provider = Provider::Oms;
const BS: Provider = Provider::Biteship;

#[rustfmt::skip]
const EXPECTED: &[Expect] = &[
    // Bebas Kirim: the id is read from `data.<kind>_id`; AWB events and the
    // partial cancellation concern their order. Time: `data.updated_at`.
    e(BK, "adjustment.approved", "adjustment.approved", "Adjustment", "adjustment", "ADJ-2024-001", Some(1_705_766_400_000), Some("approved")), // 2024-01-20T16:00:00Z
    e(BK, "adjustment.completed", "adjustment.completed", "Adjustment", "adjustment", "ADJ-2024-001", Some(1_705_770_000_000), Some("completed")), // 17:00Z
    e(BK, "adjustment.created", "adjustment.created", "Adjustment", "adjustment", "ADJ-2024-001", Some(1_705_764_600_000), Some("pending")), // 15:30Z
    e(BK, "adjustment.rejected", "adjustment.rejected", "Adjustment", "adjustment", "ADJ-2024-001", Some(1_705_768_200_000), Some("rejected")), // 16:30Z
    e(BK, "awb.changed", "awb.changed", "Awb", "order", "ORD-2024-001", Some(1_705_766_400_000), Some("changed")), // 16:00Z
    e(BK, "awb.generated", "awb.generated", "Awb", "order", "ORD-2024-001", Some(1_705_764_600_000), Some("generated")), // 15:30Z
    e(BK, "inbound.completed", "inbound.completed", "Inbound", "inbound", "INB-2024-001", Some(1_705_768_200_000), Some("completed")), // 16:30Z
    e(BK, "inbound.created", "inbound.created", "Inbound", "inbound", "INB-2024-001", Some(1_705_764_600_000), Some("pending")), // 15:30Z
    e(BK, "inbound.received", "inbound.received", "Inbound", "inbound", "INB-2024-001", Some(1_705_766_400_000), Some("received")), // 16:00Z
    e(BK, "item.archived", "item.archived", "Item", "item", "ITEM-2024-001", Some(1_705_768_200_000), Some("archived")), // 16:30Z
    e(BK, "item.created--nulls", "item.created", "Item", "item", "ITEM-2024-001", Some(1_705_764_600_000), Some("draft")), // 15:30Z
    e(BK, "item.created", "item.created", "Item", "item", "ITEM-2024-001", Some(1_705_764_600_000), Some("draft")), // 15:30Z
    e(BK, "item.published", "item.published", "Item", "item", "ITEM-2024-001", Some(1_705_766_400_000), Some("published")), // 16:00Z
    e(BK, "order.completed", "order.completed", "Order", "order", "ORD-2024-001", Some(1_705_779_000_000), Some("completed")), // 19:30Z
    e(BK, "order.draft", "order.draft", "Order", "order", "ORD-2024-001", Some(1_705_762_800_000), Some("draft")), // 15:00Z
    e(BK, "order.in_process", "order.in_process", "Order", "order", "ORD-2024-001", Some(1_705_766_400_000), Some("in_process")), // 16:00Z
    e(BK, "order.packed--extra-fields", "order.packed", "Order", "order", "ORD-2024-001", Some(1_705_768_200_000), Some("packed")), // 16:30Z
    e(BK, "order.packed", "order.packed", "Order", "order", "ORD-2024-001", Some(1_705_768_200_000), Some("packed")), // 16:30Z
    e(BK, "order.pending_waybill", "order.pending_waybill", "Order", "order", "ORD-2024-001", Some(1_705_771_800_000), Some("pending_waybill")), // 17:30Z
    e(BK, "order.ready_for_pickup", "order.ready_for_pickup", "Order", "order", "ORD-2024-001", Some(1_705_770_000_000), Some("ready_for_pickup")), // 17:00Z
    e(BK, "order.refunded", "order.refunded", "Order", "order", "ORD-2024-001", Some(1_705_775_400_000), Some("refunded")), // 18:30Z
    e(BK, "order.returned", "order.returned", "Order", "order", "ORD-2024-001", Some(1_705_777_200_000), Some("returned")), // 19:00Z
    e(BK, "order.shipped--fractional-offset-time", "order.shipped", "Order", "order", "ORD-2024-001", Some(1_705_773_600_123), Some("shipped")), // 2024-01-21T01:00:00.123+07:00
    e(BK, "order.shipped", "order.shipped", "Order", "order", "ORD-2024-001", Some(1_705_773_600_000), Some("shipped")), // 18:00Z
    e(BK, "order.to_process", "order.to_process", "Order", "order", "ORD-2024-001", Some(1_705_764_600_000), Some("to_process")), // 15:30Z
    e(BK, "order.unknown_future_event--unknown-event", "order.on_hold", "Other", "order", "ORD-2024-001", Some(1_705_767_300_000), Some("on_hold")), // 16:15Z
    e(BK, "order_cancel_partial", "order_cancel_partial", "OrderCancelPartial", "order", "ORD-2024-001", Some(1_705_764_600_000), Some("partial_cancelled")), // 15:30Z
    e(BK, "outbound.completed", "outbound.completed", "Outbound", "outbound", "OUT-2024-001", Some(1_705_766_400_000), Some("completed")), // 16:00Z
    e(BK, "outbound.created", "outbound.created", "Outbound", "outbound", "OUT-2024-001", Some(1_705_764_600_000), Some("shipped")), // 15:30Z
    e(BK, "purchase.approved", "purchase.approved", "Purchase", "purchase", "PUR-2024-001", Some(1_705_766_400_000), Some("approved")), // 16:00Z
    e(BK, "purchase.completed", "purchase.completed", "Purchase", "purchase", "PUR-2024-001", Some(1_705_770_000_000), Some("completed")), // 17:00Z
    e(BK, "purchase.created", "purchase.created", "Purchase", "purchase", "PUR-2024-001", Some(1_705_764_600_000), Some("pending")), // 15:30Z
    e(BK, "purchase.rejected", "purchase.rejected", "Purchase", "purchase", "PUR-2024-001", Some(1_705_768_200_000), Some("rejected")), // 16:30Z
    e(BK, "transfer.approved", "transfer.approved", "Transfer", "transfer", "TRF-2024-001", Some(1_705_766_400_000), Some("approved")), // 16:00Z
    e(BK, "transfer.completed", "transfer.completed", "Transfer", "transfer", "TRF-2024-001", Some(1_705_770_000_000), Some("completed")), // 17:00Z
    e(BK, "transfer.created", "transfer.created", "Transfer", "transfer", "TRF-2024-001", Some(1_705_764_600_000), Some("pending")), // 15:30Z
    e(BK, "transfer.rejected", "transfer.rejected", "Transfer", "transfer", "TRF-2024-001", Some(1_705_768_200_000), Some("rejected")), // 16:30Z

    // BitByBit: the event type comes from the header; messages are keyed on
    // `messageId`. Time: `updatedAt`, else `receivedAt`, else `createdAt`.
    e(BB, "customer.created", "customer.created", "Customer", "customer", "cust_abc123", Some(1_705_314_600_000), None), // 2024-01-15T10:30:00.000Z
    e(BB, "customer.deleted", "customer.deleted", "Deleted", "customer", "cust_abc123", None, None),
    e(BB, "customer.updated", "customer.updated", "Customer", "customer", "cust_abc123", Some(1_705_392_000_000), None), // 2024-01-16T08:00:00.000Z
    e(BB, "message.received", "message.received", "MessageReceived", "message", "msg_jkl012", Some(1_705_314_600_000), None), // 2024-01-15T10:30:00.000Z
    e(BB, "message.status.updated--read", "message.status.updated", "MessageStatus", "message", "msg_mno345", None, Some("read")),
    e(BB, "message.status.updated", "message.status.updated", "MessageStatus", "message", "msg_mno345", None, Some("sent")),
    e(BB, "order.created", "order.created", "Order", "order", "order_def456", Some(1_705_314_600_000), Some("active")), // 2024-01-15T10:30:00.000Z
    e(BB, "order.updated--unknown-field", "order.updated", "Order", "order", "order_def456", Some(1_705_413_600_000), Some("active")), // 2024-01-16T14:00:00.000Z
    e(BB, "order.updated", "order.updated", "Order", "order", "order_def456", Some(1_705_413_600_000), Some("active")), // 2024-01-16T14:00:00.000Z
    e(BB, "product.created", "product.created", "Product", "product", "prod_ghi789", Some(1_705_314_600_000), None), // 2024-01-15T10:30:00.000Z
    e(BB, "product.deleted", "product.deleted", "Deleted", "product", "prod_ghi789", None, None),
    e(BB, "product.updated", "product.updated", "Product", "product", "prod_ghi789", Some(1_705_482_000_000), None), // 2024-01-17T09:00:00.000Z
    e(BB, "subscription.created--unknown-event", "subscription.created", "Other", "subscription", "sub_001", Some(1_705_572_000_000), Some("active")), // 2024-01-18T10:00:00.000Z

    // Akinon OMS: the id is `payload.id`, the status `payload.state.enum_value`,
    // the time `payload.modified_date` (microseconds, truncated to ms).
    e(OMS, "package.created--compact-json", "package.created", "Package", "package", "1001", Some(1_709_283_900_123), Some("waiting")), // 2024-03-01T09:05:00.123456Z
    e(OMS, "package.created--hyphenated-uuid", "package.created", "Package", "package", "1001", Some(1_709_283_900_123), Some("waiting")), // 09:05:00.123456Z
    e(OMS, "package.created", "package.created", "Package", "package", "1001", Some(1_709_283_900_123), Some("waiting")), // 09:05:00.123456Z
    e(OMS, "package.shipment.awb_number", "package.shipment.awb_number", "Package", "package", "1001", Some(1_709_285_100_567), Some("600")), // 09:25:00.567890Z
    e(OMS, "package.status.cancelled", "package.status.cancelled", "Package", "package", "1001", Some(1_709_284_500_345), Some("900")), // 09:15:00.345678Z
    e(OMS, "package.status.packed--later-state", "package.status.packed", "Package", "package", "1001", Some(1_709_286_000_678), Some("800")), // 09:40:00.678901Z
    e(OMS, "package.status.packed", "package.status.packed", "Package", "package", "1001", Some(1_709_284_800_456), Some("600")), // 09:20:00.456789Z
    e(OMS, "package.status.packed_for_refund", "package.status.packed_for_refund", "Package", "package", "1001", Some(1_709_289_000_789), Some("920")), // 10:30:00.789012Z
    e(OMS, "package.status.shipped--new-uuid-retrigger", "package.status.shipped", "Package", "package", "1001", Some(1_709_286_000_678), Some("800")), // 09:40:00.678901Z
    e(OMS, "package.status.shipped", "package.status.shipped", "Package", "package", "1001", Some(1_709_286_000_678), Some("800")), // 09:40:00.678901Z
    e(OMS, "package.status.transitioned", "package.status.transitioned", "Package", "package", "1001", Some(1_709_284_200_234), Some("400")), // 09:10:00.234567Z
    e(OMS, "shipment.cancelled", "shipment.cancelled", "Shipment", "shipment", "3001", Some(1_709_287_200_333), Some("cancelled")), // 10:00:00.333333Z
    e(OMS, "shipment.created", "shipment.created", "Shipment", "shipment", "3001", Some(1_709_285_400_111), Some("created")), // 09:30:00.111111Z
    e(OMS, "shipment.status.updated", "shipment.status.updated", "Shipment", "shipment", "3001", Some(1_709_286_300_222), Some("in_transit")), // 09:45:00.222222Z
    e(OMS, "stock_location.created", "stock_location.created", "StockLocation", "stock_location", "7", Some(1_709_280_000_000), None), // 08:00:00.000000Z
    e(OMS, "stock_location.updated--unicode", "stock_location.updated", "StockLocation", "stock_location", "7", Some(1_709_282_700_987), None), // 08:45:00.987654Z
    e(OMS, "stock_location.updated", "stock_location.updated", "StockLocation", "stock_location", "7", Some(1_709_281_800_654), None), // 08:30:00.654321Z
    e(OMS, "transfer.status.cancelled", "transfer.status.cancelled", "Transfer", "transfer", "5001", Some(1_709_291_700_000), Some("cancelled")), // 11:15:00.000003Z
    e(OMS, "transfer.status.created", "transfer.status.created", "Transfer", "transfer", "5001", Some(1_709_290_800_000), Some("waiting")), // 11:00:00.000001Z
    e(OMS, "transfer.status.in_transit", "transfer.status.in_transit", "Transfer", "transfer", "5001", Some(1_709_292_600_000), Some("in_transit")), // 11:30:00.000005Z
    e(OMS, "transfer.status.ready_to_shipment", "transfer.status.ready_to_shipment", "Transfer", "transfer", "5001", Some(1_709_292_000_000), Some("ready_to_shipment")), // 11:20:00.000004Z
    e(OMS, "transfer.status.transferred", "transfer.status.transferred", "Transfer", "transfer", "5001", Some(1_709_294_400_000), Some("transferred")), // 12:00:00.000006Z
    e(OMS, "transfer.status.transitioned", "transfer.status.transitioned", "Transfer", "transfer", "5001", Some(1_709_291_400_000), Some("transitioned")), // 11:10:00.000002Z
    e(OMS, "warehouse.updated--unknown-event", "warehouse.updated", "Other", "warehouse", "9", Some(1_709_298_000_000), None), // 13:00:00.000000Z

    // Biteship: always about the order `order_id`; time only when the
    // undocumented `updated_at` is there; statuses normalised to snake_case.
    e(BS, "order.price", "order.price", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", None, Some("picked")),
    e(BS, "order.status--camelcase-status", "order.status", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", None, Some("picking_up")),
    e(BS, "order.status--delivered", "order.status", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", Some(1_706_882_710_456), Some("delivered")), // 2024-02-02T14:05:10.456Z
    e(BS, "order.status--missing-fields", "order.status", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", None, Some("confirmed")),
    e(BS, "order.status--unknown-status", "order.status", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", None, Some("lost_in_space")),
    e(BS, "order.status--updated-at", "order.status", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", Some(1_706_782_530_123), Some("picking_up")), // 2024-02-01T10:15:30.123Z
    e(BS, "order.status", "order.status", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", None, Some("picking_up")),
    e(BS, "order.waybill_id", "order.waybill_id", "Event", "order", "65bb1f2e9a4c3d0012e4f5a6", None, Some("allocated")),
];

/// The one fixture that is not an event: Biteship's installation probe.
const BITESHIP_PROBE: &str = "probe--empty";

#[allow(clippy::too_many_arguments)]
const fn e(
    provider: Provider,
    stem: &'static str,
    event_type: &'static str,
    variant: &'static str,
    kind: &'static str,
    id: &'static str,
    occurred_at_ms: Option<i64>,
    status: Option<&'static str>,
) -> Expect {
    Expect {
        provider,
        stem,
        event_type,
        variant,
        kind,
        id,
        occurred_at_ms,
        status,
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn fixture_dir(provider: Provider) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider.name())
}

/// The stems (file names without `.json`) of one provider's fixtures, sorted.
fn stems(provider: Provider) -> Vec<String> {
    let dir = fixture_dir(provider);
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .expect("fixture names are UTF-8")
                .to_owned()
        })
        .collect();
    stems.sort();
    stems
}

fn read(provider: Provider, stem: &str) -> Vec<u8> {
    let path = fixture_dir(provider).join(format!("{stem}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The event type a fixture's name stands for: the part before `--`.
fn event_type_of(stem: &str) -> &str {
    stem.split_once("--").map_or(stem, |(event, _)| event)
}

fn is_canonical(stem: &str) -> bool {
    !stem.contains("--")
}

/// The headers a provider sends beside the body that `inspect` reads. Only
/// BitByBit puts anything there: its event type and its delivery id.
fn headers_for(provider: Provider, stem: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if provider == Provider::BitByBit {
        headers.insert(
            HeaderName::from_static(bitbybit::EVENT_HEADER),
            HeaderValue::from_str(event_type_of(stem)).expect("event type is a header value"),
        );
        headers.insert(
            HeaderName::from_static(bitbybit::ID_HEADER),
            HeaderValue::from_str(&bitbybit_id(stem)).expect("id is a header value"),
        );
    }
    headers
}

/// A distinct BitByBit delivery id per fixture.
fn bitbybit_id(stem: &str) -> String {
    format!("whd_{}", stem.replace(['.', '-'], "_"))
}

fn inspect_fixture(provider: Provider, stem: &str) -> Read {
    let body = read(provider, stem);
    inspect(provider, &headers_for(provider, stem), &body)
        .map(flat)
        .unwrap_or_else(|e| panic!("{provider}/{stem}: {e}"))
}

fn inspect_json(
    provider: Provider,
    headers: &HeaderMap,
    body: &serde_json::Value,
) -> Result<Read, ReadError> {
    let bytes = serde_json::to_vec(body).expect("a Value serialises");
    inspect(provider, headers, &bytes).map(flat)
}

fn fixture_json(provider: Provider, stem: &str) -> serde_json::Value {
    serde_json::from_slice(&read(provider, stem)).expect("fixtures are JSON")
}

/// The name of the typed variant, to compare with the table.
fn variant_name(event: &TypedEvent) -> &'static str {
    match event {
        TypedEvent::BebasKirim(event) => match &event.data {
            bebaskirim::Data::Item(_) => "Item",
            bebaskirim::Data::Purchase(_) => "Purchase",
            bebaskirim::Data::Inbound(_) => "Inbound",
            bebaskirim::Data::Transfer(_) => "Transfer",
            bebaskirim::Data::Adjustment(_) => "Adjustment",
            bebaskirim::Data::Outbound(_) => "Outbound",
            bebaskirim::Data::Order(_) => "Order",
            bebaskirim::Data::OrderCancelPartial(_) => "OrderCancelPartial",
            bebaskirim::Data::Awb(_) => "Awb",
            bebaskirim::Data::Other(_) => "Other",
        },
        TypedEvent::BitByBit(event) => match event {
            bitbybit::Event::Customer(_) => "Customer",
            bitbybit::Event::Deleted { .. } => "Deleted",
            bitbybit::Event::Order(_) => "Order",
            bitbybit::Event::Product(_) => "Product",
            bitbybit::Event::MessageReceived(_) => "MessageReceived",
            bitbybit::Event::MessageStatus(_) => "MessageStatus",
            bitbybit::Event::Other(_) => "Other",
        },
        TypedEvent::Oms(event) => match &event.payload {
            oms::Payload::Package(_) => "Package",
            oms::Payload::Shipment(_) => "Shipment",
            oms::Payload::Transfer(_) => "Transfer",
            oms::Payload::StockLocation(_) => "StockLocation",
            oms::Payload::Other(_) => "Other",
        },
        // A Biteship body that did not fit the model is kept in `unreadable`.
        TypedEvent::Biteship(event) if event.unreadable.is_some() => "Other",
        TypedEvent::Biteship(_) => "Event",
    }
}

fn provider_of(event: &TypedEvent) -> Provider {
    match event {
        TypedEvent::BebasKirim(_) => Provider::BebasKirim,
        TypedEvent::BitByBit(_) => Provider::BitByBit,
        TypedEvent::Oms(_) => Provider::Oms,
        TypedEvent::Biteship(_) => Provider::Biteship,
    }
}

fn event_types(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::BebasKirim => &bebaskirim::EVENT_TYPES,
        Provider::BitByBit => &bitbybit::EVENT_TYPES,
        Provider::Oms => &oms::EVENT_TYPES,
        Provider::Biteship => &biteship::EVENT_TYPES,
    }
}

// ---------------------------------------------------------------------------
// Every file
// ---------------------------------------------------------------------------

/// The table and the folders list the same files: a new fixture cannot go
/// untested, and a listed one cannot silently disappear.
#[test]
fn the_table_covers_every_fixture_file() {
    for provider in Provider::ALL {
        let on_disk: BTreeSet<String> = stems(provider)
            .into_iter()
            .filter(|s| !(provider == Provider::Biteship && s == BITESHIP_PROBE))
            .collect();
        let listed: BTreeSet<String> = EXPECTED
            .iter()
            .filter(|x| x.provider == provider)
            .map(|x| x.stem.to_owned())
            .collect();
        assert_eq!(on_disk, listed, "{provider}: fixtures on disk vs the table");
    }
}

#[test]
fn every_fixture_reads_as_its_typed_event() {
    let mut checked = 0;
    for x in EXPECTED {
        let what = format!("{}/{}", x.provider, x.stem);
        let got = inspect_fixture(x.provider, x.stem);
        assert_eq!(got.event_type, x.event_type, "{what}: event type");
        assert_eq!(
            provider_of(&got.event),
            x.provider,
            "{what}: provider of the typed event"
        );
        assert_eq!(variant_name(&got.event), x.variant, "{what}: typed variant");
        assert_eq!(got.resource.kind, x.kind, "{what}: resource kind");
        assert_eq!(got.resource.id, x.id, "{what}: resource id");
        assert_eq!(
            got.occurred_at.map(|t| t.unix_millis()),
            x.occurred_at_ms,
            "{what}: occurred_at"
        );
        assert_eq!(got.status.as_deref(), x.status, "{what}: status");
        assert!(!got.dedup_key.is_empty(), "{what}: empty dedup key");
        assert!(!got.work_key.is_empty(), "{what}: empty work key");
        // Keys must fit a DynamoDB partition key (derived keys are capped).
        assert!(got.dedup_key.len() <= 256, "{what}: dedup key too long");

        // A documented event type never falls back to raw JSON; an unknown
        // one always does, and keeps the payload.
        let known = event_types(x.provider).contains(&x.event_type);
        assert_eq!(known, x.variant != "Other", "{what}: known type vs variant");
        if x.stem.ends_with("--unknown-event") {
            assert!(
                !known,
                "{what}: an unknown-event fixture uses a documented type"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, EXPECTED.len());
}

/// The canonical file of every documented event type exists, and there are no
/// other canonical files.
#[test]
fn canonical_fixtures_match_the_event_type_lists() {
    let counts = [
        (Provider::BebasKirim, 33),
        (Provider::BitByBit, 10),
        (Provider::Oms, 18),
        (Provider::Biteship, 3),
    ];
    for (provider, count) in counts {
        let types = event_types(provider);
        assert_eq!(types.len(), count, "{provider}: EVENT_TYPES length");
        let canonical: BTreeSet<String> = stems(provider)
            .into_iter()
            .filter(|s| is_canonical(s))
            .collect();
        assert_eq!(
            canonical.len(),
            count,
            "{provider}: canonical fixture count"
        );
        for event_type in types {
            assert!(
                canonical.contains(*event_type),
                "{provider}: no canonical fixture for {event_type}"
            );
        }
        // Every variant is a variant of a documented or deliberately unknown type.
        for stem in stems(provider).iter().filter(|s| !is_canonical(s)) {
            let base = event_type_of(stem);
            assert!(
                types.contains(&base)
                    || stem.ends_with("--unknown-event")
                    || stem == BITESHIP_PROBE,
                "{provider}/{stem}: variant of an undocumented type"
            );
        }
    }
}

#[test]
fn keys_are_stable_for_the_same_bytes() {
    for x in EXPECTED {
        let body = read(x.provider, x.stem);
        let headers = headers_for(x.provider, x.stem);
        let first = inspect(x.provider, &headers, &body)
            .map(flat)
            .expect("first read");
        let copy = body.clone();
        let second = inspect(x.provider, &headers, &copy)
            .map(flat)
            .expect("second read");
        assert_eq!(first, second, "{}/{}: two reads differ", x.provider, x.stem);
    }
}

/// Two different events never share a dedup key: within each provider the
/// canonical fixtures (every event type, with several events of each group)
/// all have distinct keys.
#[test]
fn different_events_have_different_dedup_keys() {
    for provider in Provider::ALL {
        let mut seen: HashMap<String, String> = HashMap::new();
        for stem in stems(provider).into_iter().filter(|s| is_canonical(s)) {
            let key = inspect_fixture(provider, &stem).dedup_key;
            if let Some(other) = seen.insert(key.clone(), stem.clone()) {
                panic!("{provider}: {stem} and {other} share the dedup key {key}");
            }
        }
    }
    // Two states of one Bebas Kirim order, one group of events.
    let packed = inspect_fixture(Provider::BebasKirim, "order.packed");
    let shipped = inspect_fixture(Provider::BebasKirim, "order.shipped");
    assert_eq!(packed.resource, shipped.resource);
    assert_ne!(packed.dedup_key, shipped.dedup_key);
    // The same event type and entity at another time is another event.
    let draft = inspect_fixture(Provider::BebasKirim, "item.created");
    let published = inspect_fixture(Provider::BebasKirim, "item.published");
    assert_ne!(draft.dedup_key, published.dedup_key);
}

// ---------------------------------------------------------------------------
// Bebas Kirim
// ---------------------------------------------------------------------------

#[test]
fn bebaskirim_partial_cancellation_has_both_item_lists_in_rupiah() {
    let got = inspect_fixture(Provider::BebasKirim, "order_cancel_partial");
    let TypedEvent::BebasKirim(event) = got.event else {
        panic!("not a Bebas Kirim event");
    };
    assert_eq!(event.event, bebaskirim::ORDER_CANCEL_PARTIAL);
    assert_eq!(event.tenant_id.as_deref(), Some("TEN-2024-001"));
    let bebaskirim::Data::OrderCancelPartial(cancel) = event.data else {
        panic!("not a partial cancellation: {:?}", event.data);
    };
    assert_eq!(cancel.order_id.0, "ORD-2024-001");
    assert_eq!(cancel.order_number.as_deref(), Some("BBS-2024-0001"));
    assert_eq!(cancel.status.as_deref(), Some("partial_cancelled"));
    let lines = |items: &[bebaskirim::OrderLine]| -> Vec<(String, i64, Rupiah)> {
        items
            .iter()
            .map(|l| {
                (
                    l.sku.clone().expect("sku"),
                    l.quantity.expect("quantity"),
                    l.price.expect("price"),
                )
            })
            .collect()
    };
    assert_eq!(
        lines(&cancel.cancelled_items),
        vec![("ABC-001".to_owned(), 1, Rupiah(50_000))]
    );
    assert_eq!(
        lines(&cancel.remaining_items),
        vec![("ABC-002".to_owned(), 2, Rupiah(75_000))]
    );
    assert_eq!(
        cancel.cancelled_items[0].product_name.as_deref(),
        Some("Product A")
    );
    assert_eq!(
        cancel.remaining_items[0].product_name.as_deref(),
        Some("Product B")
    );
}

#[test]
fn bebaskirim_fractional_offset_time_parses_to_the_same_instant_plus_123_ms() {
    let canonical = inspect_fixture(Provider::BebasKirim, "order.shipped");
    let shifted = inspect_fixture(
        Provider::BebasKirim,
        "order.shipped--fractional-offset-time",
    );
    let canonical_ms = canonical.occurred_at.expect("canonical time").unix_millis();
    let shifted_ms = shifted.occurred_at.expect("offset time").unix_millis();
    assert_eq!(shifted_ms - canonical_ms, 123);
    let TypedEvent::BebasKirim(event) = shifted.event else {
        panic!("not a Bebas Kirim event");
    };
    // The envelope `timestamp` carries the same offset text.
    assert_eq!(
        event.timestamp.map(|t| t.unix_millis()),
        Some(1_705_773_600_123)
    );
    let bebaskirim::Data::Order(order) = event.data else {
        panic!("not an order");
    };
    assert_eq!(
        order.updated_at.map(|t| t.unix_millis()),
        Some(1_705_773_600_123)
    );
    // Another instant, so another change.
    assert_ne!(canonical.dedup_key, shifted.dedup_key);
}

#[test]
fn bebaskirim_extra_and_null_fields_change_neither_the_type_nor_the_key() {
    let packed = inspect_fixture(Provider::BebasKirim, "order.packed");
    let extra = inspect_fixture(Provider::BebasKirim, "order.packed--extra-fields");
    assert_eq!(packed.dedup_key, extra.dedup_key);
    assert_eq!(packed.work_key, extra.work_key);

    let item = inspect_fixture(Provider::BebasKirim, "item.created");
    let nulls = inspect_fixture(Provider::BebasKirim, "item.created--nulls");
    assert_eq!(item.dedup_key, nulls.dedup_key);
    let TypedEvent::BebasKirim(bebaskirim::Event {
        data: bebaskirim::Data::Item(nulls),
        ..
    }) = nulls.event
    else {
        panic!("not an item");
    };
    assert_eq!(nulls.description, None);
    assert_eq!(nulls.dimensions, None);
    assert_eq!(nulls.featured_image_url, None);
    assert_eq!(nulls.base_price, Some(Rupiah(10_000)));
    assert_eq!(nulls.publish_price, Some(Rupiah(20_000)));
}

#[test]
fn bebaskirim_unknown_event_keeps_the_raw_data() {
    let got = inspect_fixture(
        Provider::BebasKirim,
        "order.unknown_future_event--unknown-event",
    );
    let TypedEvent::BebasKirim(bebaskirim::Event {
        data: bebaskirim::Data::Other(raw),
        ..
    }) = got.event
    else {
        panic!("an unknown event was typed");
    };
    assert_eq!(raw["order_id"], "ORD-2024-001");
    assert_eq!(raw["status"], "on_hold");
}

#[test]
fn bebaskirim_awb_change_carries_the_new_number() {
    let generated = inspect_fixture(Provider::BebasKirim, "awb.generated");
    let changed = inspect_fixture(Provider::BebasKirim, "awb.changed");
    let awb = |i: Read| match i.event {
        TypedEvent::BebasKirim(bebaskirim::Event {
            data: bebaskirim::Data::Awb(awb),
            ..
        }) => awb.awb_number,
        other => panic!("not an AWB event: {other:?}"),
    };
    assert_eq!(awb(generated), Some("AWB-2024-001".to_owned()));
    assert_eq!(awb(changed), Some("AWB-2024-002".to_owned()));
}

// ---------------------------------------------------------------------------
// BitByBit
// ---------------------------------------------------------------------------

/// The delivery id header is the dedup key (a retry is a duplicate); the
/// work key comes from the signed body, since the header is not signed.
#[test]
fn bitbybit_dedup_key_is_the_delivery_id_header() {
    for x in EXPECTED.iter().filter(|x| x.provider == Provider::BitByBit) {
        let got = inspect_fixture(x.provider, x.stem);
        assert_eq!(got.dedup_key, bitbybit_id(x.stem), "{}", x.stem);
        assert!(
            got.work_key
                .starts_with(&format!("{}|{}|", got.resource.kind, got.resource.id)),
            "{}: {}",
            x.stem,
            got.work_key
        );
    }
    // The same body under another delivery id is another delivery, and the
    // same work.
    let body = read(Provider::BitByBit, "order.updated");
    let mut headers = headers_for(Provider::BitByBit, "order.updated");
    let first = inspect(Provider::BitByBit, &headers, &body)
        .map(flat)
        .expect("first");
    headers.insert(
        HeaderName::from_static(bitbybit::ID_HEADER),
        HeaderValue::from_static("whd_other"),
    );
    let second = inspect(Provider::BitByBit, &headers, &body)
        .map(flat)
        .expect("second");
    assert_ne!(first.dedup_key, second.dedup_key);
    assert_eq!(second.dedup_key, "whd_other");
    assert_eq!(first.work_key, second.work_key);
}

#[test]
fn bitbybit_typed_payloads_carry_their_fields() {
    let order = inspect_fixture(Provider::BitByBit, "order.created");
    let TypedEvent::BitByBit(bitbybit::Event::Order(order)) = order.event else {
        panic!("not an order");
    };
    assert_eq!(order.total, Some(Rupiah(150_000)));
    assert_eq!(order.line_items.len(), 1);
    assert_eq!(order.line_items[0].price, Some(Rupiah(75_000)));
    assert_eq!(order.currency, None);

    let deleted = inspect_fixture(Provider::BitByBit, "product.deleted");
    assert_eq!(
        deleted.event,
        TypedEvent::BitByBit(bitbybit::Event::Deleted {
            kind: "product".to_owned(),
            id: "prod_ghi789".to_owned(),
        })
    );

    let unknown = inspect_fixture(Provider::BitByBit, "subscription.created--unknown-event");
    let TypedEvent::BitByBit(bitbybit::Event::Other(raw)) = unknown.event else {
        panic!("an unknown event was typed");
    };
    assert_eq!(raw["id"], "sub_001");
}

// ---------------------------------------------------------------------------
// Akinon OMS
// ---------------------------------------------------------------------------

/// The uuid a body carries, normalised as providers.md says: 8-4-4-4-12 and
/// plain 32 hex digits are one event.
fn oms_uuid(stem: &str) -> String {
    let body = fixture_json(Provider::Oms, stem);
    let uuid = body["event"]["uuid"].as_str().expect("uuid is text");
    uuid.replace('-', "").to_ascii_lowercase()
}

#[test]
fn oms_dedup_key_is_the_event_uuid() {
    for x in EXPECTED.iter().filter(|x| x.provider == Provider::Oms) {
        let got = inspect_fixture(x.provider, x.stem);
        let uuid = oms_uuid(x.stem);
        assert_eq!(uuid.len(), 32, "{}", x.stem);
        assert_eq!(got.dedup_key, uuid, "{}", x.stem);
    }
}

#[test]
fn oms_hyphenated_uuid_and_compact_json_are_the_same_event() {
    let canonical = inspect_fixture(Provider::Oms, "package.created");
    for variant in [
        "package.created--hyphenated-uuid",
        "package.created--compact-json",
    ] {
        let got = inspect_fixture(Provider::Oms, variant);
        assert_eq!(got.dedup_key, canonical.dedup_key, "{variant}");
        assert_eq!(got.work_key, canonical.work_key, "{variant}");
        assert_eq!(got.resource, canonical.resource, "{variant}");
    }
    let raw = fixture_json(Provider::Oms, "package.created--hyphenated-uuid");
    assert!(
        raw["event"]["uuid"]
            .as_str()
            .is_some_and(|u| u.contains('-')),
        "the variant's uuid is not hyphenated"
    );
}

#[test]
fn oms_retrigger_under_a_new_uuid_is_the_same_work() {
    let shipped = inspect_fixture(Provider::Oms, "package.status.shipped");
    let retrigger = inspect_fixture(Provider::Oms, "package.status.shipped--new-uuid-retrigger");
    assert_ne!(
        retrigger.dedup_key, shipped.dedup_key,
        "a new uuid is a new delivery"
    );
    assert_eq!(
        retrigger.work_key, shipped.work_key,
        "but the same state change"
    );
    assert_ne!(shipped.work_key, shipped.dedup_key);
}

#[test]
fn oms_later_state_is_read_from_the_payload() {
    let later = inspect_fixture(Provider::Oms, "package.status.packed--later-state");
    assert_eq!(later.event_type, "package.status.packed");
    assert_eq!(later.status.as_deref(), Some("800"));
    let TypedEvent::Oms(oms::Event {
        payload: oms::Payload::Package(package),
        ..
    }) = later.event
    else {
        panic!("not a package");
    };
    let state = package.state.expect("state");
    assert_eq!(state.enum_value.map(|v| v.0).as_deref(), Some("800"));
    assert_eq!(state.label.as_deref(), Some("Shipped"));
    assert_eq!(package.awb_number.as_deref(), Some("AWB123"));
    let packed = inspect_fixture(Provider::Oms, "package.status.packed");
    assert_eq!(packed.status.as_deref(), Some("600"));
    // Another delivery and another state than the packed event it is named after.
    assert_ne!(packed.dedup_key, later.dedup_key);
    assert_ne!(packed.work_key, later.work_key);
}

#[test]
fn oms_unicode_escapes_decode() {
    let got = inspect_fixture(Provider::Oms, "stock_location.updated--unicode");
    let TypedEvent::Oms(oms::Event {
        payload: oms::Payload::StockLocation(location),
        uuid,
        ..
    }) = got.event
    else {
        panic!("not a stock location");
    };
    assert_eq!(uuid, got.dedup_key);
    assert_eq!(
        location.name.as_deref(),
        Some("İstanbul Kadıköy Şube – Çağlar Gümüş Depo 📦")
    );
    assert_eq!(location.is_active, Some(true));
    assert_eq!(location.code.as_deref(), Some("IST-01"));
}

#[test]
fn oms_unknown_event_keeps_the_raw_payload() {
    let got = inspect_fixture(Provider::Oms, "warehouse.updated--unknown-event");
    let TypedEvent::Oms(oms::Event {
        payload: oms::Payload::Other(raw),
        ..
    }) = got.event
    else {
        panic!("an unknown event was typed");
    };
    assert_eq!(raw["name"], "Ankara Ana Depo");
}

// ---------------------------------------------------------------------------
// Biteship
// ---------------------------------------------------------------------------

fn biteship_event(stem: &str) -> biteship::Event {
    match inspect_fixture(Provider::Biteship, stem).event {
        TypedEvent::Biteship(event) => event,
        other => panic!("not a Biteship event: {other:?}"),
    }
}

#[test]
fn biteship_camel_case_status_normalises_to_snake_case() {
    let camel = biteship_event("order.status--camelcase-status");
    assert_eq!(camel.status, Some(biteship::Status::PickingUp));
    assert_eq!(
        camel.status.as_ref().map(biteship::Status::as_str),
        Some("picking_up")
    );
    // One status, two spellings: the same state change.
    let snake = inspect_fixture(Provider::Biteship, "order.status");
    let camel = inspect_fixture(Provider::Biteship, "order.status--camelcase-status");
    assert_eq!(camel.status.as_deref(), Some("picking_up"));
    assert_eq!(camel.dedup_key, snake.dedup_key);
}

#[test]
fn biteship_unknown_status_is_kept_as_sent() {
    let event = biteship_event("order.status--unknown-status");
    assert_eq!(
        event.status,
        Some(biteship::Status::Other("lost_in_space".to_owned()))
    );
    assert_eq!(event.unreadable, None);
}

#[test]
fn biteship_fields_are_read() {
    let price = biteship_event("order.price");
    assert_eq!(price.price, Some(Rupiah(18_000)));
    assert_eq!(price.shipment_fee, Some(Rupiah(17_000)));
    assert_eq!(price.cash_on_delivery_fee, Some(Rupiah(0)));
    assert_eq!(price.proof_of_delivery_fee, Some(Rupiah(1_000)));

    let missing = biteship_event("order.status--missing-fields");
    assert_eq!(missing.courier_driver_name, None);
    assert_eq!(missing.courier_driver_plate_number, None);
    assert_eq!(missing.status, Some(biteship::Status::Confirmed));

    let waybill = biteship_event("order.waybill_id");
    assert_eq!(
        waybill.courier_waybill_id.as_deref(),
        Some("JNE0012345678901")
    );
}

#[test]
fn biteship_updated_at_makes_another_key() {
    let plain = inspect_fixture(Provider::Biteship, "order.status");
    let timed = inspect_fixture(Provider::Biteship, "order.status--updated-at");
    let delivered = inspect_fixture(Provider::Biteship, "order.status--delivered");
    assert_ne!(plain.dedup_key, timed.dedup_key);
    assert_ne!(timed.dedup_key, delivered.dedup_key);
}

#[test]
fn biteship_probe_is_recognised_and_is_not_an_event() {
    let body = read(Provider::Biteship, BITESHIP_PROBE);
    assert_eq!(body, b"{}");
    assert!(biteship::is_installation_probe(&body));
    assert_eq!(
        inspect(Provider::Biteship, &HeaderMap::new(), &body).map(flat),
        missing("$.event", Provider::Biteship)
    );
    // No real event is mistaken for the probe.
    for x in EXPECTED.iter().filter(|x| x.provider == Provider::Biteship) {
        assert!(
            !biteship::is_installation_probe(&read(x.provider, x.stem)),
            "{}",
            x.stem
        );
    }
}

// ---------------------------------------------------------------------------
// Refusals: the precise error for each missing piece
// ---------------------------------------------------------------------------

fn without(mut body: serde_json::Value, path: &[&str]) -> serde_json::Value {
    let (last, parents) = path.split_last().expect("a path");
    let mut node = &mut body;
    for key in parents {
        node = node.get_mut(*key).unwrap_or_else(|| panic!("no {key}"));
    }
    node.as_object_mut()
        .expect("an object")
        .remove(*last)
        .unwrap_or_else(|| panic!("no {last}"));
    body
}

/// The refusal a body missing a routing fact gets: its JSON path, named.
fn missing(path: &str, provider: Provider) -> Result<Read, ReadError> {
    Err(ReadError::Missing {
        path: path.to_owned(),
        provider: provider.name(),
    })
}

#[test]
fn bebaskirim_missing_fields_are_named() {
    let no = HeaderMap::new();
    let body = fixture_json(Provider::BebasKirim, "order.packed");
    let cases: [(&[&str], &str); 3] = [
        (&["event"], "$.event"),
        (&["data"], "$.data"),
        (&["data", "order_id"], "$.data.order_id"),
    ];
    for (path, what) in cases {
        assert_eq!(
            inspect_json(Provider::BebasKirim, &no, &without(body.clone(), path)),
            missing(what, Provider::BebasKirim),
            "without {path:?}"
        );
    }
    // An entity id is required of every documented kind, from its own field.
    let item = fixture_json(Provider::BebasKirim, "item.created");
    assert_eq!(
        inspect_json(
            Provider::BebasKirim,
            &no,
            &without(item, &["data", "item_id"])
        ),
        missing("$.data.item_id", Provider::BebasKirim)
    );
}

#[test]
fn oms_missing_fields_are_named() {
    let no = HeaderMap::new();
    let body = fixture_json(Provider::Oms, "package.created");
    let cases: [(&[&str], &str); 5] = [
        (&["event"], "$.event.type"),
        (&["event", "type"], "$.event.type"),
        (&["event", "uuid"], "$.event.uuid"),
        (&["payload"], "$.payload"),
        (&["payload", "id"], "$.payload.id"),
    ];
    for (path, what) in cases {
        assert_eq!(
            inspect_json(Provider::Oms, &no, &without(body.clone(), path)),
            missing(what, Provider::Oms),
            "without {path:?}"
        );
    }
}

#[test]
fn biteship_missing_fields_are_named() {
    let no = HeaderMap::new();
    let body = fixture_json(Provider::Biteship, "order.status");
    for (field, what) in [("order_id", "$.order_id"), ("event", "$.event")] {
        assert_eq!(
            inspect_json(Provider::Biteship, &no, &without(body.clone(), &[field])),
            missing(what, Provider::Biteship),
            "without {field}"
        );
    }
    assert_eq!(
        inspect(Provider::Biteship, &no, b"[1, 2]").map(flat),
        Err(ReadError::NotAnObject("an array"))
    );
}

#[test]
fn bitbybit_missing_headers_and_fields_are_named() {
    let stem = "order.created";
    let body = read(Provider::BitByBit, stem);
    for (removed, name) in [
        (bitbybit::ID_HEADER, bitbybit::ID_HEADER),
        (bitbybit::EVENT_HEADER, bitbybit::EVENT_HEADER),
    ] {
        let mut headers = headers_for(Provider::BitByBit, stem);
        headers.remove(removed);
        assert_eq!(
            inspect(Provider::BitByBit, &headers, &body).map(flat),
            Err(ReadError::MissingHeader(name)),
            "without {removed}"
        );
    }
    // A blank id is no id.
    let mut headers = headers_for(Provider::BitByBit, stem);
    headers.insert(
        HeaderName::from_static(bitbybit::ID_HEADER),
        HeaderValue::from_static("   "),
    );
    assert_eq!(
        inspect(Provider::BitByBit, &headers, &body).map(flat),
        Err(ReadError::MissingHeader(bitbybit::ID_HEADER))
    );
    // A documented event whose body has no id at all.
    let headers = headers_for(Provider::BitByBit, stem);
    let no_id = without(fixture_json(Provider::BitByBit, stem), &["id"]);
    assert_eq!(
        inspect_json(Provider::BitByBit, &headers, &no_id),
        missing("$.id", Provider::BitByBit)
    );
}

#[test]
fn a_body_that_is_not_json_is_refused_as_such() {
    let bodies: [&[u8]; 5] = [
        b"",
        b"not json at all",
        b"{\"event\": \"order.packed\", ",
        b"\xff\xfe{}",
        b"<xml/>",
    ];
    for provider in Provider::ALL {
        let headers = headers_for(provider, "order.created");
        for body in bodies {
            let got = inspect(provider, &headers, body).map(flat);
            let expected = if std::str::from_utf8(body).is_ok() {
                "not_json"
            } else {
                "not_utf8"
            };
            assert!(
                got.as_ref().is_err_and(|e| e.reason() == expected),
                "{provider}: {:?} gave {got:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

/// A small summary, useful when a fixture changes: which provider has how many
/// files of which variant.
#[test]
fn variant_counts_per_provider() {
    let mut counts: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for x in EXPECTED {
        *counts
            .entry((x.provider.name().to_owned(), x.variant))
            .or_default() += 1;
    }
    let others: usize = counts
        .iter()
        .filter(|((_, v), _)| *v == "Other")
        .map(|(_, n)| n)
        .sum();
    // One unknown-event fixture for each provider that has one.
    assert_eq!(others, 3);
    assert_eq!(
        EXPECTED.len(),
        Provider::ALL.iter().map(|p| stems(*p).len()).sum::<usize>() - 1, // the probe
    );
}
