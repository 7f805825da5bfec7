//! The processor over the in-memory store: batches, once-only work under the
//! lease, takeover after a death, failures, and the projection's refusal to
//! move a resource backwards.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ManualClock, NOW, delivery, queue_message, signed};
use serde_json::{Value, json};
use terima_core::providers::bebaskirim::PARTIAL_CANCELLATIONS;
use terima_core::verify::FixedClock;
use terima_core::{
    BodyRef, Clock, Inspected, Provider, QueueMessage, Resource, Timestamp, inspect,
};
use terima_service::extensions::DeliveredNotification;
use terima_service::faults::{Fault, FaultPlan, Faulty};
use terima_service::memory::MemoryStore;
use terima_service::process::{ExtensionError, ProcessError, Processed, WorkContext};
use terima_service::store::{
    BackendError, ConflictRecord, Effect, EventRecord, EventStore, Lease, LeaseRequest,
    ResourceState, WorkKey, WorkRecord, WorkStatus,
};
use terima_service::{Extension, Metrics, Processor, ProcessorConfig, Record};

const LEASE_MILLIS: i64 = 90_000;

/// An extension that records every event it completed, and can be made slow
/// or made to fail its first calls.
#[derive(Clone, Default)]
struct Counting {
    runs: Arc<Mutex<Vec<String>>>,
    failures_left: Arc<AtomicU32>,
    delay: Duration,
}

impl Counting {
    fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn failing(times: u32) -> Self {
        Self {
            failures_left: Arc::new(AtomicU32::new(times)),
            ..Self::default()
        }
    }

    fn runs(&self) -> Vec<String> {
        self.runs
            .lock()
            .expect("no test panicked holding the lock")
            .clone()
    }
}

impl Extension for Counting {
    fn applies(&self, _: &Inspected) -> bool {
        true
    }

    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(ExtensionError(
                "notification service unavailable".to_owned(),
            ));
        }
        self.runs
            .lock()
            .expect("no test panicked holding the lock")
            .push(ctx.event_id.to_owned());
        Ok(())
    }
}

/// An event store that remembers every lease answer, so a test can see what
/// the metrics would count (takeovers, attempts).
#[derive(Clone, Default)]
struct Spy {
    inner: MemoryStore,
    leases: Arc<Mutex<Vec<Lease>>>,
}

impl Spy {
    fn leases(&self) -> Vec<Lease> {
        self.leases
            .lock()
            .expect("no test panicked holding the lock")
            .clone()
    }
}

impl EventStore for Spy {
    async fn works(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> Result<Vec<WorkRecord>, BackendError> {
        self.inner.works(provider, resource, work_key).await
    }

    async fn log(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.inner.log(event).await
    }

    async fn unlog(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.inner.unlog(event).await
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let lease = self.inner.acquire(request).await?;
        self.leases
            .lock()
            .expect("no test panicked holding the lock")
            .push(lease.clone());
        Ok(lease)
    }

    async fn complete(
        &self,
        key: &WorkKey,
        owner: &str,
        now: Timestamp,
        effect: Effect,
    ) -> Result<bool, BackendError> {
        self.inner.complete(key, owner, now, effect).await
    }

    async fn finish(&self, record: &WorkRecord) -> Result<bool, BackendError> {
        self.inner.finish(record).await
    }

    async fn fail(
        &self,
        key: &WorkKey,
        owner: Option<&str>,
        error: &str,
    ) -> Result<bool, BackendError> {
        self.inner.fail(key, owner, error).await
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        self.inner.resource(provider, kind, id).await
    }

    async fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.put_resource(state, expected).await
    }

    async fn record_conflict(&self, conflict: &ConflictRecord) -> Result<(), BackendError> {
        self.inner.record_conflict(conflict).await
    }
}

fn processor<S: EventStore, E: Extension>(
    store: S,
    extension: E,
    clock: impl Clock + 'static,
) -> Processor<S, MemoryStore, E> {
    Processor::new(
        ProcessorConfig {
            lease_millis: LEASE_MILLIS,
            concurrency: 8,
        },
        store,
        MemoryStore::new(),
        extension,
        Arc::new(clock),
        Metrics::Silent,
    )
}

/// A processor with no extension over a fresh memory store.
fn plain() -> Processor<MemoryStore, MemoryStore> {
    processor(MemoryStore::new(), (), FixedClock(NOW))
}

async fn message(provider: Provider, stem: &str) -> QueueMessage {
    queue_message(provider, &delivery(provider, stem)).await
}

async fn message_of(
    provider: Provider,
    body: &Value,
    bitbybit: Option<(&str, &str)>,
) -> QueueMessage {
    queue_message(
        provider,
        &signed(provider, body.to_string().as_bytes(), bitbybit),
    )
    .await
}

async fn process_ok<S: EventStore, E: Extension>(
    processor: &Processor<S, MemoryStore, E>,
    message: &QueueMessage,
) -> Processed {
    processor
        .process(&message.encode())
        .await
        .unwrap_or_else(|e| panic!("{} {} failed: {e}", message.provider, message.event_type))
}

