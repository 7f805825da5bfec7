//! The ack path over the in-memory backends: what each provider's delivery is
//! answered, and what is stored and queued for it, including when a backend
//! fails half-way.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    BEBASKIRIM_SECRET, BITESHIP_HEADER, Delivery, ManualClock, NOW, config, delivery, fixture,
    hmac_hex, ingest, signed, signed_at,
};
use futures_util::future::join_all;
use http::HeaderMap;
use serde_json::{Value, json};
use terima_core::message::sha256_hex;
use terima_core::providers::{bitbybit, oms};
use terima_core::verify::FixedClock;
use terima_core::{Provider, QueueMessage};
use terima_service::config::DEFAULT_DEDUP_TTL_SECS;
use terima_service::faults::{Fault, FaultPlan, Faulty};
use terima_service::memory::MemoryStore;
use terima_service::process::Processed;
use terima_service::{Ingest, Metrics, Processor, ProcessorConfig, Reply};

/// The delivery each provider is exercised with, where the test does not care
/// which event it is. Biteship's carries `updated_at`, so a body edit keeps
/// its dedup key.
fn sample(provider: Provider) -> Delivery {
    match provider {
        Provider::BebasKirim => delivery(provider, "order.packed"),
        Provider::BitByBit => delivery(provider, "customer.updated"),
        Provider::Oms => delivery(provider, "package.status.packed"),
        Provider::Biteship => delivery(provider, "order.status--updated-at"),
    }
}

/// The same delivery with another body, signed again; BitByBit keeps its
/// event type and id headers.
fn resigned(provider: Provider, original: &Delivery, body: &str) -> Delivery {
    let header = |name: &str| {
        original
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let (event_type, id) = (header(bitbybit::EVENT_HEADER), header(bitbybit::ID_HEADER));
    signed(provider, body.as_bytes(), Some((&event_type, &id)))
}

/// `original` with `from` replaced by `to` in the body, signed again.
fn edited(provider: Provider, original: &Delivery, from: &str, to: &str) -> Delivery {
    assert!(
        original.text().contains(from),
        "{from:?} is not in the body"
    );
    resigned(provider, original, &original.text().replacen(from, to, 1))
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("reply body {:?} is not JSON: {e}", reply.body))
}

fn assert_reply(reply: &Reply, status: u16, label: &str, request_id: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = json_of(reply);
    assert_eq!(body["status"], label, "{}", reply.body);
    assert_eq!(body["request_id"], request_id, "{}", reply.body);
}

fn assert_nothing_stored(store: &MemoryStore, why: &str) {
    assert!(store.queued().is_empty(), "{why}: something was queued");
    assert!(
        store.dedup_records().is_empty(),
        "{why}: a dedup record was written"
    );
    assert_eq!(store.conflicts(), 0, "{why}: a conflict was recorded");
}

/// Every queued message is a copy of one event, so the processor absorbs them.
fn assert_copies_of_one_event(queued: &[QueueMessage]) {
    let first = queued.first().expect("at least one message queued");
    for message in queued {
        assert_eq!(message.work_key, first.work_key);
        assert_eq!(message.dedup_key, first.dedup_key);
        assert_eq!(message.body_sha256, first.body_sha256);
    }
}

