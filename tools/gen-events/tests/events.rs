//! The committed files in `events/` are exactly what the generator writes,
//! and every provider event in them verifies with the test-only secrets and
//! reads as the event its name says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use terima_core::providers::{bebaskirim, bitbybit, biteship, oms};
use terima_core::verify::FixedClock;
use terima_core::{Provider, QueueMessage, inspect};
use terima_service::memory::MemoryStore;
use terima_service::{EndpointConfig, Ingest, Metrics};

fn root() -> PathBuf {
    gen_events::workspace_root()
}

fn generated() -> BTreeMap<String, Vec<u8>> {
    gen_events::generate(&root()).expect("events generate")
}

fn secrets() -> BTreeMap<String, String> {
    gen_events::read_secrets(&root()).expect("events/test-secrets.env reads")
}

fn config(provider: Provider) -> EndpointConfig {
    let secrets = secrets();
    let lookup = move |name: &str| secrets.get(name).cloned();
    EndpointConfig::load(provider, &lookup).expect("the test secrets configure every provider")
}

/// A provider event file: its provider, the event type its name gives, the
/// headers (any case) and the body bytes as the function sees them.
struct Delivery {
    file: String,
    provider: Provider,
    event_type: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

fn deliveries(files: &BTreeMap<String, Vec<u8>>) -> Vec<Delivery> {
    files
        .iter()
        .filter_map(|(file, bytes)| {
            let (dir, name) = file.split_once('/')?;
            let provider = Provider::from_name(dir)?;
            let stem = name.strip_suffix(".json")?;
            let event_type = stem.split("--").next()?.to_owned();
            let json: Value = serde_json::from_slice(bytes).expect("event is JSON");
            let text = json["body"].as_str().expect("body is a string");
            let body = if json["isBase64Encoded"] == Value::Bool(true) {
                BASE64.decode(text).expect("base64 body")
            } else {
                text.as_bytes().to_vec()
            };
            let mut headers = http::HeaderMap::new();
            for (name, value) in json["headers"].as_object().expect("headers") {
                headers.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    http::HeaderValue::from_str(value.as_str().expect("header value"))
                        .expect("header value"),
                );
            }
            Some(Delivery {
                file: file.clone(),
                provider,
                event_type,
                headers,
                body,
            })
        })
        .collect()
}

#[test]
fn committed_events_match_the_generator() {
    let files = generated();
    let drift = gen_events::drift(&root(), &files).expect("events/ reads");
    assert!(
        drift.is_empty(),
        "events/ is out of date; run `cargo run -p gen-events`:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(generated(), generated());
}

#[test]
fn every_documented_event_type_has_a_sample() {
    let files = generated();
    let documented: [(Provider, &[&str]); 4] = [
        (Provider::BebasKirim, &bebaskirim::EVENT_TYPES),
        (Provider::BitByBit, &bitbybit::EVENT_TYPES),
        (Provider::Oms, &oms::EVENT_TYPES),
        (Provider::Biteship, &biteship::EVENT_TYPES),
    ];
    for (provider, types) in documented {
        for event_type in types {
            let file = format!("{provider}/{event_type}.json");
            assert!(files.contains_key(&file), "no sample {file}");
        }
    }
}

#[test]
fn every_provider_event_verifies_and_reads_as_named() {
    let clock = FixedClock(gen_events::SIGNED_AT);
    let all = deliveries(&generated());
    assert!(all.len() > 60, "only {} provider events", all.len());
    for d in all {
        if d.file == "biteship/probe.json" {
            continue;
        }
        let config = config(d.provider);
        let verified = config.verification.verify(&d.headers, &d.body, &clock);
        assert!(verified.is_ok(), "{}: {verified:?}", d.file);
        let inspected =
            inspect(d.provider, &d.headers, &d.body).unwrap_or_else(|e| panic!("{}: {e}", d.file));
        assert_eq!(inspected.reading.event_type, d.event_type, "{}", d.file);
    }
}

#[test]
fn the_biteship_probe_is_a_probe_without_the_secret() {
    let files = generated();
    let probe = deliveries(&files)
        .into_iter()
        .find(|d| d.file == "biteship/probe.json")
        .expect("probe sample");
    assert!(biteship::is_installation_probe(&probe.body));
    let header = secrets()["TERIMA_BITESHIP_HEADER"].to_ascii_lowercase();
    assert!(!probe.headers.contains_key(header.as_str()));
}

/// The whole ack path, in memory: every sample is answered 200 `accepted`
/// (the probe `ignored`), as the functions answer it.
#[tokio::test(flavor = "current_thread")]
async fn every_provider_event_is_accepted_by_the_ack_path() {
    for d in deliveries(&generated()) {
        let store = MemoryStore::new();
        let ingest = Ingest::new(
            config(d.provider),
            store.clone(),
            store.clone(),
            store.clone(),
            Arc::new(FixedClock(gen_events::SIGNED_AT)),
            Metrics::Silent,
        );
        let reply = ingest.handle(&d.headers, &d.body, "test-request").await;
        let expected = if d.file == "biteship/probe.json" {
            "ignored"
        } else {
            "accepted"
        };
        let body: Value = serde_json::from_str(&reply.body).expect("reply is JSON");
        assert_eq!(
            (reply.status, body["status"].as_str()),
            (200, Some(expected)),
            "{}: {}",
            d.file,
            reply.body
        );
    }
}

#[test]
fn processor_events_carry_decodable_queue_messages() {
    let files = generated();
    let batch: Value =
        serde_json::from_slice(&files["processor/batch.json"]).expect("batch is JSON");
    let records = batch["Records"].as_array().expect("Records");
    let providers: BTreeSet<Provider> = records
        .iter()
        .map(|r| {
            assert_eq!(r["eventSource"], "aws:sqs");
            assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
            let message =
                QueueMessage::decode(r["body"].as_str().expect("body")).expect("a queue message");
            let single: Value =
                serde_json::from_slice(&files[&format!("processor/{}.json", message.provider)])
                    .expect("JSON");
            assert_eq!(
                &single["Records"][0], r,
                "processor/{}.json",
                message.provider
            );
            message.provider
        })
        .collect();
    assert_eq!(providers, Provider::ALL.into_iter().collect());
    let ids: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["messageId"].as_str())
        .collect();
    assert_eq!(ids.len(), records.len(), "message ids are unique");
}