async fn resource<S: EventStore>(
    store: &S,
    provider: Provider,
    kind: &str,
    id: &str,
) -> ResourceState {
    store
        .resource(provider, kind, id)
        .await
        .expect("the memory store answers")
        .unwrap_or_else(|| panic!("no {kind} {id}"))
}

/// The work record of a message's event.
async fn work_record<S: EventStore>(store: &S, message: &QueueMessage) -> WorkRecord {
    store
        .works(message.provider, &message.resource, &message.work_key)
        .await
        .expect("the memory store answers")
        .into_iter()
        .find(|w| w.key.digest == message.digest)
        .expect("the work is recorded")
}

/// The event id the processor logs a message under.
fn logged_id(message: &QueueMessage) -> String {
    EventRecord::from_message(message).id
}

fn body_text(message: &QueueMessage) -> &str {
    match &message.body {
        BodyRef::Inline { text } => text,
        BodyRef::Stored { .. } => panic!("test messages carry their body"),
    }
}

fn bebas_kirim_order(n: usize) -> Value {
    json!({
        "event": "order.packed",
        "timestamp": "2024-01-20T16:30:00Z",
        "tenant_id": "TEN-2024-001",
        "data": {
            "order_id": format!("ORD-B-{n}"),
            "order_number": format!("BBS-B-{n}"),
            "status": "packed",
            "updated_at": "2024-01-20T16:30:00Z"
        }
    })
}

fn biteship_status(status: &str, updated_at: Option<&str>) -> Value {
    let mut body = json!({
        "event": "order.status",
        "order_id": "65bb1f2e9a4c3d0012e4f5a6",
        "courier_company": "jne",
        "courier_type": "reg",
        "order_price": 15000,
        "status": status,
    });
    if let Some(at) = updated_at {
        body["updated_at"] = at.into();
    }
    body
}

const BITESHIP_ORDER: &str = "65bb1f2e9a4c3d0012e4f5a6";

#[tokio::test]
async fn a_batch_with_one_undecodable_message_fails_only_that_one() {
    let extension = Counting::default();
    let processor = processor(MemoryStore::new(), extension.clone(), FixedClock(NOW));
    let mut messages = Vec::new();
    let mut records = Vec::new();
    for n in 0..10 {
        let body = if n == 4 {
            "{\"v\": 1, \"this is\": \"not a queue message\"}".to_owned()
        } else {
            let message = message_of(Provider::BebasKirim, &bebas_kirim_order(n), None).await;
            let body = message.encode();
            messages.push(message);
            body
        };
        records.push(Record {
            message_id: format!("m-{n}"),
            body,
        });
    }

    let failed = processor.process_batch(records).await;

    assert_eq!(failed, vec!["m-4".to_owned()]);
    assert_eq!(messages.len(), 9);
    for message in &messages {
        let record = work_record(processor.store(), message).await;
        assert_eq!(
            record.status,
            WorkStatus::Processed,
            "{}",
            message.resource.id
        );
        assert_eq!(record.attempts, 1);
        assert_eq!(record.lease_owner, None);
        let order = resource(
            processor.store(),
            Provider::BebasKirim,
            "order",
            &message.resource.id,
        )
        .await;
        assert_eq!(order.status.as_deref(), Some("packed"));
    }
    assert_eq!(extension.runs().len(), 9);
}