#[tokio::test]
async fn a_fresh_delivery_is_accepted_with_one_message_and_one_dedup_record() {
    for provider in Provider::ALL {
        let endpoint = ingest(provider, &[]);
        let d = sample(provider);

        let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;

        assert_eq!(reply.status, 200, "{provider}: {}", reply.body);
        assert_eq!(
            json_of(&reply),
            json!({"status": "accepted", "request_id": "req-1"}),
            "{provider}"
        );
        let queued = endpoint.queue().queued();
        assert_eq!(queued.len(), 1, "{provider}");
        let message = &queued[0];
        assert_eq!(message.provider, provider);
        assert_eq!(
            message.body,
            d.text(),
            "{provider}: the body is queued exactly as verified"
        );
        assert_eq!(message.body_sha256, sha256_hex(&d.body));
        assert_eq!(message.request_id, "req-1");
        assert_eq!(message.received_at.unix_millis(), NOW * 1_000);
        assert!(!message.replay);
        let decoded = QueueMessage::decode(&message.encode()).expect("the queued message decodes");
        assert_eq!(&decoded, message, "{provider}");

        let records = endpoint.store().dedup_records();
        assert_eq!(records.len(), 1, "{provider}");
        let record = &records[0];
        assert_eq!(record.provider, provider);
        assert_eq!(record.dedup_key, message.dedup_key);
        assert_eq!(record.event_type, message.event_type);
        assert_eq!(record.body_sha256, message.body_sha256);
        assert_eq!(record.expires_at, NOW + DEFAULT_DEDUP_TTL_SECS);
        assert_eq!(record.request_id, "req-1");
        assert_eq!(endpoint.store().conflicts(), 0);
    }
}

#[tokio::test]
async fn the_native_event_id_is_the_dedup_key_where_there_is_one() {
    let bb = ingest(Provider::BitByBit, &[]);
    let d = delivery(Provider::BitByBit, "customer.updated");
    assert_eq!(bb.handle(&d.headers, &d.body, "req-1").await.status, 200);
    let message = &bb.queue().queued()[0];
    assert_eq!(message.dedup_key, "evt_customer_updated");
    assert_eq!(message.event_type, "customer.updated");
    // The headers the event is read from travel with it, for the processor.
    for name in [
        bitbybit::ID_HEADER,
        bitbybit::EVENT_HEADER,
        bitbybit::TIMESTAMP_HEADER,
    ] {
        assert!(message.headers.contains_key(name), "{name} not carried");
    }
    assert!(
        !message.headers.contains_key(bitbybit::SIGNATURE_HEADER),
        "the signature is not carried"
    );

    let akinon = ingest(Provider::Oms, &[]);
    let d = delivery(Provider::Oms, "package.status.packed");
    assert_eq!(
        akinon.handle(&d.headers, &d.body, "req-1").await.status,
        200
    );
    assert_eq!(
        akinon.queue().queued()[0].dedup_key,
        "aa45e5834125605d357669e258202651"
    );
}

