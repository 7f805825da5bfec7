//! The `terima` binary's code: `serve` runs the functions' handlers on a
//! laptop (embedded store) or against AWS; the other commands inspect and
//! operate either. `main.rs` only parses, runs and maps failures to exit
//! codes.

pub mod admission;
pub mod args;
pub mod backend;
pub mod console;
pub mod consume;
pub mod dlq;
pub mod failure;
pub mod gateway;
pub mod http;
pub mod inspect;
pub mod output;
pub mod replay;
pub mod send;
pub mod serve;
pub mod settings;
pub mod sign;

use args::{Cli, Command};
use failure::Failure;

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Events(command) => inspect::events(command).await,
        Command::Resources(command) => inspect::resources(command).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Conflicts(command) => inspect::conflicts(command).await,
        Command::Quarantine(command) => inspect::quarantine(command).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Status(args) => inspect::status(args).await,
        Command::Console(args) => console::run(args).await,
    }
}

/// The default log level: `serve` tells what it accepts and processes;
/// the other commands print their results on stdout and only warnings on
/// stderr. `RUST_LOG` overrides either.
pub fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Serve(_) | Command::Console(_) => "info",
        _ => "warn",
    }
}
