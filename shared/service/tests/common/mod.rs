//! Helpers shared by the service tests and benches: configuration from a map,
//! fixtures signed the way each provider signs them, and a clock the test
//! moves by hand.

// Each test crate and bench uses a different subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use terima_core::providers::{bitbybit, oms};
use terima_core::verify::FixedClock;
use terima_core::{Clock, Inspected, Provider, QueueMessage};
use terima_service::memory::MemoryStore;
use terima_service::process::{Extension, ExtensionError, Processed, WorkContext};
use terima_service::{EndpointConfig, Ingest, Metrics, Processor, ProcessorConfig};

/// "Now" for every test: 2024-01-23T08:53:20Z, in Unix seconds.
pub const NOW: i64 = 1_706_000_000;

pub const BEBASKIRIM_SECRET: &str = "bk-secret-2024";
pub const BITBYBIT_SECRET: &str = "bb-whsec-2024";
pub const OMS_SECRET: &str = "oms-secret-key";
pub const BITESHIP_SECRET: &str = "bs-token-2024";
pub const BITESHIP_HEADER: &str = "x-biteship-token";

/// The configuration variables of all four endpoints, plus `extra`
/// (which wins over the defaults).
pub fn lookup(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut map: HashMap<String, String> = [
        ("TERIMA_BEBASKIRIM_SECRETS", BEBASKIRIM_SECRET),
        ("TERIMA_BITBYBIT_SECRETS", BITBYBIT_SECRET),
        ("TERIMA_OMS_SECRETS", OMS_SECRET),
        ("TERIMA_BITESHIP_SECRETS", BITESHIP_SECRET),
        ("TERIMA_BITESHIP_HEADER", "X-Biteship-Token"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        map.insert((*k).to_owned(), (*v).to_owned());
    }
    move |name: &str| map.get(name).cloned()
}

pub fn config(provider: Provider, extra: &[(&str, &str)]) -> EndpointConfig {
    EndpointConfig::load(provider, &lookup(extra)).expect("test configuration is valid")
}

/// The endpoint's backends in memory: one store is the ack store, the queue
/// and the blob store.
pub type MemoryIngest = Ingest<MemoryStore, MemoryStore, MemoryStore>;

/// An endpoint over a fresh memory store, at [`NOW`].
pub fn ingest(provider: Provider, extra: &[(&str, &str)]) -> MemoryIngest {
    ingest_on(MemoryStore::new(), provider, extra)
}

/// An endpoint over `store`, at [`NOW`].
pub fn ingest_on(store: MemoryStore, provider: Provider, extra: &[(&str, &str)]) -> MemoryIngest {
    Ingest::new(
        config(provider, extra),
        store.clone(),
        store.clone(),
        store,
        Arc::new(FixedClock(NOW)),
        Metrics::Silent,
    )
}

/// An extension that claims every event and counts the runs of each event
/// id: "the business work ran once" is a count of 1.
#[derive(Clone, Default)]
pub struct Counting(pub Arc<std::sync::Mutex<HashMap<String, usize>>>);

impl Counting {
    pub fn runs(&self) -> HashMap<String, usize> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> usize {
        self.runs().values().sum()
    }
}

impl Extension for Counting {
    fn applies(&self, _: &Inspected) -> bool {
        true
    }

    async fn handle(&self, ctx: &WorkContext<'_>) -> Result<(), ExtensionError> {
        if let Ok(mut runs) = self.0.lock() {
            *runs.entry(ctx.event_id.to_owned()).or_default() += 1;
        }
        Ok(())
    }
}

pub fn processor_config() -> ProcessorConfig {
    ProcessorConfig {
        lease_millis: 90_000,
        concurrency: 4,
    }
}

/// A processor over `store`, at [`NOW`].
pub fn processor_on<E: Extension>(
    store: MemoryStore,
    extension: E,
) -> Processor<MemoryStore, MemoryStore, E> {
    Processor::new(
        processor_config(),
        store.clone(),
        store,
        extension,
        Arc::new(FixedClock(NOW)),
        Metrics::Silent,
    )
}

/// Processes every queued message (and what processing queues) until the
/// queue is empty; returns how many ran their work now.
pub async fn drain<E: Extension>(
    store: &MemoryStore,
    processor: &Processor<MemoryStore, MemoryStore, E>,
) -> usize {
    let mut done = 0;
    loop {
        let batch = store.drain_queue();
        if batch.is_empty() {
            return done;
        }
        for message in batch {
            match processor.process(&message.encode()).await {
                Ok(Processed::Done) => done += 1,
                Ok(Processed::AlreadyDone) => {}
                Err(e) => panic!("a queued message failed: {e}"),
            }
        }
    }
}

pub fn fixture_path(provider: Provider, stem: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures")
        .join(provider.name())
        .join(format!("{stem}.json"))
}

/// The raw bytes of a fixture, exactly as the provider sends them.
pub fn fixture(provider: Provider, stem: &str) -> Vec<u8> {
    let path = fixture_path(provider, stem);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()))
}

