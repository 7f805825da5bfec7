//! The provider functions' handler against the local DynamoDB, SQS and S3
//! emulator, driven with the sample API Gateway events from `events/`.

mod common;

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use common::*;
use terima_core::{BodyRef, Provider};
use terima_service::store::EventLog;

const SAMPLES: [(Provider, &str); 4] = [
    (Provider::BebasKirim, "bebaskirim/order.to_process.json"),
    (Provider::BitByBit, "bitbybit/order.created.json"),
    (Provider::Oms, "oms/package.created.json"),
    (Provider::Biteship, "biteship/order.status.json"),
];

fn secret_of(var: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join("events/test-secrets.env"))
        .expect("events/test-secrets.env");
    terima_service::config::parse_env_file(&text).expect("valid")[var].clone()
}

/// Hands everything queued to the processor function's code, as the event
/// source mapping would, and deletes what it completed.
async fn process_queue(b: &Backends) -> usize {
    let processor = processor_for(b, (), 90_000);
    let mut processed = 0;
    loop {
        let messages = b.receive_all(&b.queue_url).await;
        if messages.is_empty() {
            return processed;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id.clone();
                record.body = m.body.clone();
                record
            })
            .collect();
        let response = terima_aws::lambda::handle_batch(&processor, event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
        for m in &messages {
            b.sqs
                .delete_message()
                .queue_url(&b.queue_url)
                .receipt_handle(m.receipt_handle().expect("handle"))
                .send()
                .await
                .expect("delete");
        }
        processed += messages.len();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_event_is_queued_and_the_ack_writes_nothing() {
    for (provider, file) in SAMPLES {
        let b = Backends::new(5, 30).await;
        let ingest = ingest_for(&b, provider);
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
        assert!(b.items().await.is_empty(), "{file}: one read, no write");
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
        let ingest = ingest_for(&b, provider);
        let (status, body) = call(&ingest, request(file)).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{file}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_after_processing_is_a_duplicate() {
    for (provider, file) in SAMPLES {
        let b = Backends::new(5, 30).await;
        let ingest = ingest_for(&b, provider);
        assert_eq!(call(&ingest, request(file)).await.1["status"], "accepted");
        assert_eq!(process_queue(&b).await, 1);
        assert_eq!(
            call(&ingest, request(file)).await.1["status"],
            "duplicate",
            "{file}"
        );
        // Its copy is queued, and the processor finds the work done.
        assert_eq!(process_queue(&b).await, 1);
        // The work is recorded once, with the state it produced: no item of
        // its own.
        assert_eq!(b.items_with_sk_prefix("W#").await, 0, "{file}");
        let state = b
            .items()
            .await
            .into_iter()
            .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("S"))
            .unwrap_or_else(|| panic!("{file}: a state item"));
        let recorded = state
            .get("wm")
            .and_then(|v| v.as_m().ok())
            .map_or(0, std::collections::HashMap::len);
        assert_eq!(recorded, 1, "{file}: one work recorded in the state item");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_changes_nothing() {
    let b = Backends::new(5, 30).await;
    let file = "bitbybit/customer.created.json";
    let bitbybit = ingest_for(&b, Provider::BitByBit);
    let forged = with_header(
        request(file),
        "x-bitbybit-webhook-signature",
        Some(&format!("t=1705764600,v1={}", "0".repeat(64))),
    );
    let unsigned = with_header(request(file), "x-bitbybit-webhook-signature", None);
    for (case, req, status) in [("forged", forged, 401), ("unsigned", unsigned, 401)] {
        let (got, body) = call(&bitbybit, req).await;
        assert_eq!(got, status, "{case}: {body}");
    }
    let small = ingest(
        Provider::Biteship,
        b.store(),
        b.queue(),
        b.blobs(),
        &[("TERIMA_MAX_BODY_BYTES", "10")],
    );
    let (got, _) = call(&small, request("biteship/order.status.json")).await;
    assert_eq!(got, 413);
    let biteship = ingest_for(&b, Provider::Biteship);
    let (got, body) = call(&biteship, request("biteship/probe.json")).await;
    assert_eq!((got, body["status"].as_str()), (200, Some("ignored")));
    assert!(b.items().await.is_empty(), "nothing in the table");
    assert!(b.queued_messages().await.is_empty(), "nothing queued");
}

/// A verified body that cannot be read is kept raw in the table, answered
/// 200, listed for an operator.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_verified_body_is_quarantined_in_the_table() {
    let b = Backends::new(5, 30).await;
    let ingest = ingest_for(&b, Provider::Biteship);
    let header = secret_of("TERIMA_BITESHIP_HEADER");
    let secret = secret_of("TERIMA_BITESHIP_SECRETS");
    let req = with_header(
        with_body(
            request("biteship/order.status.json"),
            r#"{"event": "order.status", "event": 1}"#,
        ),
        &header,
        Some(&secret),
    );
    let (status, body) = call(&ingest, req).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("quarantined")),
        "{body}"
    );
    assert_eq!(body["reason"], "duplicate_key");
    let page = b.store().quarantined(None, 10).await.expect("lists");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason, "duplicate_key");
    assert!(b.queued_messages().await.is_empty());
}

/// A body too large for a queue message goes to S3 first; the message and
/// the event log carry its key, and the processor reads it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_travels_through_s3() {
    let b = Backends::new(5, 30).await;
    let ingest = ingest_for(&b, Provider::Biteship);
    let header = secret_of("TERIMA_BITESHIP_HEADER");
    let secret = secret_of("TERIMA_BITESHIP_SECRETS");
    let original = request("biteship/order.status.json");
    let text = std::str::from_utf8(original.body().as_ref())
        .expect("utf-8")
        .to_owned();
    let padding = "p".repeat(600 * 1024);
    let large = text.replacen('{', &format!("{{\"notes\": \"{padding}\", "), 1);
    let req = with_header(with_body(original, &large), &header, Some(&secret));
    let (status, body) = call(&ingest, req).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    let received = b.receive_all(&b.queue_url).await;
    assert_eq!(received.len(), 1);
    let queued = terima_core::QueueMessage::decode(received[0].body().expect("body"))
        .expect("a Terima message");
    let BodyRef::Stored { key, size } = &queued.body else {
        panic!("the body is in S3: {:?}", queued.body);
    };
    assert_eq!(*size, large.len());
    assert!(
        received[0].body().expect("body").len() < 2_000,
        "the message is small"
    );
    let listed = b.blobs().list("claim/").await.expect("lists");
    assert_eq!(listed, vec![key.clone()]);
    // Visible again at once, then processed from S3.
    for m in received {
        b.sqs
            .change_message_visibility()
            .queue_url(&b.queue_url)
            .receipt_handle(m.receipt_handle().expect("handle"))
            .visibility_timeout(0)
            .send()
            .await
            .expect("visible");
    }
    assert_eq!(process_queue(&b).await, 1);
    let page = b
        .store()
        .events(&Default::default(), None, 10)
        .await
        .expect("lists");
    assert_eq!(page.items.len(), 1);
    let stored = b
        .store()
        .body(&page.items[0].event)
        .await
        .expect("reads")
        .expect("kept");
    assert_eq!(stored, large.as_bytes());
    let sizes: HashMap<String, usize> = b
        .items()
        .await
        .iter()
        .map(|item| {
            let size: usize = item
                .iter()
                .map(|(k, v)| k.len() + v.as_s().map(String::len).unwrap_or(64))
                .sum();
            (format!("{:?}", item.get("sk")), size)
        })
        .collect();
    assert!(
        sizes.values().all(|s| *s < 10_000),
        "no item carries the body: {sizes:?}"
    );
}
