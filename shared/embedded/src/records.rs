//! Dedup records, the event log with its leases, and the projection: the
//! storage traits of `terima-service`, with the shared lease rules applied
//! inside one transaction per call.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use terima_core::{Provider, QueueMessage, Timestamp};
use terima_service::store::{
    BackendError, Claim, DedupRecord, DedupStore, EventFilter, EventRecord, EventStore, Lease,
    LeaseRequest, Queue, ResourceState, complete_transition, fail_transition, lease_transition,
};

use crate::{DbError, EmbeddedStore};

impl DedupStore for EmbeddedStore {
    async fn claim(&self, record: &DedupRecord) -> Result<Claim, BackendError> {
        let record = record.clone();
        self.write("claim", move |conn| claim(conn, &record)).await
    }

    async fn record_conflict(&self, record: &DedupRecord, body: &str) -> Result<(), BackendError> {
        let record = record.clone();
        let body = body.to_owned();
        self.write("record_conflict", move |conn| {
            conn.prepare_cached(
                "INSERT INTO conflicts (provider, dedup_key, body_sha256, received_at_ms, expires_at, request_id, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                record.provider.name(),
                record.dedup_key,
                record.body_sha256,
                record.received_at.unix_millis(),
                record.expires_at,
                record.request_id,
                body
            ])?;
            Ok(())
        })
        .await
    }
}

/// A live record with the key wins; an expired one is replaced, as the
/// DynamoDB condition `attribute_not_exists(pk) OR expires_at <= :now` does.
fn claim(conn: &Connection, record: &DedupRecord) -> Result<Claim, DbError> {
    let now_secs = record.received_at.unix_millis().div_euclid(1_000);
    let existing: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT body_sha256, expires_at FROM dedup WHERE provider = ?1 AND dedup_key = ?2",
        )?
        .query_row(params![record.provider.name(), record.dedup_key], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    if let Some((body_sha256, expires_at)) = existing
        && expires_at > now_secs
    {
        return Ok(Claim::Existing { body_sha256 });
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO dedup (provider, dedup_key, event_type, body_sha256, received_at_ms, expires_at, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        record.provider.name(),
        record.dedup_key,
        record.event_type,
        record.body_sha256,
        record.received_at.unix_millis(),
        record.expires_at,
        record.request_id
    ])?;
    Ok(Claim::Fresh)
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

fn load_event(
    conn: &Connection,
    provider: Provider,
    work_key: &str,
) -> Result<Option<EventRecord>, DbError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT record FROM events WHERE provider = ?1 AND work_key = ?2")?
        .query_row(params![provider.name(), work_key], |row| row.get(0))
        .optional()?;
    Ok(text.map(|text| serde_json::from_str(&text)).transpose()?)
}

fn save_event(conn: &Connection, record: &EventRecord) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO events (provider, work_key, event_type, status, resource_kind, resource_id, received_at_ms, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (provider, work_key) DO UPDATE SET
             event_type = excluded.event_type, status = excluded.status,
             resource_kind = excluded.resource_kind, resource_id = excluded.resource_id,
             received_at_ms = excluded.received_at_ms, record = excluded.record",
    )?
    .execute(params![
        record.provider.name(),
        record.work_key,
        record.event_type,
        record.status.as_str(),
        record.resource_kind,
        record.resource_id,
        record.received_at.unix_millis(),
        serde_json::to_string(record)?
    ])?;
    Ok(())
}

/// Reads an event, applies a transition and writes its result, in the
/// caller's savepoint.
fn transition<T>(
    conn: &Connection,
    provider: Provider,
    work_key: &str,
    rule: impl FnOnce(Option<&EventRecord>) -> (T, Option<EventRecord>),
) -> Result<T, DbError> {
    let existing = load_event(conn, provider, work_key)?;
    let (outcome, write) = rule(existing.as_ref());
    if let Some(record) = write {
        save_event(conn, &record)?;
    }
    Ok(outcome)
}

impl EventStore for EmbeddedStore {
    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let request = request.clone();
        self.write("acquire", move |conn| {
            transition(
                conn,
                request.record.provider,
                &request.record.work_key,
                |existing| lease_transition(existing, &request),
            )
        })
        .await
    }

    async fn complete(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        let (work_key, owner) = (work_key.to_owned(), owner.to_owned());
        self.write("complete", move |conn| {
            transition(conn, provider, &work_key, |existing| {
                let next = complete_transition(existing, &owner, now);
                (next.is_some(), next)
            })
        })
        .await
    }

    async fn fail(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        error: &str,
    ) -> Result<bool, BackendError> {
        let (work_key, owner, error) = (work_key.to_owned(), owner.to_owned(), error.to_owned());
        self.write("fail", move |conn| {
            transition(conn, provider, &work_key, |existing| {
                let next = fail_transition(existing, &owner, &error);
                (next.is_some(), next)
            })
        })
        .await
    }

    async fn event(
        &self,
        provider: Provider,
        work_key: &str,
    ) -> Result<Option<EventRecord>, BackendError> {
        let work_key = work_key.to_owned();
        self.read("event", move |conn| load_event(conn, provider, &work_key))
            .await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, BackendError> {
        let filter = filter.clone();
        self.read("events", move |conn| events(conn, &filter)).await
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.read("resource", move |conn| {
            let text: Option<String> = conn
                .prepare_cached(
                    "SELECT state FROM resources WHERE provider = ?1 AND kind = ?2 AND id = ?3",
                )?
                .query_row(params![provider.name(), kind, id], |row| row.get(0))
                .optional()?;
            Ok(text.map(|text| serde_json::from_str(&text)).transpose()?)
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
}

/// The filter as SQL, newest first with the same tie-break as
/// [`terima_service::store::newest_first`].
fn events(conn: &Connection, filter: &EventFilter) -> Result<Vec<EventRecord>, DbError> {
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
    if let Some(status) = filter.status {
        bind("status = ?", Value::Text(status.as_str().to_owned()));
    }
    if let Some((kind, id)) = &filter.resource {
        bind("resource_kind = ?", Value::Text(kind.clone()));
        bind("resource_id = ?", Value::Text(id.clone()));
    }
    if let Some(since) = filter.since {
        bind("received_at_ms >= ?", Value::Integer(since.unix_millis()));
    }
    if let Some(until) = filter.until {
        bind("received_at_ms < ?", Value::Integer(until.unix_millis()));
    }
    let mut sql = "SELECT record FROM events".to_owned();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY received_at_ms DESC, work_key DESC");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(
            " LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        ));
    }
    let mut statement = conn.prepare(&sql)?;
    let texts = statement
        .query_map(params_from_iter(args), |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts
        .iter()
        .map(|text| serde_json::from_str(text))
        .collect::<Result<Vec<_>, _>>()?)
}
