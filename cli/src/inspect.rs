//! `events list|show`, `resources show`, `conflicts`, `quarantine`,
//! `status`: reading the event log, the projection and the queues, embedded
//! or on AWS. Lists stream page by page: memory stays flat whatever the
//! count.

use std::io::Write;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use terima_core::verify::Clock;
use terima_core::{QueueMessage, SystemClock, Timestamp, inspect};
use terima_service::Outcome;
use terima_service::store::{EventFilter, EventView, QuarantineRecord, QuarantinedBody, Retried};

use crate::args::{
    ConflictsCommand, EventsCommand, QuarantineCommand, ResourcesCommand, StatusArgs,
};
use crate::backend::{Backend, Opened};
use crate::failure::Failure;
use crate::output::{
    EVENT_HEADER, QUARANTINE_HEADER, column_widths, conflict_json, event_json, event_row,
    print_event, print_json_line, print_row, print_story, print_table, quarantine_json,
    quarantine_row, story_json,
};

/// Events read per request while streaming a list.
pub const PAGE: usize = 500;

/// Calls `each` on every event matching `filter`, newest first, at most
/// `limit`, one page in memory at a time.
pub async fn for_each_event(
    backend: &Backend,
    filter: &EventFilter,
    limit: Option<usize>,
    mut each: impl FnMut(&EventView),
) -> Result<usize, Failure> {
    let mut seen = 0;
    let mut after: Option<String> = None;
    loop {
        let want = limit.map_or(PAGE, |l| PAGE.min(l - seen));
        if want == 0 {
            return Ok(seen);
        }
        let page = backend.events(filter, after.as_deref(), want).await?;
        for view in &page.items {
            each(view);
        }
        seen += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(seen),
        }
    }
}

pub async fn events(command: EventsCommand) -> Result<(), Failure> {
    match command {
        EventsCommand::List {
            filter,
            backend,
            json,
        } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let mut widths: Option<Vec<usize>> = None;
            let count = for_each_event(&backend, &filter.filter(), filter.limit, |view| {
                if json {
                    print_json_line(&event_json(view, None));
                } else {
                    let row = event_row(view);
                    let widths = widths.get_or_insert_with(|| {
                        let w = column_widths(&EVENT_HEADER, std::slice::from_ref(&row));
                        print_row(&w, EVENT_HEADER.iter().copied());
                        w
                    });
                    print_row(widths, row.iter().map(String::as_str));
                }
            })
            .await?;
            if count == 0 && !json {
                eprintln!("no events match");
            }
            Ok(())
        }
        EventsCommand::Show {
            id,
            backend,
            json,
            raw,
        } => {
            check_event_id(&id)?;
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let view = backend
                .event(&id)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("no event {id}")))?;
            let body = backend.body(&view.event).await?;
            if raw {
                let bytes =
                    body.ok_or_else(|| Failure::NotFound(format!("the body of {id} is gone")))?;
                std::io::stdout()
                    .write_all(&bytes)
                    .map_err(|e| Failure::Backend(format!("cannot write the body: {e}")))?;
            } else if json {
                print_json_line(&event_json(&view, body.as_deref()));
            } else {
                print_event(&view, body.as_deref());
            }
            Ok(())
        }
    }
}

/// An event id is `<time>-<hash>`, as `events list` shows it.
pub fn check_event_id(id: &str) -> Result<(), Failure> {
    terima_service::store::event_id_parts(id)
        .map(|_| ())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{id:?} is not an event id: expected <time>-<hash>, for example 20240120T153000000-3fa2c4e19b07, as `events list` shows it"
            ))
        })
}

pub async fn resources(command: ResourcesCommand) -> Result<(), Failure> {
    let ResourcesCommand::Show {
        provider,
        kind,
        id,
        backend,
        json,
    } = command;
    let Opened { backend, .. } = Backend::open(&backend).await?;
    let story = backend.story(provider, &kind, &id).await?;
    if story.state.is_none() && story.works.is_empty() {
        return Err(Failure::NotFound(format!("no {provider} {kind} {id}")));
    }
    if json {
        print_json_line(&story_json(&story));
    } else {
        print_story(&story);
    }
    Ok(())
}

