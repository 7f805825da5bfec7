//! The embedded default: Terima's work records, event log, projection,
//! quarantine, blobs and queue in one SQLite file, so that `terima serve` runs the functions' code
//! on a laptop with nothing else installed.
//!
//! [`EmbeddedStore`] implements the same traits as the DynamoDB, SQS and S3
//! backends ([`AckStore`](terima_service::store::AckStore),
//! [`Queue`](terima_service::store::Queue),
//! [`Blobs`](terima_service::store::Blobs),
//! [`EventStore`](terima_service::store::EventStore),
//! [`EventLog`](terima_service::store::EventLog)) with the shared lease
//! rules applied inside one transaction each, plus the consumer side of the
//! queue that SQS and its event source mapping provide on AWS: receive with a
//! visibility timeout, delete, a dead-letter queue after
//! [`Options::max_receive`] receives, and redrive.
//!
//! Durability: every write is committed (WAL, `synchronous = FULL`) before
//! its call returns, so whatever a caller was told succeeded survives a
//! `SIGKILL` or a power cut. Throughput: one writer thread commits
//! concurrent writes together (see `writer`). Readers use their own
//! connections and never wait for the writer; a second process (the CLI) can
//! read, and briefly write, while `terima serve` runs.
//!
//! Disk: the WAL stays within [`WAL_BUDGET`] under any steady load (see
//! `checkpoint`). That relies on readers holding a snapshot for one call
//! only: `EmbeddedStore::read` runs one closure and returns the connection
//! to the pool with no statement or transaction left open.

mod checkpoint;
mod queue;
mod records;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use terima_core::{Clock, SystemClock};
use terima_service::store::BackendError;
use tokio::sync::Notify;

pub use queue::{DeadLetter, QueueStats, Receipt, Received};

use checkpoint::{Checkpointer, WalBudget};
use writer::Writer;

pub use checkpoint::WAL_BUDGET;

/// The database file inside a data directory.
pub const DB_FILE: &str = "terima.db";

/// SQS's `maxReceiveCount` in the template: a message received this many
/// times without being deleted moves to the dead-letter queue.
pub const DEFAULT_MAX_RECEIVE: u32 = 5;

/// How long a write waits for another process's write lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no Terima database at {0}")]
    NotFound(PathBuf),
    #[error("cannot create the data directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path} has schema version {found}; this build knows up to {known}: use a newer terima"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot start the store's writer or checkpoint thread: {0}")]
    Thread(std::io::Error),
}

/// How to open a data directory.
#[derive(Clone)]
pub struct Options {
    /// Create the directory and the database if missing; otherwise a missing
    /// database is [`OpenError::NotFound`].
    pub create: bool,
    pub max_receive: u32,
    pub busy_timeout: Duration,
    /// The source of "now" for queue visibility, dead-lettering and
    /// retention.
    pub clock: Arc<dyn Clock>,
    /// Days the event log, work, conflict and quarantine records are kept.
    pub retention_days: i64,
    /// Days an expired event log entry stays in the archive, body included.
    pub archive_days: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            create: true,
            max_receive: DEFAULT_MAX_RECEIVE,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            clock: Arc::new(SystemClock),
            retention_days: terima_service::config::DEFAULT_RETENTION_DAYS,
            archive_days: terima_service::config::DEFAULT_ARCHIVE_DAYS,
        }
    }
}

/// A failure inside one database operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is not readable: {0}")]
    Json(#[from] serde_json::Error),
}

/// The store of one data directory. Clones share the writer, the readers
/// and the arrival signal.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    /// Declared after the writer, so dropped after it: the last checkpoint
    /// sees the last commit.
    _checkpointer: Checkpointer,
    readers: Mutex<Vec<Connection>>,
    /// Woken by every send, so a consumer in the same process starts at once.
    arrivals: Notify,
    max_receive: u32,
    busy_timeout: Duration,
    clock: Arc<dyn Clock>,
    retention_days: i64,
    archive_days: i64,
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/terima.db`.
    pub fn open(dir: &Path, options: Options) -> Result<Self, OpenError> {
        let path = dir.join(DB_FILE);
        if options.create {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        } else if !path.is_file() {
            return Err(OpenError::NotFound(path));
        }
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn =
            schema::connect(&path, options.create, options.busy_timeout).map_err(sqlite)?;
        let found = schema::version(&conn).map_err(sqlite)?;
        if found > schema::SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path,
                found,
                known: schema::SCHEMA_VERSION,
            });
        }
        if found < schema::SCHEMA_VERSION {
            schema::migrate(&conn, found).map_err(sqlite)?;
        }
        let lock = Arc::new(Mutex::new(()));
        let wal = WalBudget::install(&mut conn, options.busy_timeout, Arc::clone(&lock))
            .map_err(sqlite)?;
        let writer = Writer::start(conn, wal).map_err(OpenError::Thread)?;
        let checkpointer =
            Checkpointer::start(&path, options.busy_timeout, lock).map_err(OpenError::Thread)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                _checkpointer: checkpointer,
                readers: Mutex::new(Vec::new()),
                arrivals: Notify::new(),
                max_receive: options.max_receive,
                busy_timeout: options.busy_timeout,
                clock: options.clock,
                retention_days: options.retention_days,
                archive_days: options.archive_days,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn now_millis(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.inner.writer.write(operation, f).await
    }

    /// Runs a read on a pooled connection, off the async threads.
    async fn read<T, F>(&self, operation: &'static str, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let failed = |e: &dyn std::fmt::Display| BackendError::new("sqlite", operation, e);
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = schema::connect(&inner.path, false, inner.busy_timeout)
                        .map_err(|e| failed(&e))?;
                    conn.pragma_update(None, "query_only", true)
                        .map_err(|e| failed(&e))?;
                    conn
                }
            };
            let result = f(&conn).map_err(|e| failed(&e));
            // A transaction left open would pin its snapshot, and with it
            // the WAL (see `checkpoint`).
            if !conn.is_autocommit()
                && let Err(e) = conn.execute_batch("ROLLBACK")
            {
                tracing::error!(detail = %e, "cannot end a reader's transaction; closing its connection");
                return result;
            }
            inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| failed(&e))?
    }
}