#[tokio::test]
async fn messages_that_cannot_be_read_fail_with_their_reason() {
    let processor = plain();
    let good = message(Provider::BebasKirim, "order.packed").await;
    let mut tampered = good.clone();
    tampered.body = BodyRef::Inline {
        text: body_text(&good).replace("BBS-2024-0001", "BBS-2024-9999"),
    };
    let mut future_version = good.clone();
    future_version.v = 3;
    let mut unreadable = good.clone();
    unreadable.body = BodyRef::Inline {
        text: r#"{"data": {}}"#.to_owned(),
    };
    unreadable.body_sha256 = terima_core::message::sha256_hex(br#"{"data": {}}"#);
    let mut lost = good.clone();
    lost.body = BodyRef::Stored {
        key: "claim/gone".to_owned(),
        size: 10,
    };

    for (case, body, reason) in [
        ("not JSON", "garbage".to_owned(), "undecodable"),
        ("digest mismatch", tampered.encode(), "undecodable"),
        ("unknown version", future_version.encode(), "undecodable"),
        ("body no longer an event", unreadable.encode(), "unreadable"),
        ("stored body missing", lost.encode(), "body"),
    ] {
        let error = processor.process(&body).await.expect_err(case);
        assert_eq!(error.reason(), reason, "{case}: {error}");
    }
    assert!(
        processor.store().logged().is_empty(),
        "nothing unreadable reaches the event log"
    );
}

#[tokio::test]
async fn the_same_message_twice_in_a_row_does_the_work_once() {
    let extension = Counting::default();
    let processor = processor(MemoryStore::new(), extension.clone(), FixedClock(NOW));
    let message = message(Provider::BitByBit, "customer.updated").await;

    assert_eq!(process_ok(&processor, &message).await, Processed::Done);
    assert_eq!(
        process_ok(&processor, &message).await,
        Processed::AlreadyDone
    );

    assert_eq!(extension.runs(), vec![logged_id(&message)]);
    let record = work_record(processor.store(), &message).await;
    assert_eq!(record.attempts, 1);
    assert_eq!(record.status, WorkStatus::Processed);
    assert_eq!(
        record.processed_at,
        Some(Timestamp::from_unix_millis(NOW * 1_000))
    );
}

#[tokio::test]
async fn a_concurrent_copy_is_busy_and_its_retry_is_already_done() {
    let extension = Counting::slow(Duration::from_millis(50));
    let processor = processor(MemoryStore::new(), extension.clone(), FixedClock(NOW));
    let message = message(Provider::Biteship, "order.status--delivered").await;
    let body = message.encode();

    let (first, second) = tokio::join!(processor.process(&body), processor.process(&body));

    let (done, busy) = match (first, second) {
        (Ok(done), Err(busy)) | (Err(busy), Ok(done)) => (done, busy),
        other => panic!("one copy should run and one be busy, got {other:?}"),
    };
    assert_eq!(done, Processed::Done);
    match busy {
        ProcessError::Busy { until } => assert_eq!(until, NOW * 1_000 + LEASE_MILLIS),
        other => panic!("the other copy should be busy, got {other:?}"),
    }
    assert_eq!(extension.runs().len(), 1);
    // SQS retries the busy copy later: by then the work has completed.
    assert_eq!(
        process_ok(&processor, &message).await,
        Processed::AlreadyDone
    );
    assert_eq!(extension.runs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_in_one_batch_and_across_processors_run_once() {
    let extension = Counting::slow(Duration::from_millis(30));
    let store = MemoryStore::new();
    let first = processor(store.clone(), extension.clone(), FixedClock(NOW));
    let second = processor(store.clone(), extension.clone(), FixedClock(NOW));
    let message = message(Provider::Oms, "package.status.shipped").await;
    // Akinon re-triggered the lost task under a new uuid: same work.
    let retrigger = queue_message(
        Provider::Oms,
        &delivery(Provider::Oms, "package.status.shipped--new-uuid-retrigger"),
    )
    .await;
    assert_ne!(message.dedup_key, retrigger.dedup_key);
    assert_eq!(message.work_key, retrigger.work_key);
    let batch = |prefix: &str| {
        [&message, &retrigger, &message]
            .iter()
            .enumerate()
            .map(|(i, m)| Record {
                message_id: format!("{prefix}-{i}"),
                body: m.encode(),
            })
            .collect::<Vec<_>>()
    };

    let (failed_first, failed_second) = tokio::join!(
        first.process_batch(batch("a")),
        second.process_batch(batch("b"))
    );

    // Each batch runs its first copy once and the others share its
    // outcome; one batch found the lease held, and SQS retries its three.
    assert_eq!(
        failed_first.len() + failed_second.len(),
        3,
        "{failed_first:?} {failed_second:?}"
    );
    assert_eq!(extension.runs().len(), 1);
    for retry in [&message, &retrigger] {
        assert_eq!(process_ok(&first, retry).await, Processed::AlreadyDone);
    }
    assert_eq!(extension.runs().len(), 1);
}

#[tokio::test]
async fn a_dead_holders_lease_is_taken_over_once_it_lapses() {
    let clock = ManualClock::at_unix(NOW);
    let store = Spy::default();
    let extension = Counting::default();
    let processor = processor(store.clone(), extension.clone(), clock.clone());
    let message = message(Provider::BebasKirim, "order.shipped").await;
    // GIVEN an invocation that took the lease for one second and died.
    let taken = store
        .acquire(&LeaseRequest {
            record: WorkRecord::new(&EventRecord::from_message(&message)),
            owner: "dead-invocation".to_owned(),
            now: clock.now_millis(),
            lease_millis: 1_000,
        })
        .await
        .expect("memory");
    assert_eq!(
        taken,
        Lease::Acquired {
            attempts: 1,
            takeover: false
        }
    );

    // WHEN its copy is retried while the lease is live, THEN it is busy.
    clock.advance_millis(999);
    match processor.process(&message.encode()).await {
        Err(ProcessError::Busy { until }) => assert_eq!(until, NOW * 1_000 + 1_000),
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(extension.runs().is_empty());
    assert_eq!(
        work_record(&store, &message).await.lease_owner.as_deref(),
        Some("dead-invocation")
    );

    // WHEN it is retried after the lease lapsed, THEN the work completes once.
    clock.advance_millis(1);
    assert_eq!(process_ok(&processor, &message).await, Processed::Done);
    assert_eq!(
        store.leases().last(),
        Some(&Lease::Acquired {
            attempts: 2,
            takeover: true
        })
    );
    let record = work_record(&store, &message).await;
    assert_eq!(record.attempts, 2);
    assert_eq!(record.status, WorkStatus::Processed);
    assert_eq!((record.lease_owner, record.lease_until), (None, None));
    assert_eq!(
        record.processed_at,
        Some(Timestamp::from_unix_millis(NOW * 1_000 + 1_000))
    );
    assert_eq!(extension.runs().len(), 1);
    let order = resource(&store, Provider::BebasKirim, "order", "ORD-2024-001").await;
    assert_eq!(order.status.as_deref(), Some("shipped"));

    assert_eq!(
        process_ok(&processor, &message).await,
        Processed::AlreadyDone
    );
    assert_eq!(extension.runs().len(), 1);
}

#[tokio::test]
async fn a_failing_extension_marks_the_event_failed_and_the_retry_succeeds() {
    let store = Spy::default();
    let extension = Counting::failing(1);
    let processor = processor(store.clone(), extension.clone(), FixedClock(NOW));
    let message = message(Provider::Biteship, "order.status--delivered").await;

    let error = processor
        .process(&message.encode())
        .await
        .expect_err("the extension fails");

    assert!(matches!(error, ProcessError::Extension(_)), "{error:?}");
    let record = work_record(&store, &message).await;
    assert_eq!(record.status, WorkStatus::Failed);
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("notification service unavailable")),
        "{record:?}"
    );
    assert_eq!(
        (record.lease_owner, record.lease_until),
        (None, None),
        "the lease is released at once"
    );

    // The retry comes at once (same instant): no need to wait for a lapse.
    assert_eq!(process_ok(&processor, &message).await, Processed::Done);
    assert_eq!(
        store.leases().last(),
        Some(&Lease::Acquired {
            attempts: 2,
            takeover: false
        })
    );
    let record = work_record(&store, &message).await;
    assert_eq!(record.status, WorkStatus::Processed);
    assert_eq!(record.error, None);
    assert_eq!(record.attempts, 2);
    assert_eq!(extension.runs().len(), 1);
    let order = resource(&store, Provider::Biteship, "order", BITESHIP_ORDER).await;
    assert_eq!(order.status.as_deref(), Some("delivered"));
}

#[tokio::test]
async fn bebas_kirim_shipped_then_a_late_packed_stays_shipped() {
    let processor = plain();
    let shipped = message(Provider::BebasKirim, "order.shipped").await;
    let packed = message(Provider::BebasKirim, "order.packed").await;

    assert_eq!(process_ok(&processor, &shipped).await, Processed::Done);
    assert_eq!(process_ok(&processor, &packed).await, Processed::Done);

    let order = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-2024-001",
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("shipped"));
    assert_eq!(
        order.updated_at,
        Timestamp::parse("2024-01-20T18:00:00Z").ok()
    );
    assert_eq!(order.version, 1, "the late event changed nothing");
    assert_eq!(order.last_event, logged_id(&shipped));
    // The late event is still in the log, processed, and marked stale.
    let late = work_record(processor.store(), &packed).await;
    assert_eq!(late.status, WorkStatus::Processed);
    assert_eq!(late.effect, Some(Effect::Stale));
}

#[tokio::test]
async fn biteship_delivered_then_picked_without_times_stays_delivered() {
    let processor = plain();
    let delivered = message_of(
        Provider::Biteship,
        &biteship_status("delivered", None),
        None,
    )
    .await;
    let picked = message_of(Provider::Biteship, &biteship_status("picked", None), None).await;

    process_ok(&processor, &delivered).await;
    process_ok(&processor, &picked).await;

    let order = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("delivered"));
    assert_eq!(order.updated_at, None);
    assert_eq!(order.version, 1);
}

