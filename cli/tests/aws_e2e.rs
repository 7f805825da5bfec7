//! The AWS path end to end, as a black box: a fresh table, queue, dead-letter
//! queue and body bucket on the local emulator, created from `template.yaml`'s
//! own definitions by `scripts/local_resources.py`; a real
//! `terima serve --backend aws` (the ack path and an SQS consumer running the
//! processor); and the same checks as the embedded `e2e.rs`, read back through
//! `terima ... --backend aws --json`.
//!
//! Needs the emulator's URL in `TERIMA_TEST_AWS_ENDPOINT` and the virtual
//! environment in `.venv`, both set up by `scripts/test.sh`. Without them the
//! tests fail; they never skip.

mod common;

use std::time::{Duration, Instant};

use common::aws::{Stack, VISIBILITY_SECS};
use common::backend::Backend;
use common::ledger::label;
use common::limits::check_bodies_at_the_limit;
use common::scenario::{Scale, every_acknowledged_event_is_processed_once_across_a_sigkill};
use common::{Signers, log_path, samples};
use terima::send::{client, post};
use terima_core::message::INLINE_MESSAGE_LIMIT;
use terima_service::config::DEFAULT_BODY_LIMIT;

/// The emulator costs about 30 ms per SQS call, one call at a time: a
/// stream of 120 rather than the embedded test's 400.
const SCALE: Scale = Scale {
    concurrency: 8,
    stream: 120,
    kill_after: 50,
    drain_deadline: Duration::from_secs(60),
};
/// The whole scenario, on this 2-core machine's worst day.
const BUDGET: Duration = Duration::from_secs(170);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_processed_exactly_once_across_a_sigkill() {
    let stack = Stack::create("stream");
    let started = Instant::now();
    tokio::time::timeout(
        BUDGET,
        every_acknowledged_event_is_processed_once_across_a_sigkill(&Backend::Aws(&stack), &SCALE),
    )
    .await
    .unwrap_or_else(|_| panic!("the scenario took more than {BUDGET:?} on {}", stack.prefix));
    eprintln!("aws: scenario passed in {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_the_limit_is_processed_and_one_byte_more_is_refused() {
    // GIVEN the default body limit, above SQS's inline limit: the S3 claim check
    let limit = DEFAULT_BODY_LIMIT;
    assert!(
        limit > INLINE_MESSAGE_LIMIT,
        "the limit ({limit}) must exceed the inline limit ({INLINE_MESSAGE_LIMIT}) for the claim check to be tested"
    );
    let stack = Stack::create("limits");
    // WHEN each provider sends a body of exactly the limit and one byte more
    // THEN the first is processed byte for byte, the second refused 413
    tokio::time::timeout(
        BUDGET,
        check_bodies_at_the_limit(&Backend::Aws(&stack), limit),
    )
    .await
    .unwrap_or_else(|_| panic!("the check took more than {BUDGET:?} on {}", stack.prefix));
}

/// Within a long poll or two; shorter than the visibility timeout for which
/// a message handed to an abandoned poll stays hidden.
const PROMPTLY: Duration = Duration::from_secs(4);

/// The consumer's long polls outlast the SDK's ack-path timeouts (1.5 s an
/// attempt): each empty poll used to be cut short, logged as a failure, and
/// the messages SQS gave the abandoned poll stayed hidden for a visibility
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_long_polls_without_failing_and_takes_work_at_once() {
    assert!(PROMPTLY < Duration::from_secs(VISIBILITY_SECS.parse().expect("seconds")));
    // GIVEN serve on an empty queue, idle for several long polls
    let stack = Stack::create("idle");
    let log_name = "aws-idle";
    let server = stack.serve(log_name, &[]);
    tokio::time::sleep(Duration::from_secs(7)).await;

    // WHEN an event arrives
    let (_, mut request) = samples()
        .into_iter()
        .find(|(path, _)| path.ends_with("bitbybit/order.created.json"))
        .expect("the BitByBit order sample");
    Signers::load().sign(&mut request);
    let url = format!("{}{}", server.url(), request.path);
    let (status, body) = post(&client(), &url, &request).await.expect("reachable");
    assert_eq!((status, label(&body).as_str()), (200, "accepted"), "{body}");
    let sent = Instant::now();

    // THEN it is taken within a poll or two, not after a visibility timeout
    let backend = Backend::Aws(&stack);
    let taken_after = loop {
        let status = backend.cli_json(&["status"]);
        if status[0]["queued"] == 0 && status[0]["in_flight"] == 0 {
            break sent.elapsed();
        }
        assert!(
            sent.elapsed() < PROMPTLY,
            "not taken within {PROMPTLY:?}: {}",
            status[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(taken_after < PROMPTLY, "taken after {taken_after:.1?}");
    let events = backend.cli_json(&["events", "list"]);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], "processed");
    assert!(server.terminate().is_some_and(|s| s.success()));
    // AND no poll failed
    let log = std::fs::read_to_string(log_path(log_name)).expect("serve's log");
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("receiving from the queue failed"))
        .collect();
    eprintln!(
        "idle consumer: the event was taken and processed {taken_after:.1?} after its answer; {} failed polls in {} log lines",
        failures.len(),
        log.lines().count()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
