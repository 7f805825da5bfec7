//! `terima dlq list|redrive`: the dead-letter queue of the embedded store or
//! of the stack (`TERIMA_DLQ_URL`).

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, Message};
use serde_json::json;

use crate::args::DlqCommand;
use crate::backend::{Aws, Backend, Opened};
use crate::failure::Failure;
use crate::output::{dead_letter_json, embedded_dead_letter_json, print_json_line, print_table};

/// Listing SQS means receiving: messages are hidden this long while read,
/// then made visible again.
const PEEK_VISIBILITY_SECS: i32 = 30;
/// An upper bound on one listing or redrive of an SQS queue.
const SQS_MAX_MESSAGES: usize = 10_000;

pub async fn run(command: DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::List {
            backend,
            limit,
            json,
        } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let letters = match &backend {
                Backend::Embedded(store) => store
                    .dead_letters(limit)
                    .await?
                    .iter()
                    .map(embedded_dead_letter_json)
                    .collect(),
                Backend::Aws(aws) => sqs_list(aws, limit.unwrap_or(SQS_MAX_MESSAGES)).await?,
            };
            if json {
                letters.iter().for_each(print_json_line);
            } else if letters.is_empty() {
                eprintln!("the dead-letter queue is empty");
            } else {
                let text = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                let rows: Vec<Vec<String>> = letters
                    .iter()
                    .map(|l| {
                        vec![
                            text(&l["id"]),
                            text(&l["moved_at"]),
                            text(&l["provider"]),
                            text(&l["event_type"]),
                            format!("{}:{}", text(&l["resource_kind"]), text(&l["resource_id"])),
                            text(&l["receive_count"]),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "MOVED",
                        "PROVIDER",
                        "EVENT TYPE",
                        "RESOURCE",
                        "RECEIVES",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        DlqCommand::Redrive { ids, backend, json } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let moved = redrive(&backend, ids).await?;
            if json {
                print_json_line(&json!({ "redriven": moved }));
            } else {
                println!("moved {moved} message(s) back to the queue");
            }
            Ok(())
        }
    }
}

/// Moves dead letters back to the queue: those with `ids` (embedded only),
/// or all of them. Returns how many moved.
pub async fn redrive(backend: &Backend, ids: Vec<i64>) -> Result<usize, Failure> {
    match backend {
        Backend::Embedded(store) => Ok(store.redrive((!ids.is_empty()).then_some(ids)).await?),
        Backend::Aws(aws) => {
            if !ids.is_empty() {
                return Err(Failure::Usage(
                    "selecting dead letters by id works on the embedded backend only; on AWS redrive moves them all"
                        .to_owned(),
                ));
            }
            sqs_redrive(aws).await
        }
    }
}

fn sqs_error(operation: &str, e: impl std::error::Error + 'static) -> Failure {
    Failure::Backend(format!(
        "sqs {operation} failed: {}",
        aws_sdk_sqs::error::DisplayErrorContext(e)
    ))
}

async fn receive_batch(
    client: &aws_sdk_sqs::Client,
    url: &str,
    visibility: i32,
) -> Result<Vec<Message>, Failure> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility)
        .wait_time_seconds(0)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
        )
        .send()
        .await
        .map_err(|e| sqs_error("receive_message", e))?;
    Ok(out.messages.unwrap_or_default())
}

pub async fn sqs_list(aws: &Aws, limit: usize) -> Result<Vec<serde_json::Value>, Failure> {
    let client = aws.queue()?.client();
    let url = aws.dlq_url()?;
    let mut seen = Vec::new();
    let mut handles = Vec::new();
    while seen.len() < limit {
        let batch = receive_batch(client, url, PEEK_VISIBILITY_SECS).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let attribute = |name| {
                message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<i64>().ok())
            };
            let receives =
                attribute(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount);
            let sent = attribute(aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp);
            seen.push(dead_letter_json(
                message.message_id.clone().unwrap_or_default().into(),
                receives
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or_default(),
                message.body.as_deref().unwrap_or_default(),
                &[("moved_at", sent)],
            ));
            handles.extend(message.receipt_handle);
        }
    }
    // Visible again at once: listing must not delay a redrive.
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        client
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("change_message_visibility_batch", e))?;
    }
    seen.truncate(limit);
    Ok(seen)
}

async fn sqs_redrive(aws: &Aws) -> Result<usize, Failure> {
    let queue = aws.queue()?;
    let client = queue.client();
    let dlq = aws.dlq_url()?;
    let mut moved = 0;
    while moved < SQS_MAX_MESSAGES {
        let batch = receive_batch(client, dlq, 60).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let (Some(body), Some(handle)) = (message.body, message.receipt_handle) else {
                continue;
            };
            client
                .send_message()
                .queue_url(queue.url())
                .message_body(body)
                .send()
                .await
                .map_err(|e| sqs_error("send_message", e))?;
            // Sent first, deleted second: a failure in between leaves a
            // duplicate, which the processor absorbs, never a loss.
            client
                .delete_message()
                .queue_url(dlq)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| sqs_error("delete_message", e))?;
            moved += 1;
        }
    }
    Ok(moved)
}