#[tokio::test]
async fn biteship_a_late_older_status_with_updated_at_does_not_move_it_back() {
    let processor = plain();
    let picking_up = message(Provider::Biteship, "order.status--updated-at").await; // 2024-02-01T10:15:30.123Z
    let delivered = message(Provider::Biteship, "order.status--delivered").await; // 2024-02-02T14:05:10.456Z
    let late_picked = message_of(
        Provider::Biteship,
        &biteship_status("picked", Some("2024-02-01T12:00:00.000Z")),
        None,
    )
    .await;

    for m in [&picking_up, &delivered, &late_picked] {
        assert_eq!(process_ok(&processor, m).await, Processed::Done);
    }
    // A retry of the first status arrives last.
    assert_eq!(
        process_ok(&processor, &picking_up).await,
        Processed::AlreadyDone
    );

    let order = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("delivered"));
    assert_eq!(
        order.updated_at,
        Timestamp::parse("2024-02-02T14:05:10.456Z").ok()
    );
    assert_eq!(order.version, 2);
}

#[tokio::test]
async fn akinon_shipped_then_a_late_packed_stays_shipped() {
    let processor = plain();
    let shipped = message(Provider::Oms, "package.status.shipped").await; // 800 at 09:40
    let packed = message(Provider::Oms, "package.status.packed").await; // 600 at 09:20

    process_ok(&processor, &shipped).await;
    process_ok(&processor, &packed).await;

    let package = resource(processor.store(), Provider::Oms, "package", "1001").await;
    assert_eq!(package.status.as_deref(), Some("800"));
    assert_eq!(package.fields["state_label"], "Shipped");
    assert_eq!(package.fields["awb_number"], "AWB123");
    assert_eq!(
        package.updated_at,
        Timestamp::parse("2024-03-01T09:40:00.678901Z").ok()
    );
}

