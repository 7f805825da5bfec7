//! A soak of `terima serve` with the embedded store: steady, unique,
//! correctly signed events for all four providers at a target rate for a
//! duration (open loop), then the drain. Every half second it looks at the
//! server: the data directory's size, its resident memory and the queue
//! depth (through `terima status`, as an operator would). It prints intake
//! and completion rates side by side, peak data-directory size and peak RSS,
//! and checks the two bounds: the data directory stays under twice the live
//! data (its size after a clean stop) plus [`FIXED_BOUND`], and the queue
//! stays under the server's depth bound.
//!
//! `cargo bench -p terima --bench soak`; `TERIMA_SOAK_RATE` (events/s,
//! default 5000) and `TERIMA_SOAK_SECS` (default 60) change the load. The
//! requests are prepared (signed) before the run, about 1.5 KB each, so that
//! the generator's CPU goes to sending; it shares the machine's cores with
//! the server, so the figures are a floor.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::load::{self, HttpClient, MAX_IN_FLIGHT, Progress, Sample, Sampler};
use common::{Server, Signers, cli};
use terima::admission::{DEFAULT_MAX_QUEUE_DEPTH, DEPTH_REFRESH};
use terima_embedded::WAL_BUDGET;

const DEFAULT_RATE: usize = 5_000;
const DEFAULT_SECS: u64 = 60;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Rows of the printed table.
const REPORT_EVERY: Duration = Duration::from_secs(5);
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);
/// What the data directory may hold beyond twice the live data: the WAL
/// budget, the commits made while a reset waits for readers, and the WAL
/// index.
const FIXED_BOUND: u64 = WAL_BUDGET + 32 * MIB;
const MIB: u64 = 1024 * 1024;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// One row per [`REPORT_EVERY`]: rates over the window, state at its end.
fn print_table(samples: &[Sample]) {
    println!(
        "{:>6} {:>10} {:>12} {:>9} {:>9} {:>13} {:>8}",
        "t (s)", "intake/s", "completed/s", "503/s", "queue", "data dir MiB", "RSS MiB"
    );
    let per_row = (REPORT_EVERY.as_millis() / SAMPLE_EVERY.as_millis()) as usize;
    let mut previous: Option<&Sample> = None;
    for sample in samples.iter().skip(per_row - 1).step_by(per_row) {
        let (accepted, completed, overloaded, at) = previous.map_or((0, 0, 0, 0.0), |p| {
            (p.accepted, p.completed(), p.overloaded, p.at.as_secs_f64())
        });
        let window = sample.at.as_secs_f64() - at;
        println!(
            "{:>6.0} {:>10.0} {:>12.0} {:>9.0} {:>9} {:>13.1} {:>8.1}",
            sample.at.as_secs_f64(),
            (sample.accepted - accepted) as f64 / window,
            sample.completed().saturating_sub(completed) as f64 / window,
            (sample.overloaded - overloaded) as f64 / window,
            sample.depth,
            mib(sample.dir_bytes),
            mib(sample.rss_bytes),
        );
        previous = Some(sample);
    }
}

fn main() {
    let rate = env_or("TERIMA_SOAK_RATE", DEFAULT_RATE);
    let secs = env_or("TERIMA_SOAK_SECS", DEFAULT_SECS);
    assert!(
        rate > 0 && secs > 0,
        "TERIMA_SOAK_RATE and TERIMA_SOAK_SECS must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path();
    let server = Server::start(
        dir,
        "soak",
        &[
            ("TERIMA_LEASE_SECS", "90"),
            ("TERIMA_VISIBILITY_SECS", "30"),
            // The requests are signed before the run, which may last longer
            // than BitByBit's five minutes.
            ("TERIMA_BITBYBIT_TOLERANCE_SECS", "86400"),
        ],
    );
    let base = server.url();
    let signers = Signers::load();
    let templates = load::templates();
    let count = rate * usize::try_from(secs).expect("fits");
    println!(
        "soak: {rate} unique events/s for {secs} s against terima serve (bench profile, embedded store) at {base}; \
         WAL budget {:.0} MiB, queue bound {DEFAULT_MAX_QUEUE_DEPTH}; preparing {count} requests",
        mib(WAL_BUDGET)
    );
    let requests = load::prepare(&base, &signers, &templates, "soak", count);
    let client: HttpClient = terima::send::client();
    let progress = Arc::new(Progress::default());

    let sampler = Sampler::start(
        server.pid(),
        dir.to_owned(),
        SAMPLE_EVERY,
        Arc::clone(&progress),
    );
    let report = runtime.block_on(load::fixed_rate(&client, requests, rate, &progress));
    let drained = load::drain(dir, DRAIN_DEADLINE);
    let samples = sampler.finish();
    let (_, peak_rss) = load::rss(server.pid());

    print_table(&samples);
    report.print(&format!("load phase, {rate}/s for {secs} s"));
    let during = samples
        .iter()
        .take_while(|s| s.at <= report.elapsed)
        .last()
        .expect("sampled during the load");
    println!(
        "intake {:.0} events/s, completion {:.0} events/s over the load phase ({} of {} completed by its end)",
        report.accepted as f64 / report.elapsed.as_secs_f64(),
        during.completed() as f64 / during.at.as_secs_f64(),
        during.completed(),
        report.accepted,
    );
    println!(
        "queue empty {:.1} s after the load phase",
        drained.as_secs_f64()
    );
    let max_depth = samples.iter().map(|s| s.depth).max().unwrap_or(0);
    let peak = samples.iter().max_by_key(|s| s.dir_bytes).expect("samples");
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
        Duration::from_secs(600),
    );
    assert!(listed.status.success(), "events list failed");
    let processed = listed.stdout.iter().filter(|b| **b == b'\n').count();
    println!(
        "events processed: {processed} of {} acknowledged",
        report.accepted
    );

    assert!(
        server.terminate().is_some_and(|s| s.success()),
        "SIGTERM stops serve cleanly"
    );
    let live = load::dir_bytes(dir);
    let bound = 2 * live + FIXED_BOUND;
    println!(
        "peak data directory {:.1} MiB at {:.1} s; live data after a clean stop {:.1} MiB ({:.0} bytes/event); \
         bound 2 x live + {:.0} MiB = {:.1} MiB: {}",
        mib(peak.dir_bytes),
        peak.at.as_secs_f64(),
        mib(live),
        live as f64 / report.accepted.max(1) as f64,
        mib(FIXED_BOUND),
        mib(bound),
        if peak.dir_bytes <= bound {
            "holds"
        } else {
            "EXCEEDED"
        },
    );
    // Intake may pass the bound by what arrives between two measurements.
    let depth_bound = DEFAULT_MAX_QUEUE_DEPTH
        + (rate as f64 * DEPTH_REFRESH.as_secs_f64()) as u64
        + MAX_IN_FLIGHT as u64;
    println!(
        "max queue depth {max_depth}; bound {DEFAULT_MAX_QUEUE_DEPTH} + what arrives between two measurements = {depth_bound}: {}",
        if max_depth <= depth_bound {
            "holds"
        } else {
            "EXCEEDED"
        },
    );
    println!("peak RSS of terima serve {:.1} MiB", mib(peak_rss));
}
