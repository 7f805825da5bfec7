//! Bodies at the body limit, for every provider, on either backend: a validly
//! signed body of exactly the limit is taken and processed, byte for byte; one
//! byte more is refused 413 and leaves nothing.

use std::time::{Duration, Instant};

use serde_json::Value;
use terima::gateway::SampleRequest;
use terima::send::{client, post};
use terima_core::Provider;

use super::backend::Backend;
use super::ledger::label;
use super::{Signers, is_probe, keys, samples, variant};

/// A top-level key no provider's reader looks at.
pub const PADDING_KEY: &str = "terima_test_padding";
/// How long the processor may take to process the four bodies.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// `request` with its JSON body padded by an extra top-level string to
/// exactly `size` bytes (not yet signed).
pub fn padded(request: &SampleRequest, size: usize) -> SampleRequest {
    let mut body: Value = serde_json::from_slice(&request.body).expect("samples are JSON");
    let object = body.as_object_mut().expect("samples are JSON objects");
    object.insert(PADDING_KEY.to_owned(), Value::String(String::new()));
    let bare = serde_json::to_vec(&body).expect("serialises").len();
    assert!(
        bare <= size,
        "the sample alone is {bare} bytes, over {size}"
    );
    let object = body.as_object_mut().expect("an object");
    object.insert(
        PADDING_KEY.to_owned(),
        Value::String("x".repeat(size - bare)),
    );
    let mut padded = request.clone();
    padded.body = serde_json::to_vec(&body).expect("serialises");
    assert_eq!(padded.body.len(), size);
    padded
}

/// One provider's figures, for the report.
struct Checked {
    provider: Provider,
    at_limit: (u16, String),
    over: (u16, String),
    stored_size: u64,
    stored_out_of_line: bool,
    raw_matches: bool,
}

/// Starts `terima serve` on `backend` (which must hold nothing yet) with
/// `TERIMA_MAX_BODY_BYTES` at `limit`; for each provider, posts a signed body
/// of exactly `limit` bytes and one of `limit + 1`; then checks through the
/// CLI that the first is processed with its exact bytes and the second left
/// nothing.
pub async fn check_bodies_at_the_limit(backend: &Backend<'_>, limit: usize) {
    let server = backend.serve(
        &format!("limits-{}", backend.name()),
        &[("TERIMA_MAX_BODY_BYTES", &limit.to_string())],
    );
    let signers = Signers::load();
    let client = client();
    let samples = samples();
    let mut sent = Vec::new();
    for provider in Provider::ALL {
        let sample = &samples
            .iter()
            .find(|(_, s)| s.provider == provider && !is_probe(s))
            .expect("a sample per provider")
            .1;
        let mut at_limit = padded(&variant(sample, "-limit"), limit);
        signers.sign(&mut at_limit);
        let mut over = padded(&variant(sample, "-over"), limit + 1);
        signers.sign(&mut over);
        let url = format!("{}{}", server.url(), at_limit.path);
        let (status, body) = post(&client, &url, &at_limit)
            .await
            .expect("gateway reachable");
        let at_answer = (status, label(&body));
        let (status, body) = post(&client, &url, &over).await.expect("gateway reachable");
        let over_answer = (status, label(&body));
        eprintln!(
            "{} {provider}: {limit} bytes answered {} {}, {} bytes answered {} {}",
            backend.name(),
            at_answer.0,
            at_answer.1,
            limit + 1,
            over_answer.0,
            over_answer.1
        );
        sent.push((provider, at_limit, at_answer, over, over_answer));
    }

    // THEN each body at the limit is processed, and is there byte for byte
    let deadline = Instant::now() + PROCESS_DEADLINE;
    let events = loop {
        let events = backend.cli_json(&["events", "list"]);
        let processed = events.iter().filter(|e| e["status"] == "processed").count();
        if processed >= sent.len() && events.len() >= sent.len() {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "not processed in time: {processed} of {} bodies at the limit, {} listed",
            sent.len(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut checked = Vec::new();
    for (provider, at_limit, at_answer, over, over_answer) in sent {
        let (_, work_key, _) = keys(&at_limit);
        let (_, _, over_dedup) = keys(&over);
        assert!(
            !events
                .iter()
                .any(|e| e["provider"] == provider.name() && e["dedup_key"] == over_dedup.as_str()),
            "{provider}: the body one byte over the limit was stored"
        );
        let event = events
            .iter()
            .find(|e| e["provider"] == provider.name() && e["work_key"] == work_key.as_str())
            .unwrap_or_else(|| panic!("{provider}: the body at the limit is not listed"));
        let id = event["id"].as_str().expect("an id");
        let raw = backend.cli(&["events", "show", id, "--raw"]);
        assert!(
            raw.status.success(),
            "{provider}: events show --raw failed: {}",
            String::from_utf8_lossy(&raw.stderr)
        );
        checked.push(Checked {
            provider,
            at_limit: at_answer,
            over: over_answer,
            stored_size: event["body_size"].as_u64().unwrap_or_default(),
            stored_out_of_line: event["body_stored"] == true,
            raw_matches: raw.stdout == at_limit.body,
        });
        eprintln!(
            "{} {provider}: listed {} {}, body_size {}, body_stored {}, --raw gave {} bytes, identical: {}",
            backend.name(),
            id,
            event["status"],
            event["body_size"],
            event["body_stored"],
            raw.stdout.len(),
            raw.stdout == at_limit.body
        );
    }
    for c in &checked {
        let provider = c.provider;
        assert_eq!(
            (c.at_limit.0, c.at_limit.1.as_str()),
            (200, "accepted"),
            "{provider}: a body of exactly the limit"
        );
        assert_eq!(
            (c.over.0, c.over.1.as_str()),
            (413, "too_large"),
            "{provider}: one byte over the limit"
        );
        assert_eq!(c.stored_size, limit as u64, "{provider}: stored size");
        assert!(
            c.stored_out_of_line,
            "{provider}: a body over the inline limit goes through the claim check"
        );
        assert!(c.raw_matches, "{provider}: events show --raw differs");
    }
    assert_eq!(
        events.len(),
        Provider::ALL.len(),
        "the log holds the bodies at the limit and nothing else"
    );
    assert!(
        backend.cli_json(&["quarantine", "list"]).is_empty(),
        "nothing quarantined"
    );
    assert!(
        server.terminate().is_some_and(|s| s.success()),
        "SIGTERM stops serve cleanly"
    );
}
