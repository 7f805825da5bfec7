//! The live page's stream (server-sent events): each delivery as `terima
//! serve` answers it (`event: delivery`, from [`Recent`](super::recent)),
//! and each logged event when it appears or its processing status changes
//! (`event: logged`, by polling the store: the processor may run in another
//! process, or on AWS). The page upserts rows by id, so sending a row twice
//! is harmless, and a reconnect (`Last-Event-ID`) resumes the deliveries.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use terima_service::store::EventFilter;
use tokio::sync::watch;

use super::api::{ApiError, delivery_matches, event_row, filter};
use super::{Console, full};

/// How often the store is read for new events and status changes.
const POLL: Duration = Duration::from_millis(500);
/// A comment this often keeps proxies and the browser from timing out.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The newest logged events compared on each poll: events logged out of
/// order (the processor runs many at once) still show up when they land
/// within it; a reload shows everything.
const WINDOW: usize = 100;
/// Older unfinished events re-read per poll, to see them finish.
const FOLLOWED_PER_POLL: usize = 20;
/// Events remembered per stream, at most.
const KNOWN_MAX: usize = 2_000;
/// Deliveries sent at once, at most (a reconnect after a burst).
const DELIVERIES_PER_CHUNK: usize = 500;

type Answer = Result<http::Response<super::Body>, ApiError>;

pub fn stream(
    console: &Arc<Console>,
    query: &HashMap<String, String>,
    last_event_id: Option<u64>,
) -> Answer {
    let live = Live {
        console: Arc::clone(console),
        filter: filter(query)?,
        outcome: query.get("outcome").cloned(),
        seq: last_event_id
            .or_else(|| query.get("seq").and_then(|s| s.parse().ok()))
            .unwrap_or(0),
        deliveries: console.recent.as_ref().map(|r| r.subscribe()),
        known: HashMap::new(),
        polled: None,
        spoke: Instant::now(),
        first: true,
    };
    let chunks = futures_util::stream::unfold(live, |mut live| async move {
        let chunk = live.next().await;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), live))
    });
    let mut response = full(StatusCode::OK, "text/event-stream", Bytes::new());
    *response.body_mut() = StreamBody::new(chunks).boxed_unsync();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One stream's cursor: the last delivery sent, and the logged events seen
/// with their status and attempts.
struct Live {
    console: Arc<Console>,
    filter: EventFilter,
    outcome: Option<String>,
    seq: u64,
    deliveries: Option<watch::Receiver<u64>>,
    known: HashMap<String, (String, u64)>,
    polled: Option<Instant>,
    spoke: Instant,
    first: bool,
}

impl Live {
    /// The next chunk of the stream: whatever is new, or a keep-alive.
    async fn next(&mut self) -> String {
        loop {
            let mut out = String::new();
            if self.first {
                out.push_str("retry: 2000\n\n");
                self.first = false;
            }
            self.new_deliveries(&mut out);
            if self.polled.is_none_or(|at| at.elapsed() >= POLL) {
                self.polled = Some(Instant::now());
                if let Err(ApiError(_, message)) = self.poll_store(&mut out).await {
                    out.push_str(&format!(
                        "event: problem\ndata: {}\n\n",
                        self.console.masker.json(json!({ "error": message }))
                    ));
                }
            }
            if !out.is_empty() || self.spoke.elapsed() >= KEEPALIVE {
                self.spoke = Instant::now();
                if out.is_empty() {
                    out.push_str(": keep-alive\n\n");
                }
                return out;
            }
            let wait = POLL.saturating_sub(self.polled.map_or(POLL, |at| at.elapsed()));
            match &mut self.deliveries {
                Some(changes) => {
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { self.deliveries = None },
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    fn new_deliveries(&mut self, out: &mut String) {
        let Some(recent) = &self.console.recent else {
            return;
        };
        let latest = *recent.subscribe().borrow();
        let found = recent.after(self.seq, DELIVERIES_PER_CHUNK, |d| {
            delivery_matches(d, &self.filter, self.outcome.as_deref())
        });
        for delivery in &found {
            out.push_str(&format!(
                "id: {}\nevent: delivery\ndata: {}\n\n",
                delivery.seq,
                self.console.masker.json(json!(delivery))
            ));
        }
        self.seq = found.last().map_or(latest, |d| d.seq.max(latest));
    }

    /// Sends logged events that are new or changed since the last poll.
    async fn poll_store(&mut self, out: &mut String) -> Result<(), ApiError> {
        // An outcome filter is about deliveries; logged events have none
        // but `accepted` (or `conflict`).
        if self
            .outcome
            .as_deref()
            .is_some_and(|o| !matches!(o, "accepted" | "conflict"))
        {
            return Ok(());
        }
        let backend = &self.console.backend;
        let page = backend.events(&self.filter, None, WINDOW).await?;
        let window: HashSet<&str> = page.items.iter().map(|v| v.event.id.as_str()).collect();
        let followed: Vec<String> = self
            .known
            .iter()
            .filter(|(id, (status, _))| status != "processed" && !window.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .take(FOLLOWED_PER_POLL)
            .collect();
        let mut views: Vec<_> = page.items.iter().rev().cloned().collect();
        for id in followed {
            match backend.event(&id).await? {
                Some(view) => views.push(view),
                None => {
                    self.known.remove(&id);
                }
            }
        }
        for view in &views {
            let row = event_row(&self.console, view);
            let signature = (
                row["status"].as_str().unwrap_or_default().to_owned(),
                row["attempts"].as_u64().unwrap_or_default(),
            );
            if self.known.get(&view.event.id) != Some(&signature) {
                out.push_str(&format!(
                    "event: logged\ndata: {}\n\n",
                    self.console.masker.json(row)
                ));
                self.known.insert(view.event.id.clone(), signature);
            }
        }
        if self.known.len() > KNOWN_MAX {
            self.known
                .retain(|id, (status, _)| window.contains(id.as_str()) || status != "processed");
        }
        Ok(())
    }
}
