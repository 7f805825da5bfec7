//! The processor against the local DynamoDB, SQS and S3 emulator: batches,
//! duplicates, deaths, late deliveries, poison messages, the event log across
//! its partitions, and the archive that outlives it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use common::*;
use terima_aws::{DynamoStore, S3Blobs};
use terima_core::{Inspected, Provider, QueueMessage, SystemClock, Timestamp};
use terima_service::Processor;
use terima_service::memory::MemoryStore;
use terima_service::process::{Extension, ExtensionError, ProcessError, Processed, WorkContext};
use terima_service::store::{
    EventFilter, EventLog, EventRecord, EventStore, Lease, LeaseRequest, ListedStatus, WorkRecord,
    WorkStatus,
};

#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Counter {
    fn runs(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Extension for Counter {
    fn applies(&self, _: &Inspected) -> bool {
        true
    }

    async fn handle(&self, _: &WorkContext<'_>) -> Result<(), ExtensionError> {
        // Long enough for a concurrent copy to arrive while this one works.
        sleep_ms(50).await;
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn processor(
    b: &Backends,
    counter: &Counter,
    lease_millis: i64,
) -> Processor<DynamoStore, S3Blobs, Counter> {
    processor_for(b, counter.clone(), lease_millis)
}

/// The queue message a provider function would send for this body
/// (verification off: these tests are about the processor).
async fn message(provider: Provider, body: &str) -> QueueMessage {
    let memory = MemoryStore::new();
    let verify_off = format!("TERIMA_{}_VERIFY", provider.env_infix());
    let ingest = ingest(
        provider,
        memory.clone(),
        memory.clone(),
        memory.clone(),
        &[(&verify_off, "off")],
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("x-bitbybit-webhook-id", "evt-1".parse().expect("value"));
    headers.insert(
        "x-bitbybit-webhook-event",
        "order.updated".parse().expect("value"),
    );
    let reply = ingest.handle(&headers, body.as_bytes(), "req-test").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    memory.queued().pop().expect("queued")
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(
        workspace_root()
            .join("shared/core/tests/fixtures")
            .join(path),
    )
    .expect("fixture")
}

/// A Biteship `order.status` body with the given status and optional time.
fn biteship(status: &str, updated_at: Option<&str>) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&fixture("biteship/order.status.json")).expect("json");
    v["status"] = status.into();
    if let Some(t) = updated_at {
        v["updated_at"] = t.into();
    }
    v.to_string()
}

/// The event source mapping's one round (see `common::poll_once`).
async fn poll_once<E: Extension>(
    b: &Backends,
    p: &Processor<DynamoStore, S3Blobs, E>,
) -> (Vec<String>, Vec<String>) {
    common::poll_once(b, p, Duration::from_secs(600))
        .await
        .expect("the invocation finishes")
}

async fn send(b: &Backends, body: &str) -> String {
    b.sqs
        .send_message()
        .queue_url(&b.queue_url)
        .message_body(body)
        .send()
        .await
        .expect("send")
        .message_id
        .expect("id")
}

async fn status_of(b: &Backends, provider: Provider, kind: &str, id: &str) -> Option<String> {
    b.store()
        .resource(provider, kind, id)
        .await
        .expect("read resource")
        .and_then(|r| r.status)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_ten_with_one_undecodable_message_reports_exactly_that_one() {
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let events = [
        "order.draft",
        "order.to_process",
        "order.in_process",
        "order.packed",
        "order.shipped",
        "item.created",
        "purchase.created",
        "inbound.created",
        "awb.generated",
    ];
    let mut event = SqsEvent::default();
    for (i, name) in events.iter().enumerate() {
        let m = message(
            Provider::BebasKirim,
            &fixture(&format!("bebaskirim/{name}.json")),
        )
        .await;
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{i}"));
        record.body = Some(m.encode());
        event.records.push(record);
    }
    let mut poison = SqsMessage::default();
    poison.message_id = Some("poison".to_owned());
    poison.body = Some("{\"not\": \"a terima message\"}".to_owned());
    event.records.insert(4, poison);

    let response = terima_aws::lambda::handle_batch(&p, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["poison"]);
    assert_eq!(counter.runs(), 9);
    let processed = b
        .store()
        .events(&Default::default(), None, 100)
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.status() == ListedStatus::Processed)
        .count();
    assert_eq!(processed, 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_twice_or_twice_at_once_runs_the_work_once() {
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let body = message(Provider::Oms, &fixture("oms/package.created.json"))
        .await
        .encode();

    assert_eq!(p.process(&body).await.expect("first"), Processed::Done);
    assert_eq!(
        p.process(&body).await.expect("second"),
        Processed::AlreadyDone
    );
    assert_eq!(counter.runs(), 1);

    let body = message(Provider::Oms, &fixture("oms/package.status.packed.json"))
        .await
        .encode();
    let (a, c) = tokio::join!(p.process(&body), p.process(&body));
    let busy = [&a, &c]
        .iter()
        .filter(|r| matches!(r, Err(ProcessError::Busy { .. })))
        .count();
    let done = [&a, &c]
        .iter()
        .filter(|r| matches!(r, Ok(Processed::Done)))
        .count();
    assert_eq!((done, busy), (1, 1), "{a:?} {c:?}");
    assert_eq!(
        p.process(&body).await.expect("retry"),
        Processed::AlreadyDone
    );
    assert_eq!(counter.runs(), 2);

    // Through the queue: two copies of one event in one batch.
    let body = message(Provider::Oms, &fixture("oms/shipment.created.json"))
        .await
        .encode();
    send(&b, &body).await;
    send(&b, &body).await;
    for _ in 0..10 {
        poll_once(&b, &p).await;
        if b.receive_all(&b.queue_url).await.is_empty() {
            break;
        }
        sleep_ms(200).await;
    }
    assert_eq!(counter.runs(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_death_between_steps_the_work_completes_once_when_the_lease_lapses() {
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let m = message(
        Provider::Biteship,
        &fixture("biteship/order.status--delivered.json"),
    )
    .await;

    // An invocation took the lease and died before completing.
    let now = SystemClock.now_millis_for_test();
    let dead = b
        .store()
        .acquire(&LeaseRequest {
            record: WorkRecord::new(&EventRecord::from_message(&m)),
            owner: "dead-invocation".to_owned(),
            now,
            lease_millis: 1_000,
        })
        .await
        .expect("lease");
    assert!(matches!(
        dead,
        Lease::Acquired {
            attempts: 1,
            takeover: false
        }
    ));

    assert!(matches!(
        p.process(&m.encode()).await,
        Err(ProcessError::Busy { .. })
    ));
    assert_eq!(counter.runs(), 0);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        p.process(&m.encode()).await.expect("takeover"),
        Processed::Done
    );
    assert_eq!(
        p.process(&m.encode()).await.expect("repeat"),
        Processed::AlreadyDone
    );
    assert_eq!(counter.runs(), 1);
    let record = b
        .store()
        .works(Provider::Biteship, &m.resource, &m.work_key)
        .await
        .expect("read")
        .pop()
        .expect("work");
    assert_eq!((record.status, record.attempts), (WorkStatus::Processed, 2));
    assert_eq!(record.lease_owner, None);
    assert_eq!(
        status_of(&b, Provider::Biteship, "order", &m.resource.id)
            .await
            .as_deref(),
        Some("delivered")
    );
}

trait NowForTest {
    fn now_millis_for_test(&self) -> i64;
}

impl NowForTest for SystemClock {
    fn now_millis_for_test(&self) -> i64 {
        terima_core::Clock::now_millis(self)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn late_and_out_of_order_deliveries_never_move_a_state_backwards() {
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let run = |provider, body: String| {
        let p = &p;
        async move {
            let m = message(provider, &body).await;
            p.process(&m.encode()).await.expect("processed");
        }
    };

    // Bebas Kirim: shipped before packed.
    run(
        Provider::BebasKirim,
        fixture("bebaskirim/order.shipped.json"),
    )
    .await;
    run(
        Provider::BebasKirim,
        fixture("bebaskirim/order.packed.json"),
    )
    .await;
    assert_eq!(
        status_of(&b, Provider::BebasKirim, "order", "ORD-2024-001")
            .await
            .as_deref(),
        Some("shipped")
    );

    // Akinon: shipped (later modified_date) before packed.
    run(Provider::Oms, fixture("oms/package.status.shipped.json")).await;
    run(Provider::Oms, fixture("oms/package.status.packed.json")).await;
    assert_eq!(
        status_of(&b, Provider::Oms, "package", "1001")
            .await
            .as_deref(),
        Some("800")
    );

    // Biteship without updated_at: delivered before picked; the documented
    // order of statuses decides.
    let order = "65bb1f2e9a4c3d0012e4f5a6";
    run(Provider::Biteship, biteship("delivered", None)).await;
    run(Provider::Biteship, biteship("picked", None)).await;
    assert_eq!(
        status_of(&b, Provider::Biteship, "order", order)
            .await
            .as_deref(),
        Some("delivered")
    );

    // A late retry of an old status that carries its time.
    let b2 = Backends::new(5, 30).await;
    let p2 = processor(&b2, &counter, 30_000);
    for body in [
        biteship("dropping_off", Some("2024-02-01T12:00:00.000Z")),
        biteship("pickingUp", Some("2024-02-01T10:00:00.000Z")),
        biteship("picked", None),
    ] {
        let m = message(Provider::Biteship, &body).await;
        p2.process(&m.encode()).await.expect("processed");
    }
    assert_eq!(
        status_of(&b2, Provider::Biteship, "order", order)
            .await
            .as_deref(),
        Some("dropping_off")
    );
    // ...and the waybill that arrives afterwards still fills in.
    let m = message(
        Provider::Biteship,
        &fixture("biteship/order.waybill_id.json"),
    )
    .await;
    p2.process(&m.encode()).await.expect("processed");
    let state = b2
        .store()
        .resource(Provider::Biteship, "order", order)
        .await
        .expect("read")
        .expect("state");
    assert_eq!(state.status.as_deref(), Some("dropping_off"));
    assert!(state.fields.contains_key("courier_waybill_id"), "{state:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_reaches_the_dlq_after_max_receive_count() {
    let b = Backends::new(2, 1).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let id = send(&b, "this is not a Terima message").await;
    let mut receives = 0;
    for _ in 0..10 {
        let (received, failed) = poll_once(&b, &p).await;
        if received.contains(&id) {
            receives += 1;
            assert_eq!(
                failed,
                vec![id.clone()],
                "an undecodable message must be reported failed"
            );
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let in_dlq = b
            .sqs
            .receive_message()
            .queue_url(&b.dlq_url)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive DLQ")
            .messages
            .unwrap_or_default();
        if let Some(dead) = in_dlq.first() {
            assert_eq!(dead.body(), Some("this is not a Terima message"));
            assert_eq!(receives, 2, "moved after maxReceiveCount receives");
            return;
        }
    }
    panic!("the poison message never reached the DLQ ({receives} receives)");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_log_is_queryable_by_resource_and_by_time_across_its_partitions() {
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    for name in [
        "order.draft",
        "order.to_process",
        "item.created",
        "order.packed",
    ] {
        let m = message(
            Provider::BebasKirim,
            &fixture(&format!("bebaskirim/{name}.json")),
        )
        .await;
        p.process(&m.encode()).await.expect("processed");
        sleep_ms(5).await;
    }
    let store = b.store();
    let by_order = store
        .events(
            &EventFilter {
                resource: Some(("order".into(), "ORD-2024-001".into())),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .expect("query");
    let types: Vec<&str> = by_order
        .items
        .iter()
        .map(|e| e.event.event_type.as_str())
        .collect();
    assert_eq!(types, ["order.packed", "order.to_process", "order.draft"]);

    let all = store
        .events(&Default::default(), None, 10)
        .await
        .expect("all");
    assert_eq!(all.items.len(), 4);
    let ids: Vec<&str> = all.items.iter().map(|v| v.event.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first across the shards");
    let shards: std::collections::BTreeSet<u32> = ids
        .iter()
        .filter_map(|id| terima_service::store::event_id_parts(id).map(|(_, s)| s))
        .collect();
    assert!(
        shards.len() > 1,
        "the events sit in several partitions: {shards:?}"
    );
    // Page by page, the same order.
    let first = store
        .events(&Default::default(), None, 3)
        .await
        .expect("page");
    let rest = store
        .events(&Default::default(), first.next.as_deref(), 3)
        .await
        .expect("page");
    let paged: Vec<&str> = first
        .items
        .iter()
        .chain(rest.items.iter())
        .map(|v| v.event.id.as_str())
        .collect();
    assert_eq!(paged, ids);
    let middle = all.items[1].event.received_at;
    let since = store
        .events(
            &EventFilter {
                since: Some(middle),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .expect("range");
    assert_eq!(since.items.len(), 2);
    let before = store
        .events(
            &EventFilter {
                until: Some(Timestamp::from_unix_millis(middle.unix_millis())),
                ..Default::default()
            },
            None,
            1,
        )
        .await
        .expect("range");
    assert_eq!(before.items.len(), 1);
    assert_eq!(before.items[0].event.event_type, "order.to_process");
    // One event by id, with its body.
    let one = store
        .event(&all.items[0].event.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(one.status(), ListedStatus::Processed);
    let body = store.body(&one.event).await.expect("body").expect("kept");
    assert_eq!(
        body,
        fixture("bebaskirim/order.packed.json").as_bytes(),
        "the body comes back byte for byte from its deflated copy"
    );
}

/// Two entries of one work (a second delivery that raced the first through
/// the processor) with another event logged between them: the list reads that
/// work once. BatchGetItem refuses a key asked for twice, and `terima events
/// list --backend aws` failed on such a log.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_with_two_entries_of_one_work_apart_reads_that_work_once() {
    // GIVEN a processed event, another event, then the first one's second entry
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let now = terima_core::Clock::now_millis(&SystemClock);
    let mut first = message(Provider::Oms, &fixture("oms/package.created.json")).await;
    first.received_at = Timestamp::from_unix_millis(now - 3);
    let mut other = message(Provider::Oms, &fixture("oms/shipment.created.json")).await;
    other.received_at = Timestamp::from_unix_millis(now - 2);
    let mut second = first.clone();
    second.received_at = Timestamp::from_unix_millis(now - 1);
    assert_eq!(
        p.process(&first.encode()).await.expect("processed"),
        Processed::Done
    );
    let store = b.store();
    for m in [&other, &second] {
        store
            .log(&EventRecord::from_message(m))
            .await
            .expect("logged");
    }

    // WHEN the log is listed
    let listed = store
        .events(&Default::default(), None, 10)
        .await
        .expect("a list with two entries of one work");

    // THEN all three are there, the second entry pointing at the first's work
    let entries: Vec<(&str, bool)> = listed
        .items
        .iter()
        .map(|v| (v.event.id.as_str(), v.is_duplicate_entry()))
        .collect();
    let id = |m: &QueueMessage| EventRecord::from_message(m).id;
    assert_eq!(
        entries,
        [
            (id(&second).as_str(), true),
            (id(&other).as_str(), false),
            (id(&first).as_str(), false)
        ]
    );
    assert_eq!(
        listed.items[0].work.as_ref().map(|w| w.event_id.clone()),
        Some(id(&first))
    );
}

/// The event log expires after the retention period; before that, the
/// maintenance function copies it, bodies included, to the S3 archive, from
/// which `events show` and `events list` still read it.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_event_is_still_shown_and_listed_from_the_archive() {
    let b = Backends::new(5, 30).await;
    let counter = Counter::default();
    let p = processor(&b, &counter, 30_000);
    let day = 86_400_000;
    let now = Timestamp::from_unix_millis(terima_core::Clock::now_millis(&SystemClock));
    // An event received 20 days ago: due for the archive (days 15 to 29 back).
    let mut m = message(Provider::Oms, &fixture("oms/package.created.json")).await;
    m.received_at = Timestamp::from_unix_millis(now.unix_millis() - 20 * day);
    p.process(&m.encode()).await.expect("processed");
    let id = EventRecord::from_message(&m).id;
    let store = b.store();
    let item = b
        .items()
        .await
        .into_iter()
        .find(|i| i.get("sk").and_then(|v| v.as_s().ok()) == Some(&id))
        .expect("the log entry");
    // It expires exactly after the retention period (DynamoDB's TTL deletes it).
    let expires: i64 = item["expires_at"]
        .as_n()
        .expect("ttl")
        .parse()
        .expect("number");
    assert_eq!(expires, (m.received_at.unix_millis() + 30 * day) / 1_000);

    let archived = terima_aws::archive::run(&store, &b.blobs(), now, 400, Duration::from_secs(30))
        .await
        .expect("archives");
    assert_eq!(archived, 1);
    let again = terima_aws::archive::run(&store, &b.blobs(), now, 400, Duration::from_secs(30))
        .await
        .expect("archives");
    assert_eq!(again, 0, "a day is archived once");
    // The TTL takes the log entry.
    b.dynamodb
        .delete_item()
        .table_name(&b.table)
        .key("pk", item["pk"].clone())
        .key("sk", item["sk"].clone())
        .send()
        .await
        .expect("delete");

    // Ten days later the day is past the retention period: a store that
    // reads as then (retention counted from a clock ten days on is the same
    // as a retention ten days shorter now) finds it in the archive only.
    let store = DynamoStore::new(b.dynamodb.clone(), &b.table, 15).with_blobs(b.blobs());
    let shown = store
        .event(&id)
        .await
        .expect("reads")
        .expect("from the archive");
    assert!(shown.archived);
    assert_eq!(shown.event.work_key, m.work_key);
    assert_eq!(
        store.body(&shown.event).await.expect("body").expect("kept"),
        fixture("oms/package.created.json").as_bytes()
    );
    let listed = store
        .events(
            &EventFilter {
                since: Some(Timestamp::from_unix_millis(now.unix_millis() - 25 * day)),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .expect("lists");
    assert_eq!(
        listed
            .items
            .iter()
            .map(|v| v.event.id.as_str())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn works_recorded_with_the_state_keep_it_in_one_write_unit_and_are_all_found() {
    let b = Backends::new(5, 30).await;
    let p = processor_for(&b, (), 300_000);
    let mut messages = Vec::new();
    for minute in 0..24 {
        let body = biteship(
            "dropping_off",
            Some(&format!("2024-01-20T10:{minute:02}:00Z")),
        );
        messages.push(message(Provider::Biteship, &body).await);
    }
    for m in &messages {
        assert_eq!(
            p.process(&m.encode()).await.expect("processes"),
            Processed::Done
        );
    }
    let state = b
        .items()
        .await
        .into_iter()
        .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("S"))
        .expect("a state item");
    let size: usize = state.iter().map(|(k, v)| k.len() + value_bytes(v)).sum();
    let own_items = b.items_with_sk_prefix("W#").await;
    println!(
        "state item {size} B after 24 events; {} works recorded in it, {own_items} in items of their own",
        24 - own_items
    );
    assert!(own_items > 0 && own_items < 24, "{own_items}");
    assert!(
        size <= 1_024,
        "the state item stays within one write unit: {size}"
    );
    // Every copy, old or new, is found done.
    for m in &messages {
        assert_eq!(
            p.process(&m.encode()).await.expect("processes"),
            Processed::AlreadyDone
        );
    }
    let story = b
        .store()
        .story(Provider::Biteship, "order", "65bb1f2e9a4c3d0012e4f5a6")
        .await
        .expect("story");
    assert_eq!(story.works.len(), 24);
    assert!(
        story
            .works
            .iter()
            .all(|w| w.status == WorkStatus::Processed)
    );
    assert_eq!(
        b.items_with_sk_prefix("W#").await,
        own_items,
        "nothing new written"
    );
}

/// DynamoDB's size of an attribute value.
fn value_bytes(v: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) | A::N(s) => s.len(),
        A::B(b) => b.as_ref().len(),
        A::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| k.len() + value_bytes(v) + 1)
                .sum::<usize>()
        }
        _ => 1,
    }
}
