//! The CPU cost of accepting one delivery: verify the signature, then read
//! the event (parse, dedup key, resource), on a ~2 KB body per provider.
//!
//! Each provider is compared with a floor: one HMAC-SHA256 over the same
//! bytes plus `serde_json::from_slice::<Value>` of them, i.e. what any
//! receiver that authenticates and looks at the JSON must pay. For the
//! static-token providers the floor is the same HMAC + parse, so that all four
//! are measured against one yardstick.
//!
//! Goal: under 10 µs per event, and within 3x of the floor.
//!
//!   cargo bench -p terima-core --bench ingest
//!
//! The table printed at the end uses the median of the per-iteration times
//! criterion collected for each benchmark.

use std::cell::RefCell;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;
use terima_core::providers::{TypedEvent, bebaskirim, bitbybit, oms};
use terima_core::verify::{DEFAULT_TIMESTAMP_TOLERANCE_SECS, FixedClock};
use terima_core::{Provider, Scheme, SecretSet, Verifier, inspect};

type HmacSha256 = Hmac<Sha256>;

const SECRET: &str = "whsec_bench_0123456789abcdef";
const SIGNED_AT: i64 = 1_705_314_600;
/// The size the padded bodies aim at.
const TARGET_BYTES: usize = 2_048;
const GOAL_NS: f64 = 10_000.0;
const GOAL_RATIO: f64 = 3.0;

/// One provider's delivery, as the endpoint receives it.
struct Case {
    provider: Provider,
    /// Which fixture the body grew from.
    source: &'static str,
    body: Vec<u8>,
    headers: HeaderMap,
    verifier: Verifier,
}

fn fixture(provider: Provider, stem: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider.name())
        .join(format!("{stem}.json"));
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("fixtures are JSON")
}

/// Appends `make(n)` to the array at `path` until the body is about
/// `TARGET_BYTES` long.
fn pad(mut body: Value, path: &[&str], pretty: bool, make: impl Fn(usize) -> Value) -> Vec<u8> {
    let encode = |v: &Value| {
        if pretty {
            serde_json::to_vec_pretty(v).expect("serialises")
        } else {
            serde_json::to_vec(v).expect("serialises")
        }
    };
    for n in 0.. {
        let len = encode(&body).len();
        let mut grown = body.clone();
        let mut node = &mut grown;
        for key in path {
            node = node
                .as_object_mut()
                .expect("an object on the path")
                .entry(*key)
                .or_insert_with(|| json!([]));
        }
        node.as_array_mut().expect("an array").push(make(n));
        // Stop at whichever of the two sizes is closer to the target.
        let next = encode(&grown).len();
        if next.abs_diff(TARGET_BYTES) > len.abs_diff(TARGET_BYTES) {
            break;
        }
        body = grown;
    }
    encode(&body)
}

