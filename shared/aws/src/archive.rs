//! The archive: the event log, bodies included, copied to S3 before
//! DynamoDB's TTL removes it, kept for `TERIMA_ARCHIVE_DAYS` (400 by
//! default) so that an event can still be shown and replayed.
//!
//! Layout: `archive/<day>/<shard>/<first id>.jsonl.gz`, one gzip'd JSON line
//! per event ([`EventView`]), each part holding a run of ids of one log
//! partition in order. An id names its day and shard, and the parts of a
//! shard are named by their first id, so finding an event is one listing and
//! one read.
//!
//! The maintenance function archives each (day, shard) once the day is old
//! enough that nothing can still be added to it (the dead-letter queue keeps
//! messages 14 days; a redrive logs them under their first receive day) and
//! before the TTL removes it, part by part, recording its progress in the
//! table so that a run cut short by its time budget goes on where it
//! stopped.

use std::io::{Read, Write};
use std::time::Instant;

use terima_core::{BodyRef, Timestamp};
use terima_service::store::{BackendError, Blobs, EventView, TIME_SHARDS, event_id_parts};
use tracing::info;

use crate::dynamo::{DynamoStore, Item, day_of, get_s, log_pk, n, s};
use crate::s3::S3Blobs;

const DAY_MS: i64 = 86_400_000;
/// Events per archive object.
pub const PART_EVENTS: usize = 10_000;
/// A day is archived once it is this many days old (the DLQ's 14 days of
/// retention, plus one), or sooner when the retention period is shorter.
const SETTLED_DAYS: i64 = 15;

fn part_prefix(day: &str, shard: u32) -> String {
    format!("archive/{day}/{shard:02}/")
}

fn gzip(lines: &[String]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in lines {
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(line.as_bytes());
        let _ = encoder.write_all(b"\n");
    }
    encoder.finish().unwrap_or_default()
}

fn gunzip(bytes: &[u8]) -> Result<String, BackendError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| BackendError::new("s3", "archive", e))?;
    Ok(text)
}

fn parse_part(text: &str) -> Vec<EventView> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<EventView>(line).ok())
        .map(|mut view| {
            view.archived = true;
            view
        })
        .collect()
}

/// The days due for archiving at `now`, oldest first.
pub fn due_days(now: Timestamp, retention_days: i64) -> Vec<String> {
    let today = now.unix_millis().div_euclid(DAY_MS);
    let newest = today - SETTLED_DAYS.min(retention_days - 1).max(1);
    let oldest = today - (retention_days - 1).max(1);
    (oldest..=newest)
        .map(|d| day_of(Timestamp::from_unix_millis(d * DAY_MS)))
        .collect()
}

/// Archives what is due, within `budget`; returns how many events it
/// archived.
pub async fn run(
    store: &DynamoStore,
    blobs: &S3Blobs,
    now: Timestamp,
    archive_days: i64,
    budget: std::time::Duration,
) -> Result<usize, BackendError> {
    let started = Instant::now();
    let mut archived = 0;
    for day in due_days(now, store.retention_days()) {
        for shard in 0..TIME_SHARDS {
            if started.elapsed() >= budget {
                return Ok(archived);
            }
            archived +=
                archive_shard(store, blobs, &day, shard, archive_days, started, budget).await?;
        }
    }
    Ok(archived)
}

fn marker_pk(day: &str, shard: u32) -> String {
    format!("A#{day}#{shard:02}")
}

