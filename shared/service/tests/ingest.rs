//! The ack path over the in-memory backends: what each provider's delivery is
//! answered, and what is queued, held or quarantined for it, including when a
//! backend fails half-way.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    BEBASKIRIM_SECRET, BITESHIP_HEADER, Counting, Delivery, MemoryIngest, NOW, config, delivery,
    drain, fixture, hmac_hex, ingest, ingest_on, processor_on, signed, signed_at,
};
use futures_util::future::join_all;
use http::HeaderMap;
use serde_json::{Value, json};
use terima_core::message::{INLINE_MESSAGE_LIMIT, sha256_hex};
use terima_core::providers::{bitbybit, oms};
use terima_core::verify::FixedClock;
use terima_core::{BodyRef, Provider, QueueMessage};
use terima_service::faults::{Fault, FaultPlan, Faulty};
use terima_service::memory::MemoryStore;
use terima_service::store::{EventLog, QuarantinedBody, WorkStatus};
use terima_service::sweep::sweep;
use terima_service::{Ingest, Metrics, Reply};

/// The delivery each provider is exercised with, where the test does not care
/// which event it is. Biteship's carries `updated_at`, so a body edit keeps
/// its key.
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
    assert_eq!(store.held_count(), 0, "{why}: something was held");
    assert!(
        store.quarantine_records().is_empty(),
        "{why}: something was quarantined"
    );
    assert!(store.work_records().is_empty(), "{why}: work was recorded");
}

async fn send(endpoint: &MemoryIngest, d: &Delivery, request_id: &str) -> Reply {
    endpoint.handle(&d.headers, &d.body, request_id).await
}

#[tokio::test]
async fn a_fresh_delivery_is_accepted_with_one_message_and_nothing_else() {
    for provider in Provider::ALL {
        let endpoint = ingest(provider, &[]);
        let d = sample(provider);

        let reply = send(&endpoint, &d, "req-1").await;

        assert_eq!(
            json_of(&reply),
            json!({"status": "accepted", "request_id": "req-1"}),
            "{provider}"
        );
        assert_eq!(reply.status, 200);
        let queued = endpoint.queue().queued();
        assert_eq!(queued.len(), 1, "{provider}");
        let message = &queued[0];
        assert_eq!(message.provider, provider);
        assert_eq!(
            message.body,
            BodyRef::Inline {
                text: d.text().to_owned()
            },
            "{provider}: the body is queued exactly as verified"
        );
        assert_eq!(message.body_sha256, sha256_hex(&d.body));
        assert_eq!(message.request_id, "req-1");
        assert_eq!(message.received_at.unix_millis(), NOW * 1_000);
        assert!(!message.replay);
        let decoded = QueueMessage::decode(&message.encode()).expect("the queued message decodes");
        assert_eq!(&decoded, message, "{provider}");
        // The ack path read the work records once and wrote nothing.
        assert!(endpoint.store().work_records().is_empty());
        assert_eq!(endpoint.store().held_count(), 0);
    }
}

#[tokio::test]
async fn the_native_event_id_is_the_dedup_key_where_there_is_one() {
    let bb = ingest(Provider::BitByBit, &[]);
    let d = delivery(Provider::BitByBit, "customer.updated");
    assert_eq!(send(&bb, &d, "req-1").await.status, 200);
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
    assert_eq!(send(&akinon, &d, "req-1").await.status, 200);
    assert_eq!(
        akinon.queue().queued()[0].dedup_key,
        "aa45e5834125605d357669e258202651"
    );
}