pub async fn conflicts(command: ConflictsCommand) -> Result<(), Failure> {
    match command {
        ConflictsCommand::List {
            backend,
            limit,
            json,
        } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let conflicts = backend.conflicts(limit).await?;
            if json {
                conflicts
                    .iter()
                    .map(conflict_json)
                    .for_each(|v| print_json_line(&v));
            } else if conflicts.is_empty() {
                eprintln!("no conflicts");
            } else {
                let rows: Vec<Vec<String>> = conflicts
                    .iter()
                    .map(|c| {
                        vec![
                            c.detected_at.to_string(),
                            c.provider.name().to_owned(),
                            format!("{}:{}", c.resource.kind, c.resource.id),
                            c.first_event_id.clone(),
                            c.second_event_id.clone(),
                        ]
                    })
                    .collect();
                print_table(
                    &["DETECTED", "PROVIDER", "RESOURCE", "FIRST", "SECOND"],
                    &rows,
                );
            }
            Ok(())
        }
        ConflictsCommand::Show { id, backend, json } => {
            check_event_id(&id)?;
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let conflict = backend
                .conflicts(usize::MAX)
                .await?
                .into_iter()
                .find(|c| c.first_event_id == id || c.second_event_id == id)
                .ok_or_else(|| Failure::NotFound(format!("no conflict involves {id}")))?;
            let mut events = Vec::new();
            for event_id in [&conflict.first_event_id, &conflict.second_event_id] {
                let view = backend.event(event_id).await?;
                let body = match &view {
                    Some(v) => backend.body(&v.event).await?,
                    None => None,
                };
                events.push((event_id.clone(), view, body));
            }
            if json {
                let both: Vec<serde_json::Value> = events
                    .iter()
                    .map(|(id, view, body)| match view {
                        Some(v) => event_json(v, body.as_deref()),
                        None => json!({ "id": id, "missing": true }),
                    })
                    .collect();
                print_json_line(&json!({ "conflict": conflict_json(&conflict), "events": both }));
            } else {
                for (label, (event_id, view, body)) in ["first", "second"].iter().zip(&events) {
                    println!("== {label}: {event_id}");
                    match view {
                        Some(v) => print_event(v, body.as_deref()),
                        None => println!("(no longer in the log)"),
                    }
                }
            }
            Ok(())
        }
    }
}

/// The raw bytes of a quarantined body, wherever they are.
pub async fn quarantined_body(
    backend: &Backend,
    record: &QuarantineRecord,
) -> Result<Vec<u8>, Failure> {
    use base64::Engine as _;
    match &record.body {
        QuarantinedBody::Text { text } => Ok(text.as_bytes().to_vec()),
        QuarantinedBody::Base64 { base64 } => base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map_err(|e| {
                Failure::Backend(format!("quarantine record {} is damaged: {e}", record.id))
            }),
        QuarantinedBody::Stored { key, .. } => backend
            .blob(key)
            .await?
            .ok_or_else(|| Failure::NotFound(format!("the stored body {key} is gone"))),
    }
}

/// Reads one quarantined body again with the current rules: queued when it
/// now reads (the outcome as the ack path reports it), else why not.
pub async fn retry_one(backend: &Backend, record: &QuarantineRecord) -> Result<Retried, Failure> {
    let body = quarantined_body(backend, record).await?;
    let headers = record
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                http::HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    let at = Timestamp::from_unix_millis(SystemClock.now_millis());
    let retried = match inspect(record.provider, &headers, &body) {
        Ok(inspected) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            let message = QueueMessage::new(
                &inspected,
                &headers,
                &text,
                record.received_at,
                &record.request_id,
            );
            let outcome = backend.enqueue(&message).await?;
            if let Outcome::Unavailable(e) = &outcome {
                return Err(Failure::Backend(format!("not queued: {e}")));
            }
            Retried {
                at,
                work_key: message.work_key,
                outcome: outcome.label().to_owned(),
            }
        }
        Err(e) => Retried {
            at,
            work_key: String::new(),
            outcome: format!("still unreadable: {e}"),
        },
    };
    if !retried.work_key.is_empty() {
        backend.mark_retried(&record.id, &retried).await?;
    }
    Ok(retried)
}

