//! The console: a read-only inspector in the browser, served by `terima
//! serve` on its own loopback address (never on the webhook address, which
//! faces the internet) and by `terima console` against a data directory or
//! a deployed stack.
//!
//! What protects it:
//!
//! - **Where it listens**: a non-loopback address is refused unless asked
//!   for by name (`--console-allow-remote`, `--allow-remote`): the pages show
//!   every event's body.
//! - **Who may read it**: a request whose `Host` is not a loopback name is
//!   refused (unless remote access was asked for), so a web page that points
//!   its own domain at 127.0.0.1 (DNS rebinding) reads nothing.
//! - **Secrets**: every answer passes through [`mask::Masker`]: verification
//!   headers show their length only, and configured secret values are
//!   scrubbed from any text. No endpoint returns settings.
//! - **Writes** (replay, redrive, retry) run the CLI's own code, only when
//!   the console was started with `--console-allow-writes` /
//!   `--allow-writes` (otherwise they answer 403 and the page hides the
//!   buttons), and only with this process's random token in the
//!   `X-Terima-Token` header: the page embeds it, and a page from another
//!   origin can neither read it nor send a custom header without a CORS
//!   preflight, which the console never grants.
//!
//! The pages are plain HTML, CSS and JavaScript compiled into the binary;
//! they load nothing from the network.

pub mod api;
pub mod live;
pub mod mask;
pub mod recent;

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::args::{ConsoleAddr, ConsoleArgs, DEFAULT_CONSOLE_ADDR};
use crate::backend::{Backend, Opened};
use crate::failure::Failure;
use mask::Masker;
use recent::Recent;
use terima_service::Lookup;

/// Connections served at once: one person's browser tabs.
const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The header a write must carry, with [`Console::token`].
pub const TOKEN_HEADER: &str = "x-terima-token";

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Everything a console request needs.
pub struct Console {
    pub backend: Backend,
    /// `terima serve`'s recent deliveries; `None` for `terima console`.
    pub recent: Option<Arc<Recent>>,
    pub masker: Masker,
    pub writes: bool,
    pub remote: bool,
    /// Random per process: proves a write came from a page this console
    /// served.
    pub token: String,
    /// What the pages say they look at.
    pub source: String,
}

/// How the console was asked for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    /// The address was given, not defaulted: failing to bind it is an error.
    pub explicit: bool,
    pub allow_remote: bool,
    pub allow_writes: bool,
}

impl Options {
    /// `terima serve`'s console options; `None` for `--console off`.
    pub fn for_serve(
        console: Option<ConsoleAddr>,
        allow_remote: bool,
        allow_writes: bool,
    ) -> Result<Option<Self>, Failure> {
        let (addr, explicit) = match console {
            Some(ConsoleAddr::Off) => return Ok(None),
            Some(ConsoleAddr::At(addr)) => (addr, true),
            None => (
                DEFAULT_CONSOLE_ADDR.parse().map_err(Failure::config)?,
                false,
            ),
        };
        let options = Self {
            addr,
            explicit,
            allow_remote,
            allow_writes,
        };
        options.check("--console-allow-remote")?;
        Ok(Some(options))
    }

    /// Refuses a non-loopback address unless `flag` allowed it.
    fn check(&self, flag: &str) -> Result<(), Failure> {
        if self.addr.ip().is_loopback() || self.allow_remote {
            return Ok(());
        }
        Err(Failure::Usage(format!(
            "refusing to serve the console on {}: it is not a loopback address, and the console shows every event's body; use 127.0.0.1, or pass {flag} if it is firewalled",
            self.addr
        )))
    }
}

/// `terima console`: the pages on a data directory or a deployed stack.
pub async fn run(args: ConsoleArgs) -> Result<(), Failure> {
    let options = Options {
        addr: args.addr,
        explicit: true,
        allow_remote: args.allow_remote,
        allow_writes: args.allow_writes,
    };
    options.check("--allow-remote")?;
    let Opened { backend, settings } = Backend::open(&args.backend).await?;
    let source = describe(&backend, &settings);
    let console = Console::new(
        backend,
        None,
        Masker::from_settings(&settings),
        &options,
        source,
    );
    let Some(listener) = bind(&options).await? else {
        return Ok(());
    };
    tokio::select! {
        () = serve(listener, Arc::new(console)) => {}
        () = crate::serve::shutdown_signal() => {}
    }
    Ok(())
}