#[tokio::test]
async fn biteship_a_waybill_after_delivered_fills_in_without_moving_the_status() {
    let processor = plain();
    let delivered = message_of(
        Provider::Biteship,
        &biteship_status("delivered", None),
        None,
    )
    .await;
    let waybill = message(Provider::Biteship, "order.waybill_id").await; // status "allocated"

    process_ok(&processor, &delivered).await;
    let before = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert!(!before.fields.contains_key("courier_waybill_id"));
    process_ok(&processor, &waybill).await;

    let order = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("delivered"));
    assert_eq!(order.fields["courier_waybill_id"], "JNE0012345678901");
    assert_eq!(
        order.fields["courier_tracking_id"],
        "bs-trk-6zLn3ac6ZWGYkHTp"
    );
    assert_eq!(
        order.fields["courier_company"], "jne",
        "what the state had is kept"
    );
}

#[tokio::test]
async fn bitbybit_a_late_update_does_not_bring_a_deleted_customer_back() {
    let processor = plain();
    let deleted = message(Provider::BitByBit, "customer.deleted").await;
    let updated = message(Provider::BitByBit, "customer.updated").await;

    process_ok(&processor, &deleted).await;
    assert!(
        resource(
            processor.store(),
            Provider::BitByBit,
            "customer",
            "cust_abc123"
        )
        .await
        .deleted
    );
    process_ok(&processor, &updated).await;

    let customer = resource(
        processor.store(),
        Provider::BitByBit,
        "customer",
        "cust_abc123",
    )
    .await;
    assert!(customer.deleted, "deletion is final");
    // Only non-personal attributes are projected.
    assert_eq!(customer.fields.get("tags"), Some(&json!(["vip"])));
    let projected = serde_json::to_string(&customer).expect("serialises");
    for personal in ["john", "+62", "Doe"] {
        assert!(
            !projected.contains(personal),
            "{personal} projected: {projected}"
        );
    }
}

#[tokio::test]
async fn bebas_kirim_a_partial_cancellation_derives_an_order_with_the_remaining_items() {
    let processor = plain();
    let cancel = message(Provider::BebasKirim, "order_cancel_partial").await;

    assert_eq!(process_ok(&processor, &cancel).await, Processed::Done);

    let original = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-2024-001",
    )
    .await;
    assert_eq!(original.status.as_deref(), Some("partial_cancelled"));
    assert_eq!(
        original.fields["cancelled_items"],
        json!([{"sku": "ABC-001", "product_name": "Product A", "quantity": 1, "price": 50000}])
    );
    assert_eq!(
        original.fields[PARTIAL_CANCELLATIONS],
        json!([cancel.work_key])
    );
    let derived = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-2024-001-1",
    )
    .await;
    assert_eq!(derived.fields["order_number"], "BBS-2024-0001-1");
    assert_eq!(
        derived.fields["items"],
        json!([{"sku": "ABC-002", "product_name": "Product B", "quantity": 2, "price": 75000}])
    );
    assert_eq!(derived.fields["total_amount"], 150_000);
    assert_eq!(derived.fields["derived_from"], "ORD-2024-001");
    assert_eq!(derived.status.as_deref(), Some("to_process"));
}

#[tokio::test]
async fn bebas_kirim_the_same_cancellation_twice_derives_one_order() {
    let store = MemoryStore::new();
    let plan = FaultPlan::new();
    // Calls: 1 the work records, 2 the log entry, 3 the original order, 4-5
    // the derived one (a follow-up is written first), 6 the original order
    // with the work recorded. That last write never reaches the store, as
    // if the invocation died after the derived order.
    plan.fail(6, Fault::Before);
    let processor = processor(Faulty::new(store.clone(), plan), (), FixedClock(NOW));
    let cancel = message(Provider::BebasKirim, "order_cancel_partial").await;

    match processor.process(&cancel.encode()).await {
        Err(ProcessError::Backend(e)) => assert_eq!(e.operation, "put_resource_and_finish"),
        other => panic!("expected the recording write to fail, got {other:?}"),
    }
    // The retry runs the work again: the derived order is there already.
    assert_eq!(process_ok(&processor, &cancel).await, Processed::Done);
    // And a plain duplicate afterwards does nothing.
    assert_eq!(
        process_ok(&processor, &cancel).await,
        Processed::AlreadyDone
    );

    let record = work_record(&store, &cancel).await;
    assert_eq!(record.status, WorkStatus::Processed);
    assert_eq!(
        record.effect,
        Some(Effect::Applied),
        "the retry wrote the order"
    );
    let original = resource(&store, Provider::BebasKirim, "order", "ORD-2024-001").await;
    assert_eq!(
        original.fields[PARTIAL_CANCELLATIONS],
        json!([cancel.work_key])
    );
    assert_eq!(original.version, 1, "written once");
    assert_eq!(
        resource(&store, Provider::BebasKirim, "order", "ORD-2024-001-1")
            .await
            .version,
        1
    );
    let second = store
        .resource(Provider::BebasKirim, "order", "ORD-2024-001-2")
        .await
        .expect("memory");
    assert_eq!(second, None);
}

