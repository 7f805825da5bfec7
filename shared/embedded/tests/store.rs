//! The embedded store against the storage contract: dedup claims, the lease
//! rules, queue visibility, dead-lettering, redrive, durability across a
//! reopen, and group commit under concurrent writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use terima_core::{Clock, Provider, QueueMessage, Resource, Timestamp};
use terima_embedded::{EmbeddedStore, Options};
use terima_service::store::{
    Claim, DedupRecord, DedupStore, EventFilter, EventRecord, EventStatus, EventStore, Lease,
    LeaseRequest, Queue, ResourceState,
};

/// A clock the test moves by hand.
#[derive(Default)]
struct ManualClock(AtomicI64);

impl ManualClock {
    fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn open(dir: &tempfile::TempDir, clock: Arc<ManualClock>) -> EmbeddedStore {
    let options = Options {
        clock,
        max_receive: 3,
        ..Options::default()
    };
    EmbeddedStore::open(dir.path(), options).expect("store opens")
}

fn start() -> (tempfile::TempDir, Arc<ManualClock>, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000)));
    let store = open(&dir, Arc::clone(&clock));
    (dir, clock, store)
}

fn dedup(key: &str, sha: &str, at_secs: i64) -> DedupRecord {
    DedupRecord {
        provider: Provider::Oms,
        dedup_key: key.to_owned(),
        event_type: "package.created".to_owned(),
        body_sha256: sha.to_owned(),
        received_at: Timestamp::from_unix_millis(at_secs * 1_000),
        expires_at: at_secs + 60,
        request_id: "r".to_owned(),
    }
}

fn message(work_key: &str, received_ms: i64) -> QueueMessage {
    QueueMessage {
        v: terima_core::message::MESSAGE_VERSION,
        provider: Provider::Oms,
        event_type: "package.created".to_owned(),
        dedup_key: work_key.to_owned(),
        work_key: work_key.to_owned(),
        resource: Resource::new("package", "1001"),
        occurred_at: None,
        received_at: Timestamp::from_unix_millis(received_ms),
        body_sha256: terima_core::message::sha256_hex(b"{}"),
        body: "{}".to_owned(),
        headers: Default::default(),
        replay: false,
        request_id: "r".to_owned(),
    }
}

fn lease(work_key: &str, owner: &str, now: i64) -> LeaseRequest {
    LeaseRequest {
        record: EventRecord::from_message(&message(work_key, now)),
        owner: owner.to_owned(),
        now,
        lease_millis: 1_000,
    }
}

#[tokio::test]
async fn claims_tell_fresh_from_retry_and_expire() {
    let (_dir, _clock, store) = start();
    // GIVEN a first delivery
    assert_eq!(
        store.claim(&dedup("k", "a", 100)).await.expect("claim"),
        Claim::Fresh
    );
    // WHEN the same key arrives again, live: THEN the first body's digest is reported
    assert_eq!(
        store.claim(&dedup("k", "b", 110)).await.expect("claim"),
        Claim::Existing {
            body_sha256: "a".into()
        }
    );
    store
        .record_conflict(&dedup("k", "b", 110), "{}")
        .await
        .expect("conflict kept");
    // WHEN it arrives after the record expired: THEN it is fresh again
    assert_eq!(
        store.claim(&dedup("k", "c", 161)).await.expect("claim"),
        Claim::Fresh
    );
}

#[tokio::test]
async fn the_lease_rules_hold_inside_the_store() {
    let (_dir, _clock, store) = start();
    let now = 1_000_000;
    assert_eq!(
        store
            .acquire(&lease("w", "one", now))
            .await
            .expect("acquire"),
        Lease::Acquired {
            attempts: 1,
            takeover: false
        }
    );
    // A second copy while the holder is live waits.
    assert_eq!(
        store
            .acquire(&lease("w", "two", now + 10))
            .await
            .expect("acquire"),
        Lease::Busy { until: now + 1_000 }
    );
    // Only the holder releases or completes.
    assert!(
        !store
            .fail(Provider::Oms, "w", "two", "nope")
            .await
            .expect("fail")
    );
    assert!(
        !store
            .complete(Provider::Oms, "w", "two", Timestamp::from_unix_millis(now))
            .await
            .expect("complete")
    );
    // A lapsed lease is taken over.
    assert_eq!(
        store
            .acquire(&lease("w", "two", now + 2_000))
            .await
            .expect("acquire"),
        Lease::Acquired {
            attempts: 2,
            takeover: true
        }
    );
    assert!(
        store
            .complete(
                Provider::Oms,
                "w",
                "two",
                Timestamp::from_unix_millis(now + 2_100)
            )
            .await
            .expect("complete")
    );
    assert_eq!(
        store
            .acquire(&lease("w", "three", now + 3_000))
            .await
            .expect("acquire"),
        Lease::Done
    );
    let event = store
        .event(Provider::Oms, "w")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(event.status, EventStatus::Processed);
    assert_eq!(event.attempts, 2);
    assert_eq!(event.lease_owner, None);
}

#[tokio::test]
async fn a_failed_attempt_is_retried_at_once() {
    let (_dir, _clock, store) = start();
    store.acquire(&lease("f", "one", 0)).await.expect("acquire");
    assert!(
        store
            .fail(Provider::Oms, "f", "one", "boom")
            .await
            .expect("fail")
    );
    let event = store
        .event(Provider::Oms, "f")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (event.status, event.error.as_deref()),
        (EventStatus::Failed, Some("boom"))
    );
    assert_eq!(
        store
            .acquire(&lease("f", "two", 10))
            .await
            .expect("acquire"),
        Lease::Acquired {
            attempts: 2,
            takeover: false
        }
    );
}