/// What the console looks at, for its header.
pub fn describe(backend: &Backend, settings: &dyn Lookup) -> String {
    match backend {
        Backend::Embedded(store) => format!("embedded: {}", store.path().display()),
        Backend::Aws(_) => format!(
            "aws: {}",
            settings
                .get("TERIMA_TABLE")
                .unwrap_or_else(|| "the deployed stack".to_owned())
        ),
    }
}

impl Console {
    pub fn new(
        backend: Backend,
        recent: Option<Arc<Recent>>,
        masker: Masker,
        options: &Options,
        source: String,
    ) -> Self {
        Self {
            backend,
            recent,
            masker,
            writes: options.allow_writes,
            remote: options.allow_remote,
            token: random_token(),
            source,
        }
    }
}

/// Binds the console's address and prints it (`console on http://...`,
/// which tests read). A default address that is taken is skipped with a
/// warning: the webhooks matter more than the inspector.
pub async fn bind(options: &Options) -> Result<Option<TcpListener>, Failure> {
    let listener = match TcpListener::bind(options.addr).await {
        Ok(listener) => listener,
        Err(e) if !options.explicit => {
            warn!(addr = %options.addr, detail = %e, "the console cannot listen on its default address; running without it (pass --console ADDR)");
            return Ok(None);
        }
        Err(e) => {
            return Err(Failure::Backend(format!(
                "cannot serve the console on {}: {e}",
                options.addr
            )));
        }
    };
    let addr = listener.local_addr().map_err(Failure::backend)?;
    println!("console on http://{addr}/");
    info!(%addr, writes = options.allow_writes, "console");
    Ok(Some(listener))
}

/// Serves console connections for ever (the caller drops the future to
/// stop).
pub async fn serve(listener: TcpListener, console: Arc<Console>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(detail = %e, "console accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let console = Arc::clone(&console);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let console = Arc::clone(&console);
                async move { Ok::<_, Infallible>(answer(&console, request).await) }
            });
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(detail = %e, "console connection closed with an error");
            }
            drop(slot);
        });
    }
}

/// Spawns the console for `terima serve`; the handle is aborted at
/// shutdown.
pub async fn spawn(
    options: &Options,
    console: impl FnOnce() -> Console,
) -> Result<Option<tokio::task::JoinHandle<()>>, Failure> {
    let Some(listener) = bind(options).await? else {
        return Ok(None);
    };
    let console = Arc::new(console());
    Ok(Some(tokio::spawn(serve(listener, console))))
}

async fn answer(console: &Arc<Console>, request: Request<Incoming>) -> Response<Body> {
    if !console.remote && !loopback_host(request.headers().get(header::HOST)) {
        return text(
            StatusCode::FORBIDDEN,
            "unexpected Host: the console answers loopback names only",
        );
    }
    let mut response = api::route(console, request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `127.0.0.1:8081`, `localhost:8081`, `[::1]:8081`, with or without the port.
fn loopback_host(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", message.to_owned())
}

/// 32 hex digits from the operating system's random source.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Elsewhere, the standard library's per-process random hash keys.
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_answered() {
        for host in [
            "127.0.0.1:8081",
            "localhost:8081",
            "LOCALHOST",
            "[::1]:9",
            "127.0.0.2",
        ] {
            assert!(
                loopback_host(Some(&HeaderValue::from_static(host))),
                "{host}"
            );
        }
        for host in [
            "evil.example:8081",
            "10.0.0.1:8081",
            "localhost.evil.example",
            "",
        ] {
            assert!(
                !loopback_host(Some(&HeaderValue::from_static(host))),
                "{host}"
            );
        }
        assert!(!loopback_host(None));
    }

    #[test]
    fn a_remote_address_needs_the_flag() {
        let remote: SocketAddr = "0.0.0.0:8081".parse().expect("address");
        let refused = Options::for_serve(Some(ConsoleAddr::At(remote)), false, false);
        assert!(matches!(refused, Err(Failure::Usage(m)) if m.contains("--console-allow-remote")));
        assert!(Options::for_serve(Some(ConsoleAddr::At(remote)), true, false).is_ok());
        assert!(matches!(
            Options::for_serve(Some(ConsoleAddr::Off), false, false),
            Ok(None)
        ));
        let default = Options::for_serve(None, false, false).ok().flatten();
        assert!(default.is_some_and(|o| !o.explicit && o.addr.ip().is_loopback()));
    }

    #[test]
    fn tokens_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
