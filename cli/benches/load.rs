//! A bounded load test of `terima serve` with the embedded store: correctly
//! signed, unique events for all four providers, sent over keep-alive
//! connections (a) at a fixed rate of 2,000/s for 10 s, then (b) as fast as
//! 64 connections go for 10 s. Prints throughput, p50/p99 latency and
//! errors, then how long the in-process processor takes to drain the queue.
//!
//! `cargo bench -p terima --bench load` (the bench profile is the release
//! profile with symbols). The generator shares the machine's cores with the
//! server, so the figures are a floor.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Server, Signers, cli_json, is_probe, samples, variant};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use terima::gateway::SampleRequest;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const FIXED_RATE: usize = 2_000;
const PHASE: Duration = Duration::from_secs(10);
const CONNECTIONS: usize = 64;
/// Requests prepared for the full-speed phase: more than it can send.
const FULL_SPEED_BUDGET: usize = 200_000;
/// Open-loop requests outstanding at most (beyond that the server is
/// overloaded and the test says so through its latency).
const MAX_IN_FLIGHT: usize = 1_024;
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Prepared {
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

fn prepare(
    base: &str,
    signers: &Signers,
    templates: &[SampleRequest],
    tag: &str,
    count: usize,
) -> Vec<Prepared> {
    templates
        .iter()
        .cycle()
        .take(count)
        .enumerate()
        .map(|(n, template)| {
            let mut request = variant(template, &format!("-{tag}{n}"));
            signers.sign(&mut request);
            Prepared {
                uri: format!("{base}{}", request.path).parse().expect("uri"),
                headers: request.headers,
                body: Bytes::from(request.body),
            }
        })
        .collect()
}

/// Sends one request; the latency is counted from `since` (the scheduled
/// time in the open loop, so a stalled server is not hidden).
async fn send(client: &HttpClient, request: &Prepared, since: Instant) -> (Duration, bool) {
    let mut builder = Request::post(request.uri.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let Ok(http_request) = builder.body(Full::new(request.body.clone())) else {
        return (since.elapsed(), false);
    };
    let ok = match client.request(http_request).await {
        Ok(response) => {
            let success = response.status().is_success();
            success && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    };
    (since.elapsed(), ok)
}

struct Report {
    sent: usize,
    ok: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&self, name: &str) {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = |q: f64| {
            let index =
                ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
            sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
        };
        println!(
            "{name}: sent {}, 2xx {}, errors {}, {:.1} s, throughput {:.0} acks/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.sent,
            self.ok,
            self.sent - self.ok,
            self.elapsed.as_secs_f64(),
            self.ok as f64 / self.elapsed.as_secs_f64(),
            at(0.50),
            at(0.99),
            sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1_000.0),
        );
    }
}

async fn fixed_rate(client: &HttpClient, requests: Vec<Prepared>, rate: usize) -> Report {
    let requests = Arc::new(requests);
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = JoinSet::new();
    for index in 0..requests.len() {
        let due = start + Duration::from_secs_f64(index as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let (client, requests) = (client.clone(), Arc::clone(&requests));
        tasks.spawn(async move {
            let result = send(&client, &requests[index], due).await;
            drop(permit);
            result
        });
    }
    let latencies_ok: Vec<(Duration, bool)> = tasks.join_all().await;
    Report {
        sent: latencies_ok.len(),
        ok: latencies_ok.iter().filter(|(_, ok)| *ok).count(),
        elapsed: start.elapsed(),
        latencies: latencies_ok.into_iter().map(|(d, _)| d).collect(),
    }
}

async fn full_speed(client: &HttpClient, requests: Vec<Prepared>, connections: usize) -> Report {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + PHASE;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (client, requests, next) = (client.clone(), Arc::clone(&requests), Arc::clone(&next));
        tasks.spawn(async move {
            let mut results = Vec::new();
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(index) else {
                    break;
                };
                results.push(send(&client, request, Instant::now()).await);
            }
            results
        });
    }
    let results: Vec<(Duration, bool)> = tasks.join_all().await.into_iter().flatten().collect();
    Report {
        sent: results.len(),
        ok: results.iter().filter(|(_, ok)| *ok).count(),
        elapsed: start.elapsed(),
        latencies: results.into_iter().map(|(d, _)| d).collect(),
    }
}

/// Waits until the processor has emptied the queue; returns how long it took.
fn drain(dir: &str) -> Duration {
    let start = Instant::now();
    loop {
        let status = cli_json(&["status", "--data-dir", dir]);
        if status[0]["queued"] == 0 && status[0]["in_flight"] == 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DRAIN_DEADLINE,
            "queue not drained: {}",
            status[0]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    let server = Server::start(
        data.path(),
        "load",
        &[
            ("TERIMA_LEASE_SECS", "90"),
            ("TERIMA_VISIBILITY_SECS", "30"),
        ],
    );
    let base = server.url();
    let signers = Signers::load();
    let templates: Vec<SampleRequest> = samples()
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| !is_probe(s))
        .collect();
    println!(
        "terima serve (bench profile, RUST_LOG=warn, embedded store) at {base}; {} sample templates over 4 providers",
        templates.len()
    );
    let fixed = prepare(
        &base,
        &signers,
        &templates,
        "r",
        FIXED_RATE * PHASE.as_secs() as usize,
    );
    let full = prepare(&base, &signers, &templates, "f", FULL_SPEED_BUDGET);
    let client: HttpClient = terima::send::client();

    let report = runtime.block_on(fixed_rate(&client, fixed, FIXED_RATE));
    report.print(&format!(
        "fixed rate {FIXED_RATE}/s for {} s",
        PHASE.as_secs()
    ));
    let drained = drain(&dir);
    println!(
        "  processor: queue empty {:.1} s after the phase",
        drained.as_secs_f64()
    );

    let report = runtime.block_on(full_speed(&client, full, CONNECTIONS));
    report.print(&format!(
        "full speed, {CONNECTIONS} connections, {} s",
        PHASE.as_secs()
    ));
    let drained = drain(&dir);
    println!(
        "  processor: queue empty {:.1} s after the phase ({} events acknowledged in it)",
        drained.as_secs_f64(),
        report.ok
    );
    let processed = cli_json(&[
        "events",
        "list",
        "--data-dir",
        &dir,
        "--status",
        "processed",
    ])
    .len();
    println!("events processed in total: {processed}");
    drop(server);
}
