//! Work records, the event log, the projection, conflicts, quarantine, blobs
//! and the outbox: the storage traits of `terima-service`, with the shared
//! lease rules applied inside one transaction per call, and retention (an
//! expired event log entry moves to the archive table, which keeps it for the
//! archive period).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use terima_core::{BodyRef, Provider, QueueMessage, Resource, Timestamp};
use terima_service::store::{
    AckStore, BackendError, Blobs, ConflictRecord, Effect, EventFilter, EventLog, EventRecord,
    EventStore, EventView, Lease, LeaseRequest, Outbox, Page, QuarantineRecord, Queue,
    ResourceState, Retried, Seen, Story, WorkKey, WorkRecord, complete_transition, fail_transition,
    finish_transition, id_time, lease_transition,
};

use crate::{DbError, EmbeddedStore};

const DAY_MS: i64 = 86_400_000;

impl EmbeddedStore {
    fn expires(&self, from_ms: i64) -> i64 {
        from_ms.saturating_add(self.inner.retention_days.saturating_mul(DAY_MS))
    }

    /// Moves event log entries past the retention period to the archive
    /// (bodies included), deletes expired work, conflict and quarantine
    /// records, archive entries past the archive period and blobs nothing
    /// refers to any more. Returns how many rows went. DynamoDB's TTL and
    /// the maintenance function do the same on AWS.
    pub async fn purge_expired(&self) -> Result<usize, BackendError> {
        let now = self.now_millis();
        let archive_ms = self.inner.archive_days.saturating_mul(DAY_MS);
        let blob_ms = (self.inner.retention_days + 15).saturating_mul(DAY_MS);
        self.write("purge_expired", move |conn| {
            let expired: Vec<(i64, String, String)> = conn
                .prepare("SELECT rowid, id, record FROM event_log WHERE expires_at_ms <= ?1")?
                .query_map([now], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut gone = 0;
            for (rowid, id, text) in expired {
                let mut event: EventRecord = serde_json::from_str(&text)?;
                if let BodyRef::Stored { key, .. } = &event.body
                    && let Some(bytes) = blob(conn, key)?
                {
                    event.body = BodyRef::Inline {
                        text: String::from_utf8_lossy(&bytes).into_owned(),
                    };
                }
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO archive (id, expires_at_ms, record) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    id,
                    event.received_at.unix_millis().saturating_add(archive_ms),
                    serde_json::to_string(&event)?
                ])?;
                gone += conn.execute("DELETE FROM event_log WHERE rowid = ?1", [rowid])?;
            }
            for table in ["works", "conflict_pairs", "quarantine", "archive"] {
                gone += conn.execute(&format!("DELETE FROM {table} WHERE expires_at_ms <= ?1"), [now])?;
            }
            gone += conn.execute("DELETE FROM blobs WHERE created_at_ms <= ?1", [now - blob_ms])?;
            Ok(gone)
        })
        .await
    }
}

