//! The fault matrix: for each provider, each single failure of the AWS path
//! (a DynamoDB error, a DynamoDB timeout after the write landed, an SQS
//! error, an SQS timeout after the send landed, a crash between any two
//! steps, on the ack path and in the processor; and the two double faults
//! where the outbox is the fallback), with the provider's real
//! retry behaviour (Biteship never retries; the others retry until answered
//! 2xx), ends with every acknowledged event processed exactly once and none
//! lost. The real DynamoDB, SQS and S3 clients run against the emulator; the
//! faults are injected around them.
//!
//! An unanswered delivery promised nothing: a provider that retries sends it
//! again; Biteship's only retry is a person pressing Resend, which is why the
//! outbox exists (an SQS fault alone never costs a Biteship event).
//!
//! The matrix is printed: `cargo test -p terima-aws --test fault_matrix -- --nocapture`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use terima_aws::{DynamoStore, S3Blobs, SqsQueue};
use terima_core::{Inspected, Provider};
use terima_service::faults::{Fault, FaultPlan, Faulty};
use terima_service::process::{Extension, ExtensionError, WorkContext};
use terima_service::store::{EventStore, WorkStatus};
use terima_service::sweep::sweep;
use terima_service::{Ingest, Metrics, Processor, ProcessorConfig};

/// A provider retries an unanswered or non-2xx delivery this many times in
/// the test (their real schedules are minutes to hours; the count is what
/// matters here).
const RETRIES: usize = 3;
/// The function is killed after this long without an answer.
const KILLED_AFTER: Duration = Duration::from_secs(4);
const LEASE_MILLIS: i64 = 1_000;
const VISIBILITY_SECS: u32 = 1;

/// Counts each event's business work (the extension runs under the lease).
/// When it does not apply, the built-in work alone runs, recorded with the
/// state it produced.
#[derive(Clone, Default)]
struct Work(Arc<Mutex<HashMap<String, usize>>>, bool);

impl Work {
    fn runs(&self) -> usize {
        self.0.lock().map(|m| m.values().sum()).unwrap_or_default()
    }
}

impl Extension for Work {
    fn applies(&self, _: &Inspected) -> bool {
        self.1
    }

    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        if let Ok(mut runs) = self.0.lock() {
            *runs.entry(ctx.event.reading.work_key.clone()).or_default() += 1;
        }
        Ok(())
    }
}

/// Where a fault strikes, counted in calls to that backend.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The ack path's store: call 1 is the work-record read, call 2 the
    /// outbox write (only after a failed send).
    AckStore(u64, Fault),
    /// The ack path's queue: call 1 is the send.
    AckQueue(u64, Fault),
    /// The processor's store. With an extension (under a lease): 1 the work
    /// records, 2 the lease, 3 the log entry, 4-5 the resource, 6 the
    /// completion. Built-in work alone: 1 the work records, 2 the log entry,
    /// 3 the resource, 4 the resource written with the work recorded.
    ProcessorStore(u64, Fault),
}

/// Which processing path a case runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// An extension applies: its work runs under a lease.
    Lease,
    /// Built-in work only.
    BuiltIn,
}

struct Case {
    name: &'static str,
    faults: &'static [At],
    /// `None`: the fault is on the ack path, the same for both.
    path: Option<Path>,
}

