//! The Lambda entry points: a provider function behind API Gateway, and the
//! SQS-triggered processor. Each function's `main` is one call to these.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::{LambdaEvent, service_fn};
use terima_core::{Provider, SystemClock};
use terima_service::process::Extension;
use terima_service::store::{DedupStore, EventStore, Queue};
use terima_service::{EndpointConfig, Env, Ingest, Metrics, Processor, ProcessorConfig, Record};

use crate::setup::{self, SetupError};

pub type Error = lambda_runtime::Error;

/// Answers one API Gateway request (HTTP API or REST API; lambda_http has
/// already decoded a base64 body).
pub async fn answer<S: DedupStore, Q: Queue>(
    ingest: &Ingest<S, Q>,
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
) -> Result<Ingest<crate::DynamoStore, crate::SqsQueue>, SetupError> {
    let config = setup::aws_config().await;
    let lookup = setup::with_secrets(&config, provider, Env).await?;
    let endpoint = EndpointConfig::load(provider, &lookup)?;
    let store = setup::store(&config, &lookup)?;
    let queue = setup::queue(&config, &lookup)?;
    Ok(Ingest::new(
        endpoint,
        store,
        queue,
        Arc::new(SystemClock),
        Metrics::Emf,
    ))
}

/// Handles one SQS batch: per-message failures, never a whole-batch failure
/// for one bad record.
pub async fn handle_batch<S: EventStore, E: Extension>(
    processor: &Processor<S, E>,
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
) -> Result<Processor<crate::DynamoStore, E>, SetupError> {
    let config = setup::aws_config().await;
    let settings = ProcessorConfig::load(&Env)?;
    let store = setup::store(&config, &Env)?;
    Ok(Processor::new(
        settings,
        store,
        extension,
        Arc::new(SystemClock),
        Metrics::Emf,
    ))
}