#[tokio::test]
async fn bebas_kirim_a_second_cancellation_derives_the_next_number() {
    let processor = plain();
    let first = message(Provider::BebasKirim, "order_cancel_partial").await;
    let second = message_of(
        Provider::BebasKirim,
        &json!({
            "event": "order_cancel_partial",
            "timestamp": "2024-01-20T16:00:00Z",
            "tenant_id": "TEN-2024-001",
            "data": {
                "order_id": "ORD-2024-001",
                "order_number": "BBS-2024-0001",
                "status": "partial_cancelled",
                "cancelled_items": [{"sku": "ABC-002", "product_name": "Product B", "quantity": 1, "price": 75000}],
                "remaining_items": [{"sku": "ABC-002", "product_name": "Product B", "quantity": 1, "price": 75000}],
                "updated_at": "2024-01-20T16:00:00Z"
            }
        }),
        None,
    )
    .await;

    process_ok(&processor, &first).await;
    process_ok(&processor, &second).await;

    let original = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-2024-001",
    )
    .await;
    assert_eq!(
        original.fields[PARTIAL_CANCELLATIONS],
        json!([first.work_key, second.work_key])
    );
    let derived = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-2024-001-2",
    )
    .await;
    assert_eq!(derived.fields["order_number"], "BBS-2024-0001-2");
    assert_eq!(derived.fields["total_amount"], 75_000);
}

#[tokio::test]
async fn the_delivered_notification_applies_only_to_biteship_delivered_statuses() {
    let camel = {
        let mut body = biteship_status("Delivered", Some("2024-02-03T09:00:00.000Z"));
        body["courier_waybill_id"] = "JNE1".into();
        body
    };
    let cases = [
        (message(Provider::Biteship, "order.status--delivered").await, true),
        (message_of(Provider::Biteship, &camel, None).await, true),
        (message(Provider::Biteship, "order.status").await, false),
        (message(Provider::Biteship, "order.status--unknown-status").await, false),
        (message_of(Provider::Biteship, &json!({"event": "order.waybill_id", "order_id": BITESHIP_ORDER, "courier_waybill_id": "JNE1", "status": "delivered"}), None).await, false),
        (message_of(Provider::Biteship, &json!({"event": "order.price", "order_id": BITESHIP_ORDER, "price": 18000, "status": "delivered"}), None).await, false),
        (
            message_of(
                Provider::BitByBit,
                &json!({"messageId": "msg_1", "status": "delivered", "templateName": "order_confirmation"}),
                Some(("message.status.updated", "evt_msg_1")),
            )
            .await,
            false,
        ),
        (message(Provider::BebasKirim, "order.completed").await, false),
        (message(Provider::Oms, "shipment.status.updated").await, false),
    ];
    for (message, applies) in &cases {
        let event = inspect(
            message.provider,
            &message.header_map(),
            body_text(message).as_bytes(),
        )
        .expect("readable");
        assert_eq!(
            DeliveredNotification.applies(&event),
            *applies,
            "{} {} {:?}",
            message.provider,
            message.event_type,
            event.reading.status
        );
    }
    // As a processor's extension, after a counting one, it never fails the work.
    let counting = Counting::default();
    let processor = processor(
        MemoryStore::new(),
        (counting.clone(), DeliveredNotification),
        FixedClock(NOW),
    );
    for (message, _) in &cases {
        assert_eq!(process_ok(&processor, message).await, Processed::Done);
    }
    assert_eq!(counting.runs().len(), cases.len());
}

/// An attribute-only event (an AWB) is placed by its own time, not against
/// the order's status: `order.in_process` and `awb.changed` carry the same
/// time (16:00), and the newer AWB still wins.
#[tokio::test]
async fn bebas_kirim_the_newest_awb_wins_whatever_the_status_times() {
    let processor = plain();
    for stem in ["awb.generated", "order.in_process", "awb.changed"] {
        process_ok(&processor, &message(Provider::BebasKirim, stem).await).await;
    }
    let order = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-2024-001",
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("in_process"));
    assert_eq!(
        order.fields["awb_number"], "AWB-2024-002",
        "awb.changed (16:00) is newer than awb.generated (15:30)"
    );
}

/// Only an event that carries a status moves the status clock: a status-less
/// `awb.changed` at 16:00 does not make a `to_process` at 15:30 look late.
#[tokio::test]
async fn bebas_kirim_a_status_less_awb_event_does_not_move_the_status_clock() {
    let processor = plain();
    let body = |event: &str, status: &str, at: &str| {
        json!({
            "event": event,
            "timestamp": at,
            "tenant_id": "TEN-2024-001",
            "data": {
                "order_id": "ORD-C-1",
                "order_number": "BBS-C-1",
                "awb_number": if event.starts_with("awb") { "AWB-9" } else { "" },
                "status": status,
                "updated_at": at
            }
        })
    };
    for (event, status, at) in [
        ("order.draft", "draft", "2024-01-20T15:00:00Z"),
        ("awb.changed", "changed", "2024-01-20T16:00:00Z"),
        ("order.to_process", "to_process", "2024-01-20T15:30:00Z"),
    ] {
        let m = message_of(Provider::BebasKirim, &body(event, status, at), None).await;
        assert_eq!(process_ok(&processor, &m).await, Processed::Done);
    }
    let order = resource(processor.store(), Provider::BebasKirim, "order", "ORD-C-1").await;
    assert_eq!(order.status.as_deref(), Some("to_process"));
    assert_eq!(
        order.updated_at,
        Timestamp::parse("2024-01-20T15:30:00Z").ok()
    );
    assert_eq!(order.fields["awb_number"], "AWB-9");
}

