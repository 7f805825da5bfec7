//! Ack latency against slow backends: a fixed delay is injected into both the
//! ack store (the work-record read) and the queue, and fresh deliveries and
//! duplicates are timed through `Ingest::handle`. The read and the send
//! overlap, so an ack should cost about one injected latency, not two.
//!
//! `cargo bench -p terima-service --bench ack_latency`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use terima_core::verify::FixedClock;
use terima_core::{Provider, QueueMessage, Timestamp, inspect};
use terima_service::faults::{FaultPlan, Faulty};
use terima_service::memory::MemoryStore;
use terima_service::store::{AckStore, Queue};
use terima_service::{Ingest, Metrics};

const N: usize = 50;
const LATENCIES_MS: [u64; 2] = [20, 50];

/// N distinct BitByBit deliveries (HMAC-signed, so verification is timed too).
fn deliveries() -> Vec<common::Delivery> {
    (0..N)
        .map(|i| {
            let body = format!(
                r#"{{"id":"cust_{i:04}","tags":["vip"],"updatedAt":"2024-01-16T08:00:00.000Z"}}"#
            );
            common::signed(
                Provider::BitByBit,
                body.as_bytes(),
                Some(("customer.updated", &format!("evt_{i:04}"))),
            )
        })
        .collect()
}

struct Figures {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let total: Duration = samples.iter().sum();
    Figures {
        mean: total / samples.len() as u32,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn print_row(label: &str, latency: Duration, f: &Figures) {
    let ratio = |d: Duration| d.as_secs_f64() / latency.as_secs_f64();
    println!(
        "{label:<28} {:>7.2} {:>7.2} {:>7.2}   {:>5.2}x {:>5.2}x {:>5.2}x",
        ms(f.mean),
        ms(f.p50),
        ms(f.p99),
        ratio(f.mean),
        ratio(f.p50),
        ratio(f.p99),
    );
}

async fn run(latency: Duration) {
    let store = MemoryStore::new();
    let (dedup_plan, queue_plan) = (FaultPlan::new(), FaultPlan::new());
    dedup_plan.set_delay(latency);
    queue_plan.set_delay(latency);
    let endpoint = Ingest::new(
        common::config(Provider::BitByBit, &[]),
        Faulty::new(store.clone(), dedup_plan.clone()),
        Faulty::new(store.clone(), queue_plan.clone()),
        store.clone(),
        Arc::new(FixedClock(common::NOW)),
        Metrics::Silent,
    );
    let deliveries = deliveries();
    let processor = common::processor_on(store.clone(), ());

    let mut by_label = Vec::new();
    for (label, expected) in [("fresh", "accepted"), ("duplicate", "duplicate")] {
        // The duplicates find the work of the fresh round recorded.
        common::drain(&store, &processor).await;
        let mut samples = Vec::with_capacity(N);
        for (i, d) in deliveries.iter().enumerate() {
            let started = Instant::now();
            let reply = endpoint
                .handle(&d.headers, &d.body, &format!("{label}-{i}"))
                .await;
            samples.push(started.elapsed());
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert!(reply.body.contains(expected), "{label}: {}", reply.body);
        }
        by_label.push((label, figures(samples)));
    }
    assert_eq!(store.queued().len(), N);
    assert_eq!(dedup_plan.calls() + queue_plan.calls(), 4 * N as u64);

    // For scale: the same two calls made one after the other, as a
    // dedup-first design would.
    let mut sequential = Vec::with_capacity(N);
    let dedup = Faulty::new(MemoryStore::new(), dedup_plan);
    let queue = Faulty::new(MemoryStore::new(), queue_plan);
    for (i, d) in deliveries.iter().enumerate() {
        let event = inspect(Provider::BitByBit, &d.headers, &d.body).expect("readable");
        let now = Timestamp::from_unix_millis(common::NOW * 1_000);
        let message = QueueMessage::new(&event, &d.headers, d.text(), now, &format!("seq-{i}"));
        let started = Instant::now();
        dedup
            .seen(
                message.provider,
                &message.resource,
                &message.work_key,
                &message.digest,
            )
            .await
            .expect("memory");
        queue.send(&message).await.expect("memory");
        sequential.push(started.elapsed());
    }

    println!(
        "injected latency {} ms per call, N = {N} each",
        latency.as_millis()
    );
    println!(
        "{:<28} {:>7} {:>7} {:>7}   {:>6} {:>6} {:>6}",
        "", "mean ms", "p50 ms", "p99 ms", "mean/L", "p50/L", "p99/L"
    );
    for (label, f) in &by_label {
        print_row(&format!("handle, {label}"), latency, f);
    }
    print_row("(read then send, in turn)", latency, &figures(sequential));
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; filters are not supported here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        for ms in LATENCIES_MS {
            run(Duration::from_millis(ms)).await;
        }
    });
}