#[tokio::test]
async fn a_delivery_of_work_already_done_is_a_duplicate_and_runs_nothing() {
    for provider in Provider::ALL {
        let store = MemoryStore::new();
        let endpoint = ingest_on(store.clone(), provider, &[]);
        let counting = Counting::default();
        let processor = processor_on(store.clone(), counting.clone());
        let d = sample(provider);
        assert_reply(
            &send(&endpoint, &d, "req-1").await,
            200,
            "accepted",
            "req-1",
        );
        assert_eq!(drain(&store, &processor).await, 1, "{provider}");

        let again = send(&endpoint, &d, "req-2").await;

        assert_eq!(
            json_of(&again),
            json!({"status": "duplicate", "request_id": "req-2"}),
            "{provider}"
        );
        // The send is under way before the read answers, so the copy is
        // queued too; its work record makes it run nothing.
        assert_eq!(store.queued().len(), 1, "{provider}");
        assert_eq!(drain(&store, &processor).await, 0, "{provider}");
        assert_eq!(counting.total(), 1, "{provider}");
        assert_eq!(store.work_records().len(), 1, "{provider}");
    }
}

/// dj-whisperer stores a failed delivery's payload in a JSON column and
/// re-serialises it on each retry: on PostgreSQL (jsonb) the keys come back
/// in another order, with other spacing. Same uuid, same meaning: a
/// duplicate, not a conflict.
#[tokio::test]
async fn an_akinon_retry_with_reordered_keys_is_a_duplicate() {
    let store = MemoryStore::new();
    let endpoint = ingest_on(store.clone(), Provider::Oms, &[]);
    let processor = processor_on(store.clone(), ());
    let d = sample(Provider::Oms);
    assert_reply(
        &send(&endpoint, &d, "req-1").await,
        200,
        "accepted",
        "req-1",
    );
    assert_eq!(drain(&store, &processor).await, 1);
    let value: Value = serde_json::from_slice(&d.body).expect("JSON");
    let reordered = reverse_keys(&value);
    let text = serde_json::to_string(&reordered).expect("serialises");
    assert_ne!(text.as_bytes(), d.body.as_slice(), "other bytes");
    let retry = resigned(Provider::Oms, &d, &text);

    let reply = send(&endpoint, &retry, "req-2").await;

    assert_reply(&reply, 200, "duplicate", "req-2");
    assert_eq!(drain(&store, &processor).await, 0);
    assert!(store.conflict_records().is_empty());
}

fn reverse_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.reverse();
            // `Value`'s map sorts its keys: write the reversed order by hand.
            let inner: Vec<String> = pairs
                .into_iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), reverse_keys_text(v)))
                .collect();
            serde_json::from_str(&format!("{{{}}}", inner.join(", "))).expect("object")
        }
        other => other.clone(),
    }
}

fn reverse_keys_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.reverse();
            let inner: Vec<String> = pairs
                .into_iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), reverse_keys_text(v)))
                .collect();
            format!("{{ {} }}", inner.join(" , "))
        }
        other => other.to_string(),
    }
}

