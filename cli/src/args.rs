//! The command line. Values are parsed here, so a bad argument is a usage
//! error (exit 2) with clap's message before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use terima_core::{Provider, Timestamp};
use terima_service::store::{EventFilter, ListedStatus};

use crate::admission::DEFAULT_MAX_QUEUE_DEPTH;
use crate::failure::EXIT_CODES_HELP;
use crate::http::{DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS};

/// Where the data directory is unless told otherwise (`serve` and the
/// inspection commands agree on it).
pub const DEFAULT_DATA_DIR: &str = ".terima";
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The console's address: loopback, beside the webhooks' port.
pub const DEFAULT_CONSOLE_ADDR: &str = "127.0.0.1:8081";

#[derive(Parser, Debug)]
#[command(
    name = "terima",
    version,
    about = "Terima's webhook gateway on a laptop, and the operator's CLI for it and for AWS",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the four provider routes (POST /webhooks/<provider>) and the processor in one process.
    #[command(after_help = EXIT_CODES_HELP)]
    Serve(ServeArgs),
    /// Post sample events (API Gateway JSON) to a running gateway, re-signed for now.
    #[command(after_help = EXIT_CODES_HELP)]
    Send(SendArgs),
    /// The event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The current state of resources, as projected from their events.
    #[command(subcommand)]
    Resources(ResourcesCommand),
    /// Send logged events through the dedup path and the queue again, marked as replays.
    #[command(after_help = EXIT_CODES_HELP)]
    Replay(ReplayArgs),
    /// Work keys seen with two different bodies: both were processed.
    #[command(subcommand)]
    Conflicts(ConflictsCommand),
    /// Verified bodies that could not be read, kept raw: list, show, read again.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The dead-letter queue: events that failed processing too often.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Queue depth, messages in flight and dead letters.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),
    /// The inspector in the browser (live events, event detail, resource
    /// stories, dead letters) on a data directory or a deployed stack.
    #[command(after_help = EXIT_CODES_HELP)]
    Console(ConsoleArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// A SQLite file in --data-dir; nothing to install.
    Embedded,
    /// DynamoDB and SQS, configured like the functions (TERIMA_TABLE,
    /// TERIMA_QUEUE_URL, TERIMA_DLQ_URL, AWS_REGION, AWS_ENDPOINT_URL, ...).
    Aws,
}

#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where events, resources and queues live.
    #[arg(long, value_enum, default_value = "embedded", env = "TERIMA_BACKEND")]
    pub backend: BackendKind,
    /// The embedded backend's directory.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "TERIMA_DATA_DIR")]
    pub data_dir: PathBuf,
    /// KEY=value lines used for variables the environment does not set
    /// (for example events/test-secrets.env).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (the bound address is printed).
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// How long a received message stays hidden before it is retried; never
    /// shorter than the processor's lease (`TERIMA_LEASE_SECS`) [default:
    /// the lease plus 30 s].
    #[arg(long, env = "TERIMA_VISIBILITY_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub visibility_secs: Option<u64>,
    /// Processor loops receiving batches of 10 at once [default: 32 embedded,
    /// 2 aws]. Each record waits for a few durable commits, so the embedded
    /// store's throughput comes from running many at once.
    #[arg(long, env = "TERIMA_WORKERS", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: Option<u64>,
    /// Open connections at most; past it new connections wait in the
    /// listen backlog. Keep it below `ulimit -n` (less about 32 for the
    /// database and the process).
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS as u64, env = "TERIMA_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_connections: u64,
    /// Seconds a connection has to send a request's headers, from when it
    /// opened or finished its previous request: also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT.as_secs(), env = "TERIMA_HEADER_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a request's body has to arrive after its headers (then 408).
    #[arg(long, default_value_t = DEFAULT_BODY_TIMEOUT.as_secs(), env = "TERIMA_BODY_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Queued and in-flight events past which deliveries from providers that
    /// retry are answered 503 `overloaded` (Biteship, which never retries,
    /// is still taken). Embedded backend only.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUE_DEPTH, env = "TERIMA_MAX_QUEUE_DEPTH", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue_depth: u64,
    /// Where the console (the inspector in the browser) listens, or `off`.
    /// Never on --addr, which faces the internet; loopback only unless
    /// --console-allow-remote [default: 127.0.0.1:8081, skipped with a
    /// warning when taken].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_console_addr)]
    pub console: Option<ConsoleAddr>,
    /// Let --console listen on a non-loopback address. The console shows
    /// every event's body: firewall it.
    #[arg(long)]
    pub console_allow_remote: bool,
    /// Show the console's replay, redrive and retry buttons and accept them.
    #[arg(long)]
    pub console_allow_writes: bool,
}

