//! How records are shown: aligned tables for people, one JSON object per
//! line (`--json`) for scripts and tests. The console pages use the same JSON.

use serde_json::{Value, json};
use terima_core::{QueueMessage, Timestamp};
use terima_embedded::DeadLetter;
use terima_service::store::{
    ConflictRecord, EventView, QuarantineRecord, QuarantinedBody, ResourceState, Story, WorkRecord,
};

/// An event as JSON: what was received, and what its work did. The body
/// only when asked (`show`), since a list of bodies is unreadable.
pub fn event_json(view: &EventView, body: Option<&[u8]>) -> Value {
    let e = &view.event;
    let work = view.work.as_ref();
    let mut value = json!({
        "id": e.id,
        "provider": e.provider.name(),
        "event_type": e.event_type,
        "dedup_key": e.dedup_key,
        "work_key": e.work_key,
        "digest": e.digest,
        "resource_kind": e.resource.kind,
        "resource_id": e.resource.id,
        "status": view.status().as_str(),
        "carried_status": e.status,
        "attempts": work.map_or(0, |w| w.attempts),
        "received_at": e.received_at.to_string(),
        "occurred_at": e.occurred_at.map(|t| t.to_string()),
        "processed_at": work.and_then(|w| w.processed_at).map(|t| t.to_string()),
        "effect": work.and_then(|w| w.effect),
        "error": work.and_then(|w| w.error.clone()),
        "replay": e.replay || work.is_some_and(|w| w.replay),
        "request_id": e.request_id,
        "headers": e.headers,
        "duplicate_entry": view.is_duplicate_entry(),
        "archived": view.archived,
        "body_size": match &e.body {
            terima_core::BodyRef::Inline { text } => text.len(),
            terima_core::BodyRef::Stored { size, .. } => *size,
        },
        "body_stored": matches!(e.body, terima_core::BodyRef::Stored { .. }),
    });
    if let Some(bytes) = body {
        value["body"] = String::from_utf8_lossy(bytes).into_owned().into();
    }
    value
}

pub fn work_json(work: &WorkRecord) -> Value {
    json!({
        "event_id": work.event_id,
        "event_type": work.event_type,
        "work_key": work.key.work_key,
        "digest": work.key.digest,
        "status": work.status.as_str(),
        "carried_status": work.carried_status,
        "attempts": work.attempts,
        "received_at": work.received_at.to_string(),
        "occurred_at": work.occurred_at.map(|t| t.to_string()),
        "processed_at": work.processed_at.map(|t| t.to_string()),
        "effect": work.effect,
        "error": work.error,
        "replay": work.replay,
    })
}

pub fn resource_json(resource: &ResourceState) -> Value {
    serde_json::to_value(resource).unwrap_or(Value::Null)
}

pub fn story_json(story: &Story) -> Value {
    json!({
        "state": story.state.as_ref().map(resource_json),
        "events": story.works.iter().map(work_json).collect::<Vec<_>>(),
    })
}

pub fn conflict_json(conflict: &ConflictRecord) -> Value {
    serde_json::to_value(conflict).unwrap_or(Value::Null)
}

/// A quarantine record without its body (lists), or with it (`show`).
pub fn quarantine_json(record: &QuarantineRecord, body: Option<&[u8]>) -> Value {
    let mut value = json!({
        "id": record.id,
        "provider": record.provider.name(),
        "received_at": record.received_at.to_string(),
        "request_id": record.request_id,
        "reason": record.reason,
        "detail": record.detail,
        "headers": record.headers,
        "retried": record.retried,
        "body_size": match &record.body {
            QuarantinedBody::Text { text } => text.len(),
            QuarantinedBody::Base64 { base64 } => base64.len() / 4 * 3,
            QuarantinedBody::Stored { size, .. } => *size,
        },
    });
    if let Some(bytes) = body {
        value["body"] = String::from_utf8_lossy(bytes).into_owned().into();
    }
    value
}

/// A dead letter with what its message says about the event, if readable.
pub fn dead_letter_json(
    id: Value,
    receive_count: u32,
    body: &str,
    times: &[(&str, Option<i64>)],
) -> Value {
    let mut value = json!({ "id": id, "receive_count": receive_count });
    for (name, millis) in times {
        value[*name] = millis
            .map(|m| Timestamp::from_unix_millis(m).to_string())
            .into();
    }
    match QueueMessage::decode(body) {
        Ok(m) => {
            // The id the processor logs it under (it may have, before failing).
            value["event_id"] = terima_service::store::event_id(
                m.received_at,
                &terima_service::store::WorkKey::of(&m),
            )
            .into();
            value["provider"] = m.provider.name().into();
            value["event_type"] = m.event_type.into();
            value["dedup_key"] = m.dedup_key.into();
            value["work_key"] = m.work_key.into();
            value["resource_kind"] = m.resource.kind.into();
            value["resource_id"] = m.resource.id.into();
            value["replay"] = m.replay.into();
            value["request_id"] = m.request_id.into();
        }
        Err(e) => value["unreadable"] = e.to_string().into(),
    }
    value
}

