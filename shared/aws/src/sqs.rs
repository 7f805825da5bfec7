//! The SQS queue the provider functions send to.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use terima_core::QueueMessage;
use terima_service::store::{BackendError, Queue};

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, BackendError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| BackendError::new("sqs", "send_message", e))
}

impl Queue for SqsQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), BackendError> {
        // Attributes let a subscriber filter without reading the body.
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.encode())
            .message_attributes("provider", attribute(message.provider.name())?)
            .message_attributes("event_type", attribute(&message.event_type)?)
            .message_attributes("resource_kind", attribute(&message.resource.kind)?)
            .send()
            .await
            .map_err(|e| {
                BackendError::new(
                    "sqs",
                    "send_message",
                    aws_sdk_sqs::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }
}
