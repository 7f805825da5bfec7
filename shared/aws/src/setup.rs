//! Cold-start setup shared by every function: AWS configuration, secrets and
//! the backends, read once into typed values.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::tls;
use std::collections::HashMap;

use terima_core::Provider;
use terima_service::config::{ConfigError, Lookup, retention_days};

use crate::dynamo::DynamoStore;
use crate::s3::S3Blobs;
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
/// the ack budget: Akinon's sender waits 10 s, and a failed queue send is
/// followed by an outbox write, so each call is cut short at 3 s (1.5 s per
/// attempt) and the answer comes within about 6 s even when both hang.
pub async fn aws_config() -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_millis(1_500))
        .operation_timeout(Duration::from_secs(3))
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

/// `TERIMA_TABLE`, `TERIMA_RETENTION_DAYS`, and the bucket when
/// `TERIMA_BUCKET` is set (for reading stored bodies and the archive).
pub fn store(config: &SdkConfig, lookup: &dyn Lookup) -> Result<DynamoStore, ConfigError> {
    let table = required(lookup, "TERIMA_TABLE")?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(config),
        table,
        retention_days(lookup)?,
    );
    Ok(match lookup.get("TERIMA_BUCKET") {
        Some(_) => store.with_blobs(blobs(config, lookup)?),
        None => store,
    })
}

/// `TERIMA_QUEUE_URL`.
pub fn queue(config: &SdkConfig, lookup: &dyn Lookup) -> Result<SqsQueue, ConfigError> {
    let url = required(lookup, "TERIMA_QUEUE_URL")?;
    Ok(SqsQueue::new(aws_sdk_sqs::Client::new(config), url))
}

/// `TERIMA_BUCKET`. Against an emulator (an endpoint URL in the standard
/// configuration) the bucket is addressed in the path, since a bucket name
/// cannot be a host name on `127.0.0.1`.
pub fn blobs(config: &SdkConfig, lookup: &dyn Lookup) -> Result<S3Blobs, ConfigError> {
    let bucket = required(lookup, "TERIMA_BUCKET")?;
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    Ok(S3Blobs::new(aws_sdk_s3::Client::from_conf(s3), bucket))
}

/// In a deployment, each secrets variable of a provider's schemes
/// (`TERIMA_<P>_SECRETS`, `TERIMA_OMS_TOKENS`) is set by a `..._ID` variable
/// naming a Secrets Manager secret whose value is the list (a JSON array of
/// strings, or comma-separated); it is read once here and handed to the
/// configuration. The template holds the secret's name, never its value.
pub async fn with_secrets(
    config: &SdkConfig,
    provider: Provider,
    lookup: impl Lookup,
) -> Result<impl Lookup, SetupError> {
    let mut fetched = HashMap::new();
    let settings = provider
        .spec()
        .schemes(&lookup)
        .map_err(ConfigError::from)?;
    for setting in settings {
        let id_var = format!("{}_ID", setting.secrets_var);
        let Some(id) = lookup.get(&id_var) else {
            continue;
        };
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
        let value = out.secret_string.ok_or_else(|| SetupError::Secret {
            id,
            detail: "the secret has no string value".to_owned(),
        })?;
        fetched.insert(setting.secrets_var, value);
    }
    Ok(move |name: &str| fetched.get(name).cloned().or_else(|| lookup.get(name)))
}
