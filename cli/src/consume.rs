//! The processor loop of `terima serve`: a local stand-in for the SQS event
//! source mapping. It receives batches, runs `Processor::process_batch` (the
//! processor function's code) and deletes what succeeded; failures become
//! visible again after the visibility timeout, and a message received too
//! often goes to the dead-letter queue, as on AWS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use terima_embedded::{EmbeddedStore, Receipt};
use terima_service::process::Extension;
use terima_service::store::{BackendError, Blobs, EventStore};
use terima_service::{Processor, Record};
use tokio::sync::watch;
use tracing::error;

/// SQS's largest batch, and the event source mapping's default.
pub const BATCH_SIZE: usize = 10;
/// How long an idle embedded consumer sleeps when nothing arrives; messages
/// whose visibility timeout ended are picked up within this.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// SQS long polling: one request waits this long for a message.
const SQS_WAIT_SECS: i32 = 2;
/// A long poll's own time limit. The SDK configuration is the ack path's
/// (`terima_aws::setup::aws_config`: 1.5 s an attempt, 3 s in all), which
/// would cut every empty poll short: a failure logged every few seconds,
/// and the messages SQS hands to an abandoned poll hidden until their
/// visibility timeout ends.
const SQS_RECEIVE_TIMEOUT: Duration = Duration::from_secs(SQS_WAIT_SECS as u64 + 3);
/// After a failed receive, wait before trying again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub enum Consumer {
    Embedded {
        store: EmbeddedStore,
        visibility: Duration,
    },
    Sqs {
        client: aws_sdk_sqs::Client,
        url: String,
        visibility: Duration,
    },
}

struct Delivery {
    handle: Handle,
    record: Record,
}

enum Handle {
    Embedded(Receipt),
    Sqs(String),
}

impl Consumer {
    async fn receive(&self) -> Result<Vec<Delivery>, BackendError> {
        match self {
            Self::Embedded { store, visibility } => Ok(store
                .receive(BATCH_SIZE, *visibility)
                .await?
                .into_iter()
                .map(|m| Delivery {
                    handle: Handle::Embedded(m.receipt),
                    record: Record {
                        message_id: m.receipt.id.to_string(),
                        body: m.body,
                    },
                })
                .collect()),
            Self::Sqs {
                client,
                url,
                visibility,
            } => {
                let out = client
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(i32::try_from(BATCH_SIZE).unwrap_or(10))
                    .wait_time_seconds(SQS_WAIT_SECS)
                    .visibility_timeout(i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX))
                    .customize()
                    .config_override(
                        aws_sdk_sqs::config::Builder::default().timeout_config(
                            TimeoutConfig::builder()
                                .operation_attempt_timeout(SQS_RECEIVE_TIMEOUT)
                                .operation_timeout(2 * SQS_RECEIVE_TIMEOUT)
                                .build(),
                        ),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        BackendError::new(
                            "sqs",
                            "receive_message",
                            aws_sdk_sqs::error::DisplayErrorContext(e),
                        )
                    })?;
                Ok(out
                    .messages
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| {
                        Some(Delivery {
                            handle: Handle::Sqs(m.receipt_handle?),
                            record: Record {
                                message_id: m.message_id?,
                                body: m.body.unwrap_or_default(),
                            },
                        })
                    })
                    .collect())
            }
        }
    }

    async fn delete(&self, handles: Vec<Handle>) -> Result<(), BackendError> {
        match self {
            Self::Embedded { store, .. } => {
                let receipts = handles
                    .into_iter()
                    .filter_map(|h| match h {
                        Handle::Embedded(receipt) => Some(receipt),
                        Handle::Sqs(_) => None,
                    })
                    .collect();
                store.delete(receipts).await.map(|_| ())
            }
            Self::Sqs { client, url, .. } => {
                let entries: Vec<DeleteMessageBatchRequestEntry> = handles
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, h)| match h {
                        Handle::Sqs(receipt) => DeleteMessageBatchRequestEntry::builder()
                            .id(index.to_string())
                            .receipt_handle(receipt)
                            .build()
                            .ok(),
                        Handle::Embedded(_) => None,
                    })
                    .collect();
                if entries.is_empty() {
                    return Ok(());
                }
                client
                    .delete_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| {
                        BackendError::new(
                            "sqs",
                            "delete_message_batch",
                            aws_sdk_sqs::error::DisplayErrorContext(e),
                        )
                    })?;
                Ok(())
            }
        }
    }

    /// Waits for work after an empty receive (SQS already waited in it).
    async fn idle(&self) {
        if let Self::Embedded { store, .. } = self {
            store.wait_for_messages(IDLE_POLL).await;
        }
    }
}

/// Receives and processes until `stop` turns true; the batch in hand is
/// finished first. A batch's deletes are sent together with the next
/// receive, so that on the embedded store both land in one group commit and
/// each round waits for one commit fewer.
pub async fn consume<S: EventStore, B: Blobs, E: Extension>(
    consumer: Arc<Consumer>,
    processor: Arc<Processor<S, B, E>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut done = Vec::new();
    while !*stop.borrow() {
        let (deleted, received) = tokio::join!(
            consumer.delete(std::mem::take(&mut done)),
            consumer.receive()
        );
        // Undeleted messages come back after the visibility timeout; the
        // processor's lease makes the second run a no-op.
        if let Err(e) = deleted {
            error!(detail = %e, "deleting processed messages failed; they will be received again");
        }
        let batch = match received {
            Ok(batch) => batch,
            Err(e) => {
                error!(detail = %e, "receiving from the queue failed");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = consumer.idle() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let (handles, records): (Vec<Handle>, Vec<Record>) =
            batch.into_iter().map(|d| (d.handle, d.record)).unzip();
        let ids: Vec<String> = records.iter().map(|r| r.message_id.clone()).collect();
        let failed: HashSet<String> = processor.process_batch(records).await.into_iter().collect();
        done = ids
            .iter()
            .zip(handles)
            .filter(|(id, _)| !failed.contains(*id))
            .map(|(_, handle)| handle)
            .collect();
    }
    if let Err(e) = consumer.delete(done).await {
        error!(detail = %e, "deleting processed messages failed; they will be received again");
    }
}