pub fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// One HTTP delivery: the headers and the raw body.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("test bodies are UTF-8")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.remove(name);
        self
    }
}

/// The event type a fixture stands for: its name without the `--variant`.
pub fn event_type_of(stem: &str) -> &str {
    stem.split("--").next().unwrap_or(stem)
}

/// `body` signed with the provider's configured secret and scheme, at [`NOW`].
/// BitByBit's event type and id travel in headers: `bitbybit` gives them.
pub fn signed(provider: Provider, body: &[u8], bitbybit: Option<(&str, &str)>) -> Delivery {
    signed_at(provider, body, bitbybit, NOW)
}

pub fn signed_at(
    provider: Provider,
    body: &[u8],
    bitbybit: Option<(&str, &str)>,
    unix: i64,
) -> Delivery {
    let d = Delivery {
        headers: HeaderMap::new(),
        body: body.to_vec(),
    };
    match provider {
        Provider::BebasKirim => d.header("authorization", BEBASKIRIM_SECRET),
        Provider::Oms => {
            let event_type = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["event"]["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            d.header(
                oms::SIGNATURE_HEADER,
                &format!("sha256={}", hmac_hex(OMS_SECRET, &[body])),
            )
            .header(oms::EVENT_HEADER, &event_type)
            .header("content-type", "application/json")
        }
        Provider::Biteship => d.header(BITESHIP_HEADER, BITESHIP_SECRET),
        Provider::BitByBit => {
            let (event_type, id) = bitbybit.expect("BitByBit deliveries need an event type and id");
            let t = unix.to_string();
            let mac = hmac_hex(BITBYBIT_SECRET, &[t.as_bytes(), b".", body]);
            d.header(bitbybit::SIGNATURE_HEADER, &format!("t={t},v1={mac}"))
                .header(bitbybit::ID_HEADER, id)
                .header(bitbybit::EVENT_HEADER, event_type)
                .header(bitbybit::TIMESTAMP_HEADER, &t)
        }
    }
}

/// A fixture as a signed delivery. BitByBit's event id is derived from the
/// fixture's name, so one fixture is one delivery.
pub fn delivery(provider: Provider, stem: &str) -> Delivery {
    let body = fixture(provider, stem);
    let id = format!("evt_{}", stem.replace(['.', '-'], "_"));
    signed(provider, &body, Some((event_type_of(stem), &id)))
}

/// The queue message the ack path builds for `delivery`, taken from the queue
/// of a throw-away endpoint.
pub async fn queue_message(provider: Provider, delivery: &Delivery) -> QueueMessage {
    let endpoint = ingest(provider, &[]);
    let reply = endpoint
        .handle(&delivery.headers, &delivery.body, "req-build")
        .await;
    assert_eq!(
        reply.status, 200,
        "building a queue message: {}",
        reply.body
    );
    let mut queued = endpoint.queue().queued();
    assert_eq!(queued.len(), 1, "one delivery, one message");
    queued.remove(0)
}

/// A clock the test moves by hand, in Unix milliseconds. Clones share time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at_unix(secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(secs * 1_000)))
    }

    pub fn advance_millis(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.advance_millis(secs * 1_000);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