const CASES: &[Case] = &[
    Case {
        name: "no fault",
        faults: &[],
        path: None,
    },
    Case {
        name: "DynamoDB error on the ack read",
        faults: &[At::AckStore(1, Fault::Before)],
        path: None,
    },
    Case {
        name: "SQS error on the send",
        faults: &[At::AckQueue(1, Fault::Before)],
        path: None,
    },
    Case {
        name: "SQS timeout after the send landed",
        faults: &[At::AckQueue(1, Fault::After)],
        path: None,
    },
    Case {
        name: "SQS error, then DynamoDB timeout after the outbox write landed",
        faults: &[
            At::AckQueue(1, Fault::Before),
            At::AckStore(2, Fault::After),
        ],
        path: None,
    },
    Case {
        name: "SQS error, then DynamoDB error on the outbox write",
        faults: &[
            At::AckQueue(1, Fault::Before),
            At::AckStore(2, Fault::Before),
        ],
        path: None,
    },
    Case {
        name: "crash while sending (send not made)",
        faults: &[At::AckQueue(1, Fault::Stall)],
        path: None,
    },
    Case {
        name: "crash after the send landed",
        faults: &[At::AckQueue(1, Fault::StallAfter)],
        path: None,
    },
    Case {
        name: "DynamoDB error taking the lease",
        faults: &[At::ProcessorStore(2, Fault::Before)],
        path: Some(Path::Lease),
    },
    Case {
        name: "DynamoDB timeout after the lease landed",
        faults: &[At::ProcessorStore(2, Fault::After)],
        path: Some(Path::Lease),
    },
    Case {
        name: "DynamoDB error on the log entry",
        faults: &[At::ProcessorStore(3, Fault::Before)],
        path: Some(Path::Lease),
    },
    Case {
        name: "crash between the lease and the log entry",
        faults: &[At::ProcessorStore(3, Fault::Stall)],
        path: Some(Path::Lease),
    },
    Case {
        name: "crash between the log entry and the projection",
        faults: &[At::ProcessorStore(4, Fault::Stall)],
        path: Some(Path::Lease),
    },
    Case {
        name: "DynamoDB error on the completion",
        faults: &[At::ProcessorStore(6, Fault::Before)],
        path: Some(Path::Lease),
    },
    Case {
        name: "DynamoDB timeout after the completion landed",
        faults: &[At::ProcessorStore(6, Fault::After)],
        path: Some(Path::Lease),
    },
    Case {
        name: "crash after the completion landed",
        faults: &[At::ProcessorStore(6, Fault::StallAfter)],
        path: Some(Path::Lease),
    },
    Case {
        name: "DynamoDB error on the log entry",
        faults: &[At::ProcessorStore(2, Fault::Before)],
        path: Some(Path::BuiltIn),
    },
    Case {
        name: "crash between the log entry and the projection",
        faults: &[At::ProcessorStore(3, Fault::Stall)],
        path: Some(Path::BuiltIn),
    },
    Case {
        name: "DynamoDB error on the write that records the work",
        faults: &[At::ProcessorStore(4, Fault::Before)],
        path: Some(Path::BuiltIn),
    },
    Case {
        name: "DynamoDB timeout after the write that records the work landed",
        faults: &[At::ProcessorStore(4, Fault::After)],
        path: Some(Path::BuiltIn),
    },
    Case {
        name: "crash after the write that records the work landed",
        faults: &[At::ProcessorStore(4, Fault::StallAfter)],
        path: Some(Path::BuiltIn),
    },
];

const SAMPLES: [(Provider, &str); 4] = [
    (Provider::BebasKirim, "bebaskirim/order.packed.json"),
    (Provider::BitByBit, "bitbybit/customer.updated.json"),
    (Provider::Oms, "oms/package.status.packed.json"),
    (Provider::Biteship, "biteship/order.status.json"),
];

fn retries(provider: Provider) -> usize {
    // Biteship's only retry is a person pressing Resend.
    if provider.spec().retries() {
        RETRIES
    } else {
        0
    }
}

/// What one case ended in, for one provider.
struct Outcome {
    answers: Vec<String>,
    acknowledged: bool,
    held: bool,
    runs: usize,
    logged: usize,
    processed: bool,
}

fn plans(faults: &[At]) -> (Arc<FaultPlan>, Arc<FaultPlan>, Arc<FaultPlan>) {
    let (ack_store, ack_queue, processor) = (FaultPlan::new(), FaultPlan::new(), FaultPlan::new());
    for fault in faults {
        match *fault {
            At::AckStore(n, f) => ack_store.fail(n, f),
            At::AckQueue(n, f) => ack_queue.fail(n, f),
            At::ProcessorStore(n, f) => processor.fail(n, f),
        }
    }
    (ack_store, ack_queue, processor)
}

