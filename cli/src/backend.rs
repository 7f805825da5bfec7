//! The backend an inspection command works on: the embedded data directory
//! (also while `terima serve` runs on it) or the deployed DynamoDB table and
//! SQS queues.

use std::sync::Arc;

use terima_aws::{DynamoStore, SqsQueue, setup};
use terima_core::Verification;
use terima_core::{Provider, QueueMessage, SystemClock};
use terima_embedded::{EmbeddedStore, OpenError, Options};
use terima_service::config::{DEFAULT_BODY_LIMIT, DEFAULT_DEDUP_TTL_SECS, number};
use terima_service::store::{
    DedupStore, EventFilter, EventRecord, EventStore, Queue, ResourceState,
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
    /// `TERIMA_QUEUE_URL`: needed to replay and redrive only.
    pub queue: Option<SqsQueue>,
    /// `TERIMA_DLQ_URL` (the stack's `DeadLetterQueueUrl` output).
    pub dlq_url: Option<String>,
}

pub struct Opened {
    pub backend: Backend,
    pub settings: Settings,
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
                Self::Aws(Aws {
                    store,
                    queue,
                    dlq_url: settings.get("TERIMA_DLQ_URL"),
                })
            }
        };
        Ok(Opened { backend, settings })
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, Failure> {
        Ok(match self {
            Self::Embedded(store) => store.events(filter).await?,
            Self::Aws(aws) => aws.store.events(filter).await?,
        })
    }

    pub async fn event(
        &self,
        provider: Provider,
        work_key: &str,
    ) -> Result<Option<EventRecord>, Failure> {
        Ok(match self {
            Self::Embedded(store) => store.event(provider, work_key).await?,
            Self::Aws(aws) => aws.store.event(provider, work_key).await?,
        })
    }

    pub async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, Failure> {
        Ok(match self {
            Self::Embedded(store) => store.resource(provider, kind, id).await?,
            Self::Aws(aws) => aws.store.resource(provider, kind, id).await?,
        })
    }

    /// Sends `message` through the ack path's dedup-and-enqueue step.
    pub async fn enqueue(
        &self,
        message: &QueueMessage,
        settings: &Settings,
    ) -> Result<Outcome, Failure> {
        Ok(match self {
            Self::Embedded(store) => {
                replay_ingest(message.provider, settings, store.clone(), store.clone())?
                    .enqueue(message)
                    .await
            }
            Self::Aws(aws) => {
                let queue = aws.queue()?;
                replay_ingest(message.provider, settings, aws.store.clone(), queue.clone())?
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

    pub fn dlq_url(&self) -> Result<&str, Failure> {
        self.dlq_url.as_deref().ok_or_else(|| {
            Failure::Config(
                "TERIMA_DLQ_URL is not set (the stack's DeadLetterQueueUrl output)".to_owned(),
            )
        })
    }
}

/// An endpoint for replays: nothing to verify (the event was verified when it
/// arrived), so no secret is needed; the dedup lifetime is the functions'.
fn replay_ingest<S: DedupStore, Q: Queue>(
    provider: Provider,
    settings: &Settings,
    store: S,
    queue: Q,
) -> Result<Ingest<S, Q>, Failure> {
    let config = EndpointConfig {
        provider,
        verification: Verification::Disabled,
        body_limit: DEFAULT_BODY_LIMIT,
        dedup_ttl_secs: number(settings, "TERIMA_DEDUP_TTL_SECS", DEFAULT_DEDUP_TTL_SECS)?,
    };
    Ok(Ingest::new(
        config,
        store,
        queue,
        Arc::new(SystemClock),
        Metrics::Silent,
    ))
}
