//! Cold-start setup shared by every function: AWS configuration, secrets and
//! the backends, read once into typed values.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::tls;
use terima_core::Provider;
use terima_service::config::{ConfigError, Lookup, secrets_var};

use crate::dynamo::DynamoStore;
use crate::sqs::SqsQueue;

/// A failure before the first request: the function refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading secret {id} from Secrets Manager failed: {detail}")]
    Secret { id: String, detail: String },
}

/// The AWS SDK configuration from the standard environment (region,
/// credentials, `AWS_ENDPOINT_URL*` for an emulator), with timeouts that fit
/// the ack budget: providers wait 10 to 30 s, so a stuck call is cut short and
/// answered 503 well before that.
pub async fn aws_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts)
        .load()
        .await
}

/// HTTPS through rustls with ring, the one TLS stack in the binaries.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn required(lookup: &dyn Lookup, var: &str) -> Result<String, ConfigError> {
    lookup
        .get(var)
        .ok_or_else(|| ConfigError::Missing(var.to_owned()))
}

/// `TERIMA_TABLE`.
pub fn store(config: &SdkConfig, lookup: &dyn Lookup) -> Result<DynamoStore, ConfigError> {
    let table = required(lookup, "TERIMA_TABLE")?;
    Ok(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(config),
        table,
    ))
}

/// `TERIMA_QUEUE_URL`.
pub fn queue(config: &SdkConfig, lookup: &dyn Lookup) -> Result<SqsQueue, ConfigError> {
    let url = required(lookup, "TERIMA_QUEUE_URL")?;
    Ok(SqsQueue::new(aws_sdk_sqs::Client::new(config), url))
}

/// In a deployment, `TERIMA_<P>_SECRETS_ID` names a Secrets Manager secret
/// whose value is the comma-separated secret list; it is read once here and
/// handed to the configuration as `TERIMA_<P>_SECRETS`. The template holds the
/// secret's name, never its value.
pub async fn with_secrets(
    config: &SdkConfig,
    provider: Provider,
    lookup: impl Lookup,
) -> Result<impl Lookup, SetupError> {
    let id_var = format!("TERIMA_{}_SECRETS_ID", provider.env_infix());
    let fetched = match lookup.get(&id_var) {
        None => None,
        Some(id) => {
            let client = aws_sdk_secretsmanager::Client::new(config);
            let out = client
                .get_secret_value()
                .secret_id(&id)
                .send()
                .await
                .map_err(|e| SetupError::Secret {
                    id: id.clone(),
                    detail: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                })?;
            Some(out.secret_string.ok_or_else(|| SetupError::Secret {
                id,
                detail: "the secret has no string value".to_owned(),
            })?)
        }
    };
    let var = secrets_var(provider);
    Ok(move |name: &str| match &fetched {
        Some(secrets) if name == var => Some(secrets.clone()),
        _ => lookup.get(name),
    })
}
