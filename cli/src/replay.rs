//! `terima replay`: sends logged events through the ack path's dedup step and
//! the queue again, marked as replays. The processor's lease makes it safe:
//! an event already processed is acknowledged and nothing runs; a failed or
//! unfinished one is completed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use terima_core::providers::{bitbybit, oms};
use terima_core::{Clock, Provider, QueueMessage, SystemClock, Timestamp, inspect};
use terima_service::Outcome;
use terima_service::store::EventRecord;
use tracing::warn;

use crate::args::ReplayArgs;
use crate::backend::{Backend, Opened};
use crate::failure::Failure;
use crate::output::{EVENT_HEADER, event_json, event_row, print_json_line, print_table};

pub async fn run(args: ReplayArgs) -> Result<(), Failure> {
    let Opened { backend, settings } = Backend::open(&args.backend).await?;
    let events = backend.events(&args.filter.filter()).await?;
    if args.dry_run {
        if args.json {
            for event in &events {
                print_json_line(&event_json(event, false));
            }
        } else if !events.is_empty() {
            let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
            print_table(&EVENT_HEADER, &rows);
        }
        eprintln!("dry run: {} event(s) would be replayed", events.len());
        return Ok(());
    }
    let progress = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(u64::try_from(events.len()).unwrap_or(u64::MAX));
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} events, {per_sec}, eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let run_id = format!("replay-{:x}", SystemClock.now_millis());
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut unavailable = None;
    for (n, event) in events.iter().enumerate() {
        ticker.tick().await;
        let now = Timestamp::from_unix_millis(SystemClock.now_millis());
        let label = match replay_message(event, now, &format!("{run_id}-{n}")) {
            Ok(message) => {
                let outcome = backend.enqueue(&message, &settings).await?;
                if let Outcome::Unavailable(e) = &outcome {
                    unavailable.get_or_insert_with(|| e.to_string());
                }
                outcome.label()
            }
            Err(detail) => {
                warn!(id = %event.id(), %detail, "stored payload can no longer be read; not replayed");
                "unreadable"
            }
        };
        *counts.entry(label).or_default() += 1;
        if args.json {
            print_json_line(&json!({ "id": event.id(), "outcome": label }));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let summary: Vec<String> = counts
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    eprintln!("replayed {} event(s): {}", events.len(), summary.join(", "));
    match unavailable {
        Some(detail) => Err(Failure::Backend(format!(
            "some replays were not queued: {detail}"
        ))),
        None => Ok(()),
    }
}

/// The queue message for a logged event, read again from its payload the
/// way the ack path read it (BitByBit's id and type travel in headers).
pub fn replay_message(
    event: &EventRecord,
    now: Timestamp,
    request_id: &str,
) -> Result<QueueMessage, String> {
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| -> Result<(), String> {
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("{name} cannot carry {value:?}"))?;
        headers.insert(name, value);
        Ok(())
    };
    match event.provider {
        Provider::BitByBit => {
            set(bitbybit::ID_HEADER, &event.dedup_key)?;
            set(bitbybit::EVENT_HEADER, &event.event_type)?;
        }
        Provider::Oms => set(oms::EVENT_HEADER, &event.event_type)?,
        Provider::BebasKirim | Provider::Biteship => {}
    }
    let inspected =
        inspect(event.provider, &headers, event.payload.as_bytes()).map_err(|e| e.to_string())?;
    if inspected.work_key != event.work_key {
        return Err(format!(
            "the payload now reads as work key {:?}, not {:?}",
            inspected.work_key, event.work_key
        ));
    }
    let mut message = QueueMessage::new(
        event.provider,
        &inspected,
        &headers,
        &event.payload,
        now,
        request_id,
    );
    message.replay = true;
    Ok(message)
}
