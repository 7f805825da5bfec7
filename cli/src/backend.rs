//! The backend an inspection command works on: the embedded data directory
//! (also while `terima serve` runs on it) or the deployed DynamoDB table, SQS
//! queues and S3 bucket.

use std::sync::Arc;

use terima_aws::{DynamoStore, S3Blobs, SqsQueue, setup};
use terima_core::{Provider, QueueMessage, SystemClock, Verification};
use terima_embedded::{EmbeddedStore, OpenError, Options};
use terima_service::config::{DEFAULT_BODY_LIMIT, archive_days, retention_days};
use terima_service::store::{
    AckStore, Blobs, ConflictRecord, EventFilter, EventLog, EventRecord, EventView, Page,
    QuarantineRecord, Queue, Retried, Story,
};
use terima_service::{EndpointConfig, Ingest, Lookup, Metrics, Outcome};

use crate::args::{BackendArgs, BackendKind};
use crate::failure::Failure;
use crate::settings::Settings;

pub enum Backend {
    Embedded(EmbeddedStore),
    Aws(Aws),
}

/// The deployed stack, configured like the functions.
pub struct Aws {
    pub store: DynamoStore,
    /// `TERIMA_QUEUE_URL`: needed to replay, retry and redrive only.
    pub queue: Option<SqsQueue>,
    /// `TERIMA_BUCKET`: large bodies and the archive.
    pub blobs: Option<S3Blobs>,
    /// `TERIMA_DLQ_URL` (the stack's `DeadLetterQueueUrl` output).
    pub dlq_url: Option<String>,
}

pub struct Opened {
    pub backend: Backend,
    pub settings: Settings,
}

/// Dispatches one call to whichever backend is open.
macro_rules! on {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            Backend::Embedded($store) => $call,
            Backend::Aws(aws) => {
                let $store = &aws.store;
                $call
            }
        }
    };
}

impl Backend {
    /// Opens an existing backend: the inspection commands never create a data
    /// directory.
    pub async fn open(args: &BackendArgs) -> Result<Opened, Failure> {
        let settings = Settings::load(args.env_file.as_deref())?;
        let backend = match args.backend {
            BackendKind::Embedded => {
                let options = Options {
                    create: false,
                    retention_days: retention_days(&settings)?,
                    archive_days: archive_days(&settings)?,
                    ..Options::default()
                };
                match EmbeddedStore::open(&args.data_dir, options) {
                    Ok(store) => Self::Embedded(store),
                    Err(OpenError::NotFound(path)) => {
                        return Err(Failure::Backend(format!(
                            "no Terima data at {}: start `terima serve --data-dir {}` first, or pass --data-dir",
                            path.display(),
                            args.data_dir.display()
                        )));
                    }
                    Err(e) => return Err(Failure::backend(e)),
                }
            }
            BackendKind::Aws => {
                let config = setup::aws_config().await;
                let store = setup::store(&config, &settings)?;
                let queue = settings
                    .get("TERIMA_QUEUE_URL")
                    .is_some()
                    .then(|| setup::queue(&config, &settings))
                    .transpose()?;
                let blobs = settings
                    .get("TERIMA_BUCKET")
                    .is_some()
                    .then(|| setup::blobs(&config, &settings))
                    .transpose()?;
                Self::Aws(Aws {
                    store,
                    queue,
                    blobs,
                    dlq_url: settings.get("TERIMA_DLQ_URL"),
                })
            }
        };
        Ok(Opened { backend, settings })
    }

    pub async fn events(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EventView>, Failure> {
        Ok(on!(self, s => s.events(filter, after, limit).await)?)
    }

    pub async fn event(&self, id: &str) -> Result<Option<EventView>, Failure> {
        Ok(on!(self, s => s.event(id).await)?)
    }

    pub async fn story(&self, provider: Provider, kind: &str, id: &str) -> Result<Story, Failure> {
        Ok(on!(self, s => s.story(provider, kind, id).await)?)
    }

    pub async fn body(&self, event: &EventRecord) -> Result<Option<Vec<u8>>, Failure> {
        Ok(on!(self, s => s.body(event).await)?)
    }

    pub async fn conflicts(&self, limit: usize) -> Result<Vec<ConflictRecord>, Failure> {
        Ok(on!(self, s => s.conflicts(limit).await)?)
    }

    pub async fn quarantined(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<QuarantineRecord>, Failure> {
        Ok(on!(self, s => s.quarantined(after, limit).await)?)
    }

    pub async fn quarantined_one(&self, id: &str) -> Result<Option<QuarantineRecord>, Failure> {
        Ok(on!(self, s => s.quarantined_one(id).await)?)
    }

    pub async fn mark_retried(&self, id: &str, retried: &Retried) -> Result<(), Failure> {
        Ok(on!(self, s => s.mark_retried(id, retried).await)?)
    }

    /// A stored blob (a large quarantined body).
    pub async fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        Ok(match self {
            Self::Embedded(store) => Blobs::get(store, key).await?,
            Self::Aws(aws) => Blobs::get(aws.blobs()?, key).await?,
        })
    }

    /// Sends `message` through the ack path's enqueue step (send, or the
    /// outbox when the send fails).
    pub async fn enqueue(&self, message: &QueueMessage) -> Result<Outcome, Failure> {
        Ok(match self {
            Self::Embedded(store) => {
                enqueuer(
                    message.provider,
                    store.clone(),
                    store.clone(),
                    store.clone(),
                )
                .enqueue(message)
                .await
            }
            Self::Aws(aws) => {
                enqueuer(
                    message.provider,
                    aws.store.clone(),
                    aws.queue()?.clone(),
                    aws.blobs()?.clone(),
                )
                .enqueue(message)
                .await
            }
        })
    }
}

impl Aws {
    pub fn queue(&self) -> Result<&SqsQueue, Failure> {
        self.queue
            .as_ref()
            .ok_or_else(|| Failure::Config("TERIMA_QUEUE_URL is not set".to_owned()))
    }

    pub fn blobs(&self) -> Result<&S3Blobs, Failure> {
        self.blobs.as_ref().ok_or_else(|| {
            Failure::Config(
                "TERIMA_BUCKET is not set (the stack's BodyBucketName output)".to_owned(),
            )
        })
    }

    pub fn dlq_url(&self) -> Result<&str, Failure> {
        self.dlq_url.as_deref().ok_or_else(|| {
            Failure::Config(
                "TERIMA_DLQ_URL is not set (the stack's DeadLetterQueueUrl output)".to_owned(),
            )
        })
    }
}

/// An endpoint for what is enqueued by an operator: nothing to verify (the
/// event was verified when it arrived), so no secret is needed.
fn enqueuer<S: AckStore, Q: Queue, B: Blobs>(
    provider: Provider,
    store: S,
    queue: Q,
    blobs: B,
) -> Ingest<S, Q, B> {
    let config = EndpointConfig {
        provider,
        verification: Verification::Disabled,
        body_limit: DEFAULT_BODY_LIMIT,
    };
    Ingest::new(
        config,
        store,
        queue,
        blobs,
        Arc::new(SystemClock),
        Metrics::Silent,
    )
}
