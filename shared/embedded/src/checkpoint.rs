//! Keeping the WAL small under any steady load.
//!
//! Commits only ever append to the WAL; pages go back into the database file
//! in checkpoints, and SQLite starts the WAL over from its beginning only when
//! a writer finds every page in it copied back and no reader still reading
//! from it. Two parts:
//!
//! - [`Checkpointer`]: a thread that runs a passive checkpoint every
//!   [`INTERVAL`]. It copies committed pages back without blocking readers or
//!   the writer, so SQLite's automatic checkpoint (which runs inside the
//!   commit that crosses its threshold, making every caller batched in that
//!   commit wait for the database file's writes and `fsync`) stays off.
//! - [`WalBudget`]: under steady traffic the passive checkpoint never catches
//!   up (a commit lands every few milliseconds and readers are always busy),
//!   so the moment when SQLite could start the WAL over never comes and the
//!   file grows until traffic stops. The writer therefore resets the WAL
//!   itself once it holds more than [`WAL_BUDGET`]: between two commits it
//!   runs `wal_checkpoint(RESTART)`. No write can start meanwhile (it is the
//!   only writer), the passive checkpoints have already copied most pages,
//!   and readers hold their snapshot for one statement, so they move off the
//!   WAL within milliseconds. The next commit writes from the start of the
//!   file, and `journal_size_limit` cuts a file grown by a burst back to the
//!   budget.
//!
//! The two share a lock so that they never collide on SQLite's checkpoint
//! lock: a collision would make the reset fail at once, for nothing.
//!
//! So the data directory holds the database, a WAL of at most the budget
//! plus the commits made while a reset waits (a reader in another process
//! that holds one snapshot for long, such as a long listing in one
//! statement, delays the reset until it finishes), and the WAL index
//! (`-shm`, 32 KiB per 4,096 pages of WAL).

use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use tracing::{debug, error, warn};

use crate::schema;

/// How often the passive checkpoint runs: often enough that a reset finds
/// little left to copy (at 5,000 events/s a reset took 8 ms at the median
/// and 22 ms at most, against 10 ms and 63 ms every 250 ms).
const INTERVAL: Duration = Duration::from_millis(100);

/// The WAL's size past which the writer resets it, in bytes. Larger resets
/// less often (each costs the writer a few milliseconds), smaller bounds the
/// disk tighter.
pub const WAL_BUDGET: u64 = 32 * 1024 * 1024;

/// How long a reset waits for readers still reading from the WAL. The writer,
/// and with it every acknowledgement, waits this long at most.
const RESET_WAIT: Duration = Duration::from_millis(50);

/// After a reset that could not finish (a reader held an old snapshot
/// through [`RESET_WAIT`], or another process was checkpointing), the writer
/// tries again after this.
const RESET_RETRY: Duration = Duration::from_millis(250);

/// WAL frame header: each page in the WAL costs this much on top of its size.
const FRAME_HEADER: i64 = 24;

/// Taken by whichever of this process's threads checkpoints.
pub(crate) type CheckpointLock = Arc<Mutex<()>>;

pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(
        path: &Path,
        busy_timeout: Duration,
        lock: CheckpointLock,
    ) -> std::io::Result<Self> {
        let conn = schema::connect(path, false, busy_timeout).map_err(std::io::Error::other)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("terima-checkpoint".to_owned())
            .spawn(move || {
                // Runs until the store is dropped, then once more.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    passive(&conn, &lock);
                }
                passive(&conn, &lock);
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn passive(conn: &Connection, lock: &CheckpointLock) {
    let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
    match checkpoint(conn, "PASSIVE") {
        Ok(state) => debug!(wal_pages = state.log, copied = state.copied, "checkpoint"),
        // Another process's checkpoint holds SQLite's lock: it does the work.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy => {}
        Err(e) => error!(detail = %e, "checkpoint failed"),
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the checkpoint thread panicked");
        }
    }
}

/// What `PRAGMA wal_checkpoint` reports.
struct State {
    /// The checkpoint could not finish: a reader or another checkpointer was
    /// in the way (what it could copy, it copied).
    busy: bool,
    /// Pages in the WAL.
    log: i64,
    /// Of which copied back into the database file.
    copied: i64,
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<State> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(State {
            busy: row.get::<_, i64>(0)? != 0,
            log: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// The writer's side: knows how many pages the WAL holds after each commit
/// (from SQLite's WAL hook) and resets the WAL past the budget.
pub(crate) struct WalBudget {
    /// Pages in the WAL after the writer's last commit.
    pages: Arc<AtomicI64>,
    limit: i64,
    busy_timeout: Duration,
    lock: CheckpointLock,
    not_before: Option<Instant>,
}

impl WalBudget {
    /// Watches the writer's connection. `busy_timeout` is the connection's
    /// own, restored after each reset.
    pub(crate) fn install(
        conn: &mut Connection,
        busy_timeout: Duration,
        lock: CheckpointLock,
    ) -> rusqlite::Result<Self> {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
        let budget = i64::try_from(WAL_BUDGET).unwrap_or(i64::MAX);
        // The connection that starts the WAL over truncates it to this.
        conn.pragma_update(None, "journal_size_limit", budget)?;
        let pages = Arc::new(AtomicI64::new(0));
        let seen = Arc::clone(&pages);
        conn.wal_hook(Some(move |_: &mut Wal, wal_pages: c_int| {
            seen.store(i64::from(wal_pages), Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Self {
            pages,
            limit: budget / (page_size + FRAME_HEADER),
            busy_timeout,
            lock,
            not_before: None,
        })
    }

    /// Runs between two commits, outside any transaction: resets the WAL if
    /// it holds more than the budget.
    pub(crate) fn after_commit(&mut self, conn: &Connection) {
        if self.pages.load(Ordering::Relaxed) <= self.limit {
            return;
        }
        if self.not_before.is_some_and(|at| Instant::now() < at) {
            return;
        }
        // The passive checkpoint is copying: try again after the next commit,
        // when there is less left to copy.
        let _held = match self.lock.try_lock() {
            Ok(held) => held,
            Err(TryLockError::WouldBlock) => return,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let started = Instant::now();
        let reset = conn
            .busy_timeout(RESET_WAIT)
            .and_then(|()| checkpoint(conn, "RESTART"));
        if let Err(e) = conn.busy_timeout(self.busy_timeout) {
            error!(detail = %e, "cannot restore the writer's busy timeout");
        }
        match reset {
            Ok(state) if !state.busy => {
                self.pages.store(0, Ordering::Relaxed);
                self.not_before = None;
                debug!(
                    wal_pages = state.log,
                    millis = started.elapsed().as_millis(),
                    "WAL reset"
                );
            }
            Ok(state) => {
                self.not_before = Some(Instant::now() + RESET_RETRY);
                debug!(
                    wal_pages = state.log,
                    copied = state.copied,
                    "WAL reset deferred: a reader or another process is in the way"
                );
            }
            Err(e) => {
                self.not_before = Some(Instant::now() + RESET_RETRY);
                warn!(detail = %e, "WAL reset failed");
            }
        }
    }
}
