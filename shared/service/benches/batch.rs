//! A batch of ten queue messages through `Processor::process_batch` against a
//! slow store (a fixed delay on every call), with ten records at a time and
//! with one at a time. Each record makes four store calls (acquire, read and
//! write its resource, complete), so one at a time costs about 40 delays and
//! ten at a time about 4.
//!
//! `cargo bench -p terima-service --bench batch`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use terima_core::Provider;
use terima_core::verify::FixedClock;
use terima_service::faults::{FaultPlan, Faulty};
use terima_service::memory::MemoryStore;
use terima_service::{Metrics, Processor, ProcessorConfig, Record};

const BATCH: usize = 10;
const DELAY: Duration = Duration::from_millis(10);
const RUNS: usize = 5;

/// Ten encoded queue messages, each about its own order.
async fn messages() -> Vec<String> {
    let mut encoded = Vec::with_capacity(BATCH);
    for n in 0..BATCH {
        let body = format!(
            r#"{{"event":"order.packed","timestamp":"2024-01-20T16:30:00Z","tenant_id":"TEN-2024-001","data":{{"order_id":"ORD-BENCH-{n}","status":"packed","updated_at":"2024-01-20T16:30:00Z"}}}}"#
        );
        let delivery = common::signed(Provider::BebasKirim, body.as_bytes(), None);
        encoded.push(
            common::queue_message(Provider::BebasKirim, &delivery)
                .await
                .encode(),
        );
    }
    encoded
}

/// One batch on a fresh store; returns the wall time and the store calls made.
async fn one_batch(messages: &[String], concurrency: usize) -> (Duration, u64) {
    let plan = FaultPlan::new();
    plan.set_delay(DELAY);
    let processor = Processor::new(
        ProcessorConfig {
            lease_millis: 90_000,
            concurrency,
        },
        Faulty::new(MemoryStore::new(), plan.clone()),
        MemoryStore::new(),
        (),
        Arc::new(FixedClock(common::NOW)),
        Metrics::Silent,
    );
    let records = messages
        .iter()
        .enumerate()
        .map(|(i, body)| Record {
            message_id: format!("m-{i}"),
            body: body.clone(),
        })
        .collect();
    let started = Instant::now();
    let failed = processor.process_batch(records).await;
    let elapsed = started.elapsed();
    assert!(failed.is_empty(), "failed: {failed:?}");
    (elapsed, plan.calls())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let messages = messages().await;
        println!(
            "batch of {BATCH} messages, {} ms injected per store call, best and mean of {RUNS} runs",
            DELAY.as_millis()
        );
        let mut means = Vec::new();
        for concurrency in [BATCH, 1] {
            let mut times = Vec::with_capacity(RUNS);
            let mut calls = 0;
            for _ in 0..RUNS {
                let (elapsed, n) = one_batch(&messages, concurrency).await;
                times.push(elapsed);
                calls = n;
            }
            let best = times.iter().min().copied().unwrap_or_default();
            let mean = times.iter().sum::<Duration>() / RUNS as u32;
            println!(
                "concurrency {concurrency:>2}: best {:>7.1} ms, mean {:>7.1} ms ({calls} store calls, {:.1} delays of wall time)",
                ms(best),
                ms(mean),
                mean.as_secs_f64() / DELAY.as_secs_f64(),
            );
            means.push(mean);
        }
        if let [parallel, serial] = means[..] {
            println!("speed-up (mean, concurrency {BATCH} over 1): {:.1}x", serial.as_secs_f64() / parallel.as_secs_f64());
        }
    });
}