fn blob(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, DbError> {
    Ok(conn
        .prepare_cached("SELECT bytes FROM blobs WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

fn load_works(
    conn: &Connection,
    provider: Provider,
    resource: &Resource,
    work_key: &str,
) -> Result<Vec<WorkRecord>, DbError> {
    let texts = conn
        .prepare_cached(
            "SELECT record FROM works WHERE provider = ?1 AND kind = ?2 AND id = ?3 AND work_key = ?4",
        )?
        .query_map(
            params![provider.name(), resource.kind, resource.id, work_key],
            |row| row.get::<_, String>(0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts
        .iter()
        .map(|t| serde_json::from_str(t))
        .collect::<Result<_, _>>()?)
}

fn load_work(conn: &Connection, key: &WorkKey) -> Result<Option<WorkRecord>, DbError> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT record FROM works WHERE provider = ?1 AND kind = ?2 AND id = ?3 AND work_key = ?4 AND digest = ?5",
        )?
        .query_row(
            params![
                key.provider.name(),
                key.resource.kind,
                key.resource.id,
                key.work_key,
                key.digest
            ],
            |row| row.get(0),
        )
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

fn save_work(conn: &Connection, record: &WorkRecord, expires_at_ms: i64) -> Result<(), DbError> {
    let key = &record.key;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO works (provider, kind, id, work_key, digest, status, expires_at_ms, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        key.provider.name(),
        key.resource.kind,
        key.resource.id,
        key.work_key,
        key.digest,
        record.status.as_str(),
        expires_at_ms,
        serde_json::to_string(record)?
    ])?;
    Ok(())
}

/// Reads a work record, applies a rule and writes its result, in the
/// caller's savepoint.
fn transition<T>(
    conn: &Connection,
    key: &WorkKey,
    expires_at_ms: i64,
    rule: impl FnOnce(Option<&WorkRecord>) -> (T, Option<WorkRecord>),
) -> Result<T, DbError> {
    let existing = load_work(conn, key)?;
    let (outcome, write) = rule(existing.as_ref());
    if let Some(record) = write {
        save_work(conn, &record, expires_at_ms)?;
    }
    Ok(outcome)
}

impl AckStore for EmbeddedStore {
    async fn seen(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
        digest: &str,
    ) -> Result<Seen, BackendError> {
        let (resource, work_key, digest) =
            (resource.clone(), work_key.to_owned(), digest.to_owned());
        self.read("seen", move |conn| {
            let works = load_works(conn, provider, &resource, &work_key)?;
            Ok(Seen::from_digests(
                &digest,
                works.iter().map(|w| w.key.digest.as_str()),
            ))
        })
        .await
    }

    async fn hold(&self, message: &QueueMessage) -> Result<(), BackendError> {
        let text = message.encode();
        self.write("hold", move |conn| {
            conn.prepare_cached("INSERT INTO outbox (message) VALUES (?1)")?
                .execute([text])?;
            Ok(())
        })
        .await
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> Result<(), BackendError> {
        let record = record.clone();
        let expires = self.expires(record.received_at.unix_millis());
        self.write("quarantine", move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO quarantine (id, expires_at_ms, record) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![record.id, expires, serde_json::to_string(&record)?])?;
            Ok(())
        })
        .await
    }
}

impl Queue for EmbeddedStore {
    async fn send(&self, message: &QueueMessage) -> Result<(), BackendError> {
        let body = message.encode();
        let now = self.now_millis();
        self.write("send", move |conn| {
            conn.prepare_cached("INSERT INTO queue (body, receive_count, visible_at_ms, enqueued_at_ms) VALUES (?1, 0, ?2, ?2)")?
                .execute(params![body, now])?;
            Ok(())
        })
        .await?;
        self.inner.arrivals.notify_one();
        Ok(())
    }
}

impl Blobs for EmbeddedStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BackendError> {
        let (key, bytes) = (key.to_owned(), bytes.to_vec());
        let now = self.now_millis();
        self.write("blob_put", move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO blobs (key, created_at_ms, bytes) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key, now, bytes])?;
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = key.to_owned();
        self.read("blob_get", move |conn| blob(conn, &key)).await
    }
}

