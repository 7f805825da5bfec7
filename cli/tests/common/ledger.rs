//! What an end-to-end test was told, and the check of the event log against
//! it: every event answered 2xx listed exactly once and processed, nothing
//! answered 4xx listed.

use std::collections::{BTreeMap, BTreeSet};

use http::HeaderValue;
use serde_json::Value;
use terima::gateway::SampleRequest;
use terima_core::Provider;

use super::{is_probe, keys};

pub type Key = (Provider, String);

/// The `status` label of an answer's JSON body.
pub fn label(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Replaces every authentication header with a wrong value of the right shape.
pub fn forge(request: &mut SampleRequest) {
    let zeros = "0".repeat(64);
    for (name, value) in [
        ("authorization", "wrong-token".to_owned()),
        ("x-biteship-token", "wrong-token".to_owned()),
        ("x-bitbybit-webhook-signature", format!("t=1,v1={zeros}")),
        ("x-whisperer-signature", format!("sha256={zeros}")),
    ] {
        if request.headers.contains_key(name) {
            request
                .headers
                .insert(name, HeaderValue::from_str(&value).expect("ascii"));
        }
    }
}

/// What the test knows it was told.
#[derive(Default)]
pub struct Ledger {
    /// Work answered 2xx (not `ignored`), with a dedup key each.
    pub stored: BTreeMap<Key, String>,
    /// Dedup keys answered 4xx that were never sent validly.
    pub refused: BTreeSet<Key>,
    /// Answers by status code, for the report.
    pub answers: BTreeMap<u16, usize>,
}

impl Ledger {
    pub fn answered(&mut self, request: &SampleRequest, status: u16, body: &str) {
        *self.answers.entry(status).or_default() += 1;
        assert!(
            (200..300).contains(&status),
            "expected 2xx, got {status} {body}"
        );
        if is_probe(request) {
            assert_eq!(label(body), "ignored");
            return;
        }
        assert!(
            ["accepted", "duplicate", "conflict"].contains(&label(body).as_str()),
            "{body}"
        );
        let (provider, work_key, dedup_key) = keys(request);
        self.stored.entry((provider, work_key)).or_insert(dedup_key);
    }

    /// A 4xx answer to a request never sent validly.
    pub fn refused(&mut self, request: &SampleRequest, status: u16) {
        *self.answers.entry(status).or_default() += 1;
        let (provider, _, dedup_key) = keys(request);
        self.refused.insert((provider, dedup_key));
    }

    /// Checks `events list --json` against what was answered: every work
    /// answered 2xx listed once (copies that raced through the processor
    /// aside) and processed, nothing refused listed. Returns the number of
    /// entries that were such copies.
    pub fn check_listing(&self, events: &[Value]) -> usize {
        let mut seen: BTreeMap<Key, &Value> = BTreeMap::new();
        let mut copies = 0;
        for event in events {
            let provider = Provider::from_name(event["provider"].as_str().expect("provider"))
                .expect("known provider");
            let key = (
                provider,
                event["work_key"].as_str().expect("work_key").to_owned(),
            );
            for field in [
                "event_type",
                "dedup_key",
                "resource_kind",
                "resource_id",
                "status",
                "attempts",
            ] {
                assert!(!event[field].is_null(), "{field} missing in {event}");
            }
            assert!(event.get("body").is_none(), "lists leave bodies out");
            let dedup = (
                provider,
                event["dedup_key"].as_str().expect("dedup_key").to_owned(),
            );
            assert!(
                !self.refused.contains(&dedup),
                "a refused delivery left {dedup:?}"
            );
            if event["duplicate_entry"] == true {
                // A second delivery that raced the first through the
                // processor: logged, and pointing at the work the first did.
                copies += 1;
                continue;
            }
            assert!(event["attempts"].as_u64().expect("attempts") >= 1);
            assert!(!event["processed_at"].is_null(), "{event}");
            assert!(
                seen.insert(key.clone(), event).is_none(),
                "{key:?} listed twice"
            );
        }
        let stored: BTreeSet<&Key> = self.stored.keys().collect();
        let listed: BTreeSet<&Key> = seen.keys().collect();
        let missing: Vec<_> = stored.difference(&listed).collect();
        let unexpected: Vec<_> = listed.difference(&stored).collect();
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "the log holds exactly the acknowledged events: {} acknowledged, {} listed; missing {missing:?}, unexpected {unexpected:?}",
            stored.len(),
            listed.len()
        );
        copies
    }
}
