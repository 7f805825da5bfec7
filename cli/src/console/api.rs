//! The console's routes: the pages, and a JSON API built from the CLI's own
//! `--json` renderings (`output.rs`), so the CLI and the console agree.
//! Writes call the CLI's code: `dlq::redrive`, `inspect::retry_one`,
//! `replay::replay_one`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use terima_core::{Clock, Provider, SystemClock, Timestamp, inspect};
use terima_service::store::{
    EventFilter, EventView, ListedStatus, WorkRecord, WorkStatus, event_id_parts,
};

use super::recent::Delivery;
use super::{Body, Console, TOKEN_HEADER, full, live, text};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::{
    conflict_json, embedded_dead_letter_json, event_json, pretty_json, quarantine_json,
    resource_json, work_json,
};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Rows per page unless asked; at most [`MAX_PAGE`].
pub const PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Dead letters listed at once.
const DEAD_LETTERS: usize = 200;
/// Conflicts searched for an event's.
const CONFLICTS: usize = 1_000;
/// A write's JSON body, at most.
const WRITE_BODY_LIMIT: usize = 64 * 1024;

/// A failed request: its status and a message (scrubbed like any answer).
pub struct ApiError(pub StatusCode, pub String);

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let status = match &failure {
            Failure::Usage(_) => StatusCode::BAD_REQUEST,
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Config(_) => StatusCode::CONFLICT,
            Failure::Backend(_) | Failure::SendFailed(_) => StatusCode::BAD_GATEWAY,
        };
        Self(status, failure.to_string())
    }
}