#[tokio::test]
async fn the_same_work_with_another_body_is_a_conflict_and_both_are_kept() {
    for provider in Provider::ALL {
        let store = MemoryStore::new();
        let endpoint = ingest_on(store.clone(), provider, &[]);
        let processor = processor_on(store.clone(), ());
        let d = sample(provider);
        // Each edit leaves what the work key is made of untouched.
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
            &send(&endpoint, &d, "req-1").await,
            200,
            "accepted",
            "req-1",
        );
        assert_eq!(drain(&store, &processor).await, 1, "{provider}");

        let reply = send(&endpoint, &other, "req-2").await;

        assert_eq!(
            json_of(&reply),
            json!({"status": "conflict", "request_id": "req-2"}),
            "{provider}"
        );
        // Neither body is dropped: the second is processed as its own work,
        // logged, and the pair recorded.
        assert_eq!(drain(&store, &processor).await, 1, "{provider}");
        let conflicts = store.conflict_records();
        assert_eq!(conflicts.len(), 1, "{provider}");
        let logged = store.logged();
        assert_eq!(logged.len(), 2, "{provider}");
        let mut bodies: Vec<String> = Vec::new();
        for id in [&conflicts[0].first_event_id, &conflicts[0].second_event_id] {
            let view = store.event(id).await.expect("reads").expect("logged");
            let body = store.body(&view.event).await.expect("reads").expect("kept");
            bodies.push(String::from_utf8(body).expect("text"));
        }
        assert_eq!(
            bodies,
            vec![d.text().to_owned(), other.text().to_owned()],
            "{provider}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_copies_are_all_held_and_run_once() {
    for provider in Provider::ALL {
        let store = MemoryStore::new();
        // A small delay on every backend makes all twenty requests overlap.
        let plan = FaultPlan::new();
        plan.set_delay(Duration::from_millis(5));
        let endpoint = Arc::new(Ingest::new(
            config(provider, &[]),
            Faulty::new(store.clone(), plan.clone()),
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

        assert!(
            replies.iter().all(|r| r.status == 200),
            "{provider}: {replies:?}"
        );
        assert_eq!(store.queued().len(), 20, "{provider}: every copy is queued");
        let counting = Counting::default();
        let processor = processor_on(store.clone(), counting.clone());
        assert_eq!(drain(&store, &processor).await, 1, "{provider}");
        assert_eq!(counting.total(), 1, "{provider}: the work ran once");
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

            let reply = send(&endpoint, &d, "req-x").await;

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
        &send(&endpoint, &d, "req-1").await,
        200,
        "accepted",
        "req-1",
    );
}

/// A verified body that cannot be read is kept raw with its reason and
/// answered 200: a provider that never retries (Biteship) does not lose it,
/// and it can be read again after a fix.
#[tokio::test]
async fn a_verified_body_that_cannot_be_read_is_quarantined_not_refused() {
    for provider in Provider::ALL {
        let cases: [(&[u8], &str); 4] = [
            (b"not json at all", "not_json"),
            (b"{\"event\": ", "not_json"),
            (b"\xff\xfe{}", "not_utf8"),
            (br#"{"a": 1, "a": 2}"#, "duplicate_key"),
        ];
        for (body, reason) in cases {
            let endpoint = ingest(provider, &[]);
            let d = signed(provider, body, Some(("customer.updated", "evt_1")));

            let reply = send(&endpoint, &d, "req-1").await;

            assert_reply(&reply, 200, "quarantined", "req-1");
            assert_eq!(
                json_of(&reply)["reason"],
                reason,
                "{provider}: {}",
                reply.body
            );
            assert!(endpoint.queue().queued().is_empty(), "{provider}");
            let records = endpoint.store().quarantine_records();
            assert_eq!(records.len(), 1, "{provider}");
            let record = &records[0];
            assert_eq!(record.reason, reason);
            assert_eq!(record.request_id, "req-1");
            let kept = match &record.body {
                QuarantinedBody::Text { text } => text.as_bytes().to_vec(),
                QuarantinedBody::Base64 { base64 } => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(base64)
                        .expect("base64")
                }
                QuarantinedBody::Stored { .. } => panic!("a small body is kept inline"),
            };
            assert_eq!(kept, body, "{provider}: kept byte for byte");
        }
    }
}

#[tokio::test]
async fn a_body_without_a_routing_fact_is_quarantined_with_its_path() {
    let bitbybit_body = fixture(Provider::BitByBit, "customer.updated");
    let cases: Vec<(Provider, Delivery, &str)> = vec![
        (
            Provider::BebasKirim,
            signed(
                Provider::BebasKirim,
                br#"{"timestamp":"2024-01-20T15:30:00Z","data":{"order_id":"X"}}"#,
                None,
            ),
            "$.event",
        ),
        (
            Provider::BebasKirim,
            signed(Provider::BebasKirim, br#"{"event":"order.packed"}"#, None),
            "$.data",
        ),
        (
            Provider::BebasKirim,
            signed(
                Provider::BebasKirim,
                br#"{"event":"order.packed","data":{"status":"packed"}}"#,
                None,
            ),
            "$.data.order_id",
        ),
        (
            Provider::BitByBit,
            signed(
                Provider::BitByBit,
                br#"{"email":"a@example.com"}"#,
                Some(("customer.updated", "evt_1")),
            ),
            "$.id",
        ),
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
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event":{"type":"package.created"},"payload":{"id":1}}"#,
                None,
            ),
            "$.event.uuid",
        ),
        (
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event":{"type":"package.created","uuid":"u1"},"payload":{"id":{"x":1}}}"#,
                None,
            ),
            "$.payload.id",
        ),
        (
            Provider::Oms,
            signed(
                Provider::Oms,
                br#"{"event":{"type":"package.created","uuid":"u1"},"payload":{"id":123456789012345678901234567890}}"#,
                None,
            ),
            "out of range",
        ),
        (
            Provider::Biteship,
            signed(
                Provider::Biteship,
                br#"{"event":"order.status","status":"picked"}"#,
                None,
            ),
            "$.order_id",
        ),
        (
            Provider::Biteship,
            signed(Provider::Biteship, b"[1, 2]", None),
            "not a JSON object",
        ),
    ];
    for (provider, d, field) in cases {
        let endpoint = ingest(provider, &[]);

        let reply = send(&endpoint, &d, "req-1").await;

        assert_reply(&reply, 200, "quarantined", "req-1");
        let error = json_of(&reply)["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(
            error.contains(field),
            "{provider}: expected {field:?} in {error:?}"
        );
        assert!(endpoint.queue().queued().is_empty());
        assert_eq!(endpoint.store().quarantine_records().len(), 1);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_before_anything_else() {
    for provider in Provider::ALL {
        let d = sample(provider);
        let limit = d.body.len() - 1;
        let endpoint = ingest(provider, &[("TERIMA_MAX_BODY_BYTES", &limit.to_string())]);

        let reply = send(&endpoint, &d, "req-1").await;

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
        let reply = send(&at_limit, &d, "req-3").await;
        assert_reply(&reply, 200, "accepted", "req-3");
    }
}

/// A body too large to travel inline is stored first and the message carries
/// its key (the claim check); the processor reads it back, byte for byte.
#[tokio::test]
async fn a_large_body_travels_by_claim_check_and_is_processed() {
    let store = MemoryStore::new();
    let endpoint = ingest_on(store.clone(), Provider::BebasKirim, &[]);
    let processor = processor_on(store.clone(), ());
    let d = sample(Provider::BebasKirim);
    let padding = "x".repeat(INLINE_MESSAGE_LIMIT);
    let large = resigned(
        Provider::BebasKirim,
        &d,
        &d.text().replacen(
            "\"data\": {",
            &format!("\"data\": {{\"notes\": \"{padding}\", "),
            1,
        ),
    );

    assert_reply(
        &send(&endpoint, &large, "req-1").await,
        200,
        "accepted",
        "req-1",
    );

    let message = &store.queued()[0];
    let BodyRef::Stored { key, size } = &message.body else {
        panic!("a large body is stored, not inlined: {:?}", message.body);
    };
    assert_eq!(*size, large.body.len());
    assert!(message.encode().len() < 2_000, "the message stays small");
    assert_eq!(store.blob_keys(), vec![key.clone()]);
    assert_eq!(drain(&store, &processor).await, 1);
    let logged = &store.logged()[0];
    let body = store.body(logged).await.expect("reads").expect("kept");
    assert_eq!(body, large.body);
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

        let reply = send(&endpoint, &d, "req-1").await;

        assert_reply(&reply, 200, "accepted", "req-1");
        let queued = endpoint.queue().queued();
        assert_eq!(queued.len(), 1, "{provider}");
        assert_eq!(queued[0].event_type, event_type);
    }
}

/// A BitByBit capture replayed within the tolerance: under another delivery
/// id (the id header is not signed) it is the same work and runs nothing;
/// relabelled as another name of its kind, the same; relabelled as a
/// deletion, or as another kind, it does not fit the body and is
/// quarantined. The resource's state is unchanged either way.
#[tokio::test]
async fn bitbybit_relabelled_and_re_id_replays_change_nothing() {
    let store = MemoryStore::new();
    let endpoint = ingest_on(store.clone(), Provider::BitByBit, &[]);
    let counting = Counting::default();
    let processor = processor_on(store.clone(), counting.clone());
    let body = fixture(Provider::BitByBit, "customer.updated");
    let original = signed(
        Provider::BitByBit,
        &body,
        Some(("customer.updated", "evt_1")),
    );
    assert_reply(
        &send(&endpoint, &original, "req-1").await,
        200,
        "accepted",
        "req-1",
    );
    assert_eq!(drain(&store, &processor).await, 1);
    let story = store
        .story(Provider::BitByBit, "customer", "cust_abc123")
        .await
        .expect("reads");
    let before = story.state.clone().expect("projected");

    let replays = [
        (
            "re-id",
            signed(
                Provider::BitByBit,
                &body,
                Some(("customer.updated", "evt_forged")),
            ),
            "duplicate",
        ),
        (
            "relabel, same kind",
            signed(
                Provider::BitByBit,
                &body,
                Some(("customer.created", "evt_1")),
            ),
            "duplicate",
        ),
        (
            "relabel as a deletion",
            signed(
                Provider::BitByBit,
                &body,
                Some(("customer.deleted", "evt_2")),
            ),
            "quarantined",
        ),
        (
            "relabel as another kind",
            signed(Provider::BitByBit, &body, Some(("order.updated", "evt_3"))),
            "quarantined",
        ),
    ];
    for (case, d, label) in replays {
        let reply = send(&endpoint, &d, case).await;
        assert_reply(&reply, 200, label, case);
    }
    assert_eq!(drain(&store, &processor).await, 0, "no replay ran any work");
    assert_eq!(counting.total(), 1);
    let after = store
        .story(Provider::BitByBit, "customer", "cust_abc123")
        .await
        .expect("reads")
        .state
        .expect("projected");
    assert_eq!(after, before, "the state did not change");
    assert!(!after.deleted);
    assert_eq!(store.quarantine_records().len(), 2);
}

/// One fault scenario of the ack path: the failing calls of the store (call
/// 1 is the read, call 2 the outbox write) and of the queue (call 1 is the
/// send), the answer, and whether the outbox ends up holding the event.
struct Scenario {
    name: &'static str,
    store: &'static [(u64, Fault)],
    queue: &'static [(u64, Fault)],
    status: u16,
    held: bool,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "the send fails: the outbox holds the event",
        store: &[],
        queue: &[(1, Fault::Before)],
        status: 200,
        held: true,
    },
    Scenario {
        name: "the send lands but its answer is lost: held too (a copy)",
        store: &[],
        queue: &[(1, Fault::After)],
        status: 200,
        held: true,
    },
    Scenario {
        name: "the read fails: the queue holds the event anyway",
        store: &[(1, Fault::Before)],
        queue: &[],
        status: 200,
        held: false,
    },
    Scenario {
        name: "the send and the outbox write fail: nothing holds it",
        store: &[(2, Fault::Before)],
        queue: &[(1, Fault::Before)],
        status: 503,
        held: false,
    },
    Scenario {
        name: "the outbox write lands but its answer is lost: 503, still sent",
        store: &[(2, Fault::After)],
        queue: &[(1, Fault::Before)],
        status: 503,
        held: true,
    },
    Scenario {
        name: "the read and the send fail, the outbox holds it",
        store: &[(1, Fault::Before)],
        queue: &[(1, Fault::Before)],
        status: 200,
        held: true,
    },
];

/// Biteship never retries, so every answer stands alone: a 2xx means the
/// event is held durably (queue or outbox) and ends up processed once; a 503
/// only when nothing holds it.
#[tokio::test]
async fn the_answer_is_2xx_exactly_when_something_durable_holds_the_event() {
    for provider in Provider::ALL {
        for scenario in &SCENARIOS {
            let why = format!("{provider}, {}", scenario.name);
            let store = MemoryStore::new();
            let (store_plan, queue_plan) = (FaultPlan::new(), FaultPlan::new());
            for (n, fault) in scenario.store {
                store_plan.fail(*n, *fault);
            }
            for (n, fault) in scenario.queue {
                queue_plan.fail(*n, *fault);
            }
            let endpoint = Ingest::new(
                config(provider, &[]),
                Faulty::new(store.clone(), store_plan),
                Faulty::new(store.clone(), queue_plan),
                store.clone(),
                Arc::new(FixedClock(NOW)),
                Metrics::Silent,
            );
            let d = sample(provider);

            let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;

            assert_eq!(reply.status, scenario.status, "{why}: {}", reply.body);
            assert_eq!(store.held_count() > 0, scenario.held, "{why}");
            // What the sweeper and the processor make of it.
            sweep(&store, &store, Metrics::Silent)
                .await
                .expect("sweeps");
            assert_eq!(store.held_count(), 0, "{why}: the outbox is emptied");
            let counting = Counting::default();
            let processor = processor_on(store.clone(), counting.clone());
            let expected = usize::from(scenario.status == 200 || scenario.held);
            assert_eq!(drain(&store, &processor).await, expected, "{why}");
            assert_eq!(counting.total(), expected, "{why}: the work ran once");
        }
    }
}

#[tokio::test]
async fn a_failed_quarantine_or_claim_check_write_is_a_503() {
    // The quarantine write fails: nothing keeps the body.
    let store = MemoryStore::new();
    let plan = FaultPlan::new();
    plan.fail(1, Fault::Before);
    let endpoint = Ingest::new(
        config(Provider::Biteship, &[]),
        Faulty::new(store.clone(), plan),
        store.clone(),
        store.clone(),
        Arc::new(FixedClock(NOW)),
        Metrics::Silent,
    );
    let d = signed(Provider::Biteship, b"not json", None);
    let reply = endpoint.handle(&d.headers, &d.body, "req-1").await;
    assert_reply(&reply, 503, "unavailable", "req-1");
    assert!(store.quarantine_records().is_empty());

    // The blob write of a large body fails: nothing was sent.
    let store = MemoryStore::new();
    let plan = FaultPlan::new();
    plan.fail(1, Fault::Before);
    let endpoint = Ingest::new(
        config(Provider::Biteship, &[]),
        store.clone(),
        store.clone(),
        Faulty::new(store.clone(), plan),
        Arc::new(FixedClock(NOW)),
        Metrics::Silent,
    );
    let base = sample(Provider::Biteship);
    let padding = "x".repeat(INLINE_MESSAGE_LIMIT);
    let large = resigned(
        Provider::Biteship,
        &base,
        &base
            .text()
            .replacen('{', &format!("{{\"notes\": \"{padding}\", "), 1),
    );
    let reply = endpoint.handle(&large.headers, &large.body, "req-1").await;
    assert_reply(&reply, 503, "unavailable", "req-1");
    assert!(store.queued().is_empty());
}

#[tokio::test]
async fn the_work_record_says_processed_after_the_queue_drains() {
    let store = MemoryStore::new();
    let endpoint = ingest_on(store.clone(), Provider::Biteship, &[]);
    let processor = processor_on(store.clone(), ());
    let d = sample(Provider::Biteship);
    send(&endpoint, &d, "req-1").await;
    drain(&store, &processor).await;
    let works = store.work_records();
    assert_eq!(works.len(), 1);
    assert_eq!(works[0].status, WorkStatus::Processed);
    assert_eq!(works[0].attempts, 1);
}