pub async fn quarantine(command: QuarantineCommand) -> Result<(), Failure> {
    match command {
        QuarantineCommand::List {
            backend,
            limit,
            json,
        } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let mut after: Option<String> = None;
            let mut shown = 0;
            let mut widths: Option<Vec<usize>> = None;
            loop {
                let want = limit.map_or(PAGE, |l| PAGE.min(l - shown));
                if want == 0 {
                    break;
                }
                let page = backend.quarantined(after.as_deref(), want).await?;
                for record in &page.items {
                    if json {
                        print_json_line(&quarantine_json(record, None));
                    } else {
                        let row = quarantine_row(record);
                        let widths = widths.get_or_insert_with(|| {
                            let w = column_widths(&QUARANTINE_HEADER, std::slice::from_ref(&row));
                            print_row(&w, QUARANTINE_HEADER.iter().copied());
                            w
                        });
                        print_row(widths, row.iter().map(String::as_str));
                    }
                }
                shown += page.items.len();
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if shown == 0 && !json {
                eprintln!("nothing is quarantined");
            }
            Ok(())
        }
        QuarantineCommand::Show {
            id,
            backend,
            json,
            raw,
        } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let record = backend
                .quarantined_one(&id)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("nothing quarantined as {id}")))?;
            let body = quarantined_body(&backend, &record).await?;
            if raw {
                std::io::stdout()
                    .write_all(&body)
                    .map_err(|e| Failure::Backend(format!("cannot write the body: {e}")))?;
            } else {
                let value = quarantine_json(&record, Some(&body));
                if json {
                    print_json_line(&value);
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        QuarantineCommand::Retry { ids, backend, json } => {
            let Opened { backend, .. } = Backend::open(&backend).await?;
            let mut records = Vec::new();
            if ids.is_empty() {
                let mut after: Option<String> = None;
                loop {
                    let page = backend.quarantined(after.as_deref(), PAGE).await?;
                    records.extend(page.items.into_iter().filter(|r| r.retried.is_none()));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
            } else {
                for id in &ids {
                    records.push(backend.quarantined_one(id).await?.ok_or_else(|| {
                        Failure::NotFound(format!("nothing quarantined as {id}"))
                    })?);
                }
            }
            let mut queued = 0;
            for record in &records {
                let retried = retry_one(&backend, record).await?;
                if !retried.work_key.is_empty() {
                    queued += 1;
                }
                if json {
                    print_json_line(&json!({ "id": record.id, "outcome": retried.outcome }));
                } else {
                    println!("{}: {}", record.id, retried.outcome);
                }
            }
            eprintln!(
                "{queued} of {} quarantined bodies read and queued",
                records.len()
            );
            Ok(())
        }
    }
}

pub async fn status(args: StatusArgs) -> Result<(), Failure> {
    let Opened { backend, .. } = Backend::open(&args.backend).await?;
    let (visible, in_flight, dead) = match &backend {
        Backend::Embedded(store) => {
            let stats = store.stats().await?;
            (stats.visible, stats.in_flight, stats.dead_letters)
        }
        Backend::Aws(aws) => {
            let queue = aws.queue()?;
            let (visible, in_flight) = sqs_depth(queue.client(), queue.url()).await?;
            let (dead, dead_in_flight) = sqs_depth(queue.client(), aws.dlq_url()?).await?;
            (visible, in_flight, dead + dead_in_flight)
        }
    };
    if args.json {
        print_json_line(
            &json!({ "queued": visible, "in_flight": in_flight, "dead_letters": dead }),
        );
    } else {
        println!("queued:       {visible}\nin flight:    {in_flight}\ndead letters: {dead}");
    }
    Ok(())
}

/// Approximate visible and in-flight counts, as SQS reports them.
pub async fn sqs_depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64), Failure> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            Failure::Backend(format!(
                "sqs get_queue_attributes failed: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            ))
        })?;
    let attributes = out.attributes.unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}