async fn archive_shard(
    store: &DynamoStore,
    blobs: &S3Blobs,
    day: &str,
    shard: u32,
    archive_days: i64,
    started: Instant,
    budget: std::time::Duration,
) -> Result<usize, BackendError> {
    let marker = store.get(marker_pk(day, shard), "A", true).await?;
    if marker.as_ref().and_then(|m| m.get("done")).is_some() {
        return Ok(0);
    }
    let mut next = marker
        .as_ref()
        .and_then(|m| get_s(m, "next"))
        .unwrap_or("")
        .to_owned();
    let mut archived = 0;
    loop {
        let (items, more) = store
            .query_range_asc(log_pk(day, shard), &next, PART_EVENTS)
            .await?;
        let events: Vec<_> = items
            .iter()
            .filter_map(crate::dynamo::event_item_record)
            .collect();
        if let Some(last) = items.last().and_then(|i| get_s(i, "sk")) {
            let mut views = store.views_of(events).await?;
            for view in &mut views {
                if let BodyRef::Stored { key, .. } = &view.event.body
                    && let Some(bytes) = blobs.get(key).await?
                {
                    view.event.body = BodyRef::Inline {
                        text: String::from_utf8_lossy(&bytes).into_owned(),
                    };
                }
            }
            let lines: Vec<String> = views
                .iter()
                .filter_map(|v| serde_json::to_string(v).ok())
                .collect();
            if let Some(first) = views.first() {
                let key = format!("{}{}.jsonl.gz", part_prefix(day, shard), first.event.id);
                blobs.put(&key, &gzip(&lines)).await?;
                archived += views.len();
            }
            next = last.to_owned();
        }
        let done = !more;
        let mut item = Item::from([
            ("pk".to_owned(), s(marker_pk(day, shard))),
            ("sk".to_owned(), s("A")),
            ("next".to_owned(), s(next.clone())),
            ("expires_at".to_owned(), n(marker_expiry(day, archive_days))),
        ]);
        if done {
            item.insert(
                "done".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            );
        }
        store.put_item("archive_marker", item).await?;
        if done {
            if archived > 0 {
                info!(day, shard, archived, "archived");
            }
            return Ok(archived);
        }
        if started.elapsed() >= budget {
            return Ok(archived);
        }
    }
}

/// The marker outlives the archive it describes.
fn marker_expiry(day: &str, archive_days: i64) -> i64 {
    let start = Timestamp::parse(&format!("{day}T00:00:00Z"))
        .map(|t| t.unix_millis())
        .unwrap_or_default();
    (start + archive_days * DAY_MS) / 1_000
}

/// One archived event, by id.
pub async fn find(blobs: &S3Blobs, id: &str) -> Result<Option<EventView>, BackendError> {
    let Some((day, shard)) = event_id_parts(id) else {
        return Ok(None);
    };
    let parts = blobs.list(&part_prefix(&day, shard)).await?;
    let prefix = part_prefix(&day, shard);
    let holder = parts.iter().rfind(|key| {
        key.strip_prefix(&prefix)
            .and_then(|name| name.strip_suffix(".jsonl.gz"))
            .is_some_and(|first| first <= id)
    });
    let Some(key) = holder else {
        return Ok(None);
    };
    let Some(bytes) = blobs.get(key).await? else {
        return Ok(None);
    };
    Ok(parse_part(&gunzip(&bytes)?)
        .into_iter()
        .find(|v| v.event.id == id))
}

/// Up to `need` archived events of one day per shard with
/// `lower <= id < upper`, newest first.
pub async fn day(
    blobs: &S3Blobs,
    day: &str,
    lower: &str,
    upper: &str,
    need: usize,
) -> Result<Vec<EventView>, BackendError> {
    let mut all = Vec::new();
    for shard in 0..TIME_SHARDS {
        let parts = blobs.list(&part_prefix(day, shard)).await?;
        let mut found = Vec::new();
        for key in parts.iter().rev() {
            let Some(bytes) = blobs.get(key).await? else {
                continue;
            };
            let mut views = parse_part(&gunzip(&bytes)?);
            views.retain(|v| v.event.id.as_str() >= lower && v.event.id.as_str() < upper);
            views.reverse();
            found.extend(views);
            if found.len() >= need {
                break;
            }
        }
        found.truncate(need);
        all.extend(found);
    }
    all.sort_by(|a, b| b.event.id.cmp(&a.event.id));
    Ok(all)
}