pub fn embedded_dead_letter_json(letter: &DeadLetter) -> Value {
    dead_letter_json(
        letter.id.into(),
        letter.receive_count,
        &letter.body,
        &[
            ("enqueued_at", Some(letter.enqueued_at_ms)),
            ("moved_at", Some(letter.moved_at_ms)),
        ],
    )
}

pub fn print_json_line(value: &Value) {
    println!("{value}");
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths = column_widths(header, rows);
    print_row(&widths, header.iter().copied());
    for row in rows {
        print_row(&widths, row.iter().map(String::as_str));
    }
}

pub fn column_widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

pub fn print_row<'a>(widths: &[usize], cells: impl Iterator<Item = &'a str>) {
    let padded: Vec<String> = cells
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect();
    println!("{}", padded.join("  ").trim_end());
}

pub fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".to_owned())
}

pub fn event_row(view: &EventView) -> Vec<String> {
    let e = &view.event;
    let work = view.work.as_ref();
    vec![
        e.received_at.to_string(),
        e.id.clone(),
        e.provider.name().to_owned(),
        e.event_type.clone(),
        format!("{}:{}", e.resource.kind, e.resource.id),
        view.status().as_str().to_owned(),
        work.map_or(0, |w| w.attempts).to_string(),
        if e.replay { "yes" } else { "" }.to_owned(),
    ]
}

pub const EVENT_HEADER: [&str; 8] = [
    "RECEIVED",
    "ID",
    "PROVIDER",
    "EVENT TYPE",
    "RESOURCE",
    "STATUS",
    "ATTEMPTS",
    "REPLAY",
];

fn fields(pairs: &[(&str, String)], width: usize) {
    for (name, value) in pairs {
        println!("{:<width$} {value}", format!("{name}:"));
    }
}

/// `events show` for people: the fields, then the body pretty-printed.
pub fn print_event(view: &EventView, body: Option<&[u8]>) {
    let e = &view.event;
    let work = view.work.as_ref();
    fields(
        &[
            ("id", e.id.clone()),
            ("provider", e.provider.name().to_owned()),
            ("event type", e.event_type.clone()),
            ("dedup key", e.dedup_key.clone()),
            ("work key", e.work_key.clone()),
            ("resource", format!("{}:{}", e.resource.kind, e.resource.id)),
            ("status", view.status().as_str().to_owned()),
            ("attempts", work.map_or(0, |w| w.attempts).to_string()),
            ("received at", e.received_at.to_string()),
            ("occurred at", time(e.occurred_at)),
            ("processed at", time(work.and_then(|w| w.processed_at))),
            (
                "effect",
                work.and_then(|w| w.effect)
                    .map_or("-".to_owned(), |f| format!("{f:?}").to_lowercase()),
            ),
            ("replay", e.replay.to_string()),
            (
                "error",
                work.and_then(|w| w.error.clone())
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            ("archived", view.archived.to_string()),
        ],
        13,
    );
    let body = body
        .map(pretty_json)
        .unwrap_or_else(|| "(not found)".to_owned());
    println!("body:\n{body}");
}

/// JSON pretty-printed, or the text as it is.
pub fn pretty_json(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

pub fn print_story(story: &Story) {
    match &story.state {
        Some(resource) => {
            fields(
                &[
                    ("provider", resource.provider.name().to_owned()),
                    ("kind", resource.kind.clone()),
                    ("id", resource.id.clone()),
                    (
                        "status",
                        resource.status.clone().unwrap_or_else(|| "-".to_owned()),
                    ),
                    ("deleted", resource.deleted.to_string()),
                    ("updated at", time(resource.updated_at)),
                    ("last event", resource.last_event.clone()),
                    ("version", resource.version.to_string()),
                ],
                11,
            );
            let fields = serde_json::to_string_pretty(&resource.fields).unwrap_or_default();
            println!("fields:\n{fields}");
        }
        None => println!("(no state recorded)"),
    }
    if !story.works.is_empty() {
        println!("events:");
        let rows: Vec<Vec<String>> = story
            .works
            .iter()
            .map(|w| {
                vec![
                    w.received_at.to_string(),
                    time(w.occurred_at),
                    w.event_type.clone(),
                    w.carried_status.clone().unwrap_or_else(|| "-".to_owned()),
                    w.status.as_str().to_owned(),
                    w.effect
                        .map_or("-".to_owned(), |f| format!("{f:?}").to_lowercase()),
                    w.event_id.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "RECEIVED",
                "OCCURRED",
                "EVENT TYPE",
                "CARRIED",
                "WORK",
                "EFFECT",
                "EVENT ID",
            ],
            &rows,
        );
    }
}

pub fn quarantine_row(record: &QuarantineRecord) -> Vec<String> {
    vec![
        record.received_at.to_string(),
        record.id.clone(),
        record.provider.name().to_owned(),
        record.reason.clone(),
        record
            .retried
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| r.outcome.clone()),
    ]
}

pub const QUARANTINE_HEADER: [&str; 5] = ["RECEIVED", "ID", "PROVIDER", "REASON", "RETRIED"];
