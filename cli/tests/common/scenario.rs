//! The end-to-end scenario, on either backend: every sample event with
//! duplicates, forgeries, oversize and garbage bodies, a SIGKILL in the
//! middle of a stream and a restart on the same data; then `terima ...
//! --json` must show every event answered 2xx exactly once, processed, and
//! nothing answered 4xx.

use std::time::{Duration, Instant};

use terima::gateway::SampleRequest;
use terima::send::{client, post};
use terima_core::Provider;
use tokio::task::JoinSet;

use super::backend::Backend;
use super::ledger::{Ledger, forge, label};
use super::{Signers, is_probe, samples, variant};

/// How big the scenario is: the emulator is far slower than SQLite.
pub struct Scale {
    /// Requests in flight during the stream.
    pub concurrency: usize,
    /// Unique events in the stream that is interrupted.
    pub stream: usize,
    /// Answers received before the SIGKILL.
    pub kill_after: usize,
    /// How long processing may take to catch up after the last request.
    pub drain_deadline: Duration,
}

/// Waits until the queue is empty and nothing is in flight.
async fn wait_until_drained(backend: &Backend<'_>, deadline: Duration) {
    let deadline = Instant::now() + deadline;
    loop {
        let status = backend.cli_json(&["status"]);
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

pub async fn every_acknowledged_event_is_processed_once_across_a_sigkill(
    backend: &Backend<'_>,
    scale: &Scale,
) {
    let started = Instant::now();
    let name = backend.name();
    let signers = Signers::load();
    let client = client();
    let samples = samples();
    assert!(samples.len() >= 4, "sample events are missing");
    let mut server = backend.serve(&format!("e2e-{name}-first"), &[]);
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
        wait_until_drained(backend, scale.drain_deadline).await;
    }
    eprintln!(
        "{name}: {} samples sent twice, {} events acknowledged, drained after {:.1?}",
        samples.len(),
        ledger.stored.len(),
        started.elapsed()
    );

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
        ledger.refused(&forged, status);
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
        .take(scale.stream)
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
        while in_flight.len() < scale.concurrency {
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
        if answers == scale.kill_after {
            server.kill();
        }
    }
    assert!(!unanswered.is_empty(), "the kill interrupted nothing");
    eprintln!(
        "{name}: stream of {}: {} answers before the SIGKILL, {} requests retried after the restart",
        scale.stream,
        scale.kill_after,
        unanswered.len()
    );

    // AND the gateway starts again on the same data, and the providers retry
    let server = backend.serve(&format!("e2e-{name}-second"), &[]);
    for mut request in unanswered {
        signers.sign(&mut request);
        let url = format!("{}{}", server.url(), request.path);
        let (status, body) = post(&client, &url, &request)
            .await
            .expect("restarted gateway reachable");
        ledger.answered(&request, status, &body);
    }

    // THEN the queue drains and every acknowledged event is processed, once
    let deadline = Instant::now() + scale.drain_deadline;
    let events = loop {
        let status = backend.cli_json(&["status"]);
        let events = backend.cli_json(&["events", "list"]);
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
    let copies = ledger.check_listing(&events);
    eprintln!(
        "{name}: answers by status {:?}; {} events acknowledged, {} listed processed ({copies} raced copies), after {:.1?}",
        ledger.answers,
        ledger.stored.len(),
        events.len(),
        started.elapsed()
    );
    let dead = backend.cli_json(&["dlq", "list"]);
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    assert_eq!(
        backend.cli_json(&["quarantine", "list"]).len(),
        Provider::ALL.len(),
        "one quarantined garbage body per provider"
    );
    assert!(
        server.terminate().is_some_and(|s| s.success()),
        "SIGTERM stops serve cleanly"
    );

    // AND the data survives a clean stop
    let after = backend.cli(&["events", "list", "--limit", "3"]);
    assert!(after.status.success());
    assert_eq!(
        String::from_utf8_lossy(&after.stdout).lines().count(),
        4,
        "a header and three rows"
    );
}