impl Outbox for EmbeddedStore {
    async fn held(&self, limit: usize) -> Result<Vec<(String, String)>, BackendError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("held", move |conn| {
            let rows = conn
                .prepare_cached("SELECT handle, message FROM outbox ORDER BY handle LIMIT ?1")?
                .query_map([limit], |row| {
                    Ok((row.get::<_, i64>(0)?.to_string(), row.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn release(&self, handle: &str) -> Result<(), BackendError> {
        let handle = handle.parse::<i64>().unwrap_or(-1);
        self.write("release", move |conn| {
            conn.execute("DELETE FROM outbox WHERE handle = ?1", [handle])?;
            Ok(())
        })
        .await
    }
}

impl EventStore for EmbeddedStore {
    async fn works(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> Result<Vec<WorkRecord>, BackendError> {
        let (resource, work_key) = (resource.clone(), work_key.to_owned());
        self.read("works", move |conn| {
            load_works(conn, provider, &resource, &work_key)
        })
        .await
    }

    async fn log(&self, event: &EventRecord) -> Result<(), BackendError> {
        let event = event.clone();
        let expires = self.expires(event.received_at.unix_millis());
        self.write("log", move |conn| {
            conn.prepare_cached(
                "INSERT INTO event_log (id, provider, event_type, kind, resource_id, work_key, digest, expires_at_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                event.id,
                event.provider.name(),
                event.event_type,
                event.resource.kind,
                event.resource.id,
                event.work_key,
                event.digest,
                expires,
                serde_json::to_string(&event)?
            ])?;
            Ok(())
        })
        .await
    }

    async fn unlog(&self, event: &EventRecord) -> Result<(), BackendError> {
        let id = event.id.clone();
        self.write("unlog", move |conn| {
            conn.prepare_cached("DELETE FROM event_log WHERE id = ?1")?
                .execute(params![id])?;
            Ok(())
        })
        .await
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let request = request.clone();
        let expires = self.expires(request.record.received_at.unix_millis());
        self.write("acquire", move |conn| {
            transition(conn, &request.record.key, expires, |existing| {
                lease_transition(existing, &request)
            })
        })
        .await
    }

    async fn complete(
        &self,
        key: &WorkKey,
        owner: &str,
        now: Timestamp,
        effect: Effect,
    ) -> Result<bool, BackendError> {
        let (key, owner) = (key.clone(), owner.to_owned());
        let expires = self.expires(self.now_millis());
        self.write("complete", move |conn| {
            transition(conn, &key, expires, |existing| {
                let next = complete_transition(existing, &owner, now, effect);
                (next.is_some(), next)
            })
        })
        .await
    }

    async fn finish(&self, record: &WorkRecord) -> Result<bool, BackendError> {
        let record = record.clone();
        let expires = self.expires(record.received_at.unix_millis());
        self.write("finish", move |conn| {
            transition(conn, &record.key, expires, |existing| {
                let next = finish_transition(existing, &record);
                (next.is_some(), next)
            })
        })
        .await
    }

    async fn fail(
        &self,
        key: &WorkKey,
        owner: Option<&str>,
        error: &str,
    ) -> Result<bool, BackendError> {
        let (key, owner, error) = (key.clone(), owner.map(str::to_owned), error.to_owned());
        let expires = self.expires(self.now_millis());
        self.write("fail", move |conn| {
            transition(conn, &key, expires, |existing| {
                let next = fail_transition(existing, owner.as_deref(), &error);
                (next.is_some(), next)
            })
        })
        .await
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.read("resource", move |conn| {
            load_resource(conn, provider, &kind, &id)
        })
        .await
    }

    async fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let state = state.clone();
        self.write("put_resource", move |conn| {
            let key = params![state.provider.name(), state.kind, state.id];
            let current: Option<i64> = conn
                .prepare_cached("SELECT version FROM resources WHERE provider = ?1 AND kind = ?2 AND id = ?3")?
                .query_row(key, |row| row.get(0))
                .optional()?;
            if current.map(|v| v.cast_unsigned()) != expected {
                return Ok(false);
            }
            conn.prepare_cached(
                "INSERT OR REPLACE INTO resources (provider, kind, id, version, state) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                state.provider.name(),
                state.kind,
                state.id,
                state.version.cast_signed(),
                serde_json::to_string(&state)?
            ])?;
            Ok(true)
        })
        .await
    }

    async fn record_conflict(&self, conflict: &ConflictRecord) -> Result<(), BackendError> {
        let conflict = conflict.clone();
        let expires = self.expires(conflict.detected_at.unix_millis());
        self.write("record_conflict", move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO conflict_pairs (first_id, second_id, detected_at_ms, expires_at_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                conflict.first_event_id,
                conflict.second_event_id,
                conflict.detected_at.unix_millis(),
                expires,
                serde_json::to_string(&conflict)?
            ])?;
            Ok(())
        })
        .await
    }
}

fn load_resource(
    conn: &Connection,
    provider: Provider,
    kind: &str,
    id: &str,
) -> Result<Option<ResourceState>, DbError> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT state FROM resources WHERE provider = ?1 AND kind = ?2 AND id = ?3",
        )?
        .query_row(params![provider.name(), kind, id], |row| row.get(0))
        .optional()?;
    Ok(text.map(|text| serde_json::from_str(&text)).transpose()?)
}

