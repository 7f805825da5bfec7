//! `terima serve`: the four provider routes and the processor in one
//! process, on the Lambdas' handler code (`Ingest`, `Processor`), with the
//! embedded store or DynamoDB and SQS behind them. This module is wiring:
//! the HTTP side is `http`, the queue's bound `admission`, the processor
//! loops `consume`.

use std::sync::Arc;
use std::time::Duration;

use terima_aws::setup::{self, SetupError};
use terima_core::{Clock, Provider, SystemClock};
use terima_embedded::{EmbeddedStore, Options};
use terima_service::config::{archive_days, retention_days};
use terima_service::extensions::DeliveredNotification;
use terima_service::store::{AckStore, Blobs, EventStore, Outbox, Queue};
use terima_service::{EndpointConfig, Ingest, Lookup, Metrics, Processor, ProcessorConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::admission::{self, Admission};
use crate::args::{BackendKind, ServeArgs};
use crate::backend::{Aws, Backend};
use crate::console::mask::Masker;
use crate::console::recent::{self, Recent};
use crate::console::{self, Console};
use crate::consume::{Consumer, consume};
use crate::failure::Failure;
use crate::http::{self, Limits, Routes};
use crate::settings::Settings;

/// Processor loops by default. A record waits for a few group commits on the
/// embedded store, so the processor's throughput is the records in flight
/// over that wait: 32 loops (up to 320 records) kept up with 5,000 events/s
/// on two cores where 8 fell behind, and 64 made the acks wait behind the
/// processor's writes. SQS long polling needs few (and the local emulator
/// serves requests one at a time).
const EMBEDDED_WORKERS: usize = 32;
const SQS_WORKERS: usize = 2;
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
    let console = console::Options::for_serve(
        args.console,
        args.console_allow_remote,
        args.console_allow_writes,
    )?;
    let recent = console.map(|_| Arc::new(Recent::new(recent::CAPACITY)));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let visibility = visibility(args.visibility_secs, processor_config.lease_millis)?;
    let limits = Limits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        body_timeout: Duration::from_secs(args.body_timeout_secs),
    };
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
            let admission = Arc::new(Admission::bounded(args.max_queue_depth));
            let routes = Routes::new(
                configs,
                |config| {
                    Ingest::new(
                        config,
                        store.clone(),
                        store.clone(),
                        store.clone(),
                        Arc::clone(&clock),
                        Metrics::Silent,
                    )
                },
                Arc::clone(&admission),
                limits.body_timeout,
            );
            let routes = recording(routes, recent.as_ref());
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
            let watcher = tokio::spawn({
                let store = store.clone();
                async move { admission::watch(store, &admission).await }
            });
            let console = start_console(
                console.as_ref(),
                recent,
                Masker::from_settings(&settings),
                || Backend::Embedded(store.clone()),
            )
            .await?;
            let listener = bind(&args).await?;
            info!(data = %store.path().display(), max_queue_depth = args.max_queue_depth, "embedded backend");
            let consumer = Consumer::Embedded { store, visibility };
            let result = serve(listener, routes, limits, processor, consumer, workers).await;
            console.inspect(|c| c.abort());
            purger.abort();
            sweeper.abort();
            watcher.abort();
            result
        }
        BackendKind::Aws => {
            let sdk = setup::aws_config().await;
            let store = setup::store(&sdk, &settings)?;
            let queue = setup::queue(&sdk, &settings)?;
            let blobs = setup::blobs(&sdk, &settings)?;
            let mut configs = Vec::new();
            let mut masker = Masker::default();
            for provider in Provider::ALL {
                let lookup = setup::with_secrets(&sdk, provider, |name: &str| settings.get(name))
                    .await
                    .map_err(|e| match e {
                        SetupError::Config(e) => Failure::config(e),
                        SetupError::Secret { .. } => Failure::backend(e),
                    })?;
                masker.learn(provider, &lookup);
                configs.push(EndpointConfig::load(provider, &lookup)?);
            }
            // SQS holds any backlog; its depth is not ours to bound.
            let routes = Routes::new(
                configs,
                |config| {
                    Ingest::new(
                        config,
                        store.clone(),
                        queue.clone(),
                        blobs.clone(),
                        Arc::clone(&clock),
                        Metrics::Silent,
                    )
                },
                Arc::new(Admission::unbounded()),
                limits.body_timeout,
            );
            let routes = recording(routes, recent.as_ref());
            let console_blobs = blobs.clone();
            let processor = Processor::new(
                processor_config,
                store.clone(),
                blobs,
                DeliveredNotification,
                clock,
                Metrics::Silent,
            );
            let console = start_console(console.as_ref(), recent, masker, || {
                Backend::Aws(Aws {
                    store: store.clone(),
                    queue: Some(queue.clone()),
                    blobs: Some(console_blobs),
                    dlq_url: settings.get("TERIMA_DLQ_URL"),
                })
            })
            .await?;
            let sweeper = tokio::spawn(sweep_outbox(store, queue.clone()));
            let listener = bind(&args).await?;
            info!(table = ?settings.get("TERIMA_TABLE"), queue = queue.url(), "AWS backend");
            let consumer = Consumer::Sqs {
                client: queue.client().clone(),
                url: queue.url().to_owned(),
                visibility,
            };
            let result = serve(listener, routes, limits, processor, consumer, workers).await;
            console.inspect(|c| c.abort());
            sweeper.abort();
            result
        }
    }
}

/// Records every delivery for the console, when it runs.
fn recording<S: AckStore, Q: Queue, B: Blobs>(
    routes: Routes<S, Q, B>,
    recent: Option<&Arc<Recent>>,
) -> Routes<S, Q, B> {
    match recent {
        Some(recent) => routes.recording(Arc::clone(recent)),
        None => routes,
    }
}

/// Starts the console (when asked for) on `backend`, with this process's
/// deliveries; stopped by aborting the handle.
async fn start_console(
    options: Option<&console::Options>,
    recent: Option<Arc<Recent>>,
    masker: Masker,
    backend: impl FnOnce() -> Backend,
) -> Result<Option<tokio::task::JoinHandle<()>>, Failure> {
    let Some(options) = options else {
        return Ok(None);
    };
    console::spawn(options, || {
        let backend = backend();
        let source = console::describe(&backend, &Settings::default());
        Console::new(backend, recent, masker, options, source)
    })
    .await
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
    limits: Limits,
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
    http::serve(listener, Arc::new(routes), limits, shutdown_signal()).await;
    info!("finishing the current batches");
    let _ = stop.send(true);
    while loops.join_next().await.is_some() {}
    Ok(())
}

pub async fn shutdown_signal() {
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
