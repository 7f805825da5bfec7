//! A bounded load test of `terima serve` with the embedded store: correctly
//! signed, unique events for all four providers, sent over keep-alive
//! connections (a) at a fixed rate of 2,000/s for 10 s, then (b) as fast as
//! 64 connections go for 10 s. Prints throughput, p50/p99 latency, errors
//! and refusals (503 past the queue's bound), what the in-process processor
//! completed meanwhile, and how long it takes to drain the queue.
//!
//! `cargo bench -p terima --bench load` (the bench profile is the release
//! profile with symbols). The generator shares the machine's cores with the
//! server, so the figures are a floor.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::load::{self, HttpClient, Progress};
use common::{Server, Signers, cli};

const FIXED_RATE: usize = 2_000;
const PHASE: Duration = Duration::from_secs(10);
const CONNECTIONS: usize = 64;
/// Requests prepared for the full-speed phase: more than it can send.
const FULL_SPEED_BUDGET: usize = 200_000;
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path();
    let server = Server::start(
        dir,
        "load",
        &[
            ("TERIMA_LEASE_SECS", "90"),
            ("TERIMA_VISIBILITY_SECS", "30"),
        ],
    );
    let base = server.url();
    let signers = Signers::load();
    let templates = load::templates();
    println!(
        "terima serve (bench profile, RUST_LOG=warn, embedded store) at {base}; {} sample templates over 4 providers",
        templates.len()
    );
    let fixed = load::prepare(
        &base,
        &signers,
        &templates,
        "r",
        FIXED_RATE * PHASE.as_secs() as usize,
    );
    let full = load::prepare(&base, &signers, &templates, "f", FULL_SPEED_BUDGET);
    let client: HttpClient = terima::send::client();
    let progress = Arc::new(Progress::default());

    let report = runtime.block_on(load::fixed_rate(&client, fixed, FIXED_RATE, &progress));
    report.print(&format!(
        "fixed rate {FIXED_RATE}/s for {} s",
        PHASE.as_secs()
    ));
    let drained = load::drain(dir, DRAIN_DEADLINE);
    println!(
        "  processor: queue empty {:.1} s after the phase",
        drained.as_secs_f64()
    );

    let report = runtime.block_on(load::full_speed(
        &client,
        full,
        CONNECTIONS,
        PHASE,
        &progress,
    ));
    let depth = load::queue_depth(dir);
    report.print(&format!(
        "full speed, {CONNECTIONS} connections, {} s",
        PHASE.as_secs()
    ));
    let completed = (report.accepted as u64).saturating_sub(depth);
    println!(
        "  processor: {completed} completed during the phase ({:.0}/s beside {:.0} acks/s), {depth} queued at its end",
        completed as f64 / report.elapsed.as_secs_f64(),
        report.accepted as f64 / report.elapsed.as_secs_f64(),
    );
    let drained = load::drain(dir, DRAIN_DEADLINE);
    println!(
        "  processor: queue empty {:.1} s after the phase ({} events acknowledged in it)",
        drained.as_secs_f64(),
        report.accepted
    );
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
        Duration::from_secs(120),
    );
    assert!(listed.status.success(), "events list failed");
    let processed = listed.stdout.iter().filter(|b| **b == b'\n').count();
    println!("events processed in total: {processed}");
    drop(server);
}