fn view(conn: &Connection, event: EventRecord, archived: bool) -> Result<EventView, DbError> {
    let work = load_work(conn, &event.work_key())?;
    Ok(EventView {
        event,
        work,
        archived,
    })
}

/// The query for one chunk of a listing: every filter but the work status
/// in SQL, newest first, before `before`.
fn chunk_query(filter: &EventFilter, before: Option<&str>, limit: usize) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut bind = |clause: &str, value: Value| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(provider) = filter.provider {
        bind("provider = ?", Value::Text(provider.name().to_owned()));
    }
    if let Some(event_type) = &filter.event_type {
        bind("event_type = ?", Value::Text(event_type.clone()));
    }
    if let Some((kind, id)) = &filter.resource {
        bind("kind = ?", Value::Text(kind.clone()));
        bind("resource_id = ?", Value::Text(id.clone()));
    }
    // Ids start with the receive time.
    if let Some(since) = filter.since {
        bind("id >= ?", Value::Text(id_time(since)));
    }
    if let Some(until) = filter.until {
        bind("id < ?", Value::Text(id_time(until)));
    }
    if let Some(before) = before {
        bind("id < ?", Value::Text(before.to_owned()));
    }
    let mut sql = "SELECT record FROM event_log".to_owned();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    (sql, args)
}

