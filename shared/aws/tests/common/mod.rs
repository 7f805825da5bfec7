//! Shared set-up for the integration tests: a fresh, randomly named table and
//! queue pair on the local emulator, real SDK clients pointed at it, and the
//! sample events from `events/`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use terima_aws::{DynamoStore, S3Blobs, SqsQueue};
use terima_core::{Provider, QueueMessage, SystemClock};
use terima_service::config::DEFAULT_RETENTION_DAYS;
use terima_service::{EndpointConfig, Ingest, Metrics, Processor, ProcessorConfig};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The emulator's URL, set by `scripts/test.sh`, which starts it.
pub fn endpoint() -> String {
    std::env::var("TERIMA_TEST_AWS_ENDPOINT").expect(
        "TERIMA_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test.sh, which installs and starts moto_server",
    )
}

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(terima_aws::setup::http_client())
        .endpoint_url(endpoint())
        .region(Region::new("ap-southeast-3"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await
}

pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's backends.
pub struct Backends {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub bucket: String,
}

impl Backends {
    /// A new table and queue (with a DLQ after `max_receive` receives and the
    /// given visibility timeout).
    pub async fn new(max_receive: u32, visibility_secs: u32) -> Self {
        let sdk = sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let table = unique("terima");
        create_table(&dynamodb, &table).await;
        let bucket = unique("terima-bodies").to_ascii_lowercase();
        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::ApSoutheast3)
                    .build(),
            )
            .send()
            .await
            .expect("create bucket");
        let dlq_url = sqs
            .create_queue()
            .queue_name(unique("terima-dlq"))
            .send()
            .await
            .expect("create DLQ")
            .queue_url
            .expect("DLQ url");
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("DLQ attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("DLQ arn");
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
        let queue_url = sqs
            .create_queue()
            .queue_name(unique("terima-queue"))
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_secs.to_string(),
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        Self {
            sdk,
            dynamodb,
            sqs,
            s3,
            table,
            queue_url,
            dlq_url,
            bucket,
        }
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.dynamodb.clone(), &self.table, DEFAULT_RETENTION_DAYS)
            .with_blobs(self.blobs())
    }

    pub fn blobs(&self) -> S3Blobs {
        S3Blobs::new(self.s3.clone(), &self.bucket)
    }

    pub fn queue(&self) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), &self.queue_url)
    }

    /// Every item in the table (tests only: production code never scans).
    pub async fn items(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let out = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .send()
            .await
            .expect("scan");
        out.items.unwrap_or_default()
    }

    pub async fn items_with_sk_prefix(&self, prefix: &str) -> usize {
        self.items()
            .await
            .iter()
            .filter(|i| {
                i.get("sk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|s| s.starts_with(prefix))
            })
            .count()
    }

    /// Receives everything visible on `url` (a few empty polls in a row end it),
    /// leaving it in flight.
    pub async fn receive_all(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .send()
                .await
                .expect("receive");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                empty += 1;
            } else {
                empty = 0;
                all.extend(batch);
            }
        }
        all
    }

    pub async fn queued_messages(&self) -> Vec<QueueMessage> {
        self.receive_all(&self.queue_url)
            .await
            .iter()
            .map(|m| QueueMessage::decode(m.body().expect("body")).expect("a Terima message"))
            .collect()
    }
}

/// The table as `template.yaml` declares it: `pk`/`sk`, TTL on `expires_at`,
/// no secondary index.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("enable TTL");
}

/// The test-only secrets in `events/test-secrets.env`, as a lookup, with
/// overrides.
pub fn test_env(overrides: &[(&str, &str)]) -> impl terima_service::Lookup + use<> {
    let text = std::fs::read_to_string(workspace_root().join("events/test-secrets.env"))
        .expect("events/test-secrets.env");
    let mut vars = terima_service::config::parse_env_file(&text).expect("a valid env file");
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    move |name: &str| vars.get(name).cloned().filter(|v| !v.is_empty())
}

