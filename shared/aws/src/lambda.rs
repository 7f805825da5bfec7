//! The Lambda entry points: a provider function behind API Gateway, the
//! SQS-triggered processor, and the scheduled maintenance function (outbox
//! sweeper and archive). Each function's `main` is one call to these.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::{LambdaEvent, service_fn};
use terima_core::{Clock, Provider, SystemClock, Timestamp};
use terima_service::config::archive_days;
use terima_service::process::Extension;
use terima_service::store::{AckStore, Blobs, EventStore, Queue};
use terima_service::{EndpointConfig, Env, Ingest, Metrics, Processor, ProcessorConfig, Record};

use crate::setup::{self, SetupError};
use crate::{DynamoStore, S3Blobs, SqsQueue, archive};

pub type Error = lambda_runtime::Error;

/// Answers one API Gateway request (HTTP API or REST API; lambda_http has
/// already decoded a base64 body).
pub async fn answer<S: AckStore, Q: Queue, B: Blobs>(
    ingest: &Ingest<S, Q, B>,
    request: Request,
) -> Response<Body> {
    let request_id = request_id(&request);
    let reply = ingest
        .handle(request.headers(), request.body().as_ref(), &request_id)
        .await;
    let mut response = Response::new(Body::Text(reply.body));
    *response.status_mut() =
        http::StatusCode::from_u16(reply.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// API Gateway's request id (what the provider's logs and API Gateway's
/// access logs show), else the Lambda invocation's.
fn request_id(request: &Request) -> String {
    let gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    gateway
        .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
        .unwrap_or_default()
}

/// Runs one provider's function: configuration and clients once per cold
/// start, then requests until the sandbox is frozen for good.
pub async fn run_provider(provider: Provider) -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let ingest = match provider_setup(provider).await {
        Ok(ingest) => Arc::new(ingest),
        Err(e) => {
            tracing::error!(provider = %provider, detail = %e, "refusing to start");
            return Err(e.into());
        }
    };
    lambda_http::run(service_fn(move |request: Request| {
        let ingest = Arc::clone(&ingest);
        async move { Ok::<_, Error>(answer(&ingest, request).await) }
    }))
    .await
}

async fn provider_setup(
    provider: Provider,
) -> Result<Ingest<DynamoStore, SqsQueue, S3Blobs>, SetupError> {
    let config = setup::aws_config().await;
    let lookup = setup::with_secrets(&config, provider, Env).await?;
    let endpoint = EndpointConfig::load(provider, &lookup)?;
    let store = setup::store(&config, &lookup)?;
    let queue = setup::queue(&config, &lookup)?;
    let blobs = setup::blobs(&config, &lookup)?;
    Ok(Ingest::new(
        endpoint,
        store,
        queue,
        blobs,
        Arc::new(SystemClock),
        Metrics::Emf,
    ))
}

/// Handles one SQS batch: per-message failures, never a whole-batch failure
/// for one bad record.
pub async fn handle_batch<S: EventStore, B: Blobs, E: Extension>(
    processor: &Processor<S, B, E>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut records = Vec::new();
    for message in event.records {
        match (message.message_id, message.body) {
            (Some(message_id), Some(body)) => records.push(Record { message_id, body }),
            // A record without a body is undecodable: report it failed so it
            // reaches the DLQ rather than vanishing.
            (Some(message_id), None) => failures.push(message_id),
            (None, _) => tracing::error!("SQS record without a message id; it will be redelivered"),
        }
    }
    failures.extend(processor.process_batch(records).await);
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Runs the processor function with the given extension.
pub async fn run_processor<E: Extension + 'static>(extension: E) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let processor = match processor_setup(extension).await {
        Ok(processor) => Arc::new(processor),
        Err(e) => {
            tracing::error!(detail = %e, "refusing to start");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move { Ok::<_, Error>(handle_batch(&processor, event.payload).await) }
    }))
    .await
}

async fn processor_setup<E: Extension>(
    extension: E,
) -> Result<Processor<DynamoStore, S3Blobs, E>, SetupError> {
    let config = setup::aws_config().await;
    let settings = ProcessorConfig::load(&Env)?;
    let store = setup::store(&config, &Env)?;
    let blobs = setup::blobs(&config, &Env)?;
    Ok(Processor::new(
        settings,
        store,
        blobs,
        extension,
        Arc::new(SystemClock),
        Metrics::Emf,
    ))
}

/// What one maintenance run did.
#[derive(Debug, serde::Serialize)]
pub struct Maintained {
    pub resent: usize,
    pub archived: usize,
}

/// One maintenance run: sends what the outbox holds, then, in the first
/// minutes of each hour, archives due log partitions within `budget`. The
/// schedule is every minute for the outbox; the archive has days of slack
/// and checking its 240 (day, shard) markers every minute would cost more
/// read units than the archive itself.
pub async fn maintain(
    store: &DynamoStore,
    queue: &SqsQueue,
    blobs: &S3Blobs,
    archive_days: i64,
    budget: Duration,
) -> Result<Maintained, terima_service::store::BackendError> {
    let resent = terima_service::sweep::sweep(store, queue, Metrics::Emf).await?;
    let now = Timestamp::from_unix_millis(SystemClock.now_millis());
    let archived = if archive_hour_begins(now) {
        archive::run(store, blobs, now, archive_days, budget).await?
    } else {
        0
    };
    Ok(Maintained { resent, archived })
}

/// The first two minutes of an hour (two, so that one failed run is not a
/// lost hour).
fn archive_hour_begins(now: Timestamp) -> bool {
    now.unix_millis().rem_euclid(3_600_000) < 120_000
}

/// Runs the maintenance function: every scheduled invocation sweeps the
/// outbox and archives, stopping 10 s before the function's deadline.
pub async fn run_maintenance() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let setup = async {
        let config = setup::aws_config().await;
        let store = setup::store(&config, &Env)?;
        let queue = setup::queue(&config, &Env)?;
        let blobs = setup::blobs(&config, &Env)?;
        let days = archive_days(&Env)?;
        Ok::<_, SetupError>((store, queue, blobs, days))
    };
    let parts = match setup.await {
        Ok(parts) => Arc::new(parts),
        Err(e) => {
            tracing::error!(detail = %e, "refusing to start");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let parts = Arc::clone(&parts);
        async move {
            let deadline = event.context.deadline();
            let now = std::time::SystemTime::now();
            let budget = deadline
                .duration_since(now)
                .unwrap_or_default()
                .saturating_sub(Duration::from_secs(10));
            let (store, queue, blobs, days) = parts.as_ref();
            Ok::<_, Error>(maintain(store, queue, blobs, *days, budget).await?)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_runs_in_the_first_two_minutes_of_each_hour() {
        // 2026-11-30T12:00:00Z, the top of an hour.
        let hour = 1_796_040_000_000;
        let at = |offset: i64| archive_hour_begins(Timestamp::from_unix_millis(hour + offset));
        assert!(at(0));
        assert!(at(119_999));
        assert!(!at(120_000));
        assert!(!at(3_599_999));
        assert!(at(3_600_000));
    }
}