impl From<terima_service::store::BackendError> for ApiError {
    fn from(e: terima_service::store::BackendError) -> Self {
        Failure::from(e).into()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type Answer = Result<Response<Body>, ApiError>;

pub async fn route(console: &Arc<Console>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let segments: Vec<String> = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            form_urlencoded::parse(format!("s={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    let query: HashMap<String, String> =
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .filter(|(_, v)| !v.is_empty())
            .collect();
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result = match (&method, path.as_slice()) {
        (&Method::GET, [""]) => Ok(index(console)),
        (&Method::GET, ["assets", "app.js"]) => Ok(asset(APP_JS, "text/javascript; charset=utf-8")),
        (&Method::GET, ["assets", "style.css"]) => Ok(asset(STYLE_CSS, "text/css; charset=utf-8")),
        (&Method::GET, ["api", "info"]) => Ok(info(console)),
        (&Method::GET, ["api", "events"]) => events(console, &query).await,
        (&Method::GET, ["api", "events", id]) => event(console, id).await,
        (&Method::GET, ["api", "events", id, "raw"]) => raw(console, id).await,
        (&Method::GET, ["api", "resources", provider, kind, id]) => {
            story(console, provider, kind, id).await
        }
        (&Method::GET, ["api", "deliveries"]) => deliveries(console, &query),
        (&Method::GET, ["api", "stream"]) => {
            let last = request
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            live::stream(console, &query, last)
        }
        (&Method::GET, ["api", "dead-letters"]) => dead_letters(console).await,
        (&Method::GET, ["api", "quarantine"]) => quarantine(console, &query).await,
        (&Method::GET, ["api", "quarantine", id]) => quarantined(console, id).await,
        (&Method::GET, ["api", "conflicts"]) => conflicts(console).await,
        (&Method::POST, ["api", ..]) => write(console, request, &path).await,
        (_, ["api", ..]) => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no such endpoint".to_owned(),
        )),
        _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
    };
    result.unwrap_or_else(|ApiError(status, message)| {
        full(
            status,
            "application/json",
            console.masker.json(json!({ "error": message })),
        )
    })
}

/// The page: the token and whether writes are on, embedded.
fn index(console: &Console) -> Response<Body> {
    let page = INDEX_HTML
        .replace(
            "{{TOKEN}}",
            if console.writes { &console.token } else { "" },
        )
        .replace("{{WRITES}}", if console.writes { "on" } else { "off" })
        .replace("{{SOURCE}}", &html_escape(&console.source));
    let mut response = full(StatusCode::OK, "text/html; charset=utf-8", page);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = full(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON, with secrets masked.
pub fn json_answer(console: &Console, value: Value) -> Response<Body> {
    full(
        StatusCode::OK,
        "application/json",
        console.masker.json(value),
    )
}

fn info(console: &Console) -> Response<Body> {
    json_answer(
        console,
        json!({
            "source": console.source,
            "backend": match console.backend { Backend::Embedded(_) => "embedded", Backend::Aws(_) => "aws" },
            "writes": console.writes,
            "live_deliveries": console.recent.is_some(),
            "providers": Provider::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
        }),
    )
}

/// The filters of the live page, as `events list` takes them.
pub fn filter(query: &HashMap<String, String>) -> Result<EventFilter, ApiError> {
    let time = |name: &str| {
        query
            .get(name)
            .map(|t| Timestamp::parse(t).map_err(|e| bad_request(format!("{name}: {e}"))))
            .transpose()
    };
    Ok(EventFilter {
        provider: query
            .get("provider")
            .map(|p| Provider::from_name(p).ok_or_else(|| bad_request("unknown provider")))
            .transpose()?,
        event_type: query.get("event_type").cloned(),
        status: query
            .get("status")
            .map(|s| ListedStatus::parse(s).ok_or_else(|| bad_request("unknown status")))
            .transpose()?,
        resource: query
            .get("resource")
            .map(|r| match r.split_once(':') {
                Some((kind, id)) if !kind.is_empty() && !id.is_empty() => {
                    Ok((kind.to_owned(), id.to_owned()))
                }
                _ => Err(bad_request(
                    "resource: expected KIND:ID, for example order:ORD-001",
                )),
            })
            .transpose()?,
        since: time("since")?,
        until: time("until")?,
    })
}

/// Whether a delivery fits the live page's filters. A status filter is about
/// processing, which only logged events have.
pub fn delivery_matches(delivery: &Delivery, filter: &EventFilter, outcome: Option<&str>) -> bool {
    let received = Timestamp::parse(&delivery.received_at).ok();
    filter.status.is_none()
        && outcome.is_none_or(|o| o == delivery.outcome)
        && filter
            .provider
            .is_none_or(|p| p.name() == delivery.provider)
        && filter
            .event_type
            .as_ref()
            .is_none_or(|t| delivery.event_type.as_ref() == Some(t))
        && filter.resource.as_ref().is_none_or(|(k, i)| {
            delivery.resource_kind.as_ref() == Some(k) && delivery.resource_id.as_ref() == Some(i)
        })
        && filter
            .since
            .is_none_or(|t| received.is_some_and(|r| r >= t))
        && filter.until.is_none_or(|t| received.is_some_and(|r| r < t))
}

/// An event as the live page lists it: `events list --json`'s object, with
/// the outcome of its delivery when this process answered it.
pub fn event_row(console: &Console, view: &EventView) -> Value {
    let mut row = event_json(view, None);
    if let Some(delivery) = console
        .recent
        .as_ref()
        .and_then(|r| r.of_record(&view.event.id).into_iter().next())
    {
        row["outcome"] = delivery.outcome.into();
    }
    row
}

fn limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    query.get("limit").map_or(Ok(PAGE), |l| {
        l.parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| bad_request(format!("limit: expected 1 to {MAX_PAGE}")))
    })
}

async fn events(console: &Console, query: &HashMap<String, String>) -> Answer {
    let filter = filter(query)?;
    let after = query.get("after").map(String::as_str);
    if let Some(after) = after {
        check_event_id(after)?;
    }
    let page = console
        .backend
        .events(&filter, after, limit(query)?)
        .await?;
    let items: Vec<Value> = page.items.iter().map(|v| event_row(console, v)).collect();
    Ok(json_answer(
        console,
        json!({ "items": items, "next": page.next }),
    ))
}

fn deliveries(console: &Console, query: &HashMap<String, String>) -> Answer {
    let filter = filter(query)?;
    let outcome = query.get("outcome").map(String::as_str);
    let items = console.recent.as_ref().map_or_else(Vec::new, |r| {
        r.newest(PAGE, |d| delivery_matches(d, &filter, outcome))
    });
    let latest = console
        .recent
        .as_ref()
        .map_or(0, |r| *r.subscribe().borrow());
    Ok(json_answer(
        console,
        json!({ "items": items, "seq": latest }),
    ))
}

fn check_event_id(id: &str) -> Result<(), ApiError> {
    event_id_parts(id)
        .map(|_| ())
        .ok_or_else(|| bad_request(format!("{id:?} is not an event id")))
}

async fn event(console: &Console, id: &str) -> Answer {
    check_event_id(id)?;
    let deliveries = console
        .recent
        .as_ref()
        .map_or_else(Vec::new, |r| r.of_record(id));
    let Some(view) = console.backend.event(id).await? else {
        // A duplicate's delivery is acknowledged and never logged: say so.
        if let Some(first) = deliveries.first() {
            return Ok(json_answer(
                console,
                json!({ "id": id, "logged": false, "deliveries": deliveries, "delivery": first }),
            ));
        }
        return Err(Failure::NotFound(format!("no event {id}")).into());
    };
    let body = console.backend.body(&view.event).await?;
    let mut value = event_json(&view, body.as_deref());
    value["logged"] = true.into();
    value["body_pretty"] = body.as_deref().map(pretty_json).into();
    value["reading"] = reading(&view, body.as_deref());
    value["work"] = view.work.as_ref().map(work_json).into();
    value["deliveries"] = json!(deliveries);
    value["conflict"] = conflict_of(console, id).await?;
    Ok(json_answer(console, value))
}

/// What the providers' code reads from the body today: the routing facts.
fn reading(view: &EventView, body: Option<&[u8]>) -> Value {
    let Some(body) = body else {
        return json!({ "error": "the body is gone" });
    };
    let headers = view.event.message().header_map();
    match inspect(view.event.provider, &headers, body) {
        Ok(inspected) => {
            let r = &inspected.reading;
            json!({
                "event_type": r.event_type,
                "dedup_key": r.dedup_key,
                "work_key": r.work_key,
                "resource_kind": r.resource.kind,
                "resource_id": r.resource.id,
                "occurred_at": r.occurred_at.map(|t| t.to_string()),
                "status": r.status,
                "digest": inspected.digest,
                "notes": inspected.notes,
                "model": model_name(&format!("{:?}", inspected.typed())),
            })
        }
        Err(e) => json!({ "error": e.to_string(), "reason": e.reason() }),
    }
}

/// `BitByBit › OrderCreated` from the typed view's `Debug` text: which model
/// the body fits, without its fields (which may be personal).
fn model_name(debug: &str) -> String {
    debug
        .split('(')
        .take(3)
        .take_while(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .collect::<Vec<_>>()
        .join(" › ")
}

/// The conflict an event is part of, with the other event and its body.
async fn conflict_of(console: &Console, id: &str) -> Result<Value, ApiError> {
    let conflicts = console.backend.conflicts(CONFLICTS).await?;
    let Some(conflict) = conflicts
        .into_iter()
        .find(|c| c.first_event_id == id || c.second_event_id == id)
    else {
        return Ok(Value::Null);
    };
    let other_id = if conflict.first_event_id == id {
        &conflict.second_event_id
    } else {
        &conflict.first_event_id
    };
    let other = match console.backend.event(other_id).await? {
        Some(view) => {
            let body = console.backend.body(&view.event).await?;
            let mut value = event_json(&view, body.as_deref());
            value["body_pretty"] = body.as_deref().map(pretty_json).into();
            value
        }
        None => json!({ "id": other_id, "missing": true }),
    };
    Ok(json!({ "conflict": conflict_json(&conflict), "other": other }))
}

/// The body byte for byte (`events show --raw`), with any configured secret
/// masked (then `X-Terima-Masked: 1` says it is no longer exact).
async fn raw(console: &Console, id: &str) -> Answer {
    check_event_id(id)?;
    let view = console
        .backend
        .event(id)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("no event {id}")))?;
    let body = console
        .backend
        .body(&view.event)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("the body of {id} is gone")))?;
    let (bytes, masked) = console.masker.scrub_bytes(body);
    let mut response = full(StatusCode::OK, "text/plain; charset=utf-8", bytes);
    if masked {
        response
            .headers_mut()
            .insert("x-terima-masked", HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// A resource's story: `resources show --json`, with each event's place in
/// provider time and in arrival time, why an event did not move the state,
/// duplicates this process acknowledged, and the links of a derived order.
async fn story(console: &Console, provider: &str, kind: &str, id: &str) -> Answer {
    let provider = Provider::from_name(provider).ok_or_else(|| bad_request("unknown provider"))?;
    let story = console.backend.story(provider, kind, id).await?;
    let duplicates: Vec<Delivery> = console.recent.as_ref().map_or_else(Vec::new, |r| {
        r.newest(super::recent::CAPACITY, |d| {
            d.outcome == "duplicate"
                && d.provider == provider.name()
                && d.resource_kind.as_deref() == Some(kind)
                && d.resource_id.as_deref() == Some(id)
        })
    });
    if story.state.is_none() && story.works.is_empty() && duplicates.is_empty() {
        return Err(Failure::NotFound(format!("no {provider} {kind} {id}")).into());
    }
    let events: Vec<Value> = story
        .works
        .iter()
        .map(|work| {
            let mut value = work_json(work);
            value["moved"] = (work.effect == Some(terima_service::store::Effect::Applied)).into();
            value["why"] = why(work, &story.works).into();
            value
        })
        .collect();
    let fields = story.state.as_ref().map(|s| &s.fields);
    let derived_from = fields
        .and_then(|f| f.get("derived_from"))
        .and_then(Value::as_str);
    let derived: Vec<String> = fields
        .and_then(|f| f.get(terima_core::providers::bebaskirim::PARTIAL_CANCELLATIONS))
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |list| {
            (1..=list.len()).map(|n| format!("{id}-{n}")).collect()
        });
    Ok(json_answer(
        console,
        json!({
            "provider": provider.name(),
            "kind": kind,
            "id": id,
            "state": story.state.as_ref().map(resource_json),
            "events": events,
            "duplicates": duplicates,
            "derived_from": derived_from,
            "derived": derived,
        }),
    ))
}

/// Why an event's work did or did not move its resource's state.
fn why(work: &WorkRecord, all: &[WorkRecord]) -> String {
    match (work.status, work.effect) {
        (WorkStatus::Failed, _) => format!(
            "failed: {}",
            work.error.as_deref().unwrap_or("no error recorded")
        ),
        (WorkStatus::Processing, _) => "being processed".to_owned(),
        (_, Some(terima_service::store::Effect::Applied)) => "moved the state".to_owned(),
        _ => {
            let conflict = all
                .iter()
                .any(|w| w.key.work_key == work.key.work_key && w.key.digest != work.key.digest);
            // The latest (in provider time) of the events applied before it.
            let newer = all
                .iter()
                .filter(|w| {
                    w.received_at < work.received_at
                        && w.effect == Some(terima_service::store::Effect::Applied)
                        && matches!((w.occurred_at, work.occurred_at), (Some(a), Some(b)) if a > b)
                })
                .max_by_key(|w| w.occurred_at);
            match (newer, conflict) {
                (Some(w), _) => format!(
                    "late: {} from {} (provider time) had already been applied",
                    w.event_type,
                    w.occurred_at.map(|t| t.to_string()).unwrap_or_default()
                ),
                (None, true) => {
                    "conflict: the same work key with another body; the state follows the provider's order".to_owned()
                }
                (None, false) => "no change: the state already held this or a later status".to_owned(),
            }
        }
    }
}

async fn dead_letters(console: &Console) -> Answer {
    let letters = match &console.backend {
        Backend::Embedded(store) => store
            .dead_letters(Some(DEAD_LETTERS))
            .await?
            .iter()
            .map(embedded_dead_letter_json)
            .collect(),
        Backend::Aws(aws) => crate::dlq::sqs_list(aws, DEAD_LETTERS).await?,
    };
    Ok(json_answer(console, json!({ "items": letters })))
}

async fn quarantine(console: &Console, query: &HashMap<String, String>) -> Answer {
    let page = console
        .backend
        .quarantined(query.get("after").map(String::as_str), limit(query)?)
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| quarantine_json(r, None))
        .collect();
    Ok(json_answer(
        console,
        json!({ "items": items, "next": page.next }),
    ))
}

