//! The HTTP side of `terima serve`: accepting connections, keeping them
//! from holding resources for ever, and routing requests to the providers'
//! `Ingest`.
//!
//! What a client can hold, and for how long:
//!
//! - **Connections**: at most [`Limits::max_connections`] at once. Past the
//!   cap the server stops accepting, so new connections wait in the kernel's
//!   listen backlog (which costs no file descriptor) until one closes. To
//!   make room, every open connection is asked to close once its current
//!   request is answered and it is at least [`SHED_AFTER`] old (as nginx
//!   drains keep-alive connections when it runs out): idle ones, which hold
//!   a slot for nothing, close within that, and a client that has just
//!   connected still has time to send its request. So a flood of idle
//!   connections keeps a provider out for about a second, not a header
//!   timeout per backlog's worth.
//! - **Headers**: a request's headers must arrive within
//!   [`Limits::header_timeout`], counted from when the connection opened or
//!   finished its previous request (hyper's timer). That is also the
//!   keep-alive bound: an idle connection is closed after it. Both close
//!   without an answer, as HTTP/1.1 allows for a connection with no request.
//! - **Body**: the whole body must arrive within [`Limits::body_timeout`]
//!   after the headers, or the answer is `408` and the connection closes.
//! - **Size**: a `Content-Length` over the provider's limit is answered `413`
//!   at once, without reading the body; a body without a length is read up
//!   to the limit and then answered `413`. Either way the connection closes,
//!   after reading and dropping what the client is still sending for at most
//!   [`LINGER`] (so that it reads the answer instead of a reset connection).
//! - **Queue**: past the queue's bound the answer is `503` for providers that
//!   retry (see `admission`).

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use terima_core::{Clock, Provider, SystemClock};
use terima_service::store::{AckStore, Blobs, Queue};
use terima_service::{Delivered, EndpointConfig, Ingest, Outcome, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::console::recent::Recent;

/// How long open connections get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After answering before the body was read, how long the rest is read and
/// dropped before the connection closes.
pub const LINGER: Duration = Duration::from_secs(2);
/// ... and how much of it at most.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// When the cap is reached, connections close after their current request
/// once they are this old.
pub const SHED_AFTER: Duration = Duration::from_secs(1);
/// How often reaching the connection cap is logged at most.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(10);
/// After a failed accept (out of file descriptors, typically).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// For a request's headers, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// For a request's body, after its headers.
    pub body_timeout: Duration,
}

/// Serves connections until `shutdown` completes, then lets open requests
/// finish (for at most [`DRAIN_TIMEOUT`]).
pub async fn serve<S, Q, B>(
    listener: TcpListener,
    routes: Arc<Routes<S, Q, B>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    S: AckStore + 'static,
    Q: Queue + 'static,
    B: Blobs + 'static,
{
    let mut cap = Cap::new(limits.max_connections);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = cap.slot() => slot,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(detail = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON answers: send them now, not after Nagle's delay.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            Arc::clone(&routes),
            Arc::clone(&builder),
            stopped.clone(),
            cap.shed.subscribe(),
            slot,
        ));
    }
    info!("shutting down: finishing open requests");
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, cap.all_closed())
        .await
        .is_err()
    {
        warn!("connections still open after the drain timeout; closing them");
    }
}

/// The connection cap: a slot per open connection.
struct Cap {
    slots: Arc<Semaphore>,
    max: usize,
    /// Bumped each time the cap is reached: connections then make room.
    shed: watch::Sender<u64>,
    warned: Option<Instant>,
}