async fn run_case(provider: Provider, file: &str, case: &Case) -> Outcome {
    let b = Backends::new(10, VISIBILITY_SECS).await;
    let (ack_store, ack_queue, processor_plan) = plans(case.faults);
    let ingest: Ingest<Faulty<DynamoStore>, Faulty<SqsQueue>, S3Blobs> = ingest(
        provider,
        Faulty::new(b.store(), ack_store),
        Faulty::new(b.queue(), ack_queue),
        b.blobs(),
        &[],
    );
    // The deliveries, as the provider makes them.
    let mut answers = Vec::new();
    let mut acknowledged = false;
    for _ in 0..=retries(provider) {
        let answer = tokio::time::timeout(KILLED_AFTER, call(&ingest, request(file))).await;
        let text = match &answer {
            Ok((status, body)) => format!("{status} {}", body["status"].as_str().unwrap_or("")),
            Err(_) => "no answer".to_owned(),
        };
        answers.push(text);
        if matches!(answer, Ok((200..=299, _))) {
            acknowledged = true;
            break;
        }
    }
    // The maintenance function's sweep, then the event source mapping and
    // the processor until the queue stays empty.
    let held = !terima_service::store::Outbox::held(&b.store(), 10)
        .await
        .expect("reads the outbox")
        .is_empty();
    sweep(&b.store(), &b.queue(), Metrics::Silent)
        .await
        .expect("sweeps");
    let path = case.path.unwrap_or(Path::BuiltIn);
    let work = Work(Arc::default(), path == Path::Lease);
    let processor = Processor::new(
        ProcessorConfig {
            lease_millis: LEASE_MILLIS,
            concurrency: 4,
        },
        Faulty::new(b.store(), processor_plan),
        b.blobs(),
        work.clone(),
        Arc::new(terima_core::SystemClock),
        Metrics::Silent,
    );
    let mut empty = 0;
    while empty < 3 {
        // A crashed invocation: killed, nothing deleted.
        match poll_once(&b, &processor, KILLED_AFTER).await {
            Some((received, _)) if received.is_empty() => {
                empty += 1;
                sleep_ms(u64::from(VISIBILITY_SECS) * 600).await;
            }
            _ => empty = 0,
        }
    }
    let inspected = terima_core::inspect(
        provider,
        request(file).headers(),
        request(file).body().as_ref(),
    )
    .expect("the sample reads");
    let processed = b
        .store()
        .works(
            provider,
            &inspected.reading.resource,
            &inspected.reading.work_key,
        )
        .await
        .expect("reads")
        .iter()
        .any(|w| w.status == WorkStatus::Processed);
    // The built-in work's runs are its records, wherever they are kept: a
    // work item, or an entry in the state item. Each delivery's log entry
    // is written once.
    let digest = &inspected.digest;
    let items = b.items().await;
    let recorded = items
        .iter()
        .filter(|i| {
            let sk = i.get("sk").and_then(|v| v.as_s().ok());
            let own = sk
                .is_some_and(|sk| sk.starts_with("W#") && sk.ends_with(&format!("#{digest}")))
                && i.get("st").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("processed");
            let inside = sk.map(String::as_str) == Some("S")
                && i.get("wm")
                    .and_then(|v| v.as_m().ok())
                    .is_some_and(|m| m.contains_key(digest));
            own || inside
        })
        .count();
    let logged = items
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("T#"))
                && i.get("dg").and_then(|v| v.as_s().ok()) == Some(digest)
        })
        .count();
    Outcome {
        answers,
        acknowledged,
        held,
        runs: match path {
            Path::Lease => work.runs(),
            Path::BuiltIn => recorded,
        },
        logged,
        processed,
    }
}

fn verdict(provider: Provider, o: &Outcome) -> &'static str {
    match (o.acknowledged, o.runs) {
        _ if o.logged > 1 => "LOGGED TWICE",
        (true, 1) => "ok",
        (true, 0) => "LOST",
        (_, 2..) => "TWICE",
        (false, 1) => "ok (unanswered, processed)",
        (false, _) if retries(provider) == 0 => "unanswered: Resend by hand",
        (false, _) => "unanswered after every retry",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_is_processed_exactly_once_whatever_single_fault() {
    let mut lines = Vec::new();
    let mut lost = 0;
    let mut twice = 0;
    let mut acknowledged = 0;
    for case in CASES {
        // The four providers of a case run at once: most of a case is
        // waiting for a visibility timeout or a lease to lapse.
        let outcomes = futures_util::future::join_all(SAMPLES.map(|(provider, file)| {
            Box::pin(async move { (provider, run_case(provider, file, case).await) })
        }))
        .await;
        for (provider, o) in outcomes {
            if o.acknowledged {
                acknowledged += 1;
                if o.runs == 0 || !o.processed {
                    lost += 1;
                }
            }
            if o.runs > 1 || o.logged > 1 {
                twice += 1;
            }
            lines.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                case.name,
                match case.path {
                    Some(Path::Lease) => "extension",
                    _ => "built-in",
                },
                provider,
                o.answers.join(", "),
                if o.held { "yes" } else { "" },
                o.runs,
                o.logged,
                verdict(provider, &o)
            ));
        }
    }
    println!(
        "| fault | work | provider | answers (with retries) | outbox | work runs | log entries | verdict |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for line in &lines {
        println!("{line}");
    }
    println!(
        "{} cases, {acknowledged} acknowledged, {lost} lost, {twice} run twice",
        lines.len()
    );
    assert_eq!(lost, 0, "an acknowledged event was lost");
    assert_eq!(twice, 0, "an event's work ran twice");
    assert!(
        acknowledged >= lines.len() - 8,
        "most cases end acknowledged"
    );
}