fn hmac_hex(parts: &[&[u8]]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn secrets() -> SecretSet {
    SecretSet::parse(SECRET).expect("one secret")
}

fn header(map: &mut HeaderMap, name: &str, value: &str) {
    map.insert(
        HeaderName::from_bytes(name.as_bytes()).expect("header name"),
        HeaderValue::from_str(value).expect("header value"),
    );
}

fn bebaskirim_case() -> Case {
    // A purchase order with many lines: typed, with prices in rupiah.
    let body = pad(
        fixture(Provider::BebasKirim, "purchase.created"),
        &["data", "items"],
        true,
        |n| {
            json!({
                "item_id": format!("ITEM-2024-{:03}", n + 2),
                "quantity": 10 + n,
                "unit_price": 12_500,
                "discount_percent": 0,
                "discount_amount": 0,
                "total_price": 12_500 * (10 + n),
                "notes": "Restock"
            })
        },
    );
    let mut headers = HeaderMap::new();
    header(&mut headers, "authorization", &format!("Bearer {SECRET}"));
    Case {
        provider: Provider::BebasKirim,
        source: "purchase.created",
        body,
        headers,
        verifier: Verifier::new(
            Scheme::StaticToken {
                header: http::header::AUTHORIZATION,
                bearer: true,
            },
            secrets(),
        ),
    }
}

fn bitbybit_case() -> Case {
    let body = pad(
        fixture(Provider::BitByBit, "order.created"),
        &["lineItems"],
        true,
        |n| {
            json!({
                "id": format!("li_{:03}", n + 2),
                "quantity": 1 + n % 3,
                "price": 75_000,
                "title": "Premium T-Shirt"
            })
        },
    );
    let t = SIGNED_AT.to_string();
    let mut headers = HeaderMap::new();
    header(&mut headers, bitbybit::EVENT_HEADER, "order.created");
    header(
        &mut headers,
        bitbybit::ID_HEADER,
        "whd_01HNBENCH000000000000",
    );
    header(&mut headers, bitbybit::TIMESTAMP_HEADER, &t);
    header(
        &mut headers,
        bitbybit::SIGNATURE_HEADER,
        &format!("t={t},v1={}", hmac_hex(&[t.as_bytes(), b".", &body])),
    );
    Case {
        provider: Provider::BitByBit,
        source: "order.created",
        body,
        headers,
        verifier: Verifier::new(
            Scheme::TimestampedHmac {
                header: HeaderName::from_static(bitbybit::SIGNATURE_HEADER),
                tolerance_secs: DEFAULT_TIMESTAMP_TOLERANCE_SECS,
            },
            secrets(),
        ),
    }
}

fn oms_case() -> Case {
    let body = pad(
        fixture(Provider::Oms, "package.status.shipped"),
        &["payload", "items"],
        false,
        |n| {
            json!({
                "id": 2003 + n,
                "sku": format!("TSH-{:03}", n + 2),
                "product_name": "Pamuklu Ti\u{15f}\u{f6}rt",
                "quantity": 1,
                "price": "149.90"
            })
        },
    );
    let mut headers = HeaderMap::new();
    header(&mut headers, oms::EVENT_HEADER, "package.status.shipped");
    header(
        &mut headers,
        oms::SIGNATURE_HEADER,
        &format!("sha256={}", hmac_hex(&[&body])),
    );
    Case {
        provider: Provider::Oms,
        source: "package.status.shipped",
        body,
        headers,
        verifier: Verifier::new(
            Scheme::BodyHmac {
                header: HeaderName::from_static(oms::SIGNATURE_HEADER),
            },
            secrets(),
        ),
    }
}

fn biteship_case() -> Case {
    // The documented fields plus the order's items, which real deliveries
    // may carry and the model ignores.
    let body = pad(
        fixture(Provider::Biteship, "order.status--updated-at"),
        &["items"],
        false,
        |n| {
            json!({
                "name": format!("Kaos Polos {}", n + 1),
                "description": "Cotton, size L",
                "value": 85_000,
                "quantity": 1,
                "weight": 250
            })
        },
    );
    let mut headers = HeaderMap::new();
    header(&mut headers, "x-biteship-token", SECRET);
    Case {
        provider: Provider::Biteship,
        source: "order.status--updated-at",
        body,
        headers,
        verifier: Verifier::new(
            Scheme::StaticToken {
                header: HeaderName::from_static("x-biteship-token"),
                bearer: false,
            },
            secrets(),
        ),
    }
}

/// What the endpoint does with one delivery.
fn ingest(case: &Case, clock: &FixedClock) {
    let verified = case
        .verifier
        .verify(&case.headers, black_box(&case.body), clock)
        .expect("the bench delivery verifies");
    black_box(verified);
    let inspected = inspect(case.provider, &case.headers, black_box(&case.body))
        .expect("the bench delivery reads");
    black_box((&inspected.reading, &inspected.digest));
}

/// The floor: one HMAC over the bytes and a generic parse of them.
fn floor(body: &[u8]) {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(black_box(body));
    black_box(mac.finalize().into_bytes());
    let value: Value = serde_json::from_slice(black_box(body)).expect("JSON");
    black_box(value);
}

/// Checks, once, that the case reads as its typed event and not as the
/// raw-JSON fallback: a benchmark of the fallback would measure nothing useful.
fn check(case: &Case) {
    let clock = FixedClock(SIGNED_AT);
    case.verifier
        .verify(&case.headers, &case.body, &clock)
        .expect("verifies");
    let inspected = inspect(case.provider, &case.headers, &case.body).expect("reads");
    let typed = match &inspected.typed() {
        TypedEvent::BebasKirim(e) => !matches!(e.data, bebaskirim::Data::Other(_)),
        TypedEvent::BitByBit(e) => !matches!(e, bitbybit::Event::Other(_)),
        TypedEvent::Oms(e) => !matches!(e.payload, oms::Payload::Other(_)),
        TypedEvent::Biteship(e) => e.unreadable.is_none(),
    };
    assert!(
        typed,
        "{}: the padded body fell back to raw JSON",
        case.provider
    );
    assert!(!inspected.reading.dedup_key.is_empty());
}

/// Runs one benchmark and returns the median nanoseconds per iteration of
/// the samples criterion took (`None` when a filter skipped it).
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    mut routine: impl FnMut(),
) -> Option<f64> {
    let samples = RefCell::new(Vec::<f64>::new());
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                routine();
            }
            let elapsed = start.elapsed();
            samples
                .borrow_mut()
                .push(elapsed.as_nanos() as f64 / iters.max(1) as f64);
            elapsed
        });
    });
    let mut samples = samples.into_inner();
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    Some(samples[samples.len() / 2])
}

