//! How records are shown: aligned tables for people, one JSON object per
//! line (`--json`) for scripts and tests.

use serde_json::{Value, json};
use terima_core::{QueueMessage, Timestamp};
use terima_embedded::DeadLetter;
use terima_service::store::{EventRecord, ResourceState};

/// An event as JSON: the stored record plus its operator id; the payload only
/// when asked (`show`), since a list of payloads is unreadable.
pub fn event_json(event: &EventRecord, payload: bool) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("id".to_owned(), event.id().into());
        if !payload {
            map.remove("payload");
        }
    }
    value
}

pub fn resource_json(resource: &ResourceState) -> Value {
    serde_json::to_value(resource).unwrap_or(Value::Null)
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
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".to_owned())
}

pub fn event_row(event: &EventRecord) -> Vec<String> {
    vec![
        event.received_at.to_string(),
        event.id(),
        event.event_type.clone(),
        format!("{}:{}", event.resource_kind, event.resource_id),
        event.status.as_str().to_owned(),
        event.attempts.to_string(),
        if event.replay { "yes" } else { "" }.to_owned(),
    ]
}

pub const EVENT_HEADER: [&str; 7] = [
    "RECEIVED",
    "ID",
    "EVENT TYPE",
    "RESOURCE",
    "STATUS",
    "ATTEMPTS",
    "REPLAY",
];

/// `events show` for people: the fields, then the payload pretty-printed.
pub fn print_event(event: &EventRecord) {
    let fields = [
        ("id", event.id()),
        ("provider", event.provider.name().to_owned()),
        ("event type", event.event_type.clone()),
        ("dedup key", event.dedup_key.clone()),
        ("work key", event.work_key.clone()),
        (
            "resource",
            format!("{}:{}", event.resource_kind, event.resource_id),
        ),
        ("status", event.status.as_str().to_owned()),
        ("attempts", event.attempts.to_string()),
        ("received at", event.received_at.to_string()),
        ("occurred at", time(event.occurred_at)),
        ("processed at", time(event.processed_at)),
        ("replay", event.replay.to_string()),
        (
            "error",
            event.error.clone().unwrap_or_else(|| "-".to_owned()),
        ),
    ];
    for (name, value) in fields {
        println!("{:<13} {value}", format!("{name}:"));
    }
    let payload = serde_json::from_str::<Value>(&event.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| event.payload.clone());
    println!("payload:\n{payload}");
}

pub fn print_resource(resource: &ResourceState) {
    let fields = [
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
    ];
    for (name, value) in fields {
        println!("{:<11} {value}", format!("{name}:"));
    }
    let fields = serde_json::to_string_pretty(&resource.fields).unwrap_or_default();
    println!("fields:\n{fields}");
}
