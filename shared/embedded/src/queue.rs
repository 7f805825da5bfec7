//! The consumer side of the queue, as SQS and its event source mapping give
//! it on AWS: receive with a visibility timeout, delete what succeeded, move
//! a message received too often to the dead-letter queue, redrive it back.

use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use terima_service::store::BackendError;
use tracing::warn;

use crate::{DbError, EmbeddedStore};

/// Names one receive of one message. Deleting with a receipt from an earlier
/// receive does nothing: the message has since been handed to someone else,
/// who will delete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub id: i64,
    pub receive_count: u32,
}

/// A received message, invisible to other receivers until its visibility
/// timeout passes or it is deleted.
#[derive(Clone, Debug)]
pub struct Received {
    pub receipt: Receipt,
    pub body: String,
}

/// A message that was received too many times without being deleted.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub receive_count: u32,
    /// Unix milliseconds.
    pub enqueued_at_ms: i64,
    pub moved_at_ms: i64,
    pub body: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and neither deleted nor visible again yet.
    pub in_flight: u64,
    pub dead_letters: u64,
}

impl EmbeddedStore {
    /// Receives up to `max` visible messages, oldest first, hiding each for
    /// `visibility`. A message already received `max_receive` times moves to
    /// the dead-letter queue instead, as SQS does on the next receive.
    pub async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, BackendError> {
        let now = self.now_millis();
        let hide_until =
            now.saturating_add(i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX));
        let max_receive = self.inner.max_receive;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.write("receive", move |conn| {
            receive(conn, now, hide_until, limit, max_receive)
        })
        .await
    }

    /// Deletes received messages; returns how many were still held by these
    /// receipts.
    pub async fn delete(&self, receipts: Vec<Receipt>) -> Result<usize, BackendError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        self.write("delete", move |conn| {
            let mut statement =
                conn.prepare_cached("DELETE FROM queue WHERE id = ?1 AND receive_count = ?2")?;
            let mut deleted = 0;
            for receipt in &receipts {
                deleted += statement.execute(params![receipt.id, receipt.receive_count])?;
            }
            Ok(deleted)
        })
        .await
    }

    /// Waits until a message is sent through this store, or `timeout`
    /// passes (messages also become visible again when their timeout ends).
    pub async fn wait_for_messages(&self, timeout: Duration) {
        // Either way the caller receives next; which one woke it is moot.
        let _ = tokio::time::timeout(timeout, self.inner.arrivals.notified()).await;
    }

    /// The dead-letter queue, newest first.
    pub async fn dead_letters(
        &self,
        limit: Option<usize>,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.read("dead_letters", move |conn| {
            let mut statement = conn.prepare(
                "SELECT id, receive_count, enqueued_at_ms, moved_at_ms, body FROM dlq ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                Ok(DeadLetter {
                    id: row.get(0)?,
                    receive_count: row.get(1)?,
                    enqueued_at_ms: row.get(2)?,
                    moved_at_ms: row.get(3)?,
                    body: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Moves dead letters back to the queue as new messages (all of them when
    /// `ids` is `None`); returns how many moved.
    pub async fn redrive(&self, ids: Option<Vec<i64>>) -> Result<usize, BackendError> {
        let now = self.now_millis();
        let moved = self
            .write("redrive", move |conn| {
                let ids = match ids {
                    Some(ids) => ids,
                    None => conn
                        .prepare("SELECT id FROM dlq ORDER BY id")?
                        .query_map([], |row| row.get(0))?
                        .collect::<Result<Vec<i64>, _>>()?,
                };
                let mut moved = 0;
                for id in ids {
                    let copied = conn
                        .prepare_cached(
                            "INSERT INTO queue (body, receive_count, visible_at_ms, enqueued_at_ms)
                             SELECT body, 0, ?2, ?2 FROM dlq WHERE id = ?1",
                        )?
                        .execute(params![id, now])?;
                    conn.prepare_cached("DELETE FROM dlq WHERE id = ?1")?
                        .execute([id])?;
                    moved += copied;
                }
                Ok(moved)
            })
            .await?;
        if moved > 0 {
            self.inner.arrivals.notify_one();
        }
        Ok(moved)
    }

    /// Messages in the queue, visible or in flight: what `terima serve`
    /// compares with its bound before taking more. One count over the
    /// queue's smallest index, on a reader.
    pub async fn depth(&self) -> Result<u64, BackendError> {
        self.read("depth", |conn| {
            let depth: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM queue")?
                .query_row([], |row| row.get(0))?;
            Ok(u64::try_from(depth).unwrap_or_default())
        })
        .await
    }

    pub async fn stats(&self) -> Result<QueueStats, BackendError> {
        let now = self.now_millis();
        self.read("stats", move |conn| {
            let (total, visible): (i64, i64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(visible_at_ms <= ?1), 0) FROM queue",
                [now],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let dead: i64 = conn.query_row("SELECT COUNT(*) FROM dlq", [], |row| row.get(0))?;
            let count = |n: i64| u64::try_from(n).unwrap_or_default();
            Ok(QueueStats {
                visible: count(visible),
                in_flight: count(total - visible),
                dead_letters: count(dead),
            })
        })
        .await
    }
}

fn receive(
    conn: &Connection,
    now: i64,
    hide_until: i64,
    limit: i64,
    max_receive: u32,
) -> Result<Vec<Received>, DbError> {
    let candidates = conn
        .prepare_cached(
            "SELECT id, receive_count, enqueued_at_ms, body FROM queue
             WHERE visible_at_ms <= ?1 ORDER BY visible_at_ms, id LIMIT ?2",
        )?
        .query_map(params![now, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut received = Vec::with_capacity(candidates.len());
    for (id, count, enqueued_at, body) in candidates {
        if count >= max_receive {
            conn.prepare_cached(
                "INSERT INTO dlq (body, receive_count, enqueued_at_ms, moved_at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![body, count, enqueued_at, now])?;
            conn.prepare_cached("DELETE FROM queue WHERE id = ?1")?
                .execute([id])?;
            warn!(
                message = id,
                receives = count,
                "moved to the dead-letter queue"
            );
            continue;
        }
        conn.prepare_cached(
            "UPDATE queue SET receive_count = ?2, visible_at_ms = ?3 WHERE id = ?1",
        )?
        .execute(params![id, count + 1, hide_until])?;
        received.push(Received {
            receipt: Receipt {
                id,
                receive_count: count + 1,
            },
            body,
        });
    }
    Ok(received)
}
