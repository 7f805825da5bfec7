//! The backend an end-to-end test runs on: `terima serve` and the CLI pointed
//! at an embedded data directory or at a stack on the AWS emulator.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use super::aws::Stack;
use super::{Server, cli, cli_json};

/// The time one CLI command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

pub enum Backend<'a> {
    Embedded(&'a Path),
    Aws(&'a Stack),
}

impl Backend<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Aws(_) => "aws",
        }
    }

    /// `terima serve` on this backend; `env` comes last.
    pub fn serve(&self, log_name: &str, env: &[(&str, &str)]) -> Server {
        match self {
            Self::Embedded(dir) => Server::start(dir, log_name, env),
            Self::Aws(stack) => stack.serve(log_name, env),
        }
    }

    /// `terima <args>` on this backend.
    pub fn cli(&self, args: &[&str]) -> Output {
        match self {
            Self::Embedded(dir) => {
                let dir = dir.to_str().expect("utf-8 path");
                let mut all = args.to_vec();
                all.extend(["--data-dir", dir]);
                cli(&all, CLI_TIMEOUT)
            }
            Self::Aws(stack) => stack.cli(args, CLI_TIMEOUT),
        }
    }

    /// `terima <args> --json` on this backend, one object per line.
    pub fn cli_json(&self, args: &[&str]) -> Vec<Value> {
        match self {
            Self::Embedded(dir) => {
                let dir = dir.to_str().expect("utf-8 path");
                let mut all = args.to_vec();
                all.extend(["--data-dir", dir]);
                cli_json(&all)
            }
            Self::Aws(stack) => stack.cli_json(args),
        }
    }
}
