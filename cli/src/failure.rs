//! Why a command failed, and the exit code each reason has. The codes are
//! documented in `terima --help` and the README; scripts rely on them.

use std::process::ExitCode;

/// Exit codes, one per kind of failure.
pub mod code {
    pub const OK: u8 = 0;
    /// A bad argument (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// Missing or invalid configuration: a secret, a variable, an env file.
    pub const CONFIG: u8 = 3;
    /// The backend (data directory, DynamoDB, SQS, a gateway) cannot be
    /// reached or failed.
    pub const BACKEND: u8 = 4;
    /// `show` found nothing with that id.
    pub const NOT_FOUND: u8 = 5;
    /// `send`: at least one event was not answered 2xx.
    pub const SEND_FAILED: u8 = 6;
}

/// The text of `terima --help` about exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  2  bad arguments (unknown option, unreadable value, unreadable event file)
  3  missing or invalid configuration (TERIMA_<PROVIDER>_SECRETS, TERIMA_TABLE, --env-file, ...)
  4  backend unreachable or failed (data directory, DynamoDB, SQS, the gateway for `send`)
  5  not found (`events show`, `resources show`)
  6  `send`: at least one event was not answered 2xx";

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    SendFailed(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Self::Usage(_) => code::USAGE,
            Self::Config(_) => code::CONFIG,
            Self::Backend(_) => code::BACKEND,
            Self::NotFound(_) => code::NOT_FOUND,
            Self::SendFailed(_) => code::SEND_FAILED,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    pub fn config(e: impl std::fmt::Display) -> Self {
        Self::Config(e.to_string())
    }

    pub fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }
}

impl From<terima_service::ConfigError> for Failure {
    fn from(e: terima_service::ConfigError) -> Self {
        Self::config(e)
    }
}

impl From<terima_service::store::BackendError> for Failure {
    fn from(e: terima_service::store::BackendError) -> Self {
        Self::backend(e)
    }
}
