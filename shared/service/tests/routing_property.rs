//! The routing facts are read apart from everything else: for every sample
//! in `events/` and every JSON path that is not a routing fact, replacing its
//! value with null, a number, a string, a boolean, an object or an array
//! leaves the answer's status class and every routing fact (event type,
//! dedup key, work key, resource, status, provider time) unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use terima_core::verify::FixedClock;
use terima_core::{Provider, Reading, inspect};
use terima_service::memory::MemoryStore;
use terima_service::{EndpointConfig, Ingest, Metrics};

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

/// A sample API Gateway event: its headers and raw body.
fn sample(path: &Path) -> (HeaderMap, Vec<u8>) {
    let text = std::fs::read_to_string(path).expect("a sample");
    let event: Value = serde_json::from_str(&text).expect("JSON");
    let mut headers = HeaderMap::new();
    if let Some(map) = event["headers"].as_object() {
        for (k, v) in map {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                headers.insert(name, value);
            }
        }
    }
    let body = event["body"].as_str().unwrap_or_default();
    let body = if event["isBase64Encoded"] == json!(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    } else {
        body.as_bytes().to_vec()
    };
    (headers, body)
}

/// Every path in a JSON value, as object keys and array indices.
fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(i.to_string());
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn replace(value: &mut Value, path: &[String], with: Value) {
    let mut node = value;
    for segment in path {
        node = match node {
            Value::Object(map) => map.get_mut(segment).expect("the path exists"),
            Value::Array(items) => items
                .get_mut(segment.parse::<usize>().expect("an index"))
                .expect("the index exists"),
            _ => panic!("no such path"),
        };
    }
    *node = with;
}

fn json_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

/// Two paths touch when one is the other or lies inside it.
fn touches(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn endpoint(provider: Provider) -> Ingest<MemoryStore, MemoryStore, MemoryStore> {
    let off = format!("TERIMA_{}_VERIFY", provider.env_infix());
    let lookup = move |name: &str| (name == off).then(|| "off".to_owned());
    let store = MemoryStore::new();
    Ingest::new(
        EndpointConfig::load(provider, &lookup).expect("verification off"),
        store.clone(),
        store.clone(),
        store,
        Arc::new(FixedClock(1_706_000_000)),
        Metrics::Silent,
    )
}

#[tokio::test]
async fn no_field_outside_the_routing_facts_changes_them_or_the_answer() {
    let replacements = [
        Value::Null,
        json!(12345),
        json!("text"),
        json!(true),
        json!({"nested": [1, "two"]}),
        json!([1, {"x": null}]),
    ];
    let mut checked = 0;
    let mut samples = 0;
    for provider in Provider::ALL {
        let spec = provider.spec();
        let dir = events_dir().join(provider.name());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("events/<provider>")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for file in files {
            let (headers, body) = sample(&file);
            if spec.is_probe(&body) {
                continue;
            }
            let name = file.display().to_string();
            let base: Reading = inspect(provider, &headers, &body)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .reading;
            let value: Value = serde_json::from_slice(&body).expect("JSON");
            let routing = spec.routing_paths(&headers, &value);
            assert!(
                !routing.iter().any(Vec::is_empty),
                "{name}: every sample has keys from its fields, not from its whole body"
            );
            // The other way round, so that the test can fail: changing a
            // routing fact's value changes the reading.
            let moved = routing.iter().filter(|p| !p.is_empty()).any(|p| {
                let mut changed = value.clone();
                if json_at(&changed, p).is_none_or(Value::is_null) {
                    return false;
                }
                replace(&mut changed, p, json!("2099-12-31T00:00:00Z|x"));
                let bytes = serde_json::to_vec(&changed).expect("serialises");
                inspect(provider, &headers, &bytes).map(|i| i.reading) != Ok(base.clone())
            });
            assert!(moved, "{name}: no routing path moved the reading");
            let endpoint = endpoint(provider);
            samples += 1;
            let mut all = Vec::new();
            paths(&value, &mut Vec::new(), &mut all);
            for path in all
                .iter()
                .filter(|p| !routing.iter().any(|r| touches(p, r)))
            {
                for with in &replacements {
                    let mut changed = value.clone();
                    replace(&mut changed, path, with.clone());
                    let bytes = serde_json::to_vec(&changed).expect("serialises");
                    let why = format!("{name}: {} = {with}", path.join("."));
                    let reading = inspect(provider, &headers, &bytes)
                        .unwrap_or_else(|e| panic!("{why}: {e}"))
                        .reading;
                    assert_eq!(reading, base, "{why}");
                    let reply = endpoint.handle(&headers, &bytes, "r").await;
                    assert_eq!(reply.status / 100, 2, "{why}: {}", reply.body);
                    assert!(reply.body.contains("accepted"), "{why}: {}", reply.body);
                    checked += 1;
                }
            }
        }
    }
    println!("{samples} samples, {checked} changed bodies: routing facts and answers unchanged");
    assert!(samples >= 60, "{samples}");
    assert!(checked > 2_000, "{checked}");
}
