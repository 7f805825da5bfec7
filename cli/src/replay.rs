//! `terima replay`: sends logged events through the ack path's enqueue step
//! again, marked as replays. The processor's work records make it safe: an
//! event already processed is acknowledged and nothing runs; a failed or
//! unfinished one is completed.
//!
//! The log is read a page at a time; sends start at `--rate` per second and
//! run concurrently, so a slow commit does not hold the rate down; a send
//! that meets a busy backend (another process holding the embedded store's
//! write lock, a throttled table) is retried with backoff before it counts
//! as failed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use terima_core::{Clock, QueueMessage, SystemClock};
use terima_service::Outcome;
use terima_service::store::EventView;

use crate::args::ReplayArgs;
use crate::backend::{Backend, Opened};
use crate::failure::Failure;
use crate::inspect::{PAGE, for_each_event};
use crate::output::{EVENT_HEADER, event_json, event_row, print_json_line, print_table};

/// Sends in flight at once.
const CONCURRENCY: usize = 32;
/// Attempts of one send before it counts as failed.
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

pub async fn run(args: ReplayArgs) -> Result<(), Failure> {
    let Opened { backend, .. } = Backend::open(&args.backend).await?;
    let filter = args.filter.filter();
    if args.dry_run {
        let mut rows = Vec::new();
        let count = for_each_event(&backend, &filter, args.filter.limit, |view| {
            if args.json {
                print_json_line(&event_json(view, None));
            } else {
                rows.push(event_row(view));
                if rows.len() == PAGE {
                    print_table(&EVENT_HEADER, &std::mem::take(&mut rows));
                }
            }
        })
        .await?;
        if !rows.is_empty() {
            print_table(&EVENT_HEADER, &rows);
        }
        eprintln!("dry run: {count} event(s) would be replayed");
        return Ok(());
    }
    let progress = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {pos} events, {per_sec}") {
            bar.set_style(style);
        }
        bar
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let run_id = format!("replay-{:x}", SystemClock.now_millis());
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut unavailable = None;
    let mut total = 0usize;
    let mut after: Option<String> = None;
    loop {
        let want = args.filter.limit.map_or(PAGE, |l| PAGE.min(l - total));
        if want == 0 {
            break;
        }
        let page = backend.events(&filter, after.as_deref(), want).await?;
        let base = total;
        total += page.items.len();
        let mut pending = page.items.into_iter().enumerate();
        let mut in_flight = FuturesUnordered::new();
        let mut more = true;
        // Starts one send per tick, at most CONCURRENCY at once, and keeps
        // the sends in flight moving while it waits for the next tick.
        loop {
            tokio::select! {
                _ = ticker.tick(), if more && in_flight.len() < CONCURRENCY => {
                    match pending.next() {
                        Some((i, view)) => in_flight.push(replay_one(&backend, view, format!("{run_id}-{}", base + i))),
                        None => more = false,
                    }
                }
                Some((id, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    let outcome = outcome?;
                    if let Outcome::Unavailable(e) = &outcome {
                        unavailable.get_or_insert_with(|| e.to_string());
                    }
                    *counts.entry(outcome.label()).or_default() += 1;
                    if args.json {
                        print_json_line(&json!({ "id": id, "outcome": outcome.label() }));
                    }
                    progress.inc(1);
                }
                else => break,
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    progress.finish_and_clear();
    let summary: Vec<String> = counts
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    eprintln!("replayed {total} event(s): {}", summary.join(", "));
    match unavailable {
        Some(detail) => Err(Failure::Backend(format!(
            "some replays were not queued: {detail}"
        ))),
        None => Ok(()),
    }
}

/// Replays one logged event under a new request id.
pub async fn replay_one(
    backend: &Backend,
    view: EventView,
    request_id: String,
) -> (String, Result<Outcome, Failure>) {
    let mut message = view.event.message();
    message.replay = true;
    message.request_id = request_id;
    (view.event.id, send_with_retries(backend, &message).await)
}

/// Enqueues one message, retrying while nothing holds it (a busy or
/// throttled backend), with exponential backoff.
async fn send_with_retries(backend: &Backend, message: &QueueMessage) -> Result<Outcome, Failure> {
    let mut delay = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let outcome = backend.enqueue(message).await?;
        if !matches!(outcome, Outcome::Unavailable(_)) || attempt == ATTEMPTS {
            return Ok(outcome);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        attempt += 1;
    }
}
