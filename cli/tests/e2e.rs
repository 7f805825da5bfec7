//! End to end, as a provider and an operator see it: a real `terima serve`
//! process on a free port, every sample event with duplicates, forgeries,
//! oversize and garbage bodies, a SIGKILL in the middle of a stream and a
//! restart on the same data directory; then `terima ... --json` must show
//! every event answered 2xx exactly once, processed, and nothing answered
//! 4xx.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Server, Signers, cli, cli_json, is_probe, keys, samples, variant};
use http::HeaderValue;
use serde_json::Value;
use terima::gateway::SampleRequest;
use terima::send::{client, post};
use terima_core::Provider;
use tokio::task::JoinSet;

/// Requests in flight during the stream.
const CONCURRENCY: usize = 16;
/// Unique events in the stream that is interrupted.
const STREAM: usize = 400;
/// Answers received before the SIGKILL.
const KILL_AFTER: usize = 150;
/// How long processing may take to catch up after the last request.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);

type Key = (Provider, String);

fn label(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Replaces every authentication header with a wrong value of the right shape.
/// Waits until the queue is empty and nothing is in flight.
async fn wait_until_drained(dir: &str) {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let status = cli_json(&["status", "--data-dir", dir]);
        if status[0]["queued"] == 0 && status[0]["in_flight"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not drained in time: {}",
            status[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn forge(request: &mut SampleRequest) {
    let zeros = "0".repeat(64);
    for (name, value) in [
        ("authorization", "wrong-token".to_owned()),
        ("x-biteship-token", "wrong-token".to_owned()),
        ("x-bitbybit-webhook-signature", format!("t=1,v1={zeros}")),
        ("x-whisperer-signature", format!("sha256={zeros}")),
    ] {
        if request.headers.contains_key(name) {
            request
                .headers
                .insert(name, HeaderValue::from_str(&value).expect("ascii"));
        }
    }
}

/// What the test knows it was told.
#[derive(Default)]
struct Ledger {
    /// Work answered 2xx (not `ignored`), with a dedup key each.
    stored: BTreeMap<Key, String>,
    /// Dedup keys answered 4xx that were never sent validly.
    refused: BTreeSet<Key>,
}

impl Ledger {
    fn answered(&mut self, request: &SampleRequest, status: u16, body: &str) {
        assert!(
            (200..300).contains(&status),
            "expected 2xx, got {status} {body}"
        );
        if is_probe(request) {
            assert_eq!(label(body), "ignored");
            return;
        }
        assert!(
            ["accepted", "duplicate", "conflict"].contains(&label(body).as_str()),
            "{body}"
        );
        let (provider, work_key, dedup_key) = keys(request);
        self.stored.entry((provider, work_key)).or_insert(dedup_key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_processed_exactly_once_across_a_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    let signers = Signers::load();
    let client = client();
    let samples = samples();
    assert!(samples.len() >= 4, "sample events are missing");
    let mut server = Server::start(data.path(), "e2e-first", &[]);
    let mut ledger = Ledger::default();

    // GIVEN every sample, then, once processed, each one again (a
    // provider's retry): a duplicate
    for attempt in 0..2 {
        for (path, sample) in &samples {
            let mut request = sample.clone();
            signers.sign(&mut request);
            let url = format!("{}{}", server.url(), request.path);
            let (status, body) = post(&client, &url, &request)
                .await
                .expect("gateway reachable");
            if attempt == 1 && !is_probe(&request) {
                assert_eq!(label(&body), "duplicate", "{}", path.display());
            }
            ledger.answered(&request, status, &body);
        }
        wait_until_drained(&dir).await;
    }

    // AND forgeries, oversize and garbage bodies, which must leave no trace
    for (index, (path, sample)) in samples
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| !is_probe(s))
    {
        let mut forged = variant(sample, &format!("-forged{index}"));
        signers.sign(&mut forged);
        forge(&mut forged);
        let url = format!("{}{}", server.url(), forged.path);
        let (status, body) = post(&client, &url, &forged)
            .await
            .expect("gateway reachable");
        assert_eq!(status, 401, "{}: {body}", path.display());
        let (provider, _, dedup_key) = keys(&forged);
        ledger.refused.insert((provider, dedup_key));
    }
    for provider in Provider::ALL {
        let template = &samples
            .iter()
            .find(|(_, s)| s.provider == provider && !is_probe(s))
            .expect("a sample per provider")
            .1;
        let url = format!("{}/webhooks/{provider}", server.url());
        let mut oversize = template.clone();
        oversize.body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024)).into_bytes();
        signers.sign(&mut oversize);
        assert_eq!(
            post(&client, &url, &oversize).await.expect("reachable").0,
            413
        );
        // A verified body that cannot be read is kept in quarantine, 200.
        let mut garbage = template.clone();
        garbage.body = b"\x00this is { not json".to_vec();
        signers.sign(&mut garbage);
        let (status, body) = post(&client, &url, &garbage).await.expect("reachable");
        assert_eq!(
            (status, label(&body).as_str()),
            (200, "quarantined"),
            "{provider}"
        );
        let mut unsigned_garbage = template.clone();
        unsigned_garbage.body = b"{\"event\": \"order.shipped\"".to_vec();
        forge(&mut unsigned_garbage);
        assert_eq!(
            post(&client, &url, &unsigned_garbage)
                .await
                .expect("reachable")
                .0,
            401
        );
    }

    // WHEN a stream of new events is interrupted by SIGKILL half-way
    let stream: Vec<SampleRequest> = samples
        .iter()
        .filter(|(_, s)| !is_probe(s))
        .map(|(_, s)| s)
        .cycle()
        .take(STREAM)
        .enumerate()
        .map(|(n, s)| {
            let mut request = variant(s, &format!("-s{n}"));
            signers.sign(&mut request);
            request
        })
        .collect();
    let mut unanswered = Vec::new();
    let mut pending = stream.into_iter();
    let mut in_flight = JoinSet::new();
    let mut answers = 0;
    let base = server.url();
    loop {
        while in_flight.len() < CONCURRENCY {
            let Some(request) = pending.next() else { break };
            let (client, url) = (client.clone(), format!("{base}{}", request.path));
            in_flight.spawn(async move {
                let result = post(&client, &url, &request).await;
                (request, result)
            });
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        let (request, result) = done.expect("request task");
        match result {
            Ok((status, body)) => ledger.answered(&request, status, &body),
            // No answer: the provider will retry.
            Err(_) => unanswered.push(request),
        }
        answers += 1;
        if answers == KILL_AFTER {
            server.kill();
        }
    }
    assert!(!unanswered.is_empty(), "the kill interrupted nothing");
    eprintln!(
        "stream: {KILL_AFTER} answers before the SIGKILL, {} requests retried after the restart",
        unanswered.len()
    );

    // AND the gateway starts again on the same data, and the providers retry
    let server = Server::start(data.path(), "e2e-second", &[]);
    for mut request in unanswered {
        signers.sign(&mut request);
        let url = format!("{}{}", server.url(), request.path);
        let (status, body) = post(&client, &url, &request)
            .await
            .expect("restarted gateway reachable");
        ledger.answered(&request, status, &body);
    }

    // THEN the queue drains and every acknowledged event is processed, once
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let events = loop {
        let status = cli_json(&["status", "--data-dir", &dir]);
        let events = cli_json(&["events", "list", "--data-dir", &dir]);
        let drained = status[0]["queued"] == 0 && status[0]["in_flight"] == 0;
        let processed = events.iter().all(|e| e["status"] == "processed");
        if drained && processed && events.len() >= ledger.stored.len() {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "not drained in time: {} of {} events, status {}",
            events.len(),
            ledger.stored.len(),
            status[0]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut seen: BTreeMap<Key, &Value> = BTreeMap::new();
    for event in &events {
        let provider = Provider::from_name(event["provider"].as_str().expect("provider"))
            .expect("known provider");
        let key = (
            provider,
            event["work_key"].as_str().expect("work_key").to_owned(),
        );
        for field in [
            "event_type",
            "dedup_key",
            "resource_kind",
            "resource_id",
            "status",
            "attempts",
        ] {
            assert!(!event[field].is_null(), "{field} missing in {event}");
        }
        assert!(event.get("body").is_none(), "lists leave bodies out");
        if event["duplicate_entry"] == true {
            // A second delivery that raced the first through the processor:
            // logged, and pointing at the work the first did.
            continue;
        }
        assert!(event["attempts"].as_u64().expect("attempts") >= 1);
        assert!(!event["processed_at"].is_null(), "{event}");
        assert!(
            seen.insert(key.clone(), event).is_none(),
            "{key:?} listed twice"
        );
        let dedup = (
            provider,
            event["dedup_key"].as_str().expect("dedup_key").to_owned(),
        );
        assert!(
            !ledger.refused.contains(&dedup),
            "a refused delivery left {dedup:?}"
        );
    }
    let stored: BTreeSet<&Key> = ledger.stored.keys().collect();
    let listed: BTreeSet<&Key> = seen.keys().collect();
    assert_eq!(
        listed, stored,
        "the log holds exactly the acknowledged events"
    );
    assert!(cli_json(&["dlq", "list", "--data-dir", &dir]).is_empty());
    assert_eq!(
        cli_json(&["quarantine", "list", "--data-dir", &dir]).len(),
        Provider::ALL.len(),
        "one quarantined garbage body per provider"
    );
    assert!(
        server.terminate().is_some_and(|s| s.success()),
        "SIGTERM stops serve cleanly"
    );

    // AND the data survives a clean stop
    let after = cli(
        &["events", "list", "--data-dir", &dir, "--limit", "3"],
        Duration::from_secs(30),
    );
    assert!(after.status.success());
    assert_eq!(
        String::from_utf8_lossy(&after.stdout).lines().count(),
        4,
        "a header and three rows"
    );
}
