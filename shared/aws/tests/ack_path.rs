//! The provider functions' handler against the local DynamoDB and SQS
//! emulator, driven with the sample API Gateway events from `events/`.

mod common;

use std::sync::Arc;

use common::*;
use futures_util::future::join_all;
use terima_core::Provider;
use terima_service::faults::{Fault, FaultPlan, Faulty};
use terima_service::process::{Extension, ExtensionError, WorkContext};
use terima_service::{Metrics, Processor, ProcessorConfig};

const SAMPLES: [(Provider, &str); 4] = [
    (Provider::BebasKirim, "bebaskirim/order.to_process.json"),
    (Provider::BitByBit, "bitbybit/order.created.json"),
    (Provider::Oms, "oms/package.created.json"),
    (Provider::Biteship, "biteship/order.status.json"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_event_lands_once_in_the_table_and_the_queue() {
    for (provider, file) in SAMPLES {
        let b = Backends::new(5, 30).await;
        let ingest = ingest(provider, b.store(), b.queue(), &[]);
        let (status, body) = call(&ingest, request(file)).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{file}: {body}"
        );
        assert!(
            !body["request_id"].as_str().unwrap_or_default().is_empty(),
            "{body}"
        );
        assert_eq!(b.items_with_sk_prefix("DEDUP").await, 1, "{file}");
        let queued = b.queued_messages().await;
        assert_eq!(queued.len(), 1, "{file}");
        assert_eq!(queued[0].provider, provider);
        assert!(!queued[0].resource.id.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn base64_and_rest_api_events_are_accepted() {
    for (provider, file) in [
        (
            Provider::BebasKirim,
            "bebaskirim/order.to_process--base64.json",
        ),
        (Provider::Biteship, "biteship/order.status--rest-v1.json"),
    ] {
        let b = Backends::new(5, 30).await;
        let ingest = ingest(provider, b.store(), b.queue(), &[]);
        let (status, body) = call(&ingest, request(file)).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{file}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_is_a_duplicate_sequentially_and_under_twenty_concurrent_copies() {
    let b = Backends::new(5, 30).await;
    let ingest = ingest(Provider::BitByBit, b.store(), b.queue(), &[]);
    let file = "bitbybit/customer.created.json";
    assert_eq!(call(&ingest, request(file)).await.1["status"], "accepted");
    assert_eq!(call(&ingest, request(file)).await.1["status"], "duplicate");

    let b = Backends::new(5, 30).await;
    let ingest = ingest_for(&b, Provider::Oms);
    let answers =
        join_all((0..20).map(|_| call(&ingest, request("oms/package.status.packed.json")))).await;
    let accepted = answers
        .iter()
        .filter(|(_, body)| body["status"] == "accepted")
        .count();
    let duplicates = answers
        .iter()
        .filter(|(_, body)| body["status"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicates), (1, 19), "{answers:?}");
    assert_eq!(b.items_with_sk_prefix("DEDUP").await, 1);
    // Every copy was queued (see the ack path's design note); they share one
    // work key, which the processor completes once.
    let queued = b.queued_messages().await;
    assert_eq!(queued.len(), 20);
    assert!(queued.iter().all(|m| m.work_key == queued[0].work_key));
}

fn ingest_for(
    b: &Backends,
    provider: Provider,
) -> terima_service::Ingest<terima_aws::DynamoStore, terima_aws::SqsQueue> {
    ingest(provider, b.store(), b.queue(), &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_with_another_body_is_recorded_as_a_conflict() {
    let b = Backends::new(5, 30).await;
    let ingest = ingest_for(&b, Provider::BitByBit);
    let original = request("bitbybit/order.updated.json");
    let body = std::str::from_utf8(original.body().as_ref())
        .expect("utf-8")
        .to_owned();
    assert_eq!(call(&ingest, original).await.1["status"], "accepted");

    let changed = body.replace("\"paid\"", "\"refunded\"");
    assert_ne!(changed, body);
    let secret = secret_of("TERIMA_BITBYBIT_SECRETS");
    let t = "1705764600";
    let signature = format!(
        "t={t},v1={}",
        hmac_hex(&secret, &[t.as_bytes(), b".", changed.as_bytes()])
    );
    let conflicting = with_header(
        with_body(request("bitbybit/order.updated.json"), &changed),
        "x-bitbybit-webhook-signature",
        Some(&signature),
    );
    let (status, answer) = call(&ingest, conflicting).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("conflict")),
        "{answer}"
    );
    assert_eq!(b.items_with_sk_prefix("CONFLICT#").await, 1);
}

fn secret_of(var: &str) -> String {
    let lookup = test_env(&[]);
    let list = terima_service::Lookup::get(&lookup, var).expect("test secret");
    list.split(',')
        .next()
        .expect("one secret")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_changes_nothing() {
    let b = Backends::new(5, 30).await;
    let bebas = ingest_for(&b, Provider::BebasKirim);
    let bitbybit_strict = ingest(
        Provider::BitByBit,
        b.store(),
        b.queue(),
        &[("TERIMA_BITBYBIT_TOLERANCE_SECS", "300")],
    );
    let bitbybit = ingest_for(&b, Provider::BitByBit);
    let oms = ingest_for(&b, Provider::Oms);
    let small = ingest(
        Provider::Biteship,
        b.store(),
        b.queue(),
        &[("TERIMA_MAX_BODY_BYTES", "64")],
    );
    let biteship = ingest_for(&b, Provider::Biteship);
    let auth = secret_of("TERIMA_BEBASKIRIM_SECRETS");

    let cases = vec![
        (
            "wrong secret",
            call(
                &bebas,
                with_header(
                    request("bebaskirim/order.packed.json"),
                    "authorization",
                    Some("nope"),
                ),
            )
            .await,
            401,
        ),
        (
            "missing header",
            call(
                &bebas,
                with_header(
                    request("bebaskirim/order.packed.json"),
                    "authorization",
                    None,
                ),
            )
            .await,
            401,
        ),
        (
            "garbled signature",
            call(
                &bitbybit,
                with_header(
                    request("bitbybit/order.created.json"),
                    "x-bitbybit-webhook-signature",
                    Some("t=abc"),
                ),
            )
            .await,
            401,
        ),
        (
            "stale timestamp",
            call(&bitbybit_strict, request("bitbybit/order.created.json")).await,
            401,
        ),
        (
            "body changed",
            call(
                &oms,
                with_body(request("oms/package.created.json"), "{\"event\": {}}"),
            )
            .await,
            401,
        ),
        (
            "not JSON",
            call(
                &bebas,
                with_header(
                    with_body(request("bebaskirim/order.packed.json"), "not json"),
                    "authorization",
                    Some(&auth),
                ),
            )
            .await,
            400,
        ),
        (
            "missing field",
            call(
                &bebas,
                with_header(
                    with_body(request("bebaskirim/order.packed.json"), "{\"data\":{}}"),
                    "authorization",
                    Some(&auth),
                ),
            )
            .await,
            400,
        ),
        (
            "too large",
            call(&small, request("biteship/order.status.json")).await,
            413,
        ),
    ];
    for (what, (status, body), expected) in &cases {
        assert_eq!(status, expected, "{what}: {body}");
        assert_ne!(body["status"], "accepted", "{what}");
        if *expected == 401 {
            assert_eq!(
                body.as_object().map(|o| o.len()),
                Some(2),
                "a 401 says nothing more: {body}"
            );
        }
    }
    let (status, body) = call(&biteship, request("biteship/probe.json")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ignored")));
    assert!(
        b.items().await.is_empty(),
        "a rejected delivery left a record"
    );
    assert!(
        b.queued_messages().await.is_empty(),
        "a rejected delivery was queued"
    );
}

/// Counts runs of the business work.
#[derive(Clone, Default)]
struct Counter(Arc<std::sync::atomic::AtomicUsize>);

impl Extension for Counter {
    async fn handle(&self, _: &WorkContext<'_>) -> Result<(), ExtensionError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_at_any_step_is_a_503_and_the_retry_loses_nothing() {
    // The ack path makes two backend calls (claim, send); fail each, before
    // and after it takes effect.
    for (target, fault) in [
        ("store", Fault::Before),
        ("store", Fault::After),
        ("queue", Fault::Before),
        ("queue", Fault::After),
    ] {
        let b = Backends::new(5, 30).await;
        let store_plan = FaultPlan::new();
        let queue_plan = FaultPlan::new();
        match target {
            "store" => store_plan.fail(1, fault),
            _ => queue_plan.fail(1, fault),
        }
        let ingest = ingest(
            Provider::Biteship,
            Faulty::new(b.store(), Arc::clone(&store_plan)),
            Faulty::new(b.queue(), Arc::clone(&queue_plan)),
            &[],
        );
        let what = format!("{target} {fault:?}");
        let (status, body) = call(&ingest, request("biteship/order.status.json")).await;
        assert_eq!(status, 503, "{what}: {body}");
        let (status, body) = call(&ingest, request("biteship/order.status.json")).await;
        assert_eq!(status, 200, "{what}: the retry must get through: {body}");

        let queued = b.queued_messages().await;
        assert!(!queued.is_empty(), "{what}: an acknowledged event was lost");
        assert!(
            queued.iter().all(|m| m.work_key == queued[0].work_key),
            "{what}"
        );
        // Whatever copies were queued, the work runs once.
        let counter = Counter::default();
        let processor = Processor::new(
            ProcessorConfig {
                lease_millis: 30_000,
                concurrency: 4,
            },
            b.store(),
            counter.clone(),
            Arc::new(terima_core::SystemClock),
            Metrics::Silent,
        );
        for message in &queued {
            processor
                .process(&message.encode())
                .await
                .expect("processed");
        }
        assert_eq!(
            counter.0.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{what}"
        );
    }
}
