//! `terima serve`: the four provider routes and the processor in one
//! process, on the Lambdas' handler code (`Ingest`, `Processor`), with the
//! embedded store or DynamoDB and SQS behind them.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use terima_aws::setup::{self, SetupError};
use terima_core::{Clock, Provider, SystemClock};
use terima_embedded::{EmbeddedStore, Options};
use terima_service::config::{archive_days, retention_days};
use terima_service::extensions::DeliveredNotification;
use terima_service::store::{AckStore, Blobs, EventStore, Outbox, Queue};
use terima_service::{
    EndpointConfig, Ingest, Lookup, Metrics, Outcome, Processor, ProcessorConfig, Reply,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::args::{BackendKind, ServeArgs};
use crate::consume::{Consumer, consume};
use crate::failure::Failure;
use crate::settings::Settings;

/// How long open connections get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Processor loops by default. The embedded store answers in a commit's time,
/// so many loops keep the processor up with the acks; SQS long polling needs
/// few (and the local emulator serves requests one at a time).
const EMBEDDED_WORKERS: usize = 8;
const SQS_WORKERS: usize = 2;
/// An oversize body is read and dropped up to this size before the 413.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// How often expired records are purged (and archived) in the embedded store.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How often the outbox is swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);
/// By default a received message stays hidden this much longer than the
/// lease: a copy received while another holds the lease comes back after the
/// lease lapsed, instead of using up its receives.
const VISIBILITY_MARGIN: Duration = Duration::from_secs(30);

pub async fn run(args: ServeArgs) -> Result<(), Failure> {
    let settings = Settings::load(args.backend.env_file.as_deref())?;
    let processor_config = ProcessorConfig::load(&settings)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let visibility = visibility(args.visibility_secs, processor_config.lease_millis)?;
    let workers = match (args.workers, args.backend.backend) {
        (Some(n), _) => usize::try_from(n).unwrap_or(1),
        (None, BackendKind::Embedded) => EMBEDDED_WORKERS,
        (None, BackendKind::Aws) => SQS_WORKERS,
    };
    match args.backend.backend {
        BackendKind::Embedded => {
            let mut configs = Vec::new();
            for provider in Provider::ALL {
                configs.push(EndpointConfig::load(provider, &settings)?);
            }
            let _lock = lock_data_dir(&args.backend.data_dir)?;
            let options = Options {
                retention_days: retention_days(&settings)?,
                archive_days: archive_days(&settings)?,
                ..Options::default()
            };
            let store =
                EmbeddedStore::open(&args.backend.data_dir, options).map_err(Failure::backend)?;
            // This process owns the directory: what a dead one held is
            // taken over now, not after its lease and visibility run out.
            let (released, visible) = store.recover().await?;
            if released + visible > 0 {
                warn!(
                    released,
                    visible, "recovered the work of a previous process that stopped"
                );
            }
            let routes = Routes::new(configs, |config| {
                Ingest::new(
                    config,
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    Arc::clone(&clock),
                    Metrics::Silent,
                )
            });
            let processor = Processor::new(
                processor_config,
                store.clone(),
                store.clone(),
                DeliveredNotification,
                clock,
                Metrics::Silent,
            );
            let purger = tokio::spawn(purge_expired(store.clone()));
            let sweeper = tokio::spawn(sweep_outbox(store.clone(), store.clone()));
            let listener = bind(&args).await?;
            info!(data = %store.path().display(), "embedded backend");
            let consumer = Consumer::Embedded { store, visibility };
            let result = serve(listener, routes, processor, consumer, workers).await;
            purger.abort();
            sweeper.abort();
            result
        }
        BackendKind::Aws => {
            let sdk = setup::aws_config().await;
            let store = setup::store(&sdk, &settings)?;
            let queue = setup::queue(&sdk, &settings)?;
            let blobs = setup::blobs(&sdk, &settings)?;
            let mut configs = Vec::new();
            for provider in Provider::ALL {
                let lookup = setup::with_secrets(&sdk, provider, |name: &str| settings.get(name))
                    .await
                    .map_err(|e| match e {
                        SetupError::Config(e) => Failure::config(e),
                        SetupError::Secret { .. } => Failure::backend(e),
                    })?;
                configs.push(EndpointConfig::load(provider, &lookup)?);
            }
            let routes = Routes::new(configs, |config| {
                Ingest::new(
                    config,
                    store.clone(),
                    queue.clone(),
                    blobs.clone(),
                    Arc::clone(&clock),
                    Metrics::Silent,
                )
            });
            let processor = Processor::new(
                processor_config,
                store.clone(),
                blobs,
                DeliveredNotification,
                clock,
                Metrics::Silent,
            );
            let sweeper = tokio::spawn(sweep_outbox(store, queue.clone()));
            let listener = bind(&args).await?;
            info!(table = ?settings.get("TERIMA_TABLE"), queue = queue.url(), "AWS backend");
            let consumer = Consumer::Sqs {
                client: queue.client().clone(),
                url: queue.url().to_owned(),
                visibility,
            };
            let result = serve(listener, routes, processor, consumer, workers).await;
            sweeper.abort();
            result
        }
    }
}

/// The visibility timeout: never shorter than the lease, so that a copy
/// received while another holds the lease does not come back (and use up a
/// receive) before that lease could lapse.
fn visibility(secs: Option<u64>, lease_millis: i64) -> Result<Duration, Failure> {
    let lease = Duration::from_millis(u64::try_from(lease_millis).unwrap_or(u64::MAX));
    match secs.map(Duration::from_secs) {
        None => Ok(lease + VISIBILITY_MARGIN),
        Some(v) if v >= lease => Ok(v),
        Some(v) => Err(Failure::Config(format!(
            "the visibility timeout ({} s) is shorter than the lease ({} s, TERIMA_LEASE_SECS): a message would come back while its work still holds the lease",
            v.as_secs(),
            lease.as_secs()
        ))),
    }
}

/// One `terima serve` per data directory: the lock is what makes taking
/// over a dead process's leases at start safe.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Backend(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::Backend(format!("cannot open {}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        Failure::Backend(format!(
            "another terima serve is using {}; stop it first",
            dir.display()
        ))
    })?;
    Ok(file)
}

