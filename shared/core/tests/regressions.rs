//! Bugs found while fuzzing `verify` + `inspect`, kept fixed.

use http::HeaderMap;
use terima_core::ReadError;
use terima_core::{Provider, QueueMessage, Timestamp, inspect};

/// An Akinon event whose uuid is blank used to get the blank string as its
/// dedup key, so that every later such delivery was dropped as a duplicate.
#[test]
fn oms_blank_uuid_is_a_missing_uuid() {
    for uuid in ["", "   "] {
        let body = format!(
            r#"{{"event": {{"type": "package.created", "uuid": "{uuid}"}}, "payload": {{"id": 1001}}}}"#
        );
        assert_eq!(
            inspect(Provider::Oms, &HeaderMap::new(), body.as_bytes()),
            Err(ReadError::Missing {
                path: "$.event.uuid".into(),
                provider: "oms"
            }),
            "uuid {uuid:?}"
        );
    }
}

/// A time whose offset pushed it past year 9999 (or before year 0) parsed,
/// but printed as text that does not parse: the queue message built from
/// such a delivery could not be decoded by the processor.
#[test]
fn times_outside_four_digit_years_are_refused() {
    for text in [
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:60Z",
        "0000-01-01T00:00:00+01:00",
    ] {
        assert!(Timestamp::parse(text).is_err(), "{text} parsed");
    }
    for text in ["0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"] {
        let t = Timestamp::parse(text).expect("the edges parse");
        assert_eq!(t.to_string(), text);
    }
}

#[test]
fn a_delivery_with_a_far_time_still_makes_a_readable_queue_message() {
    let headers = HeaderMap::new();
    let body = r#"{"event": "order.packed", "timestamp": "9999-12-31T23:59:59-01:00", "tenant_id": "TEN-1", "data": {"order_id": "ORD-1", "updated_at": "9999-12-31T23:59:59-01:00"}}"#;
    let inspected = inspect(Provider::BebasKirim, &headers, body.as_bytes()).expect("reads");
    // Unreadable times are dropped, not fatal.
    assert_eq!(inspected.reading.occurred_at, None);
    let message = QueueMessage::new(
        &inspected,
        &headers,
        body,
        Timestamp::from_unix_millis(1_705_764_600_000),
        "req-1",
    );
    let decoded = QueueMessage::decode(&message.encode()).expect("decodes");
    assert_eq!(decoded, message);
}

/// A key field of an unexpected type (a numeric status, an AWB number that
/// is an object) used to make the whole key lookup fail, and a readable event
/// was refused as lacking its entity id.
#[test]
fn an_oddly_typed_field_does_not_hide_the_entity_id() {
    let cases = [
        (
            Provider::BebasKirim,
            r#"{"event":"order.packed","tenant_id":"T","data":{"order_id":"O1","status":5,"awb_number":{"n":1}}}"#,
            "O1",
        ),
        (
            Provider::Oms,
            r#"{"event": {"type": "package.created", "uuid": "abc"}, "payload": {"id": 7, "state": {"enum_value": [1], "label": 2}}}"#,
            "7",
        ),
        (
            Provider::Oms,
            r#"{"event": {"type": "package.created", "uuid": "abc"}, "payload": {"id": 7, "state": "packed"}}"#,
            "7",
        ),
    ];
    for (provider, body, id) in cases {
        let inspected = inspect(provider, &HeaderMap::new(), body.as_bytes())
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(inspected.reading.resource.id, id, "{body}");
    }
    let mut headers = HeaderMap::new();
    headers.insert("x-bitbybit-webhook-id", "evt_1".parse().expect("value"));
    headers.insert(
        "x-bitbybit-webhook-event",
        "order.updated".parse().expect("value"),
    );
    let inspected = inspect(
        Provider::BitByBit,
        &headers,
        br#"{"id":"order_1","status":3}"#,
    )
    .expect("a numeric status is kept as text");
    assert_eq!(inspected.reading.status.as_deref(), Some("3"));
}

/// Provider-sent ids used to be keys of any length; a DynamoDB key holds at
/// most 2048 bytes.
#[test]
fn provider_ids_are_bounded_like_derived_keys() {
    let long = "e".repeat(3000);
    let mut headers = HeaderMap::new();
    headers.insert("x-bitbybit-webhook-id", long.parse().expect("value"));
    headers.insert(
        "x-bitbybit-webhook-event",
        "order.updated".parse().expect("value"),
    );
    let bitbybit = inspect(Provider::BitByBit, &headers, br#"{"id":"order_1"}"#).expect("readable");
    let body = format!(
        r#"{{"event": {{"type": "package.created", "uuid": "{long}"}}, "payload": {{"id": 1}}}}"#
    );
    let oms = inspect(Provider::Oms, &HeaderMap::new(), body.as_bytes()).expect("readable");
    for key in [&bitbybit.reading.dedup_key, &oms.reading.dedup_key] {
        assert!(key.len() <= 256 && key.starts_with("sha256:"), "{key}");
    }
    assert_eq!(
        inspect(Provider::BitByBit, &headers, br#"{"id":"order_1"}"#)
            .expect("readable")
            .reading
            .dedup_key,
        bitbybit.reading.dedup_key,
        "stable"
    );
}
