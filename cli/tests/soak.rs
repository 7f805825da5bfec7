//! A short soak of `terima serve` (the longer one is `cargo bench -p terima
//! --bench soak`): steady unique events for a few seconds, with the data
//! directory, the queue and the server's memory sampled throughout.
//!
//! - Disk: under steady load the data directory stays under twice the live
//!   data plus the WAL budget and a margin (before the writer reset the WAL,
//!   it grew by tens of megabytes a second for a few megabytes of data).
//! - Backlog: with a processor slower than intake, the queue stays at its
//!   bound: providers that retry are answered 503 `overloaded`, Biteship
//!   (which never retries) is still taken, and every accepted event is
//!   processed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::load::{self, Answer, HttpClient, MAX_IN_FLIGHT, Progress, Report, Sample, Sampler};
use common::{Server, Signers, cli};
use terima::admission::{DEPTH_REFRESH, retries};
use terima_embedded::WAL_BUDGET;

const SAMPLE_EVERY: Duration = Duration::from_millis(200);
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

/// Sends `rate` unique events a second for `secs` seconds, sampling the
/// server meanwhile; waits for the queue to drain.
async fn soak(
    server: &Server,
    dir: &Path,
    tag: &str,
    rate: usize,
    secs: usize,
) -> (Report, Vec<Sample>) {
    let requests = load::prepare(
        &server.url(),
        &Signers::load(),
        &load::templates(),
        tag,
        rate * secs,
    );
    let client: HttpClient = terima::send::client();
    let progress = Arc::new(Progress::default());
    let sampler = Sampler::start(
        server.pid(),
        dir.to_owned(),
        SAMPLE_EVERY,
        Arc::clone(&progress),
    );
    let report = load::fixed_rate(&client, requests, rate, &progress).await;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || load::drain(&dir, DRAIN_DEADLINE))
        .await
        .expect("drained");
    (report, sampler.finish())
}

fn processed(dir: &Path) -> usize {
    let listed = cli(
        &[
            "events",
            "list",
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--status",
            "processed",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(listed.status.success(), "events list failed");
    listed.stdout.iter().filter(|b| **b == b'\n').count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_stays_bounded_under_steady_load() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data.path(), "soak-disk", &[]);

    // GIVEN steady traffic for a few seconds
    let (report, samples) = soak(&server, data.path(), "disk", 800, 6).await;
    assert_eq!(report.errors(), 0);
    assert_eq!(report.overloaded, 0);

    // THEN the data directory stayed under twice the live data plus the WAL budget and a margin
    assert!(
        server.terminate().is_some_and(|s| s.success()),
        "SIGTERM stops serve cleanly"
    );
    let live = load::dir_bytes(data.path());
    let peak = samples.iter().map(|s| s.dir_bytes).max().unwrap_or(0);
    let bound = 2 * live + WAL_BUDGET + 16 * MIB;
    eprintln!(
        "{} events: peak {:.1} MiB, live {:.1} MiB, bound {:.1} MiB",
        report.accepted,
        peak as f64 / MIB as f64,
        live as f64 / MIB as f64,
        bound as f64 / MIB as f64
    );
    assert!(peak <= bound, "peak {peak} bytes, bound {bound}");
    // AND every acknowledged event was processed
    assert_eq!(processed(data.path()), report.accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_is_refused_past_the_queue_bound_except_from_biteship() {
    let data = tempfile::tempdir().expect("temp dir");
    let bound = 100;
    let rate = 500;
    // GIVEN a processor slower than intake, and a small bound on the queue
    let server = Server::start(
        data.path(),
        "soak-backlog",
        &[
            ("TERIMA_MAX_QUEUE_DEPTH", &bound.to_string()),
            ("TERIMA_WORKERS", "1"),
            ("TERIMA_CONCURRENCY", "1"),
        ],
    );

    // WHEN events arrive faster than they are processed
    let (report, samples) = soak(&server, data.path(), "backlog", rate, 4).await;

    // THEN providers that retry were told to come back later, and Biteship never was
    assert_eq!(report.errors(), 0);
    assert!(report.overloaded > 0, "the bound was never reached");
    for (provider, answer) in &report.answers {
        if !retries(*provider) {
            assert_eq!(*answer, Answer::Accepted, "{provider} was refused");
        }
    }
    // AND the queue stayed at its bound, give or take what arrives between two measurements
    let max_depth = samples.iter().map(|s| s.depth).max().unwrap_or(0);
    let biteship = report.answers.iter().filter(|(p, _)| !retries(*p)).count() as u64;
    let slack =
        (rate as f64 * DEPTH_REFRESH.as_secs_f64()) as u64 + MAX_IN_FLIGHT as u64 + biteship;
    eprintln!(
        "accepted {}, overloaded {}, max depth {max_depth} (bound {bound} + slack {slack})",
        report.accepted, report.overloaded
    );
    assert!(max_depth <= bound + slack, "queue reached {max_depth}");
    // AND every accepted event was processed
    assert_eq!(processed(data.path()), report.accepted);
}