/// A status that comes back (a failed drop-off attempt) wins when it carries
/// a newer time, whatever the documented order says.
#[tokio::test]
async fn biteship_a_status_that_comes_back_with_a_newer_time_wins() {
    let processor = plain();
    for (status, at) in [
        ("dropping_off", "2024-02-02T09:00:00.000Z"),
        ("on_hold", "2024-02-02T11:00:00.000Z"),
        ("dropping_off", "2024-02-02T15:00:00.000Z"),
    ] {
        let m = message_of(Provider::Biteship, &biteship_status(status, Some(at)), None).await;
        assert_eq!(
            process_ok(&processor, &m).await,
            Processed::Done,
            "{status} {at}"
        );
    }
    let order = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("dropping_off"));
    assert_eq!(
        order.updated_at,
        Timestamp::parse("2024-02-02T15:00:00.000Z").ok()
    );
    // Delivered late with an older time does not undo it.
    let late = message_of(
        Provider::Biteship,
        &biteship_status("on_hold", Some("2024-02-02T12:00:00.000Z")),
        None,
    )
    .await;
    process_ok(&processor, &late).await;
    let order = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("dropping_off"));
}

/// One odd field the event does not route on costs nothing: a numeric phone
/// and a null name leave the status, the keys and the other attributes.
#[tokio::test]
async fn biteship_a_numeric_phone_and_a_null_name_keep_the_status() {
    let processor = plain();
    let mut body = biteship_status("picked", None);
    body["courier_driver_phone"] = json!(6281234567890_i64);
    body["courier_driver_name"] = Value::Null;
    body["courier_driver_plate_number"] = "B 1234 XYZ".into();
    let m = message_of(Provider::Biteship, &body, None).await;
    assert!(
        !m.dedup_key.contains("1234"),
        "no plate in a key: {}",
        m.dedup_key
    );
    assert!(
        !m.dedup_key.starts_with("sha256:"),
        "a readable key, not a digest: {}",
        m.dedup_key
    );

    process_ok(&processor, &m).await;

    let order = resource(
        processor.store(),
        Provider::Biteship,
        "order",
        BITESHIP_ORDER,
    )
    .await;
    assert_eq!(order.status.as_deref(), Some("picked"));
    assert_eq!(order.fields["courier_company"], "jne");
    assert_eq!(order.fields["order_price"], 15_000);
}

/// A partial cancellation whose line has an odd field still derives the
/// order, with what could be read.
#[tokio::test]
async fn bebas_kirim_an_odd_line_field_still_derives_the_order() {
    let processor = plain();
    let m = message_of(
        Provider::BebasKirim,
        &json!({
            "event": "order_cancel_partial",
            "timestamp": "2024-01-20T15:30:00Z",
            "tenant_id": "TEN-2024-001",
            "data": {
                "order_id": "ORD-D-1",
                "order_number": "BBS-D-1",
                "status": "partial_cancelled",
                "cancelled_items": [{"sku": "A", "quantity": 1, "price": {"amount": 5}}],
                "remaining_items": [{"sku": "B", "quantity": "2", "price": 75000.0}],
                "updated_at": "2024-01-20T15:30:00Z"
            }
        }),
        None,
    )
    .await;
    process_ok(&processor, &m).await;
    let derived = resource(
        processor.store(),
        Provider::BebasKirim,
        "order",
        "ORD-D-1-1",
    )
    .await;
    assert_eq!(derived.fields["total_amount"], 150_000);
    assert_eq!(derived.fields["order_number"], "BBS-D-1-1");
}

/// Two meanings of one work key (same time, same event) are both processed;
/// the state is the same whichever arrives first: the provider's time ties,
/// and the documented order of statuses decides.
#[tokio::test]
async fn a_conflict_ends_in_the_same_state_in_either_order() {
    let body = |status: &str| {
        json!({
            "event": "order.packed",
            "timestamp": "2024-01-20T16:30:00Z",
            "tenant_id": "TEN-2024-001",
            "data": {"order_id": "ORD-E-1", "status": status, "updated_at": "2024-01-20T16:30:00Z"}
        })
    };
    let packed = message_of(Provider::BebasKirim, &body("packed"), None).await;
    let shipped = message_of(Provider::BebasKirim, &body("shipped"), None).await;
    assert_eq!(packed.work_key, shipped.work_key);
    assert_ne!(packed.digest, shipped.digest);
    for order in [[&packed, &shipped], [&shipped, &packed]] {
        let processor = plain();
        for m in order {
            assert_eq!(process_ok(&processor, m).await, Processed::Done);
        }
        let state = resource(processor.store(), Provider::BebasKirim, "order", "ORD-E-1").await;
        assert_eq!(state.status.as_deref(), Some("shipped"));
        assert_eq!(processor.store().conflict_records().len(), 1);
        assert_eq!(
            processor.store().logged().len(),
            2,
            "both bodies are logged"
        );
    }
}