struct Row {
    provider: Provider,
    source: &'static str,
    bytes: usize,
    event_ns: Option<f64>,
    floor_ns: Option<f64>,
    /// verify, inspect, HMAC, from_slice::<Value>.
    parts: [Option<f64>; 4],
}

fn main() {
    let cases = [
        bebaskirim_case(),
        bitbybit_case(),
        oms_case(),
        biteship_case(),
    ];
    for case in &cases {
        check(case);
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let clock = FixedClock(SIGNED_AT);
    let mut rows = Vec::new();
    for case in &cases {
        let mut group = criterion.benchmark_group(format!("ingest/{}", case.provider));
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        let event_ns = measure(&mut group, "verify+inspect", || ingest(case, &clock));
        let floor_ns = measure(&mut group, "floor hmac+from_slice", || floor(&case.body));
        // The parts, to see where the time goes.
        let verify_ns = measure(&mut group, "part verify", || {
            let verified = case
                .verifier
                .verify(&case.headers, black_box(&case.body), &clock);
            black_box(verified.expect("verifies"));
        });
        let inspect_ns = measure(&mut group, "part inspect", || {
            let inspected = inspect(case.provider, &case.headers, black_box(&case.body));
            black_box(inspected.expect("reads"));
        });
        let hmac_ns = measure(&mut group, "part hmac", || {
            let mut mac =
                <HmacSha256 as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key");
            mac.update(black_box(&case.body));
            black_box(mac.finalize().into_bytes());
        });
        let parse_ns = measure(&mut group, "part from_slice", || {
            let value: Value = serde_json::from_slice(black_box(&case.body)).expect("JSON");
            black_box(value);
        });
        group.finish();
        rows.push(Row {
            provider: case.provider,
            source: case.source,
            bytes: case.body.len(),
            event_ns,
            floor_ns,
            parts: [verify_ns, inspect_ns, hmac_ns, parse_ns],
        });
    }
    criterion.final_summary();
    // `cargo bench` passes --bench; without it (`cargo test --benches`)
    // criterion runs each routine once, and the figures would mean nothing.
    if std::env::args().any(|arg| arg == "--bench") {
        print_table(&rows);
    }
}

fn print_table(rows: &[Row]) {
    let ns = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    println!();
    println!("ingest: verify + inspect per event vs floor (HMAC-SHA256 + from_slice::<Value>)");
    println!(
        "{:<11} {:<25} {:>6} {:>10} {:>10} {:>6}  goal (<{} ns, <={}x)",
        "provider", "body from", "bytes", "ns/event", "floor ns", "ratio", GOAL_NS, GOAL_RATIO
    );
    for row in rows {
        let ratio = row.event_ns.zip(row.floor_ns).map(|(e, f)| e / f);
        let goal = match (row.event_ns, ratio) {
            (Some(e), Some(r)) if e < GOAL_NS && r <= GOAL_RATIO => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "-",
        };
        println!(
            "{:<11} {:<25} {:>6} {:>10} {:>10} {:>6}  {}",
            row.provider.name(),
            row.source,
            row.bytes,
            ns(row.event_ns),
            ns(row.floor_ns),
            ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            goal
        );
    }
    println!();
    println!("where the time goes (ns)");
    println!(
        "{:<11} {:>10} {:>10} {:>10} {:>12}",
        "provider", "verify", "inspect", "hmac", "from_slice"
    );
    for row in rows {
        let [verify, inspect, hmac, parse] = row.parts;
        println!(
            "{:<11} {:>10} {:>10} {:>10} {:>12}",
            row.provider.name(),
            ns(verify),
            ns(inspect),
            ns(hmac),
            ns(parse)
        );
    }
}