/// One page of the log, newest first. The work status is filtered after the
/// query (a join would make every page scan the works table), so chunks are
/// read until the page is full or the log ends.
fn events_page(
    conn: &Connection,
    filter: &EventFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<EventView>, DbError> {
    let chunk = limit.max(1) + 1;
    let mut items = Vec::new();
    let mut cursor = after.map(str::to_owned);
    loop {
        let (sql, args) = chunk_query(filter, cursor.as_deref(), chunk);
        let texts = conn
            .prepare_cached(&sql)?
            .query_map(params_from_iter(args), |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for text in &texts {
            let event: EventRecord = serde_json::from_str(text)?;
            cursor = Some(event.id.clone());
            let v = view(conn, event, false)?;
            if filter.status.is_none_or(|s| s == v.status()) {
                items.push(v);
            }
            if items.len() > limit {
                break;
            }
        }
        if items.len() > limit || texts.len() < chunk {
            break;
        }
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = more
        .then(|| items.last().map(|v| v.event.id.clone()))
        .flatten();
    Ok(Page { items, next })
}

impl EventLog for EmbeddedStore {
    async fn event(&self, id: &str) -> Result<Option<EventView>, BackendError> {
        let id = id.to_owned();
        self.read("event", move |conn| {
            let live: Option<String> = conn
                .prepare_cached("SELECT record FROM event_log WHERE id = ?1")?
                .query_row([&id], |row| row.get(0))
                .optional()?;
            if let Some(text) = live {
                return Ok(Some(view(conn, serde_json::from_str(&text)?, false)?));
            }
            let archived: Option<String> = conn
                .prepare_cached("SELECT record FROM archive WHERE id = ?1")?
                .query_row([&id], |row| row.get(0))
                .optional()?;
            archived
                .map(|text| view(conn, serde_json::from_str(&text)?, true))
                .transpose()
        })
        .await
    }

    async fn events(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EventView>, BackendError> {
        let (filter, after) = (filter.clone(), after.map(str::to_owned));
        self.read("events", move |conn| {
            events_page(conn, &filter, after.as_deref(), limit)
        })
        .await
    }

    async fn story(&self, provider: Provider, kind: &str, id: &str) -> Result<Story, BackendError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.read("story", move |conn| {
            let texts = conn
                .prepare_cached(
                    "SELECT record FROM works WHERE provider = ?1 AND kind = ?2 AND id = ?3",
                )?
                .query_map(params![provider.name(), kind, id], |row| {
                    row.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut works: Vec<WorkRecord> = texts
                .iter()
                .map(|t| serde_json::from_str(t))
                .collect::<Result<_, _>>()?;
            works.sort_by_key(|w| w.received_at);
            Ok(Story {
                state: load_resource(conn, provider, &kind, &id)?,
                works,
            })
        })
        .await
    }

    async fn body(&self, event: &EventRecord) -> Result<Option<Vec<u8>>, BackendError> {
        match &event.body {
            BodyRef::Inline { text } => Ok(Some(text.as_bytes().to_vec())),
            BodyRef::Stored { key, .. } => Blobs::get(self, key).await,
        }
    }

    async fn conflicts(&self, limit: usize) -> Result<Vec<ConflictRecord>, BackendError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("conflicts", move |conn| {
            let texts = conn
                .prepare_cached(
                    "SELECT record FROM conflict_pairs ORDER BY detected_at_ms DESC LIMIT ?1",
                )?
                .query_map([limit], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts
                .iter()
                .map(|t| serde_json::from_str(t))
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn quarantined(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<QuarantineRecord>, BackendError> {
        let after = after.map(str::to_owned).unwrap_or_else(|| "~".to_owned());
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        self.read("quarantined", move |conn| {
            let texts = conn
                .prepare_cached(
                    "SELECT record FROM quarantine WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![after, fetch], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut items: Vec<QuarantineRecord> = texts
                .iter()
                .map(|t| serde_json::from_str(t))
                .collect::<Result<_, _>>()?;
            let more = items.len() > limit;
            items.truncate(limit);
            let next = more.then(|| items.last().map(|q| q.id.clone())).flatten();
            Ok(Page { items, next })
        })
        .await
    }

    async fn quarantined_one(&self, id: &str) -> Result<Option<QuarantineRecord>, BackendError> {
        let id = id.to_owned();
        self.read("quarantined_one", move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT record FROM quarantine WHERE id = ?1")?
                .query_row([&id], |row| row.get(0))
                .optional()?;
            Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
        })
        .await
    }

    async fn mark_retried(&self, id: &str, retried: &Retried) -> Result<(), BackendError> {
        let (id, retried) = (id.to_owned(), retried.clone());
        self.write("mark_retried", move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT record FROM quarantine WHERE id = ?1")?
                .query_row([&id], |row| row.get(0))
                .optional()?;
            if let Some(text) = text {
                let mut record: QuarantineRecord = serde_json::from_str(&text)?;
                record.retried = Some(retried);
                conn.prepare_cached("UPDATE quarantine SET record = ?2 WHERE id = ?1")?
                    .execute(params![id, serde_json::to_string(&record)?])?;
            }
            Ok(())
        })
        .await
    }
}

impl EmbeddedStore {
    /// Releases the leases a dead process held and makes the messages it had
    /// received visible again, so that its work is taken over at once
    /// instead of after the lease and the visibility timeout. Only for the
    /// process that owns the data directory, at start (`terima serve` holds
    /// the directory's lock). Returns (leases released, messages made
    /// visible).
    pub async fn recover(&self) -> Result<(usize, usize), BackendError> {
        let now = self.now_millis();
        self.write("recover", move |conn| recover(conn, now)).await
    }
}

fn recover(conn: &Connection, now: i64) -> Result<(usize, usize), DbError> {
    let held: Vec<String> = conn
        .prepare("SELECT record FROM works WHERE status = 'processing'")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut released = 0;
    for text in held {
        let mut record: WorkRecord = serde_json::from_str(&text)?;
        if record.lease_until.is_some_and(|u| u > now) {
            record.lease_until = Some(now);
            let key = &record.key;
            conn.prepare_cached(
                "UPDATE works SET record = ?6 WHERE provider = ?1 AND kind = ?2 AND id = ?3 AND work_key = ?4 AND digest = ?5",
            )?
            .execute(params![
                key.provider.name(),
                key.resource.kind,
                key.resource.id,
                key.work_key,
                key.digest,
                serde_json::to_string(&record)?
            ])?;
            released += 1;
        }
    }
    let visible = conn.execute(
        "UPDATE queue SET visible_at_ms = ?1 WHERE visible_at_ms > ?1",
        [now],
    )?;
    Ok((released, visible))
}
