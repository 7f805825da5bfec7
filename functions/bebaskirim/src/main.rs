//! Bebas Kirim webhooks: `POST /webhooks/bebaskirim`, verified, deduplicated and queued.

use terima_core::Provider;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), terima_aws::lambda::Error> {
    terima_aws::lambda::run_provider(Provider::BebasKirim).await
}