#[tokio::test]
async fn received_messages_stay_hidden_for_the_visibility_timeout() {
    let (_dir, clock, store) = start();
    store.send(&message("q", 0)).await.expect("send");
    let first = store
        .receive(10, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receipt.receive_count, 1);
    assert!(
        store
            .receive(10, Duration::from_secs(30))
            .await
            .expect("receive")
            .is_empty()
    );
    assert_eq!(store.stats().await.expect("stats").in_flight, 1);
    // GIVEN the timeout passes WHEN received again THEN the old receipt no longer deletes it
    clock.advance(30_000);
    let second = store
        .receive(10, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(second[0].receipt.receive_count, 2);
    assert_eq!(
        store.delete(vec![first[0].receipt]).await.expect("delete"),
        0
    );
    assert_eq!(
        store.delete(vec![second[0].receipt]).await.expect("delete"),
        1
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letters),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_message_received_too_often_goes_to_the_dead_letter_queue_and_back() {
    let (_dir, clock, store) = start();
    store.send(&message("d", 0)).await.expect("send");
    for attempt in 1..=3 {
        let got = store
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive");
        assert_eq!(got[0].receipt.receive_count, attempt);
        clock.advance(1_000);
    }
    // The fourth receive finds it already received max_receive (3) times.
    assert!(
        store
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
            .is_empty()
    );
    let letters = store.dead_letters(None).await.expect("dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].receive_count, 3);
    assert_eq!(
        QueueMessage::decode(&letters[0].body)
            .expect("message")
            .work_key,
        "d"
    );

    assert_eq!(store.redrive(None).await.expect("redrive"), 1);
    assert!(store.dead_letters(None).await.expect("dlq").is_empty());
    let again = store
        .receive(10, Duration::from_secs(1))
        .await
        .expect("receive");
    assert_eq!(again[0].receipt.receive_count, 1);
}

#[tokio::test]
async fn what_was_acknowledged_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::default());
    {
        let store = open(&dir, Arc::clone(&clock));
        store.claim(&dedup("kept", "a", 0)).await.expect("claim");
        store.send(&message("kept", 0)).await.expect("send");
        store
            .acquire(&lease("kept", "o", 0))
            .await
            .expect("acquire");
        let state = ResourceState {
            provider: Provider::Oms,
            kind: "package".into(),
            id: "1001".into(),
            status: Some("600".into()),
            updated_at: None,
            rank: None,
            deleted: false,
            fields: Default::default(),
            field_times: Default::default(),
            last_event: "oms:kept".into(),
            version: 1,
        };
        assert!(store.put_resource(&state, None).await.expect("put"));
        assert!(
            !store.put_resource(&state, None).await.expect("put"),
            "version checked"
        );
    }
    let store = open(&dir, clock);
    assert!(matches!(
        store.claim(&dedup("kept", "a", 1)).await.expect("claim"),
        Claim::Existing { .. }
    ));
    assert_eq!(
        store
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
            .len(),
        1
    );
    assert!(
        store
            .event(Provider::Oms, "kept")
            .await
            .expect("read")
            .is_some()
    );
    let resource = store
        .resource(Provider::Oms, "package", "1001")
        .await
        .expect("read");
    assert_eq!(resource.map(|r| r.version), Some(1));
}

#[tokio::test]
async fn events_are_filtered_newest_first() {
    let (_dir, _clock, store) = start();
    for (key, at) in [("a", 10), ("b", 30), ("c", 20)] {
        store.acquire(&lease(key, "o", at)).await.expect("acquire");
    }
    let all = store.events(&EventFilter::default()).await.expect("list");
    let keys: Vec<&str> = all.iter().map(|e| e.work_key.as_str()).collect();
    assert_eq!(keys, ["b", "c", "a"]);
    let filter = EventFilter {
        since: Some(Timestamp::from_unix_millis(15)),
        until: Some(Timestamp::from_unix_millis(30)),
        ..EventFilter::default()
    };
    let some = store.events(&filter).await.expect("list");
    assert_eq!(
        some.iter().map(|e| e.work_key.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    let limited = EventFilter {
        limit: Some(1),
        resource: Some(("package".into(), "1001".into())),
        provider: Some(Provider::Oms),
        ..EventFilter::default()
    };
    assert_eq!(store.events(&limited).await.expect("list").len(), 1);
    let none = EventFilter {
        status: Some(EventStatus::Processed),
        ..EventFilter::default()
    };
    assert!(store.events(&none).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_and_all_land() {
    let (_dir, _clock, store) = start();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let claim = store.claim(&dedup(&format!("c{i}"), "a", 0)).await;
                let sent = store.send(&message(&format!("c{i}"), 0)).await;
                (claim, sent)
            })
        })
        .collect();
    for task in tasks {
        let (claim, sent) = task.await.expect("task");
        assert_eq!(claim.expect("claim"), Claim::Fresh);
        sent.expect("send");
    }
    assert_eq!(store.stats().await.expect("stats").visible, 500);
}

#[tokio::test]
async fn a_second_handle_reads_while_the_first_writes() {
    let (dir, clock, store) = start();
    let reader = EmbeddedStore::open(
        dir.path(),
        Options {
            create: false,
            clock,
            ..Options::default()
        },
    )
    .expect("second handle");
    store
        .acquire(&lease("seen", "o", 5))
        .await
        .expect("acquire");
    assert!(
        reader
            .event(Provider::Oms, "seen")
            .await
            .expect("read")
            .is_some()
    );
    let missing = tempfile::tempdir().expect("temp dir");
    let options = Options {
        create: false,
        ..Options::default()
    };
    assert!(matches!(
        EmbeddedStore::open(missing.path(), options),
        Err(terima_embedded::OpenError::NotFound(_))
    ));
}
