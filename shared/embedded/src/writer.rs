//! The single writer: every write of the process goes through one thread that
//! owns the write connection and commits concurrent operations together.
//!
//! A durable commit costs one `fsync`, whatever it holds. The writer drains
//! everything queued while the previous commit was on disk, runs each
//! operation inside a savepoint of one transaction (so one failing operation
//! does not undo the others), commits once, and only then answers each
//! caller. Under load, hundreds of acknowledgements share one `fsync`; alone,
//! an operation commits at once. Between two commits it keeps the WAL within
//! its budget (see `checkpoint`).

use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use terima_service::store::BackendError;
use tokio::sync::oneshot;
use tracing::error;

use crate::DbError;
use crate::checkpoint::WalBudget;

/// Most operations in one transaction: bounds the latency a caller waits
/// behind others, and the memory of one batch.
const MAX_BATCH: usize = 512;

/// Sends an operation's result once its transaction's fate is known.
type Reply = Box<dyn FnOnce(Option<&BackendError>) + Send>;
/// One operation: runs against the write connection (or is told why it
/// cannot run) and returns how to answer its caller after the commit.
type Work = Box<dyn FnOnce(Result<&Connection, &BackendError>) -> Reply + Send>;

pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection, mut wal: WalBudget) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Work>();
        let thread = std::thread::Builder::new()
            .name("terima-writer".to_owned())
            .spawn(move || run(&conn, &receiver, &mut wal))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the next group commit and returns its result once that
    /// commit is durable. A result is never returned for a write that was
    /// rolled back.
    pub(crate) async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, BackendError>>();
        let work: Work = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => {
                    in_savepoint(conn, f).map_err(|e| BackendError::new("sqlite", operation, e))
                }
                Err(e) => Err(e.clone()),
            };
            Box::new(move |commit_error: Option<&BackendError>| {
                let answer = match commit_error {
                    Some(e) => Err(e.clone()),
                    None => result,
                };
                // The caller may have gone (a client hung up): the write stands.
                let _ = tx.send(answer);
            })
        });
        let stopped = || BackendError::new("sqlite", operation, "the writer thread has stopped");
        self.sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(work)
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    /// Closing the channel lets the thread finish what is queued; joining
    /// closes the connection before the store is gone.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the writer thread panicked");
        }
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    // Cached: thousands run per second, each would otherwise be parsed.
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    match f(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Err(e)
        }
    }
}

fn run(conn: &Connection, receiver: &mpsc::Receiver<Work>, wal: &mut WalBudget) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(work) => batch.push(work),
                Err(_) => break,
            }
        }
        commit(conn, batch);
        wal.after_commit(conn);
    }
}

fn commit(conn: &Connection, batch: Vec<Work>) {
    // IMMEDIATE takes the write lock now (waiting up to the busy timeout for
    // another process's writer) instead of failing half-way through.
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = BackendError::new("sqlite", "begin", e);
        for work in batch {
            work(Err(&e))(Some(&e));
        }
        return;
    }
    let replies: Vec<Reply> = batch.into_iter().map(|work| work(Ok(conn))).collect();
    let failure = conn.execute_batch("COMMIT").err().map(|e| {
        // Best effort: a failed COMMIT may already have rolled back.
        let _ = conn.execute_batch("ROLLBACK");
        BackendError::new("sqlite", "commit", e)
    });
    for reply in replies {
        reply(failure.as_ref());
    }
}
