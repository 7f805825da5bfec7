//! How quickly the console's first page comes with many events stored: an
//! embedded store filled through the store API (the processor's own
//! writes, many in flight so that they share group commits), a console
//! served in-process on it, and sequential requests timed to the last byte.
//! The full run is `cargo bench -p terima --bench console`; the suite runs a
//! short one (`tests/console_speed.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::Request;
use http_body_util::{BodyExt, Full};
use terima::backend::Backend;
use terima::console::mask::Masker;
use terima::console::{self, Console, Options};
use terima::gateway::SampleRequest;
use terima::settings::Settings;
use terima_core::{Clock, Provider, QueueMessage, SystemClock, Timestamp, inspect};
use terima_embedded::EmbeddedStore;
use terima_service::store::{Effect, EventRecord, EventStore, WorkRecord, WorkStatus};

/// Writes in flight while filling the store.
const IN_FLIGHT: usize = 1_024;
/// The goal: the first page within this, at the 99th percentile.
pub const GOAL: Duration = Duration::from_millis(100);

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One queue message per sample that reads.
fn templates() -> Vec<QueueMessage> {
    let mut messages = Vec::new();
    for provider in Provider::ALL {
        let dir = repo().join("events").join(provider.name());
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("events/<provider>")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let Ok(request) = SampleRequest::read(&path) else {
                continue;
            };
            let Ok(inspected) = inspect(request.provider, &request.headers, &request.body) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&request.body) else {
                continue;
            };
            messages.push(QueueMessage::new(
                &inspected,
                &request.headers,
                text,
                Timestamp::from_unix_millis(0),
                "bench",
            ));
        }
    }
    messages
}

/// Logs `count` distinct processed events, one millisecond apart.
pub async fn fill(store: &EmbeddedStore, count: usize) -> Duration {
    let templates = templates();
    let started = Instant::now();
    // In the past, one millisecond apart, the newest now.
    let base = SystemClock.now_millis() - i64::try_from(count).unwrap_or(i64::MAX);
    let mut writes = FuturesUnordered::new();
    for i in 0..count {
        let mut message = templates[i % templates.len()].clone();
        message.resource.id = format!("{}-{i}", message.resource.id);
        message.work_key = format!("{}-{i}", message.work_key);
        message.dedup_key = format!("{}-{i}", message.dedup_key);
        message.received_at =
            Timestamp::from_unix_millis(base + i64::try_from(i).unwrap_or(i64::MAX));
        message.request_id = format!("bench-{i}");
        let event = EventRecord::from_message(&message);
        let mut work = WorkRecord::new(&event);
        work.status = WorkStatus::Processed;
        work.attempts = 1;
        work.processed_at = Some(event.received_at);
        work.effect = Some(Effect::Applied);
        let store = store.clone();
        writes.push(async move {
            store.log(&event).await.expect("logged");
            store.finish(&work).await.expect("recorded");
        });
        if writes.len() >= IN_FLIGHT {
            writes.next().await;
        }
    }
    while writes.next().await.is_some() {}
    started.elapsed()
}

pub struct Timings {
    pub name: &'static str,
    pub samples: Vec<Duration>,
}

impl Timings {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    pub fn print(&self) {
        println!(
            "{:<42} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            self.name,
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0))
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// One GET, to its last byte.
async fn get(client: &Client, url: &str) -> Duration {
    let started = Instant::now();
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("answered");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(!body.is_empty());
    started.elapsed()
}

/// Fills a store with `events`, serves a console on it, and times
/// `requests` first pages (the HTML, then the first page of events).
pub async fn run(events: usize, requests: usize) -> Vec<Timings> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        EmbeddedStore::open(dir.path(), terima_embedded::Options::default()).expect("store");
    let filled = fill(&store, events).await;
    println!(
        "stored {events} events in {:.1} s ({:.0} events/s)",
        filled.as_secs_f64(),
        events as f64 / filled.as_secs_f64()
    );
    let settings =
        Settings::load(Some(&repo().join("events/test-secrets.env"))).expect("test secrets");
    let options = Options {
        addr: "127.0.0.1:0".parse().expect("address"),
        explicit: true,
        allow_remote: false,
        allow_writes: false,
    };
    let console = Console::new(
        Backend::Embedded(store),
        None,
        Masker::from_settings(&settings),
        &options,
        "bench".to_owned(),
    );
    let listener = console::bind(&options)
        .await
        .expect("bound")
        .expect("listener");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(console::serve(listener, Arc::new(console)));
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let pages = [
        ("GET / (the page)", "/"),
        (
            "GET /api/events?limit=50 (first page)",
            "/api/events?limit=50",
        ),
        (
            "GET /api/events?provider=oms&limit=50",
            "/api/events?provider=oms&limit=50",
        ),
    ];
    // Warm: the readers' connections, the page cache.
    for (_, path) in pages {
        for _ in 0..5 {
            get(&client, &format!("{url}{path}")).await;
        }
    }
    let mut timings: Vec<Timings> = pages
        .iter()
        .map(|(name, _)| Timings {
            name,
            samples: Vec::with_capacity(requests),
        })
        .collect();
    let mut first_page = Timings {
        name: "first page (HTML + first API page)",
        samples: Vec::with_capacity(requests),
    };
    for _ in 0..requests {
        let mut both = Duration::ZERO;
        for (i, (_, path)) in pages.iter().enumerate() {
            let took = get(&client, &format!("{url}{path}")).await;
            if i < 2 {
                both += took;
            }
            timings[i].samples.push(took);
        }
        first_page.samples.push(both);
    }
    server.abort();
    timings.push(first_page);
    timings
}