async fn quarantined(console: &Console, id: &str) -> Answer {
    let record = console
        .backend
        .quarantined_one(id)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("nothing quarantined as {id}")))?;
    let body = crate::inspect::quarantined_body(&console.backend, &record).await?;
    let mut value = quarantine_json(&record, Some(&body));
    value["body_pretty"] = pretty_json(&body).into();
    Ok(json_answer(console, value))
}

async fn conflicts(console: &Console) -> Answer {
    let items: Vec<Value> = console
        .backend
        .conflicts(PAGE)
        .await?
        .iter()
        .map(conflict_json)
        .collect();
    Ok(json_answer(console, json!({ "items": items })))
}

/// A write: only when allowed, only with the token, only from this origin.
async fn write(console: &Console, request: Request<Incoming>, path: &[&str]) -> Answer {
    if !console.writes {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "writes are off: start the console with --console-allow-writes (terima serve) or --allow-writes (terima console)".to_owned(),
        ));
    }
    let token = request
        .headers()
        .get(TOKEN_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if !bool::from(token.ct_eq(console.token.as_bytes())) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "missing or wrong X-Terima-Token: writes come from the console's own page".to_owned(),
        ));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let host = request.headers().get(header::HOST);
        let expected = host
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"));
        if origin.to_str().ok() != expected.as_deref() {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "cross-origin write refused".to_owned(),
            ));
        }
    }
    let body: Bytes = Limited::new(request.into_body(), WRITE_BODY_LIMIT)
        .collect()
        .await
        .map_err(|_| bad_request("unreadable or too large request body"))?
        .to_bytes();
    let input: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("not JSON: {e}")))?
    };
    let result = match path {
        ["api", "dead-letters", "redrive"] => {
            let ids: Vec<i64> = input
                .get("ids")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let moved = crate::dlq::redrive(&console.backend, ids).await?;
            json!({ "redriven": moved })
        }
        ["api", "quarantine", id, "retry"] => {
            let record = console
                .backend
                .quarantined_one(id)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("nothing quarantined as {id}")))?;
            let retried = crate::inspect::retry_one(&console.backend, &record).await?;
            json!({ "id": id, "outcome": retried.outcome })
        }
        ["api", "events", id, "replay"] => {
            check_event_id(id)?;
            let view = console
                .backend
                .event(id)
                .await?
                .ok_or_else(|| Failure::NotFound(format!("no event {id}")))?;
            let request_id = format!("console-replay-{:x}", SystemClock.now_millis());
            let outcome = crate::replay::replay_one(&console.backend, view, request_id)
                .await
                .1?;
            json!({ "id": id, "outcome": outcome.label() })
        }
        _ => return Err(ApiError(StatusCode::NOT_FOUND, "no such action".to_owned())),
    };
    tracing::info!(
        action = path.get(1).copied().unwrap_or_default(),
        "console write"
    );
    Ok(json_answer(console, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_name_has_no_fields() {
        assert_eq!(
            model_name("BitByBit(OrderCreated(Order { name: \"Budi\" }))"),
            "BitByBit › OrderCreated"
        );
        assert_eq!(model_name("Oms(Other(Object {}))"), "Oms › Other");
    }
}
