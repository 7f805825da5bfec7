//! The database file: connection settings and the tables.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Bumped when the tables change; a file from a newer version is refused.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Every table in one file. Records are stored as the JSON of the shared
/// types, with the columns that filters and indexes need beside them. Small
/// rows looked up by key are `WITHOUT ROWID`: one B-tree write per insert
/// instead of a table and an index, which is what every commit pays for.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS works (
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    work_key TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (provider, kind, id, work_key, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_log (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    event_type TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    work_key TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_log_resource ON event_log (provider, kind, resource_id, id);
CREATE TABLE IF NOT EXISTS archive (
    id TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conflict_pairs (
    first_id TEXT NOT NULL,
    second_id TEXT NOT NULL,
    detected_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (first_id, second_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    key TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    handle INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at_ms INTEGER NOT NULL,
    enqueued_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue (visible_at_ms, id);
CREATE TABLE IF NOT EXISTS dlq (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    moved_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (provider, kind, id)
) WITHOUT ROWID;
";

/// Schema 1 kept dedup records, an event log keyed by work key and conflict
/// bodies in tables schema 2 replaced. They are renamed, not dropped: an
/// upgrade loses nothing, and the old log stays readable with `sqlite3`
/// (`events_v1`). Resources and the queue tables carry over.
const FROM_V1: &str = "
ALTER TABLE events RENAME TO events_v1;
ALTER TABLE dedup RENAME TO dedup_v1;
ALTER TABLE conflicts RENAME TO conflicts_v1;
DROP INDEX IF EXISTS events_received;
DROP INDEX IF EXISTS events_resource;
";

/// Opens a connection with the settings every connection needs. WAL lets
/// readers (this process's and a second process's, such as the CLI beside
/// `terima serve`) run while the writer commits; `synchronous = FULL` makes
/// each commit durable before it returns, which is what a 2xx promises.
pub(crate) fn connect(
    path: &Path,
    create: bool,
    busy_timeout: Duration,
) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Checkpoints run on their own thread (see `checkpoint`), never inside
    // a commit that callers are waiting for.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // A WAL grown by a burst is cut back when it next restarts.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The schema version found in the file (0 for a new file).
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Creates what is missing. Only runs when the file is older than this
/// version, so a reader opening a live database takes no write lock.
pub(crate) fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    let upgrade = if from == 1 { FROM_V1 } else { "" };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {upgrade} {TABLES} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
}
