//! WAL checkpoints on a thread of their own. SQLite's automatic checkpoint
//! runs inside the commit that crosses the threshold, so the callers batched
//! in it would wait for the database file's writes and `fsync` too; here the
//! writer only ever appends to the WAL, and a passive checkpoint (which never
//! blocks readers or the writer) copies pages back every interval.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, error};

use crate::schema;

const INTERVAL: Duration = Duration::from_millis(250);

pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path, busy_timeout: Duration) -> std::io::Result<Self> {
        let conn = schema::connect(path, false, busy_timeout).map_err(std::io::Error::other)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("terima-checkpoint".to_owned())
            .spawn(move || {
                // Runs until the store is dropped, then once more.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    checkpoint(&conn);
                }
                checkpoint(&conn);
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn checkpoint(conn: &rusqlite::Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match result {
        Ok((wal_pages, copied)) => debug!(wal_pages, copied, "checkpoint"),
        // Another process's checkpoint holds the lock: it does the work.
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