/// `--console`: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleAddr {
    Off,
    At(SocketAddr),
}

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// Address to listen on; port 0 picks a free one (the bound address is printed).
    #[arg(long, default_value = DEFAULT_CONSOLE_ADDR)]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Let --addr be a non-loopback address. The console shows every
    /// event's body: firewall it.
    #[arg(long)]
    pub allow_remote: bool,
    /// Show the replay, redrive and retry buttons and accept them.
    #[arg(long)]
    pub allow_writes: bool,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// API Gateway event files, for example events/bitbybit/order.created.json.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The gateway's base URL; the event's path is appended.
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// KEY=value lines used for variables the environment does not set.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
}

/// Filters shared by `events list` and `replay`.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// bebaskirim, bitbybit, oms or biteship.
    #[arg(long, value_parser = parse_provider)]
    pub provider: Option<Provider>,
    /// For example order.created.
    #[arg(long)]
    pub event_type: Option<String>,
    /// received, processing, processed or failed.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<ListedStatus>,
    /// KIND:ID, for example order:ORD-001.
    #[arg(long, value_parser = parse_resource)]
    pub resource: Option<(String, String)>,
    /// Received at or after this ISO-8601 time.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<Timestamp>,
    /// Received before this ISO-8601 time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// At most N events, newest first (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
}

impl FilterArgs {
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            provider: self.provider,
            event_type: self.event_type.clone(),
            status: self.status,
            resource: self.resource.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Events matching the filters, newest first.
    #[command(after_help = EXIT_CODES_HELP)]
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One event, with its body and its work.
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// The event id, as `events list` shows it.
        id: String,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object, with the body.
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// Only the body, byte for byte as it was received.
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResourcesCommand {
    /// One resource's current state and the work of every event on it.
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// bebaskirim, bitbybit, oms or biteship.
        #[arg(value_parser = parse_provider)]
        provider: Provider,
        /// order, package, shipment, ...
        kind: String,
        /// The provider's id for it, for example ORD-001.
        id: String,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// List what would be replayed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most N events per second.
    #[arg(long, default_value_t = 50.0, value_parser = parse_rate)]
    pub rate: f64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Dead letters, newest first.
    #[command(after_help = EXIT_CODES_HELP)]
    List {
        #[command(flatten)]
        backend: BackendArgs,
        /// At most N, newest first (default: all).
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to the queue (all of them unless ids are given).
    #[command(after_help = EXIT_CODES_HELP)]
    Redrive {
        /// Dead-letter ids from `dlq list` (embedded backend only).
        ids: Vec<i64>,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object with the count.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConflictsCommand {
    /// Conflicts, newest first.
    #[command(after_help = EXIT_CODES_HELP)]
    List {
        #[command(flatten)]
        backend: BackendArgs,
        /// At most N (default 100).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Both events of the conflict one event is part of, with their bodies.
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// Either event's id.
        id: String,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Quarantined bodies, newest first.
    #[command(after_help = EXIT_CODES_HELP)]
    List {
        #[command(flatten)]
        backend: BackendArgs,
        /// At most N, newest first (default: all).
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One quarantined body, with the reason.
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        id: String,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object.
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// Only the body, byte for byte.
        #[arg(long)]
        raw: bool,
    },
    /// Reads quarantined bodies again with the current rules and queues those
    /// that now read (all not yet retried, unless ids are given).
    #[command(after_help = EXIT_CODES_HELP)]
    Retry {
        ids: Vec<String>,
        #[command(flatten)]
        backend: BackendArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// One JSON object: queued, in_flight, dead_letters.
    #[arg(long)]
    pub json: bool,
}

fn parse_provider(text: &str) -> Result<Provider, String> {
    Provider::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        format!("unknown provider; expected one of {}", names.join(", "))
    })
}

fn parse_console_addr(text: &str) -> Result<ConsoleAddr, String> {
    if text == "off" {
        return Ok(ConsoleAddr::Off);
    }
    text.parse()
        .map(ConsoleAddr::At)
        .map_err(|_| "expected an address such as 127.0.0.1:8081, or off".to_owned())
}

fn parse_status(text: &str) -> Result<ListedStatus, String> {
    ListedStatus::parse(text)
        .ok_or_else(|| "expected received, processing, processed or failed".to_owned())
}

fn parse_resource(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => {
            Ok((kind.to_owned(), id.to_owned()))
        }
        _ => Err("expected KIND:ID, for example order:ORD-001".to_owned()),
    }
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| format!("{e} (expected for example 2024-01-20T15:30:00Z)"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("expected a positive number of events per second".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            vec!["terima", "events", "list", "--provider", "shopee"],
            vec!["terima", "events", "list", "--since", "yesterday"],
            vec!["terima", "events", "list", "--resource", "order"],
            vec!["terima", "replay", "--rate", "0"],
            vec!["terima", "serve", "--addr", "nowhere"],
            vec!["terima", "serve", "--console", "nowhere"],
            vec!["terima", "console", "--addr", "localhost"],
        ] {
            let err = Cli::try_parse_from(&args).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
