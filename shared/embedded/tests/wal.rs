//! The WAL stays within its budget under steady traffic: the writer resets
//! it between commits while readers keep reading, instead of letting it grow
//! until traffic stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use terima_core::{BodyRef, Provider, QueueMessage, Resource, Timestamp};
use terima_embedded::{DB_FILE, EmbeddedStore, Options, WAL_BUDGET};
use terima_service::store::Queue;
use tokio::task::JoinSet;

/// Messages sent (then received and deleted) per round.
const ROUND: usize = 100;
/// The WAL may pass its budget by the commits made before the writer's
/// reset: a round's worth, and a few more while a reset is retried.
const SLACK: u64 = 8 * 1024 * 1024;

fn message(n: usize, body: &str) -> QueueMessage {
    QueueMessage {
        v: terima_core::message::MESSAGE_VERSION,
        provider: Provider::Oms,
        event_type: "package.created".to_owned(),
        dedup_key: format!("k{n}"),
        work_key: format!("k{n}"),
        resource: Resource::new("package", "1001"),
        occurred_at: None,
        status: None,
        received_at: Timestamp::from_unix_millis(0),
        body_sha256: terima_core::message::sha256_hex(body.as_bytes()),
        digest: format!("d{n}"),
        body: BodyRef::Inline {
            text: body.to_owned(),
        },
        headers: Default::default(),
        replay: false,
        request_id: "r".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_within_its_budget_under_steady_traffic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store opens");
    let wal = dir.path().join(format!("{DB_FILE}-wal"));

    // GIVEN readers that never pause
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = JoinSet::new();
    for _ in 0..2 {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        readers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                store.stats().await.expect("stats");
            }
        });
    }

    // WHEN three budgets' worth of messages go through the queue
    let body = "x".repeat(8 * 1024);
    let mut written = 0;
    let mut peak = 0;
    let mut sent = 0;
    while written < 3 * WAL_BUDGET {
        let mut sends = JoinSet::new();
        for _ in 0..ROUND {
            let (store, message) = (store.clone(), message(sent, &body));
            sent += 1;
            sends.spawn(async move { store.send(&message).await });
        }
        while let Some(result) = sends.join_next().await {
            result.expect("task").expect("send");
        }
        let received = store
            .receive(ROUND, Duration::from_secs(30))
            .await
            .expect("receive");
        let deleted = store
            .delete(received.iter().map(|m| m.receipt).collect())
            .await
            .expect("delete");
        assert_eq!(deleted, ROUND);
        written += (ROUND * body.len()) as u64;
        peak = peak.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    stop.store(true, Ordering::Relaxed);
    while readers.join_next().await.is_some() {}

    // THEN the WAL grew to its budget, and no further
    assert!(peak > WAL_BUDGET / 2, "the WAL never filled: {peak} bytes");
    assert!(
        peak <= WAL_BUDGET + SLACK,
        "the WAL reached {peak} bytes, budget {WAL_BUDGET}"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.visible + stats.in_flight, 0);
}