#[tokio::test]
async fn the_same_delivery_again_is_a_duplicate_and_is_still_queued() {
    for provider in Provider::ALL {
        let endpoint = ingest(provider, &[]);
        let d = sample(provider);
        assert_reply(
            &endpoint.handle(&d.headers, &d.body, "req-1").await,
            200,
            "accepted",
            "req-1",
        );

        let again = endpoint.handle(&d.headers, &d.body, "req-2").await;

        assert_eq!(
            json_of(&again),
            json!({"status": "duplicate", "request_id": "req-2"}),
            "{provider}"
        );
        assert_eq!(again.status, 200);
        // Design note, point 5: the send is under way before the dedup answer
        // arrives, so a duplicate's message is queued too; the processor's
        // lease makes the work happen once.
        let queued = endpoint.queue().queued();
        assert_eq!(queued.len(), 2, "{provider}");
        assert_copies_of_one_event(&queued);
        let records = endpoint.store().dedup_records();
        assert_eq!(records.len(), 1, "{provider}");
        assert_eq!(
            records[0].request_id, "req-1",
            "{provider}: the first delivery's record is kept"
        );
        assert_eq!(endpoint.store().conflicts(), 0);
    }
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict() {
    for provider in Provider::ALL {
        let endpoint = ingest(provider, &[]);
        let d = sample(provider);
        // Each edit leaves what the key is made of untouched.
        let other = match provider {
            Provider::BebasKirim => delivery(provider, "order.packed--extra-fields"),
            Provider::BitByBit => edited(provider, &d, r#"["vip"]"#, r#"["vip", "wholesale"]"#),
            Provider::Oms => edited(
                provider,
                &d,
                r#""label": "Packed""#,
                r#""label": "Dikemas""#,
            ),
            Provider::Biteship => edited(provider, &d, "example.com/track", "example.com/lacak"),
        };
        assert_reply(
            &endpoint.handle(&d.headers, &d.body, "req-1").await,
            200,
            "accepted",
            "req-1",
        );

        let reply = endpoint.handle(&other.headers, &other.body, "req-2").await;

        assert_eq!(
            json_of(&reply),
            json!({"status": "conflict", "request_id": "req-2"}),
            "{provider}"
        );
        assert_eq!(reply.status, 200);
        assert_eq!(endpoint.store().conflicts(), 1, "{provider}");
        let records = endpoint.store().dedup_records();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].body_sha256,
            sha256_hex(&d.body),
            "{provider}: the first body's record stays"
        );
        let queued = endpoint.queue().queued();
        assert_eq!(queued.len(), 2, "{provider}");
        assert_eq!(queued[0].dedup_key, queued[1].dedup_key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_copies_give_one_accepted_and_nineteen_duplicates() {
    for provider in Provider::ALL {
        let store = MemoryStore::new();
        // A small delay on both backends makes all twenty requests overlap.
        let plan = FaultPlan::new();
        plan.set_delay(Duration::from_millis(5));
        let endpoint = Arc::new(Ingest::new(
            config(provider, &[]),
            Faulty::new(store.clone(), plan.clone()),
            Faulty::new(store.clone(), plan),
            Arc::new(FixedClock(NOW)),
            Metrics::Silent,
        ));
        let d = Arc::new(sample(provider));

        let tasks = (0..20).map(|i| {
            let endpoint = Arc::clone(&endpoint);
            let d = Arc::clone(&d);
            tokio::spawn(async move {
                endpoint
                    .handle(&d.headers, &d.body, &format!("req-{i}"))
                    .await
            })
        });
        let replies: Vec<Reply> = join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.expect("handler task did not panic"))
            .collect();

        let label_count = |label: &str| {
            replies
                .iter()
                .filter(|r| json_of(r)["status"] == label)
                .count()
        };
        assert!(
            replies.iter().all(|r| r.status == 200),
            "{provider}: {replies:?}"
        );
        assert_eq!(label_count("accepted"), 1, "{provider}: {replies:?}");
        assert_eq!(label_count("duplicate"), 19, "{provider}: {replies:?}");
        assert_eq!(store.dedup_records().len(), 1, "{provider}");
        let queued = store.queued();
        assert_eq!(
            queued.len(),
            20,
            "{provider}: every copy is queued (design note, point 5)"
        );
        assert_copies_of_one_event(&queued);
    }
}

/// Deliveries that must be refused 401, per provider, with a name for the
/// assertion message.
fn unauthorized_cases(provider: Provider) -> Vec<(&'static str, Delivery)> {
    let d = sample(provider);
    let mut cases = Vec::new();
    match provider {
        Provider::BebasKirim => {
            cases.push((
                "wrong token",
                d.clone().header("authorization", "not-the-secret"),
            ));
            cases.push(("missing header", d.clone().without("authorization")));
            cases.push(("empty header", d.clone().header("authorization", "")));
            let bearer = d
                .clone()
                .header("authorization", &format!("Bearer {BEBASKIRIM_SECRET}x"));
            cases.push(("wrong bearer token", bearer));
        }
        Provider::BitByBit => {
            let header = bitbybit::SIGNATURE_HEADER;
            let wrong_mac = hmac_hex(
                "another-secret",
                &[NOW.to_string().as_bytes(), b".", &d.body],
            );
            cases.push((
                "wrong secret",
                d.clone().header(header, &format!("t={NOW},v1={wrong_mac}")),
            ));
            cases.push(("missing header", d.clone().without(header)));
            cases.push(("malformed header", d.clone().header(header, "v1=abc")));
            let stale = signed_at(
                provider,
                &d.body,
                Some(("customer.updated", "evt_1")),
                NOW - 301,
            );
            cases.push(("stale timestamp", stale));
            let future = signed_at(
                provider,
                &d.body,
                Some(("customer.updated", "evt_1")),
                NOW + 301,
            );
            cases.push(("timestamp in the future", future));
            // The signature covers the body: a changed body no longer matches.
            let mut tampered = d.clone();
            tampered.body = d.text().replace("vip", "pwn").into_bytes();
            cases.push(("tampered body", tampered));
        }
        Provider::Oms => {
            let header = oms::SIGNATURE_HEADER;
            let wrong = format!("sha256={}", hmac_hex("another-secret", &[&d.body]));
            cases.push(("wrong secret", d.clone().header(header, &wrong)));
            cases.push(("missing header", d.clone().without(header)));
            cases.push(("malformed header", d.clone().header(header, "md5=abc")));
            let mut tampered = d.clone();
            tampered.body = d.text().replace("PKG-1001", "PKG-1002").into_bytes();
            cases.push(("tampered body", tampered));
        }
        Provider::Biteship => {
            cases.push((
                "wrong token",
                d.clone().header(BITESHIP_HEADER, "not-the-secret"),
            ));
            cases.push(("missing header", d.clone().without(BITESHIP_HEADER)));
            cases.push((
                "token in another header",
                d.clone()
                    .without(BITESHIP_HEADER)
                    .header("authorization", "x"),
            ));
        }
    }
    cases
}

#[tokio::test]
async fn refused_deliveries_get_a_401_that_does_not_say_why_and_store_nothing() {
    for provider in Provider::ALL {
        for (case, d) in unauthorized_cases(provider) {
            let endpoint = ingest(provider, &[]);

            let reply = endpoint.handle(&d.headers, &d.body, "req-x").await;

            assert_eq!(reply.status, 401, "{provider}, {case}: {}", reply.body);
            assert_eq!(
                json_of(&reply),
                json!({"status": "unauthorized", "request_id": "req-x"}),
                "{provider}, {case}"
            );
            let lower = reply.body.to_ascii_lowercase();
            for hint in [
                "secret",
                "header",
                "timestamp",
                "signature",
                "missing",
                "malformed",
                "match",
                "old",
                "future",
            ] {
                assert!(
                    !lower.contains(hint),
                    "{provider}, {case}: the 401 says {hint:?}: {}",
                    reply.body
                );
            }
            assert_nothing_stored(endpoint.store(), &format!("{provider}, {case}"));
        }
    }
}

#[tokio::test]
async fn a_signature_within_the_tolerance_is_accepted() {
    let endpoint = ingest(Provider::BitByBit, &[]);
    let body = fixture(Provider::BitByBit, "customer.updated");
    let d = signed_at(
        Provider::BitByBit,
        &body,
        Some(("customer.updated", "evt_1")),
        NOW - 300,
    );
    assert_reply(
        &endpoint.handle(&d.headers, &d.body, "req-1").await,
        200,
        "accepted",
        "req-1",
    );
}

#[tokio::test]
async fn a_verified_body_that_is_not_json_is_a_400_and_stores_nothing() {
    for provider in Provider::ALL {
        for body in [&b"not json at all"[..], b"{\"event\": ", b"\xff\xfe{}"] {
            let endpoint = ingest(provider, &[]);
            let d = signed(provider, body, Some(("customer.updated", "evt_1")));

            let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;

            assert_reply(&reply, 400, "invalid", "req-1");
            assert!(
                json_of(&reply)["error"].is_string(),
                "{provider}: {}",
                reply.body
            );
            assert_nothing_stored(endpoint.store(), &format!("{provider}, {body:?}"));
        }
    }
}

#[tokio::test]
async fn a_body_without_a_required_field_is_a_400() {
    let bitbybit_no_id = signed(
        Provider::BitByBit,
        br#"{"email":"a@example.com"}"#,
        Some(("customer.updated", "evt_1")),
    );
    let bitbybit_body = fixture(Provider::BitByBit, "customer.updated");
    let cases: Vec<(Provider, Delivery, &str)> = vec![
        (
            Provider::BebasKirim,
            signed(
                Provider::BebasKirim,
                br#"{"timestamp":"2024-01-20T15:30:00Z","data":{"order_id":"X"}}"#,
                None,
            ),
            "event",
        ),
        (
            Provider::BebasKirim,
            signed(Provider::BebasKirim, br#"{"event":"order.packed"}"#, None),
            "data",
        ),
        (
            Provider::BebasKirim,
            signed(
                Provider::BebasKirim,
                br#"{"event":"order.packed","data":{"status":"packed"}}"#,
                None,
            ),
            "entity id",
        ),
        (Provider::BitByBit, bitbybit_no_id, "id"),
        (
            Provider::BitByBit,
            signed(
                Provider::BitByBit,
                &bitbybit_body,
                Some(("customer.updated", "evt_1")),
            )
            .without(bitbybit::ID_HEADER),
            bitbybit::ID_HEADER,
        ),
        (
            Provider::BitByBit,
            signed(
                Provider::BitByBit,
                &bitbybit_body,
                Some(("customer.updated", "evt_1")),
            )
            .without(bitbybit::EVENT_HEADER),
            bitbybit::EVENT_HEADER,
        ),
        (
            Provider::Oms,
            signed(Provider::Oms, br#"{"payload":{"id":1}}"#, None),
            "event",
        ),
        (
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event":{"type":"package.created"},"payload":{"id":1}}"#,
                None,
            ),
            "event.uuid",
        ),
        (
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event":{"type":"package.created","uuid":"u1"}}"#,
                None,
            ),
            "payload",
        ),
        (
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event":{"type":"package.created","uuid":"u1"},"payload":{"number":"P"}}"#,
                None,
            ),
            "payload.id",
        ),
        (
            Provider::Biteship,
            signed(
                Provider::Biteship,
                br#"{"event":"order.status","status":"picked"}"#,
                None,
            ),
            "order_id",
        ),
        (
            Provider::Biteship,
            signed(Provider::Biteship, br#"{"order_id":"abc"}"#, None),
            "event",
        ),
        (
            Provider::Biteship,
            signed(Provider::Biteship, b"[1, 2]", None),
            "JSON object",
        ),
    ];
    for (provider, d, field) in cases {
        let endpoint = ingest(provider, &[]);

        let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;

        assert_reply(&reply, 400, "invalid", "req-1");
        let error = json_of(&reply)["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(
            error.contains(field),
            "{provider}: expected {field:?} in {error:?}"
        );
        assert_nothing_stored(endpoint.store(), &format!("{provider}, {field}"));
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_before_anything_else() {
    for provider in Provider::ALL {
        let d = sample(provider);
        let limit = d.body.len() - 1;
        let endpoint = ingest(provider, &[("TERIMA_MAX_BODY_BYTES", &limit.to_string())]);

        let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;

        assert_reply(&reply, 413, "too_large", "req-1");
        assert_eq!(
            json_of(&reply)["error"],
            format!("body larger than {limit} bytes")
        );
        assert_nothing_stored(endpoint.store(), &format!("{provider}, over the limit"));
        // The size is checked before the signature: an unsigned giant is 413 too.
        let unsigned = endpoint.handle(&HeaderMap::new(), &d.body, "req-2").await;
        assert_eq!(unsigned.status, 413, "{provider}");

        let at_limit = ingest(
            provider,
            &[("TERIMA_MAX_BODY_BYTES", &d.body.len().to_string())],
        );
        let reply = at_limit.handle(&d.headers, &d.body, "req-3").await;
        assert_reply(&reply, 200, "accepted", "req-3");
    }
}

#[tokio::test]
async fn biteship_installation_probes_are_ignored_with_a_200() {
    let probe_fixture = fixture(Provider::Biteship, "probe--empty");
    for body in [&b""[..], b"{}", b" { }\n", &probe_fixture] {
        let endpoint = ingest(Provider::Biteship, &[]);

        let reply = endpoint.handle(&HeaderMap::new(), body, "req-probe").await;

        assert_eq!(
            json_of(&reply),
            json!({"status": "ignored", "request_id": "req-probe"}),
            "{body:?}"
        );
        assert_eq!(reply.status, 200);
        assert_nothing_stored(endpoint.store(), &format!("probe {body:?}"));
        // With the secret header it is still only a probe.
        let with_header = signed(Provider::Biteship, body, None);
        let reply = endpoint
            .handle(&with_header.headers, body, "req-probe-2")
            .await;
        assert_reply(&reply, 200, "ignored", "req-probe-2");
        assert_nothing_stored(endpoint.store(), &format!("signed probe {body:?}"));
    }
}

#[tokio::test]
async fn a_probe_shaped_body_from_another_provider_is_not_ignored() {
    let endpoint = ingest(Provider::BebasKirim, &[]);
    let reply = endpoint.handle(&HeaderMap::new(), b"{}", "req-1").await;
    assert_eq!(
        reply.status, 401,
        "only Biteship has an unauthenticated probe"
    );
}

#[tokio::test]
async fn an_unknown_event_type_is_accepted_and_queued() {
    let cases = [
        (Provider::BebasKirim, delivery(Provider::BebasKirim, "order.unknown_future_event--unknown-event"), "order.on_hold"),
        (
            Provider::BitByBit,
            signed(
                Provider::BitByBit,
                &fixture(Provider::BitByBit, "subscription.created--unknown-event"),
                Some(("subscription.created", "evt_sub_1")),
            ),
            "subscription.created",
        ),
        (
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event": {"type": "order.created", "uuid": "0f8b7e5e6c1d4b0a9e3f2a1b0c9d8e7f"}, "payload": {"id": 9}}"#,
                None,
            ),
            "order.created",
        ),
        (
            Provider::Biteship,
            signed(Provider::Biteship, br#"{"event":"order.insurance","order_id":"65bb1f2e9a4c3d0012e4f5a6"}"#, None),
            "order.insurance",
        ),
    ];
    for (provider, d, event_type) in cases {
        let endpoint = ingest(provider, &[]);

        let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;

        assert_reply(&reply, 200, "accepted", "req-1");
        let queued = endpoint.queue().queued();
        assert_eq!(queued.len(), 1, "{provider}");
        assert_eq!(queued[0].event_type, event_type);
        assert_eq!(endpoint.store().dedup_records().len(), 1);
    }
}

#[tokio::test]
async fn a_dedup_record_stops_counting_once_it_expires() {
    let store = MemoryStore::new();
    let clock = ManualClock::at_unix(NOW);
    let endpoint = Ingest::new(
        config(Provider::BebasKirim, &[("TERIMA_DEDUP_TTL_SECS", "60")]),
        store.clone(),
        store.clone(),
        Arc::new(clock.clone()),
        Metrics::Silent,
    );
    let d = sample(Provider::BebasKirim);
    assert_reply(
        &endpoint.handle(&d.headers, &d.body, "req-1").await,
        200,
        "accepted",
        "req-1",
    );
    clock.advance_secs(59);
    assert_reply(
        &endpoint.handle(&d.headers, &d.body, "req-2").await,
        200,
        "duplicate",
        "req-2",
    );
    clock.advance_secs(1);
    assert_reply(
        &endpoint.handle(&d.headers, &d.body, "req-3").await,
        200,
        "accepted",
        "req-3",
    );
    assert_eq!(store.dedup_records()[0].request_id, "req-3");
}

/// Which backend an injected fault hits.
#[derive(Clone, Copy, Debug)]
enum Target {
    Store,
    Queue,
}

/// Sends `deliveries` in turn to an endpoint whose `target` backend fails its
/// `fail_call`-th call with `fault`; returns the replies and the shared store.
async fn with_fault(
    provider: Provider,
    target: Target,
    fail_call: u64,
    fault: Fault,
    deliveries: &[&Delivery],
) -> (Vec<Reply>, MemoryStore) {
    let store = MemoryStore::new();
    let plan = FaultPlan::new();
    plan.fail(fail_call, fault);
    let clock = Arc::new(FixedClock(NOW));
    let mut replies = Vec::new();
    match target {
        Target::Store => {
            let faulty = Faulty::new(store.clone(), plan);
            let endpoint = Ingest::new(
                config(provider, &[]),
                faulty,
                store.clone(),
                clock,
                Metrics::Silent,
            );
            for (i, d) in deliveries.iter().enumerate() {
                replies.push(
                    endpoint
                        .handle(&d.headers, &d.body, &format!("req-{}", i + 1))
                        .await,
                );
            }
        }
        Target::Queue => {
            let faulty = Faulty::new(store.clone(), plan);
            let endpoint = Ingest::new(
                config(provider, &[]),
                store.clone(),
                faulty,
                clock,
                Metrics::Silent,
            );
            for (i, d) in deliveries.iter().enumerate() {
                replies.push(
                    endpoint
                        .handle(&d.headers, &d.body, &format!("req-{}", i + 1))
                        .await,
                );
            }
        }
    }
    (replies, store)
}

/// Runs every queued copy through a processor: the work happens once.
async fn assert_processed_once(queued: &[QueueMessage]) {
    let processor = Processor::new(
        ProcessorConfig {
            lease_millis: 90_000,
            concurrency: 4,
        },
        MemoryStore::new(),
        (),
        Arc::new(FixedClock(NOW)),
        Metrics::Silent,
    );
    let mut done = 0;
    for message in queued {
        match processor
            .process(&message.encode())
            .await
            .expect("a queued copy processes")
        {
            Processed::Done => done += 1,
            Processed::AlreadyDone => {}
        }
    }
    assert_eq!(done, 1, "the copies are absorbed");
}

#[tokio::test]
async fn a_failed_backend_call_is_a_503_and_the_retry_never_loses_the_event() {
    // (target, fault, what the retry is answered, messages queued in the end)
    let plans = [
        // The dedup write never happened: the retry is the first to claim.
        (Target::Store, Fault::Before, "accepted", 2),
        // The dedup write happened but its answer was lost.
        (Target::Store, Fault::After, "duplicate", 2),
        // Nothing was queued, but the dedup record was written: the retry is
        // a duplicate, and its own send is what queues the event.
        (Target::Queue, Fault::Before, "duplicate", 1),
        // The message was queued but its answer was lost.
        (Target::Queue, Fault::After, "duplicate", 2),
    ];
    for provider in Provider::ALL {
        for (target, fault, retry_label, queued_count) in plans {
            let why = format!("{provider}, {target:?} fails {fault:?}");
            let d = sample(provider);

            let (replies, store) = with_fault(provider, target, 1, fault, &[&d, &d]).await;

            assert_eq!(replies[0].status, 503, "{why}: {}", replies[0].body);
            assert_eq!(
                json_of(&replies[0]),
                json!({"status": "unavailable", "request_id": "req-1"}),
                "{why}"
            );
            assert_reply(&replies[1], 200, retry_label, "req-2");
            let queued = store.queued();
            assert_eq!(queued.len(), queued_count, "{why}");
            assert_copies_of_one_event(&queued);
            assert_eq!(queued[0].body, d.text(), "{why}");
            assert_eq!(store.dedup_records().len(), 1, "{why}");
            assert_processed_once(&queued).await;
        }
    }
}

#[tokio::test]
async fn a_failed_conflict_write_is_a_503_and_the_retry_records_it() {
    for provider in Provider::ALL {
        for (fault, conflicts) in [(Fault::Before, 1), (Fault::After, 2)] {
            let why = format!("{provider}, record_conflict fails {fault:?}");
            let d = sample(provider);
            let other = resigned(
                provider,
                &d,
                &d.text().replacen('}', r#", "note": "edited"}"#, 1),
            );
            // Store calls: 1 the first claim, 2 the conflicting claim, 3 its
            // conflict record.
            let (replies, store) =
                with_fault(provider, Target::Store, 3, fault, &[&d, &other, &other]).await;

            assert_reply(&replies[0], 200, "accepted", "req-1");
            assert_eq!(replies[1].status, 503, "{why}: {}", replies[1].body);
            assert_reply(&replies[2], 200, "conflict", "req-3");
            // A conflict whose record's answer was lost is recorded twice: a
            // list for an operator, where a repeat is harmless.
            assert_eq!(store.conflicts(), conflicts, "{why}");
            assert_eq!(store.queued().len(), 3, "{why}");
        }
    }
}