impl Cap {
    fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            shed: watch::channel(0).0,
            warned: None,
        }
    }

    /// A slot for the next connection. At the cap, asks the open connections
    /// to make room and waits for one to close.
    async fn slot(&mut self) -> OwnedSemaphorePermit {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return slot;
        }
        self.shed.send_modify(|round| *round += 1);
        // Once in a while: under a flood of connections this is every few.
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY)
        {
            self.warned = Some(Instant::now());
            warn!(
                max_connections = self.max,
                "connection cap reached: closing connections after their current request"
            );
        }
        loop {
            // The semaphore is never closed.
            if let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await {
                return slot;
            }
        }
    }

    /// Waits until every connection has closed.
    async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }
}

async fn connection<S, Q, B>(
    stream: TcpStream,
    routes: Arc<Routes<S, Q, B>>,
    builder: Arc<http1::Builder>,
    mut stopped: watch::Receiver<bool>,
    mut shed: watch::Receiver<u64>,
    _slot: OwnedSemaphorePermit,
) where
    S: AckStore + 'static,
    Q: Queue + 'static,
    B: Blobs + 'static,
{
    let unread_body = Arc::new(AtomicBool::new(false));
    let service = {
        let unread_body = Arc::clone(&unread_body);
        service_fn(move |request| {
            let (routes, unread_body) = (Arc::clone(&routes), Arc::clone(&unread_body));
            // Boxed so that the connection is `Unpin`: it is polled in place
            // and taken apart afterwards.
            Box::pin(async move {
                let response = routes.answer(request).await;
                if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    unread_body.store(true, Ordering::Relaxed);
                }
                Ok::<_, Infallible>(response)
            })
        })
    };
    let mut connection = builder.serve_connection(TokioIo::new(stream), service);
    let opened = Instant::now();
    let mut close_at = None;
    let mut closing = false;
    // Without hyper's shutdown of the socket: a connection that answered 413
    // before the body was read lingers first. Asked to close (at shutdown at
    // once, at the cap once old enough), hyper closes an idle connection
    // then and a busy one after its current answer.
    let result = loop {
        let make_room = tokio::time::sleep_until(close_at.unwrap_or(opened).into());
        tokio::select! {
            result = poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
            _ = stopped.changed(), if !closing => {
                closing = true;
                std::pin::Pin::new(&mut connection).graceful_shutdown();
            }
            _ = shed.changed(), if close_at.is_none() => {
                close_at = Some(opened + SHED_AFTER);
            }
            () = make_room, if close_at.is_some() && !closing => {
                closing = true;
                std::pin::Pin::new(&mut connection).graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        debug!(detail = %e, "connection closed with an error");
    }
    let mut stream = connection.into_parts().io.into_inner();
    if unread_body.load(Ordering::Relaxed) {
        linger(&mut stream).await;
    }
}

/// Tells the client the answer is complete, then reads and drops what it is
/// still sending, for a bounded time.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buffer = vec![0; 64 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The provider endpoints, one `Ingest` each, by route.
pub struct Routes<S, Q, B> {
    ingests: Vec<Ingest<S, Q, B>>,
    admission: Arc<Admission>,
    body_timeout: Duration,
    /// Distinguishes this process's request ids from an earlier run's.
    boot: i64,
    requests: AtomicU64,
    /// Where every delivery's outcome is recorded for the console, if on.
    recent: Option<Arc<Recent>>,
}

/// A request body, read up to the limit.
enum Body {
    /// All of it, within the limit.
    Complete(Vec<u8>),
    /// More than the limit: its first `limit + 1` bytes, and the rest unread.
    TooLarge(Vec<u8>),
}

impl<S: AckStore, Q: Queue, B: Blobs> Routes<S, Q, B> {
    pub fn new(
        configs: Vec<EndpointConfig>,
        ingest: impl Fn(EndpointConfig) -> Ingest<S, Q, B>,
        admission: Arc<Admission>,
        body_timeout: Duration,
    ) -> Self {
        Self {
            ingests: configs.into_iter().map(ingest).collect(),
            admission,
            body_timeout,
            boot: SystemClock.now_millis(),
            requests: AtomicU64::new(0),
            recent: None,
        }
    }

    /// Records every delivery to a provider's route in `recent`.
    pub fn recording(mut self, recent: Arc<Recent>) -> Self {
        self.recent = Some(recent);
        self
    }

    /// Notes a delivery refused here, before the ack path saw it.
    fn refused(
        &self,
        provider: Provider,
        request_id: &str,
        status: StatusCode,
        label: &'static str,
    ) {
        let delivered = Delivered {
            outcome: label,
            ..Delivered::default()
        };
        self.note(provider, request_id, status.as_u16(), &delivered);
    }

    fn note(&self, provider: Provider, request_id: &str, status: u16, delivered: &Delivered) {
        if let Some(recent) = &self.recent {
            recent.record(provider, request_id, status, delivered);
        }
    }

    /// The ack path's answer, noted.
    fn noted(&self, provider: Provider, request_id: &str, answer: Reply) -> Response<Full<Bytes>> {
        self.note(provider, request_id, answer.status, &answer.delivered);
        reply(&answer)
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
        let provider = ingest.provider();
        let refused = |status, label| self.refused(provider, &request_id, status, label);
        if request.method() != Method::POST {
            let label = "method_not_allowed";
            refused(StatusCode::METHOD_NOT_ALLOWED, label);
            let mut response = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                &status_body(label, &request_id),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let limit = ingest.body_limit();
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            // Answered before the body is read (nor a 100 Continue sent).
            let outcome = Outcome::TooLarge { limit };
            warn!(%provider, request_id, declared, "rejected: body too large");
            let answer = Reply {
                status: outcome.status(),
                body: outcome.body(&request_id),
                delivered: Delivered {
                    outcome: outcome.label(),
                    reason: outcome.reason(),
                    ..Delivered::default()
                },
            };
            return closing(self.noted(provider, &request_id, answer));
        }
        let bytes = match tokio::time::timeout(self.body_timeout, read_body(body, limit)).await {
            Ok(Ok(Body::Complete(bytes))) => bytes,
            // The ack path answers 413 (and counts it) for limit + 1 bytes.
            Ok(Ok(Body::TooLarge(start))) => {
                let answer = ingest.handle(&parts.headers, &start, &request_id).await;
                return closing(self.noted(provider, &request_id, answer));
            }
            Ok(Err(e)) => {
                warn!(%provider, request_id, detail = %e, "request body could not be read");
                refused(StatusCode::BAD_REQUEST, "unreadable_body");
                return respond(
                    StatusCode::BAD_REQUEST,
                    &status_body("unreadable_body", &request_id),
                );
            }
            Err(_) => {
                warn!(%provider, request_id, timeout_secs = self.body_timeout.as_secs(), "request body not received in time");
                refused(StatusCode::REQUEST_TIMEOUT, "timeout");
                return closing(respond(
                    StatusCode::REQUEST_TIMEOUT,
                    &status_body("timeout", &request_id),
                ));
            }
        };
        if let Err(overloaded) = self.admission.admit(provider) {
            debug!(%provider, request_id, depth = overloaded.depth, "refused: queue at its bound");
            refused(StatusCode::SERVICE_UNAVAILABLE, "overloaded");
            let mut response = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                &overloaded.body(&request_id),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, overloaded.retry_after_secs().into());
            return response;
        }
        let answer = ingest.handle(&parts.headers, &bytes, &request_id).await;
        self.noted(provider, &request_id, answer)
    }
}

/// Reads the body, keeping at most `limit + 1` bytes: enough for the ack
/// path to answer 413, without holding an oversize body in memory.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Body, hyper::Error> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = (limit + 1).saturating_sub(bytes.len());
            bytes.extend_from_slice(&data[..data.len().min(room)]);
            if bytes.len() > limit {
                return Ok(Body::TooLarge(bytes));
            }
        }
    }
    Ok(Body::Complete(bytes))
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
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The connection closes after this answer: the request's body was not
/// read to its end.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
