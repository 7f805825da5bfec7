//! The embedded store against the storage contract: the ack read, the lease
//! rules, queue visibility, dead-lettering, redrive, durability across a
//! reopen, paged listings, retention into the archive, recovery after a
//! crash, the schema upgrade, and group commit under concurrent writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use terima_core::{BodyRef, Clock, Provider, QueueMessage, Resource, Timestamp};
use terima_embedded::{EmbeddedStore, Options};
use terima_service::store::{
    AckStore, Effect, EventFilter, EventLog, EventRecord, EventStore, Lease, LeaseRequest,
    ListedStatus, Outbox, Queue, ResourceState, Seen, WorkKey, WorkRecord, WorkStatus,
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

fn message(work_key: &str, received_ms: i64) -> QueueMessage {
    QueueMessage {
        v: terima_core::message::MESSAGE_VERSION,
        provider: Provider::Oms,
        event_type: "package.created".to_owned(),
        dedup_key: work_key.to_owned(),
        work_key: work_key.to_owned(),
        resource: Resource::new("package", "1001"),
        occurred_at: None,
        status: None,
        received_at: Timestamp::from_unix_millis(received_ms),
        body_sha256: terima_core::message::sha256_hex(b"{}"),
        digest: "d".to_owned(),
        body: BodyRef::Inline {
            text: "{}".to_owned(),
        },
        headers: Default::default(),
        replay: false,
        request_id: "r".to_owned(),
    }
}

fn event(work_key: &str, received_ms: i64) -> EventRecord {
    EventRecord::from_message(&message(work_key, received_ms))
}

fn key(work_key: &str) -> WorkKey {
    event(work_key, 0).work_key()
}

fn lease(work_key: &str, owner: &str, now: i64) -> LeaseRequest {
    LeaseRequest {
        record: WorkRecord::new(&event(work_key, now)),
        owner: owner.to_owned(),
        now,
        lease_millis: 1_000,
    }
}

async fn work(store: &EmbeddedStore, work_key: &str) -> Option<WorkRecord> {
    let k = key(work_key);
    store
        .works(k.provider, &k.resource, &k.work_key)
        .await
        .expect("read")
        .into_iter()
        .find(|w| w.key.digest == k.digest)
}

#[tokio::test]
async fn the_ack_read_tells_new_work_from_done_and_from_a_conflict() {
    let (_dir, _clock, store) = start();
    let resource = Resource::new("package", "1001");
    let seen = |digest: &'static str| {
        let store = store.clone();
        let resource = resource.clone();
        async move {
            store
                .seen(Provider::Oms, &resource, "k", digest)
                .await
                .expect("read")
        }
    };
    assert_eq!(seen("d").await, Seen::New);
    store.acquire(&lease("k", "one", 0)).await.expect("acquire");
    assert_eq!(seen("d").await, Seen::Duplicate);
    assert_eq!(seen("other").await, Seen::Conflict);
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
            .fail(&key("w"), Some("two"), "nope")
            .await
            .expect("fail")
    );
    assert!(
        !store
            .complete(
                &key("w"),
                "two",
                Timestamp::from_unix_millis(now),
                Effect::Applied
            )
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
                &key("w"),
                "two",
                Timestamp::from_unix_millis(now + 2_100),
                Effect::Applied
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
    let record = work(&store, "w").await.expect("exists");
    assert_eq!(record.status, WorkStatus::Processed);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.lease_owner, None);
    assert_eq!(record.effect, Some(Effect::Applied));
}

#[tokio::test]
async fn a_lease_free_finish_is_written_once() {
    let (_dir, _clock, store) = start();
    let mut done = WorkRecord::new(&event("n", 0));
    done.status = WorkStatus::Processed;
    done.attempts = 1;
    assert!(store.finish(&done).await.expect("finish"));
    assert!(
        !store.finish(&done).await.expect("finish"),
        "a second copy finds it done"
    );
    assert_eq!(work(&store, "n").await.map(|w| w.attempts), Some(1));
}

