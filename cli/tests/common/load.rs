//! The load generator shared by the load and soak benchmarks and the soak
//! test: unique, correctly signed events for all four providers, sent over
//! keep-alive connections at a fixed rate (open loop) or as fast as a number
//! of connections go; and a sampler of a running server's data directory,
//! memory and queue.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use terima::gateway::SampleRequest;
use terima_core::Provider;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Signers, cli_json, is_probe, samples, variant};

/// Open-loop requests outstanding at most: beyond that the server is
/// overloaded and the run says so through its latency. Below the server's
/// default connection cap, so that every request gets a connection.
pub const MAX_IN_FLIGHT: usize = 192;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub struct Prepared {
    pub provider: Provider,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// The samples that make events (not Biteship's installation probe).
pub fn templates() -> Vec<SampleRequest> {
    samples()
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| !is_probe(s))
        .collect()
}

/// `count` unique events, cycling through the templates, signed now. `tag`
/// keeps each batch's ids apart from another's on the same data directory.
pub fn prepare(
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
                provider: request.provider,
                uri: format!("{base}{}", request.path).parse().expect("uri"),
                headers: request.headers,
                body: Bytes::from(request.body),
            }
        })
        .collect()
}

/// How the server answered one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the event is stored and queued.
    Accepted,
    /// 503 because the queue is at its bound: the provider retries later.
    Overloaded,
    /// Anything else, or no answer.
    Failed,
}

/// Answers so far, for a sampler to read while a run goes on.
#[derive(Default)]
pub struct Progress {
    pub accepted: AtomicUsize,
    pub overloaded: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Progress {
    fn count(&self, answer: Answer) {
        let counter = match answer {
            Answer::Accepted => &self.accepted,
            Answer::Overloaded => &self.overloaded,
            Answer::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one request; the latency is counted from `since` (the scheduled
/// time in the open loop, so a stalled server is not hidden).
pub async fn send(client: &HttpClient, request: &Prepared, since: Instant) -> (Duration, Answer) {
    let mut builder = Request::post(request.uri.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let Ok(http_request) = builder.body(Full::new(request.body.clone())) else {
        return (since.elapsed(), Answer::Failed);
    };
    let answer = match client.request(http_request).await {
        Ok(response) => {
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            match body {
                Ok(_) if status.is_success() => Answer::Accepted,
                Ok(body)
                    if status == 503
                        && serde_json::from_slice::<serde_json::Value>(&body)
                            .is_ok_and(|v| v["status"] == "overloaded") =>
                {
                    Answer::Overloaded
                }
                _ => Answer::Failed,
            }
        }
        Err(_) => Answer::Failed,
    };
    (since.elapsed(), answer)
}

pub struct Report {
    pub sent: usize,
    pub accepted: usize,
    pub overloaded: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Each request's provider and answer.
    pub answers: Vec<(Provider, Answer)>,
}

impl Report {
    fn new(results: Vec<(Provider, Duration, Answer)>, elapsed: Duration) -> Self {
        let count = |answer| results.iter().filter(|(_, _, a)| *a == answer).count();
        Self {
            sent: results.len(),
            accepted: count(Answer::Accepted),
            overloaded: count(Answer::Overloaded),
            elapsed,
            latencies: results.iter().map(|(_, d, _)| *d).collect(),
            answers: results.iter().map(|(p, _, a)| (*p, *a)).collect(),
        }
    }

    /// Requests answered neither 2xx nor "overloaded".
    pub fn errors(&self) -> usize {
        self.sent - self.accepted - self.overloaded
    }

    pub fn print(&self, name: &str) {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = |q: f64| {
            let index =
                ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
            sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
        };
        println!(
            "{name}: sent {}, 2xx {}, 503 overloaded {}, errors {}, {:.1} s, throughput {:.0} acks/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.sent,
            self.accepted,
            self.overloaded,
            self.errors(),
            self.elapsed.as_secs_f64(),
            self.accepted as f64 / self.elapsed.as_secs_f64(),
            at(0.50),
            at(0.99),
            sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1_000.0),
        );
    }
}

/// Sends `requests` at `rate` per second, whatever the answers' latency (up
/// to [`MAX_IN_FLIGHT`] outstanding).
pub async fn fixed_rate(
    client: &HttpClient,
    requests: Vec<Prepared>,
    rate: usize,
    progress: &Arc<Progress>,
) -> Report {
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
        let (client, requests, progress) =
            (client.clone(), Arc::clone(&requests), Arc::clone(progress));
        tasks.spawn(async move {
            let request = &requests[index];
            let (latency, answer) = send(&client, request, due).await;
            progress.count(answer);
            drop(permit);
            (request.provider, latency, answer)
        });
    }
    let results = tasks.join_all().await;
    Report::new(results, start.elapsed())
}

/// Sends as fast as `connections` keep-alive connections go, for `duration`
/// or until `requests` run out.
pub async fn full_speed(
    client: &HttpClient,
    requests: Vec<Prepared>,
    connections: usize,
    duration: Duration,
    progress: &Arc<Progress>,
) -> Report {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (client, requests, next, progress) = (
            client.clone(),
            Arc::clone(&requests),
            Arc::clone(&next),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            let mut results = Vec::new();
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(index) else {
                    break;
                };
                let (latency, answer) = send(&client, request, Instant::now()).await;
                progress.count(answer);
                results.push((request.provider, latency, answer));
            }
            results
        });
    }
    let results = tasks.join_all().await.into_iter().flatten().collect();
    Report::new(results, start.elapsed())
}

/// Messages in the queue (visible and in flight), as `terima status` tells.
pub fn queue_depth(dir: &Path) -> u64 {
    let status = cli_json(&["status", "--data-dir", dir.to_str().expect("utf-8 path")]);
    status[0]["queued"].as_u64().expect("queued")
        + status[0]["in_flight"].as_u64().expect("in_flight")
}

/// Waits until the processor has emptied the queue; returns how long it took.
pub fn drain(dir: &Path, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let depth = queue_depth(dir);
        if depth == 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "queue not drained within {deadline:?}: {depth} messages left"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The sum of the lengths of the files in `dir` (the database, its WAL and
/// the WAL index).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in
/// bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One look at a running server.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Since the sampler started.
    pub at: Duration,
    pub dir_bytes: u64,
    pub rss_bytes: u64,
    /// Queued and in-flight messages.
    pub depth: u64,
    /// Requests answered 2xx so far.
    pub accepted: usize,
    pub overloaded: usize,
}

impl Sample {
    /// Events the processor has completed (acknowledged and no longer queued).
    pub fn completed(&self) -> u64 {
        (self.accepted as u64).saturating_sub(self.depth)
    }
}

/// Looks at a server every `interval` on a thread of its own, until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(pid: u32, dir: PathBuf, interval: Duration, progress: Arc<Progress>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let (ready, started) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let _ = ready.send(());
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let due = start + interval * u32::try_from(samples.len() + 1).expect("fits");
                // Read the counters before the queue, so that completed
                // (accepted minus queued) is never overstated.
                let accepted = progress.accepted.load(Ordering::Relaxed);
                let overloaded = progress.overloaded.load(Ordering::Relaxed);
                let depth = queue_depth(&dir);
                samples.push(Sample {
                    at: start.elapsed(),
                    dir_bytes: dir_bytes(&dir),
                    rss_bytes: rss(pid).0,
                    depth,
                    accepted,
                    overloaded,
                });
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            samples
        });
        started.recv().expect("sampler started");
        Self { stop, thread }
    }

    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler thread")
    }
}