/// Sends what the outbox holds, every [`SWEEP_INTERVAL`].
async fn sweep_outbox<O: Outbox, Q: Queue>(outbox: O, queue: Q) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        if let Err(e) = terima_service::sweep::sweep(&outbox, &queue, Metrics::Silent).await {
            warn!(detail = %e, "sweeping the outbox failed; next time");
        }
    }
}

async fn bind(args: &ServeArgs) -> Result<TcpListener, Failure> {
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| Failure::Backend(format!("cannot listen on {}: {e}", args.addr)))?;
    let addr = listener.local_addr().map_err(Failure::backend)?;
    // Tests and scripts read this line to find a port picked with :0.
    println!("listening on {addr}");
    Ok(listener)
}

async fn purge_expired(store: EmbeddedStore) {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    loop {
        interval.tick().await;
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => info!(purged, "expired records archived or purged"),
            Err(e) => warn!(detail = %e, "purging expired records failed"),
        }
    }
}

async fn serve<S, Q, B, P, PB>(
    listener: TcpListener,
    routes: Routes<S, Q, B>,
    processor: Processor<P, PB, DeliveredNotification>,
    consumer: Consumer,
    workers: usize,
) -> Result<(), Failure>
where
    S: AckStore + 'static,
    Q: Queue + 'static,
    B: Blobs + 'static,
    P: EventStore + 'static,
    PB: Blobs + 'static,
{
    let routes = Arc::new(routes);
    let processor = Arc::new(processor);
    let consumer = Arc::new(consumer);
    let (stop, stopped) = watch::channel(false);
    let mut loops = JoinSet::new();
    for _ in 0..workers {
        loops.spawn(consume(
            Arc::clone(&consumer),
            Arc::clone(&processor),
            stopped.clone(),
        ));
    }
    let graceful = GracefulShutdown::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small JSON answers: send them now, not after Nagle's delay.
                    let _ = stream.set_nodelay(true);
                    let routes = Arc::clone(&routes);
                    let service = service_fn(move |request| {
                        let routes = Arc::clone(&routes);
                        async move { Ok::<_, Infallible>(routes.answer(request).await) }
                    });
                    let connection = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            debug!(detail = %e, "connection closed with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, typically: back off, keep serving.
                    warn!(detail = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut signal => break,
        }
    }
    info!("shutting down: finishing open requests and the current batches");
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open after the drain timeout; closing them");
    }
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(detail = %e, "cannot listen for SIGTERM; use Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The provider endpoints, one `Ingest` each, by route.
struct Routes<S, Q, B> {
    ingests: Vec<Ingest<S, Q, B>>,
    /// Distinguishes this process's request ids from an earlier run's.
    boot: i64,
    requests: AtomicU64,
}

impl<S: AckStore, Q: Queue, B: Blobs> Routes<S, Q, B> {
    fn new(
        configs: Vec<EndpointConfig>,
        ingest: impl Fn(EndpointConfig) -> Ingest<S, Q, B>,
    ) -> Self {
        Self {
            ingests: configs.into_iter().map(ingest).collect(),
            boot: SystemClock.now_millis(),
            requests: AtomicU64::new(0),
        }
    }

    fn request_id(&self) -> String {
        format!(
            "{:x}-{}",
            self.boot,
            self.requests.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let request_id = self.request_id();
        let ingest = request
            .uri()
            .path()
            .strip_prefix("/webhooks/")
            .and_then(|name| self.ingests.iter().find(|i| i.provider().name() == name));
        let Some(ingest) = ingest else {
            return respond(
                StatusCode::NOT_FOUND,
                &status_body("not_found", &request_id),
            );
        };
        if request.method() != Method::POST {
            let mut response = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                &status_body("method_not_allowed", &request_id),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return response;
        }
        let limit = ingest.body_limit();
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            // Not worth reading: answered at once (the client may see the
            // connection close before it finishes sending).
            let outcome = Outcome::TooLarge { limit };
            warn!(provider = %ingest.provider(), request_id, "rejected: body too large");
            return reply(&Reply {
                status: outcome.status(),
                body: outcome.body(&request_id),
            });
        }
        match read_body(body, limit).await {
            // At most limit + 1 bytes: the ack path answers 413 beyond the limit.
            Ok(bytes) => reply(&ingest.handle(&parts.headers, &bytes, &request_id).await),
            Err(e) => {
                warn!(provider = %ingest.provider(), request_id, detail = %e, "request body could not be read");
                respond(
                    StatusCode::BAD_REQUEST,
                    &status_body("unreadable_body", &request_id),
                )
            }
        }
    }
}

/// Reads the body, keeping at most `limit + 1` bytes: enough for the ack
/// path to answer 413, without holding an oversize body in memory. The rest
/// is read and dropped (up to [`DRAIN_LIMIT`]) so that the client finishes
/// sending and reads the answer instead of a reset connection.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut bytes = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
            let room = (limit + 1).saturating_sub(bytes.len());
            bytes.extend_from_slice(&data[..data.len().min(room)]);
            if total > DRAIN_LIMIT {
                break;
            }
        }
    }
    Ok(bytes)
}

fn status_body(status: &str, request_id: &str) -> String {
    serde_json::json!({ "status": status, "request_id": request_id }).to_string()
}

fn reply(reply: &Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, &reply.body)
}

fn respond(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
