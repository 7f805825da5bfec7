//! The processor: SQS batches from the webhook queue, each event's work done
//! once. Replace or extend `DeliveredNotification` with your own extension.

use terima_service::extensions::DeliveredNotification;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), terima_aws::lambda::Error> {
    terima_aws::lambda::run_processor(DeliveredNotification).await
}
