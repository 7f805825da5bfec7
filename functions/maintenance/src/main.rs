//! Maintenance, every minute on a schedule: sends the queue messages the ack
//! path could not send (the outbox), and archives the event log to S3 before
//! its records expire.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), terima_aws::lambda::Error> {
    terima_aws::lambda::run_maintenance().await
}