#[tokio::test]
async fn a_failed_completion_write_is_retried_and_the_work_runs_once() {
    let plan = FaultPlan::new();
    // works, lease, log entry, resource read, resource write, completion.
    plan.fail(6, Fault::Before);
    let store = Faulty::new(MemoryStore::new(), plan.clone());
    let extension = Counting::default();
    let processor = processor(store.clone(), extension.clone(), FixedClock(NOW));
    let message = message(Provider::Biteship, "order.status--delivered").await;

    assert_eq!(process_ok(&processor, &message).await, Processed::Done);
    assert_eq!(plan.calls(), 7, "the completion was written twice");
    assert_eq!(
        work_record(store.inner(), &message).await.status,
        WorkStatus::Processed
    );
    assert_eq!(
        process_ok(&processor, &message).await,
        Processed::AlreadyDone
    );
    assert_eq!(extension.runs().len(), 1);
}

#[tokio::test]
async fn a_completion_that_keeps_failing_gives_up_and_the_lease_lapses() {
    let plan = FaultPlan::new();
    for call in 6..=20 {
        plan.fail(call, Fault::Before);
    }
    let store = Faulty::new(MemoryStore::new(), plan.clone());
    let processor = processor(store.clone(), Counting::default(), FixedClock(NOW));
    let message = message(Provider::Biteship, "order.status--delivered").await;

    let error = processor
        .process(&message.encode())
        .await
        .expect_err("the completion never lands");

    assert!(matches!(error, ProcessError::Backend(_)), "{error:?}");
    assert_eq!(plan.calls(), 10, "five completion writes, then none");
    let record = work_record(store.inner(), &message).await;
    assert_eq!(record.status, WorkStatus::Processing, "{record:?}");
}

#[tokio::test]
async fn two_deliveries_of_one_event_in_one_batch_are_logged_and_processed_once() {
    let store = MemoryStore::new();
    let processor = processor(store.clone(), (), FixedClock(NOW));
    let first = message(Provider::Biteship, "order.status--delivered").await;
    // The provider's retry of a delivery whose answer it never saw.
    let mut retry = first.clone();
    retry.received_at = Timestamp::from_unix_millis(NOW + 30_000);
    retry.request_id = "req-retry".to_owned();
    let records = [&first, &retry]
        .iter()
        .enumerate()
        .map(|(i, m)| Record {
            message_id: format!("m-{i}"),
            body: m.encode(),
        })
        .collect();

    assert!(processor.process_batch(records).await.is_empty());

    assert_eq!(store.logged().len(), 1, "one log entry");
    assert_eq!(process_ok(&processor, &retry).await, Processed::AlreadyDone);
    assert_eq!(store.logged().len(), 1);
}

#[tokio::test]
async fn copies_in_a_batch_share_a_failure() {
    let plan = FaultPlan::new();
    plan.fail(2, Fault::Before);
    let processor = processor(Faulty::new(MemoryStore::new(), plan), (), FixedClock(NOW));
    let first = message(Provider::Biteship, "order.status--delivered").await;
    let mut retry = first.clone();
    retry.received_at = Timestamp::from_unix_millis(NOW + 30_000);
    let records = vec![
        Record {
            message_id: "a".to_owned(),
            body: first.encode(),
        },
        Record {
            message_id: "b".to_owned(),
            body: retry.encode(),
        },
    ];

    let mut failed = processor.process_batch(records).await;
    failed.sort();

    assert_eq!(failed, ["a", "b"], "the log write failed for both");
}

#[tokio::test]
async fn two_deliveries_of_one_event_at_once_in_two_invocations_leave_one_log_entry() {
    let store = MemoryStore::new();
    let slow = || {
        let plan = FaultPlan::new();
        plan.set_delay(Duration::from_millis(20));
        processor(Faulty::new(store.clone(), plan), (), FixedClock(NOW))
    };
    let (one, two) = (slow(), slow());
    let first = message(Provider::Biteship, "order.status--delivered").await;
    let mut retry = first.clone();
    retry.received_at = Timestamp::from_unix_millis(NOW + 30_000);
    retry.request_id = "req-retry".to_owned();

    let (first_text, retry_text) = (first.encode(), retry.encode());
    let (a, b) = tokio::join!(one.process(&first_text), two.process(&retry_text));

    let mut outcomes = [a.expect("processes"), b.expect("processes")];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Processed::AlreadyDone, Processed::Done]);
    let logged = store.logged();
    assert_eq!(logged.len(), 1, "{logged:?}");
    let recorded = work_record(&store, &first).await;
    assert_eq!(
        logged[0].id, recorded.event_id,
        "the entry of the delivery that recorded it"
    );
}
