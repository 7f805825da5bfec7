//! End to end, as a provider and an operator see it, on the embedded
//! backend: a real `terima serve` process on a free port and the scenario of
//! `common/scenario.rs` (every sample with duplicates, forgeries, oversize
//! and garbage bodies, a SIGKILL in the middle of a stream and a restart on
//! the same data directory; then every event answered 2xx listed exactly
//! once, processed, and nothing answered 4xx), and bodies at the body limit
//! for every provider. `aws_e2e.rs` runs the same on the AWS backend.

mod common;

use std::time::Duration;

use common::backend::Backend;
use common::limits::check_bodies_at_the_limit;
use common::scenario::{Scale, every_acknowledged_event_is_processed_once_across_a_sigkill};
use terima_core::message::INLINE_MESSAGE_LIMIT;
use terima_service::config::DEFAULT_BODY_LIMIT;

const SCALE: Scale = Scale {
    concurrency: 16,
    stream: 400,
    kill_after: 150,
    drain_deadline: Duration::from_secs(90),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_processed_exactly_once_across_a_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    every_acknowledged_event_is_processed_once_across_a_sigkill(
        &Backend::Embedded(data.path()),
        &SCALE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_the_limit_is_processed_and_one_byte_more_is_refused() {
    // GIVEN the default body limit, above the inline limit: the claim check
    let limit = DEFAULT_BODY_LIMIT;
    assert!(
        limit > INLINE_MESSAGE_LIMIT,
        "the limit ({limit}) must exceed the inline limit ({INLINE_MESSAGE_LIMIT}) for the claim check to be tested"
    );
    let data = tempfile::tempdir().expect("temp dir");
    // WHEN each provider sends a body of exactly the limit and one byte more
    // THEN the first is processed byte for byte, the second refused 413
    check_bodies_at_the_limit(&Backend::Embedded(data.path()), limit).await;
}