#[tokio::test]
async fn a_failed_attempt_is_retried_at_once() {
    let (_dir, _clock, store) = start();
    store.acquire(&lease("f", "one", 0)).await.expect("acquire");
    assert!(
        store
            .fail(&key("f"), Some("one"), "boom")
            .await
            .expect("fail")
    );
    let record = work(&store, "f").await.expect("exists");
    assert_eq!(
        (record.status, record.error.as_deref()),
        (WorkStatus::Failed, Some("boom"))
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
        store.send(&message("kept", 0)).await.expect("send");
        store.hold(&message("held", 0)).await.expect("hold");
        store.log(&event("kept", 0)).await.expect("log");
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
            last_event: "kept".into(),
            version: 1,
        };
        assert!(store.put_resource(&state, None).await.expect("put"));
        assert!(
            !store.put_resource(&state, None).await.expect("put"),
            "version checked"
        );
    }
    let store = open(&dir, clock);
    assert!(work(&store, "kept").await.is_some());
    assert_eq!(
        store
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
            .len(),
        1
    );
    assert_eq!(store.held(10).await.expect("held").len(), 1);
    assert!(
        store
            .event(&event("kept", 0).id)
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
async fn events_are_listed_newest_first_a_page_at_a_time() {
    let (_dir, _clock, store) = start();
    for (key, at) in [("a", 10), ("b", 30), ("c", 20)] {
        store.log(&event(key, at)).await.expect("log");
    }
    store.acquire(&lease("c", "o", 20)).await.expect("acquire");
    let page = store
        .events(&EventFilter::default(), None, 10)
        .await
        .expect("list");
    let keys: Vec<&str> = page
        .items
        .iter()
        .map(|v| v.event.work_key.as_str())
        .collect();
    assert_eq!(keys, ["b", "c", "a"]);
    assert_eq!(page.next, None);
    // Pages continue from the cursor.
    let first = store
        .events(&EventFilter::default(), None, 2)
        .await
        .expect("list");
    assert_eq!(first.items.len(), 2);
    let rest = store
        .events(&EventFilter::default(), first.next.as_deref(), 2)
        .await
        .expect("list");
    assert_eq!(
        rest.items
            .iter()
            .map(|v| v.event.work_key.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let filter = EventFilter {
        since: Some(Timestamp::from_unix_millis(15)),
        until: Some(Timestamp::from_unix_millis(30)),
        ..EventFilter::default()
    };
    let some = store.events(&filter, None, 10).await.expect("list");
    assert_eq!(
        some.items
            .iter()
            .map(|v| v.event.work_key.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
    let processing = EventFilter {
        status: Some(ListedStatus::Processing),
        resource: Some(("package".into(), "1001".into())),
        provider: Some(Provider::Oms),
        ..EventFilter::default()
    };
    let listed = store.events(&processing, None, 1).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].event.work_key, "c");
    let none = EventFilter {
        status: Some(ListedStatus::Processed),
        ..EventFilter::default()
    };
    assert!(
        store
            .events(&none, None, 10)
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// The event log expires into the archive; the archive and everything else
/// expire on their own periods.
#[tokio::test]
async fn retention_moves_the_log_to_the_archive_and_expires_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::default());
    let options = Options {
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        retention_days: 30,
        archive_days: 400,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).expect("opens");
    let kept = event("old", 0);
    store.log(&kept).await.expect("log");
    store.acquire(&lease("old", "o", 0)).await.expect("acquire");
    let day = 86_400_000;
    clock.advance(29 * day);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    clock.advance(day);
    assert!(store.purge_expired().await.expect("purge") >= 2);
    let view = store
        .event(&kept.id)
        .await
        .expect("read")
        .expect("archived");
    assert!(view.archived);
    assert_eq!(view.event.body, kept.body);
    assert!(
        work(&store, "old").await.is_none(),
        "the work record expired"
    );
    assert!(
        store
            .events(&EventFilter::default(), None, 10)
            .await
            .expect("list")
            .items
            .is_empty(),
        "the live log is empty"
    );
    clock.advance(370 * day);
    store.purge_expired().await.expect("purge");
    assert!(store.event(&kept.id).await.expect("read").is_none());
}

/// A process that died held leases and received messages: the next one to
/// own the directory takes them over at once.
#[tokio::test]
async fn recover_releases_dead_leases_and_makes_received_messages_visible() {
    let (_dir, _clock, store) = start();
    store.send(&message("q", 0)).await.expect("send");
    let got = store
        .receive(10, Duration::from_secs(600))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let now = 1_700_000_000_000;
    store
        .acquire(&LeaseRequest {
            lease_millis: 600_000,
            ..lease("q", "dead", now)
        })
        .await
        .expect("acquire");

    assert_eq!(store.recover().await.expect("recover"), (1, 1));

    assert_eq!(
        store
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
            .len(),
        1
    );
    assert!(matches!(
        store
            .acquire(&lease("q", "next", now))
            .await
            .expect("acquire"),
        Lease::Acquired { takeover: true, .. }
    ));
}

/// A schema 1 file (dedup records and an event log keyed by work key) opens
/// as schema 2 with nothing lost: the old tables are renamed.
#[tokio::test]
async fn a_schema_one_file_is_upgraded_without_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(terima_embedded::DB_FILE)).expect("sqlite");
        conn.execute_batch(
            "CREATE TABLE dedup (provider TEXT, dedup_key TEXT, PRIMARY KEY (provider, dedup_key));
             CREATE TABLE conflicts (id INTEGER PRIMARY KEY, body TEXT);
             CREATE TABLE events (id INTEGER PRIMARY KEY, provider TEXT, work_key TEXT, record TEXT);
             CREATE INDEX events_received ON events (work_key);
             CREATE TABLE resources (provider TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
                 version INTEGER NOT NULL, state TEXT NOT NULL, PRIMARY KEY (provider, kind, id)) WITHOUT ROWID;
             INSERT INTO events (provider, work_key, record) VALUES ('oms', 'w1', '{}');
             PRAGMA user_version = 1;",
        )
        .expect("a schema 1 file");
    }
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("upgrades");
    store
        .log(&event("new", 0))
        .await
        .expect("the new log works");
    drop(store);
    let conn =
        rusqlite::Connection::open(dir.path().join(terima_embedded::DB_FILE)).expect("sqlite");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 2);
    let kept: i64 = conn
        .query_row("SELECT COUNT(*) FROM events_v1", [], |row| row.get(0))
        .expect("the old log is kept");
    assert_eq!(kept, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits_and_all_land() {
    let (_dir, _clock, store) = start();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let logged = store.log(&event(&format!("c{i}"), i)).await;
                let sent = store.send(&message(&format!("c{i}"), 0)).await;
                (logged, sent)
            })
        })
        .collect();
    for task in tasks {
        let (logged, sent) = task.await.expect("task");
        logged.expect("log");
        sent.expect("send");
    }
    assert_eq!(store.stats().await.expect("stats").visible, 500);
    assert_eq!(
        store
            .events(&EventFilter::default(), None, 1_000)
            .await
            .expect("list")
            .items
            .len(),
        500
    );
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
    store.log(&event("seen", 5)).await.expect("log");
    assert!(
        reader
            .event(&event("seen", 5).id)
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