pub fn ingest<S, Q, B>(
    provider: Provider,
    store: S,
    queue: Q,
    blobs: B,
    overrides: &[(&str, &str)],
) -> Ingest<S, Q, B>
where
    S: terima_service::store::AckStore,
    Q: terima_service::store::Queue,
    B: terima_service::store::Blobs,
{
    let config = EndpointConfig::load(provider, &test_env(overrides)).expect("test configuration");
    Ingest::new(
        config,
        store,
        queue,
        blobs,
        Arc::new(SystemClock),
        Metrics::Silent,
    )
}

/// The functions' ack path on this test's backends.
pub type AwsIngest = Ingest<DynamoStore, SqsQueue, S3Blobs>;

pub fn ingest_for(b: &Backends, provider: Provider) -> AwsIngest {
    ingest(provider, b.store(), b.queue(), b.blobs(), &[])
}

/// The processor function's code on this test's backends.
pub fn processor_for<E: terima_service::Extension>(
    b: &Backends,
    extension: E,
    lease_millis: i64,
) -> Processor<DynamoStore, S3Blobs, E> {
    Processor::new(
        ProcessorConfig {
            lease_millis,
            concurrency: 8,
        },
        b.store(),
        b.blobs(),
        extension,
        Arc::new(SystemClock),
        Metrics::Silent,
    )
}

/// A sample API Gateway event from `events/`, as the function receives it.
pub fn request(file: &str) -> lambda_http::Request {
    let text =
        std::fs::read_to_string(workspace_root().join("events").join(file)).expect("sample event");
    lambda_http::request::from_str(&text).expect("an API Gateway event")
}

/// The same request with a header replaced (or removed, with `None`).
pub fn with_header(
    mut request: lambda_http::Request,
    name: &str,
    value: Option<&str>,
) -> lambda_http::Request {
    let name = http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
    match value {
        Some(v) => {
            request
                .headers_mut()
                .insert(name, v.parse().expect("header value"));
        }
        None => {
            request.headers_mut().remove(name);
        }
    }
    request
}

/// The same request with another body.
pub fn with_body(request: lambda_http::Request, body: &str) -> lambda_http::Request {
    let (parts, _) = request.into_parts();
    lambda_http::Request::from_parts(parts, lambda_http::Body::Text(body.to_owned()))
}

pub fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Answers through the function's own handler; returns status and JSON body.
pub async fn call<S, Q, B>(
    ingest: &Ingest<S, Q, B>,
    request: lambda_http::Request,
) -> (u16, serde_json::Value)
where
    S: terima_service::store::AckStore,
    Q: terima_service::store::Queue,
    B: terima_service::store::Blobs,
{
    let response = terima_aws::lambda::answer(ingest, request).await;
    let status = response.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_slice(response.body().as_ref()).expect("JSON response");
    (status, body)
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// What Lambda's SQS event source mapping does once: receive a batch, invoke
/// the processor's handler (killed after `kill_after`, as a timed-out
/// invocation is: nothing deleted), delete what succeeded. Returns the
/// received ids and the reported failures; `None` when the invocation was
/// killed.
pub async fn poll_once<E: terima_service::Extension, S: terima_service::store::EventStore>(
    b: &Backends,
    p: &Processor<S, S3Blobs, E>,
    kill_after: Duration,
) -> Option<(Vec<String>, Vec<String>)> {
    let out = b
        .sqs
        .receive_message()
        .queue_url(&b.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive");
    let messages = out.messages.unwrap_or_default();
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = aws_lambda_events::sqs::SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record
        })
        .collect();
    let response = tokio::time::timeout(kill_after, terima_aws::lambda::handle_batch(p, event))
        .await
        .ok()?;
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    for m in &messages {
        if !failed.contains(&m.message_id.clone().unwrap_or_default()) {
            b.sqs
                .delete_message()
                .queue_url(&b.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    Some((
        messages
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect(),
        failed,
    ))
}
