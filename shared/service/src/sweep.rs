//! The outbox sweeper: sends the messages the ack path could not send, then
//! drops them from the outbox. On AWS it runs every minute in the
//! maintenance function; `terima serve --backend aws` runs it on a timer.
//!
//! A message sent but not dropped (a crash in between, a failed delete) is
//! sent again next time: the processor absorbs the copy.

use terima_core::QueueMessage;
use tracing::{error, info};

use crate::metrics::{Metric, Metrics};
use crate::store::{BackendError, Outbox, Queue};

/// How many held messages one sweep handles at most.
pub const SWEEP_BATCH: usize = 100;

/// Sends up to [`SWEEP_BATCH`] held messages; returns how many were sent.
/// Stops at the first failed send (the queue is likely still down).
pub async fn sweep<O: Outbox, Q: Queue>(
    outbox: &O,
    queue: &Q,
    metrics: Metrics,
) -> Result<usize, BackendError> {
    let mut sent = 0;
    for (handle, text) in outbox.held(SWEEP_BATCH).await? {
        let message = match QueueMessage::decode(&text) {
            Ok(message) => message,
            Err(e) => {
                error!(handle, detail = %e, "an outbox item is not a queue message; left in place");
                continue;
            }
        };
        queue.send(&message).await?;
        outbox.release(&handle).await?;
        metrics.count(message.provider, Metric::OutboxResent, None);
        sent += 1;
    }
    if sent > 0 {
        info!(sent, "outbox messages sent to the queue");
    }
    Ok(sent)
}
