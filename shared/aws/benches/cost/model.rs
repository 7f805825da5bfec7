//! The cost model: drives fresh events, duplicates and processor batches
//! through the real clients against the emulator, counts every AWS request,
//! and prices it. Shared by `cargo bench -p terima-aws --bench cost` (the
//! full run) and the suite's short run (`tests/cost.rs`).
//!
//! Each phase runs in a child process (this same executable), as a function
//! would: its standard output is the function's log, counted byte by byte,
//! its own tracing subscriber is Lambda's (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! level INFO, as `template.yaml` sets), and its metrics are the EMF lines
//! the functions print.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use terima_aws::{DynamoStore, S3Blobs, SqsQueue};
use terima_core::{Clock, Provider, SystemClock};
use terima_service::config::DEFAULT_RETENTION_DAYS;
use terima_service::{EndpointConfig, Ingest, Metrics, Processor, ProcessorConfig};
use tracing::Instrument as _;

use crate::common::{Backends, sdk_config, test_env, workspace_root};
use crate::meter::{Invocation, Meter, Tally, item_size};

/// List prices, us-east-1, as published on the AWS pricing pages on
/// 2026-11-30 (on-demand, after the free tier).
pub mod prices {
    pub const DATE: &str = "2026-11-30";
    pub const REGION: &str = "us-east-1";
    /// API Gateway HTTP API, per request (first 300 million a month).
    pub const API_REQUEST: f64 = 1.00e-6;
    /// Lambda on arm64: per request and per GB-second.
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// DynamoDB on-demand: per write and read request unit; storage per
    /// GB-month.
    pub const DDB_WRITE_UNIT: f64 = 0.625e-6;
    pub const DDB_READ_UNIT: f64 = 0.125e-6;
    pub const DDB_GB_MONTH: f64 = 0.25;
    /// SQS standard queue, per request (64 KB chunk).
    pub const SQS_REQUEST: f64 = 0.40e-6;
    /// S3: PUT and GET per request, storage per GB-month (Standard, then
    /// Standard-IA from day 30), and the transition to IA per object.
    pub const S3_PUT: f64 = 5.0e-6;
    pub const S3_GET: f64 = 0.4e-6;
    pub const S3_GB_MONTH: f64 = 0.023;
    pub const S3_IA_GB_MONTH: f64 = 0.0125;
    pub const S3_IA_TRANSITION: f64 = 10.0e-6;
    /// CloudWatch Logs: ingestion per GB (standard class), storage per
    /// GB-month.
    pub const LOGS_INGEST_GB: f64 = 0.50;
    pub const LOGS_GB_MONTH: f64 = 0.03;
}

/// A parameter's default in `template.yaml`: the costs follow the stack as
/// it deploys.
fn template_default(name: &str) -> f64 {
    let template =
        std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml");
    let start = template
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("template.yaml has no parameter {name}"));
    template[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix("Default:"))
        .and_then(|v| v.trim().trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("{name} has no numeric default"))
}

/// What the stack is configured with.
struct Stack {
    provider_memory_mb: f64,
    processor_memory_mb: f64,
    retention_days: f64,
    archive_days: f64,
    log_retention_days: f64,
}

impl Stack {
    fn from_template() -> Self {
        Self {
            provider_memory_mb: template_default("ProviderMemorySize"),
            processor_memory_mb: template_default("ProcessorMemorySize"),
            retention_days: template_default("EventRetentionDays"),
            archive_days: template_default("ArchiveRetentionDays"),
            log_retention_days: template_default("LogRetentionDays"),
        }
    }
}

/// The processor's `TERIMA_CONCURRENCY` in `template.yaml`: records of a batch run at once.
const PROCESSOR_CONCURRENCY: usize = 8;
const DAYS_PER_MONTH: f64 = 30.44;
/// One vCPU per 1,769 MB of Lambda memory (Lambda's documentation): a
/// function at 128 MB runs its own code 13.8 times slower than a full core.
const MB_PER_VCPU: f64 = 1769.0;
/// A DynamoDB or SQS call inside the region, end to end (the emulator's own
/// latency is measured and set aside: it is not AWS's).
const ROUND_TRIP: Duration = Duration::from_millis(10);
/// CloudWatch Logs counts 26 bytes of overhead per log event.
const LOG_EVENT_OVERHEAD: f64 = 26.0;
/// DynamoDB counts 100 bytes of overhead per stored item.
const ITEM_OVERHEAD: f64 = 100.0;
/// Events the archive packs in one object (`terima_aws::archive`).
const PART_EVENTS: f64 = terima_aws::archive::PART_EVENTS as f64;
/// The events are stamped this long ago, so that the archive finds their
/// day due (it archives days between 15 and 29 days old).
const AGE_MILLIS: i64 = 20 * 86_400_000;

pub const GOAL_FRESH: f64 = 5.00;
pub const GOAL_DUPLICATE: f64 = 3.00;

/// The system clock, set back by [`AGE_MILLIS`].
struct Aged;

impl Clock for Aged {
    fn now_millis(&self) -> i64 {
        SystemClock.now_millis() - AGE_MILLIS
    }
}

/// What a child process measured.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PhaseResult {
    tally: Tally,
    invocations: Vec<Invocation>,
    /// Records per invocation (1 for the ack).
    records: Vec<usize>,
    /// Events the phase handled.
    events: usize,
    /// Answers by label, for the checks.
    answers: Vec<String>,
}

/// A phase and its log.
struct Measured {
    result: PhaseResult,
    log_bytes: u64,
    log_lines: u64,
}

/// The names a child needs.
#[derive(Debug, Serialize, Deserialize)]
struct Target {
    table: String,
    queue_url: String,
    bucket: String,
}

/// Runs a phase if this process is a child; returns whether it was one.
pub fn child() -> bool {
    let Ok(phase) = std::env::var("TERIMA_COST_PHASE") else {
        return false;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    lambda_runtime::tracing::init_default_subscriber();
    let result = runtime.block_on(run_phase(&phase));
    let out = std::env::var("TERIMA_COST_OUT").expect("TERIMA_COST_OUT");
    std::fs::write(out, serde_json::to_vec(&result).expect("serialisable"))
        .expect("writes the result");
    true
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn number(name: &str) -> usize {
    var(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

struct Clients {
    meter: Meter,
    store: DynamoStore,
    queue: SqsQueue,
    blobs: S3Blobs,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn clients(target: &Target) -> Clients {
    let sdk = sdk_config().await;
    let meter = Meter::new(aws_sdk_dynamodb::Client::new(&sdk));
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(meter.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(meter.clone())
            .build(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .interceptor(meter.clone())
            .build(),
    );
    let blobs = S3Blobs::new(s3, &target.bucket);
    Clients {
        store: DynamoStore::new(dynamodb, &target.table, DEFAULT_RETENTION_DAYS)
            .with_blobs(blobs.clone()),
        queue: SqsQueue::new(sqs.clone(), &target.queue_url),
        blobs,
        sqs,
        queue_url: target.queue_url.clone(),
        meter,
    }
}

async fn run_phase(phase: &str) -> PhaseResult {
    let target: Target = serde_json::from_str(&var("TERIMA_COST_TARGET")).expect("a target");
    let clients = clients(&target).await;
    let result = match phase {
        "ack" => {
            ack(
                &clients,
                &var("TERIMA_COST_SET"),
                number("TERIMA_COST_EVENTS"),
            )
            .await
        }
        "process" => {
            process(
                &clients,
                number("TERIMA_COST_PER_RECEIVE"),
                number("TERIMA_COST_BATCH"),
            )
            .await
        }
        "archive" => archive(&clients).await,
        other => panic!("no phase {other}"),
    };
    PhaseResult {
        tally: clients.meter.take(),
        ..result
    }
}

/// A 1 KB Bebas Kirim `order.packed` delivery as API Gateway hands it to
/// the function, for order `n` of a set.
fn delivery(set: &str, n: usize, request: usize) -> lambda_http::Request {
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/bebaskirim/order.packed.json"))
            .expect("the sample"),
    )
    .expect("JSON");
    let items: Vec<Value> = (0..4)
        .map(|i| {
            json!({
                "sku": format!("SKU-{set}-{n:05}-{i}"),
                "name": "Kemeja Batik Lengan Panjang Motif Parang",
                "quantity": 1 + i,
                "price": 189_000,
            })
        })
        .collect();
    let body = json!({
        "event": "order.packed",
        "timestamp": "2026-11-10T10:00:00Z",
        "tenant_id": "TEN-2024-001",
        "data": {
            "order_id": format!("ORD-{set}-{n:06}"),
            "order_number": format!("BBS-{set}-{n:06}"),
            "status": "packed",
            "updated_at": "2026-11-10T10:00:00Z",
            "warehouse_code": "WH-JKT-01",
            "items": items,
            "shipping_address": {
                "name": "Siti Rahayu",
                "phone": "+6281234567890",
                "address": "Jl. Jenderal Sudirman No. 45, RT 01/RW 02",
                "city": "Jakarta Selatan",
                "postal_code": "12190",
            },
        },
    })
    .to_string();
    let mut event = sample;
    event["body"] = body.clone().into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["requestContext"]["requestId"] = format!("req-{set}-{n:06}-{request}").into();
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event")
}

async fn ack(clients: &Clients, set: &str, events: usize) -> PhaseResult {
    let ingest = Ingest::new(
        EndpointConfig::load(Provider::BebasKirim, &test_env(&[])).expect("configuration"),
        clients.store.clone(),
        clients.queue.clone(),
        clients.blobs.clone(),
        Arc::new(Aged),
        Metrics::Emf,
    );
    let round: usize = std::env::var("TERIMA_COST_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or_default();
    let mut result = PhaseResult::default();
    for n in 0..events {
        let request = delivery(set, n, round);
        let span = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = %format!("{:08x}-invoke-{set}-{n:06}-{round}", n),
            xrayTraceId = "Root=1-6565b0a0-3f1c2b7d9e8a4c5b6d7e8f90;Parent=53995c3f42cd8ad8;Sampled=0"
        );
        let mark = clients.meter.mark();
        let began = Instant::now();
        let response = terima_aws::lambda::answer(&ingest, request)
            .instrument(span)
            .await;
        result
            .invocations
            .push(clients.meter.invocation(mark, began));
        result.records.push(1);
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        result.answers.push(format!(
            "{} {}",
            response.status().as_u16(),
            body["status"].as_str().unwrap_or_default()
        ));
    }
    result.events = events;
    result
}

/// The event source mapping, as Lambda runs it: receive messages (at most
/// `per_receive` a call), invoke the processor with up to `batch` of them,
/// delete what succeeded, until the queue is empty.
async fn process(clients: &Clients, per_receive: usize, batch: usize) -> PhaseResult {
    // One record at a time here: the requests and capacity are the same,
    // the emulator is spared concurrent writes (moto's threaded server has
    // hung under them), and the billed time is modelled for the deployed
    // concurrency (`billed_millis`).
    let processor = Processor::new(
        ProcessorConfig {
            lease_millis: 300_000,
            concurrency: 1,
        },
        clients.store.clone(),
        clients.blobs.clone(),
        (),
        Arc::new(Aged),
        Metrics::Emf,
    );
    let mut result = PhaseResult::default();
    let mut drained = false;
    while !drained {
        let mut messages = Vec::new();
        while messages.len() < batch {
            let before = clients.meter.take();
            let out = clients
                .sqs
                .receive_message()
                .queue_url(&clients.queue_url)
                .max_number_of_messages(
                    i32::try_from(per_receive.min(batch - messages.len())).unwrap_or(10),
                )
                .send()
                .await
                .expect("receive");
            let received = out.messages.unwrap_or_default();
            if received.is_empty() {
                // The event source mapping's idle polling is a fixed cost
                // per month, not a cost per event: not counted.
                let _ = clients.meter.take();
                clients.meter.add(&before);
                drained = true;
                break;
            }
            clients.meter.add(&before);
            messages.extend(received);
        }
        if messages.is_empty() {
            break;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id.clone();
                record.body = m.body.clone();
                record
            })
            .collect();
        let span = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = %format!("{:08x}-batch-0000-0000-000000000000", result.invocations.len()),
            xrayTraceId = "Root=1-6565b0a0-3f1c2b7d9e8a4c5b6d7e8f90;Parent=53995c3f42cd8ad8;Sampled=0"
        );
        let mark = clients.meter.mark();
        let began = Instant::now();
        let response = terima_aws::lambda::handle_batch(&processor, event)
            .instrument(span)
            .await;
        result
            .invocations
            .push(clients.meter.invocation(mark, began));
        result.records.push(messages.len());
        result.events += messages.len();
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let is_failed =
            |m: &aws_sdk_sqs::types::Message| failed.contains(&m.message_id().unwrap_or_default());
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !is_failed(m))
            .filter_map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        result.answers.extend(
            messages
                .iter()
                .map(|m| if is_failed(m) { "failed" } else { "done" }.to_owned()),
        );
        if !entries.is_empty() {
            clients
                .sqs
                .delete_message_batch()
                .queue_url(&clients.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete");
        }
    }
    result
}

async fn archive(clients: &Clients) -> PhaseResult {
    let archived = terima_aws::archive::run(
        &clients.store,
        &clients.blobs,
        terima_core::Timestamp::from_unix_millis(SystemClock.now_millis()),
        template_default("ArchiveRetentionDays") as i64,
        Duration::from_secs(600),
    )
    .await
    .expect("archives");
    PhaseResult {
        events: archived,
        ..PhaseResult::default()
    }
}

/// Runs one phase in a child process; returns what it measured and its log.
fn spawn(target: &Target, phase: &str, env: &[(&str, String)]) -> Measured {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("result.json");
    let mut command = Command::new(std::env::current_exe().expect("this executable"));
    command
        .env("TERIMA_COST_PHASE", phase)
        .env(
            "TERIMA_COST_TARGET",
            serde_json::to_string(target).expect("JSON"),
        )
        .env("TERIMA_COST_OUT", &out)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("starts the phase");
    let mut log = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut log)
        .expect("reads the log");
    let status = child.wait().expect("the phase ends");
    assert!(status.success(), "phase {phase} failed: {status}");
    eprintln!(
        "phase {phase} {env:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let result: PhaseResult =
        serde_json::from_slice(&std::fs::read(&out).expect("the phase's result")).expect("JSON");
    // The log, for whoever wants to see what was counted.
    static SEQUENCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let logs = workspace_root().join("target/cost");
    if std::fs::create_dir_all(&logs).is_ok() {
        let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name: Vec<String> = env.iter().map(|(_, v)| v.clone()).collect();
        let _ = std::fs::write(
            logs.join(format!("{n:02}-{phase}-{}.log", name.join("-"))),
            &log,
        );
    }
    Measured {
        result,
        log_bytes: log.len() as u64,
        log_lines: log.iter().filter(|b| **b == b'\n').count() as u64,
    }
}

/// An invocation's billed milliseconds at `memory_mb`: its own code at the
/// function's share of a vCPU, plus its round trips to AWS.
fn billed_millis(invocation: &Invocation, records: usize, memory_mb: f64) -> f64 {
    let cpu = invocation.compute.as_secs_f64() * 1000.0 * (MB_PER_VCPU / memory_mb).max(1.0);
    // Records run `PROCESSOR_CONCURRENCY` at a time, each making its calls
    // one after the other; the ack's calls are counted in waves.
    let trips = if records > 1 {
        let rounds = records.div_ceil(PROCESSOR_CONCURRENCY) as f64;
        rounds * (invocation.calls as f64 / records as f64)
    } else {
        invocation.waves as f64
    };
    (cpu + trips * ROUND_TRIP.as_secs_f64() * 1000.0)
        .ceil()
        .max(1.0)
}

/// Dollars per event of one function's invocations, and the mean billed
/// milliseconds of an invocation.
fn lambda_cost(m: &Measured, memory_mb: f64) -> (f64, f64) {
    let events = m.result.events.max(1) as f64;
    let millis: f64 = m
        .result
        .invocations
        .iter()
        .zip(&m.result.records)
        .map(|(invocation, records)| billed_millis(invocation, *records, memory_mb))
        .sum();
    let invocations = m.result.invocations.len() as f64;
    let cost = (invocations * prices::LAMBDA_REQUEST
        + millis / 1000.0 * memory_mb / 1024.0 * prices::LAMBDA_GB_SECOND)
        / events;
    (cost, millis / invocations.max(1.0))
}

/// The API's access log line for one request, from the template's format.
fn access_log_bytes() -> f64 {
    let template =
        std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml");
    let start = template.find("AccessLogSettings:").expect("access logs");
    let format = template[start..]
        .split_once("Format: >-")
        .expect("a format")
        .1
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("          "))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let values = [
        ("$context.requestId", "bd/Uaio716ed7cI="),
        ("$context.requestTimeEpoch", "1796040000000"),
        ("$context.identity.sourceIp", "203.0.113.10"),
        ("$context.routeKey", "POST /webhooks/bebaskirim"),
        ("$context.status", "200"),
        ("$context.responseLatency", "21"),
        ("$context.integrationStatus", "200"),
        ("$context.integrationErrorMessage", "-"),
    ];
    let mut line = format;
    for (name, value) in values {
        line = line.replace(name, value);
    }
    assert!(
        !line.contains("$context"),
        "an access log field without a sample value: {line}"
    );
    line.len() as f64 + 1.0
}

/// Bytes stored per event in the table: the event's own items (they
/// expire) and the resource states (they do not).
struct Stored {
    expiring: f64,
    lasting: f64,
}

async fn stored(b: &Backends, events: usize) -> Stored {
    let mut expiring = 0.0;
    let mut lasting = 0.0;
    for item in b.items().await {
        let size = item_size(&item) as f64 + ITEM_OVERHEAD;
        if item.contains_key("expires_at") {
            expiring += size;
        } else {
            lasting += size;
        }
    }
    Stored {
        expiring: expiring / events as f64,
        lasting: lasting / events as f64,
    }
}

/// Starts the emulator this run counts against, runs this executable again
/// with it, stops it, and returns the run's exit code; `None` in the run
/// itself.
///
/// The run has an emulator of its own, moto's stock threaded server, not the
/// suite's one-request-at-a-time server (`scripts/moto_serial.py`): the
/// meter reads an item's size while a call of the code under measure may
/// have opened a connection it has not yet written to, and a serial server
/// would wait on that connection for ever. Nothing here races on one item.
/// The virtual environment is the project's, which `scripts/env.sh` creates
/// when it is missing.
pub fn with_own_emulator() -> Option<i32> {
    if std::env::var_os("TERIMA_COST_EMULATOR").is_some() {
        return None;
    }
    let root = workspace_root();
    let status = Command::new("bash")
        .arg("-c")
        .arg("source scripts/env.sh")
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .expect("bash runs");
    assert!(status.success(), "scripts/env.sh could not set up .venv");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut moto = Command::new(root.join(".venv/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts moto_server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}");
    let status = Command::new(std::env::current_exe().expect("this executable"))
        .args(std::env::args_os().skip(1))
        .env("TERIMA_COST_EMULATOR", &url)
        .env("TERIMA_TEST_AWS_ENDPOINT", &url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .status();
    let _ = moto.kill();
    let _ = moto.wait();
    Some(status.expect("the run ends").code().unwrap_or(1))
}

/// How the event source mapping batches at a steady `rate`: Lambda polls
/// with five pollers, each gathering for up to the batching window (or ten
/// records); at a trickle each receive returns one message.
struct Batching {
    per_receive: usize,
    batch: usize,
}

fn batching(rate: f64, window_secs: f64) -> Batching {
    const POLLERS: f64 = 5.0;
    let gathered = rate * window_secs / POLLERS;
    // The mean size of a batch that holds at least one record.
    let mean = if gathered > 0.0 {
        gathered / (1.0 - (-gathered).exp())
    } else {
        1.0
    };
    Batching {
        per_receive: if rate >= 10.0 { 10 } else { 1 },
        batch: (mean.round() as usize).clamp(1, 10),
    }
}

/// One column of the table: a steady rate.
struct Column {
    name: &'static str,
    rate: f64,
    batching: Batching,
}

/// What a column measured.
struct Phases {
    fresh_ack: Measured,
    fresh_process: Measured,
    duplicate_ack: Measured,
    duplicate_process: Measured,
}

/// The whole run: prints the tables; returns (fresh, duplicate) dollars per
/// million at the worse of the two rates.
pub fn run(events: usize) -> (f64, f64) {
    let stack = Stack::from_template();
    let window = template_default("ProcessorBatchingWindowSeconds");
    let columns = [
        Column {
            name: "1 event/s",
            rate: 1.0,
            batching: batching(1.0, window),
        },
        Column {
            name: "1,000 events/s",
            rate: 1_000.0,
            batching: batching(1_000.0, window),
        },
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let b = runtime.block_on(Backends::new(1_000, 300));
    let empty = runtime.block_on(Backends::new(1_000, 300));
    let target = |b: &Backends| Target {
        table: b.table.clone(),
        queue_url: b.queue_url.clone(),
        bucket: b.bucket.clone(),
    };
    let n = events.to_string();
    println!(
        "cost model: {events} fresh 1 KB Bebas Kirim events and {events} duplicates per column, against the emulator"
    );
    let phases: Vec<Phases> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let set = ["a", "b"][i];
            let ack = |round: usize| {
                spawn(
                    &target(&b),
                    "ack",
                    &[
                        ("TERIMA_COST_SET", set.to_owned()),
                        ("TERIMA_COST_EVENTS", n.clone()),
                        ("TERIMA_COST_ROUND", round.to_string()),
                    ],
                )
            };
            let process = || {
                spawn(
                    &target(&b),
                    "process",
                    &[
                        (
                            "TERIMA_COST_PER_RECEIVE",
                            column.batching.per_receive.to_string(),
                        ),
                        ("TERIMA_COST_BATCH", column.batching.batch.to_string()),
                    ],
                )
            };
            let fresh_ack = ack(0);
            let fresh_process = process();
            // The same deliveries again: duplicates.
            let duplicate_ack = ack(1);
            let duplicate_process = process();
            Phases {
                fresh_ack,
                fresh_process,
                duplicate_ack,
                duplicate_process,
            }
        })
        .collect();
    let stored = runtime.block_on(stored(&b, 2 * events));
    let archive = spawn(&target(&b), "archive", &[]);
    let archive_empty = spawn(&target(&empty), "archive", &[]);

    for p in &phases {
        check(&p.fresh_ack, events, "200 accepted");
        check(&p.duplicate_ack, events, "200 duplicate");
        for process in [&p.fresh_process, &p.duplicate_process] {
            assert_eq!(
                process.result.events, events,
                "every queued event was processed once"
            );
            assert!(
                process.result.answers.iter().all(|a| a == "done"),
                "a record failed"
            );
        }
    }
    assert_eq!(
        archive.result.events,
        2 * events,
        "the archive took every event"
    );

    let access = access_log_bytes();
    let archiving = Archiving::from(&archive, &archive_empty);
    let fresh = rows(
        &stack,
        &columns,
        &phases,
        true,
        access,
        Some((&archiving, &stored)),
    );
    let duplicate = rows(&stack, &columns, &phases, false, access, None);
    let names = [columns[0].name, columns[1].name];
    let totals = [
        print_table("fresh event", &names, &fresh),
        print_table("duplicate", &names, &duplicate),
    ];
    println!();
    for column in &columns {
        println!(
            "{}: the event source mapping receives {} message(s) a call and invokes the processor with {} (batching window {window} s, 5 pollers)",
            column.name, column.batching.per_receive, column.batching.batch
        );
    }
    println!(
        "not per event: the resource states, {:.0} B each here, cost ${:.2} per million resources a year in DynamoDB",
        stored.lasting,
        stored.lasting / 1e9 * 12.0 * prices::DDB_GB_MONTH * 1e6
    );
    println!(
        "prices: {} list prices as of {}; Lambda arm64 at {} MB (provider) and {} MB (processor), billed per ms: its own code at the memory's share of a vCPU plus {} ms per round trip to AWS",
        prices::REGION,
        prices::DATE,
        stack.provider_memory_mb,
        stack.processor_memory_mb,
        ROUND_TRIP.as_millis()
    );
    let worst = |t: [f64; 2]| t.iter().copied().fold(0.0, f64::max) * 1e6;
    let (fresh_worst, duplicate_worst) = (worst(totals[0]), worst(totals[1]));
    println!("cost per million duplicates: ${duplicate_worst:.2}");
    println!("cost per million fresh events: ${fresh_worst:.2}");
    (fresh_worst, duplicate_worst)
}

fn check(m: &Measured, events: usize, answer: &str) {
    let matching = m.result.answers.iter().filter(|a| *a == answer).count();
    assert_eq!(
        matching, events,
        "expected {events} x {answer}: {:?}",
        m.result.answers
    );
}

fn per_event(m: &Measured, f: impl Fn(&Tally) -> f64) -> f64 {
    f(&m.result.tally) / m.result.events.max(1) as f64
}

fn sqs_cost(t: &Tally) -> f64 {
    (t.sqs_send_units
        + (t.count("SQS:ReceiveMessage")
            + t.count("SQS:DeleteMessageBatch")
            + t.count("SQS:DeleteMessage")) as f64)
        * prices::SQS_REQUEST
}

fn dynamodb_cost(t: &Tally) -> f64 {
    t.write_units * prices::DDB_WRITE_UNIT + t.read_units * prices::DDB_READ_UNIT
}

fn s3_cost(t: &Tally) -> f64 {
    t.count("S3:PutObject") as f64 * prices::S3_PUT
        + t.count("S3:GetObject") as f64 * prices::S3_GET
}

/// Requests and capacity per event, for the table.
fn describe(t: &Tally, events: usize, prefix: &str) -> String {
    let events = events.max(1) as f64;
    let mut parts: Vec<String> = t
        .requests
        .iter()
        .filter_map(|(k, v)| {
            let op = k.strip_prefix(prefix)?;
            Some(format!("{op} {:.2}", *v as f64 / events))
        })
        .collect();
    if prefix == "DynamoDB:" {
        parts.push(format!("{:.2} WRU", t.write_units / events));
        parts.push(format!("{:.2} RRU", t.read_units / events));
    }
    parts.join(", ")
}

/// The archive's cost, split into what grows with the events and what each
/// (day, shard) costs whatever it holds: the run on the events' table minus
/// the same run on an empty one.
struct Archiving {
    /// Read units per event archived.
    reads_per_event: f64,
    /// Dollars per archive object (the PUT, the move to IA, the marker).
    per_part: f64,
    /// Dollars per (day, shard) checked: the marker and an empty query.
    per_shard_day: f64,
    /// Gzip'd bytes per event.
    bytes_per_event: f64,
}

impl Archiving {
    fn from(full: &Measured, empty: &Measured) -> Self {
        let (t, e) = (&full.result.tally, &empty.result.tally);
        let events = full.result.events.max(1) as f64;
        let parts = t.count("S3:PutObject").max(1) as f64;
        let shard_days = e.count("DynamoDB:GetItem").max(1) as f64;
        let per_shard_day = dynamodb_cost(e) / shard_days;
        let extra_reads = (t.read_units - e.read_units).max(0.0);
        let extra_writes = (t.write_units - e.write_units).max(0.0);
        Self {
            reads_per_event: extra_reads / events,
            per_part: prices::S3_PUT
                + prices::S3_IA_TRANSITION
                + extra_writes / parts * prices::DDB_WRITE_UNIT,
            per_shard_day,
            bytes_per_event: t.s3_put_bytes as f64 / events,
        }
    }

    /// Dollars per event at a steady `rate`.
    fn cost(&self, rate: f64) -> f64 {
        let per_shard_day = rate * 86_400.0 / 16.0;
        let parts = (per_shard_day / PART_EVENTS).ceil();
        self.reads_per_event * prices::DDB_READ_UNIT
            + (parts * self.per_part + self.per_shard_day) / per_shard_day
    }
}

/// One line of a table: dollars per event for each column.
struct Row {
    name: String,
    detail: String,
    per_event: [f64; 2],
}

fn rows(
    stack: &Stack,
    columns: &[Column; 2],
    phases: &[Phases],
    fresh: bool,
    access_log: f64,
    archive: Option<(&Archiving, &Stored)>,
) -> Vec<Row> {
    let ack = |i: usize| {
        if fresh {
            &phases[i].fresh_ack
        } else {
            &phases[i].duplicate_ack
        }
    };
    let process = |i: usize| {
        if fresh {
            &phases[i].fresh_process
        } else {
            &phases[i].duplicate_process
        }
    };
    let both = |f: &dyn Fn(usize) -> f64| [f(0), f(1)];
    let mut rows = vec![Row {
        name: "API Gateway HTTP API".into(),
        detail: "1 request".into(),
        per_event: [prices::API_REQUEST; 2],
    }];
    let ack_lambda = [0, 1].map(|i| lambda_cost(ack(i), stack.provider_memory_mb));
    rows.push(Row {
        name: "provider Lambda".into(),
        detail: format!(
            "1 invocation, {:.0} ms billed at {} MB",
            ack_lambda[1].1, stack.provider_memory_mb
        ),
        per_event: both(&|i| ack_lambda[i].0),
    });
    rows.push(Row {
        name: "ack: DynamoDB".into(),
        detail: describe(&ack(1).result.tally, ack(1).result.events, "DynamoDB:"),
        per_event: both(&|i| per_event(ack(i), dynamodb_cost)),
    });
    rows.push(Row {
        name: "ack: SQS".into(),
        detail: format!(
            "{:.2} SendMessage units",
            per_event(ack(1), |t| t.sqs_send_units)
        ),
        per_event: both(&|i| per_event(ack(i), sqs_cost)),
    });
    rows.push(Row {
        name: "event source mapping: SQS".into(),
        detail: [0, 1]
            .map(|i| {
                format!(
                    "{}: {}",
                    columns[i].name,
                    describe(&process(i).result.tally, process(i).result.events, "SQS:")
                )
            })
            .join("; "),
        per_event: both(&|i| per_event(process(i), sqs_cost)),
    });
    rows.push(Row {
        name: "claim check: S3".into(),
        detail: "bodies over the 192 KiB inline limit only".into(),
        per_event: both(&|i| per_event(ack(i), s3_cost) + per_event(process(i), s3_cost)),
    });
    let processor_lambda = [0, 1].map(|i| lambda_cost(process(i), stack.processor_memory_mb));
    rows.push(Row {
        name: "processor Lambda".into(),
        detail: [0, 1]
            .map(|i| {
                format!(
                    "batch {}: {:.0} ms",
                    columns[i].batching.batch, processor_lambda[i].1
                )
            })
            .join(", ")
            + &format!(" billed at {} MB", stack.processor_memory_mb),
        per_event: both(&|i| processor_lambda[i].0),
    });
    rows.push(Row {
        name: "processor: DynamoDB".into(),
        detail: describe(
            &process(1).result.tally,
            process(1).result.events,
            "DynamoDB:",
        ),
        per_event: both(&|i| per_event(process(i), dynamodb_cost)),
    });
    let log_bytes = |i: usize| {
        let (a, p) = (ack(i), process(i));
        let events = a.result.events.max(1) as f64;
        (a.log_bytes + p.log_bytes) as f64 / events
            + (a.log_lines + p.log_lines) as f64 * LOG_EVENT_OVERHEAD / events
            + access_log
            + LOG_EVENT_OVERHEAD
    };
    let log_months = stack.log_retention_days / DAYS_PER_MONTH;
    rows.push(Row {
        name: "CloudWatch Logs".into(),
        detail: format!(
            "{:.0} B/event (function logs with their metrics, {:.0} B of access log), kept {} days",
            log_bytes(1),
            access_log,
            stack.log_retention_days
        ),
        per_event: both(&|i| {
            log_bytes(i) / 1e9 * (prices::LOGS_INGEST_GB + prices::LOGS_GB_MONTH * log_months)
        }),
    });
    if let Some((archiving, stored)) = archive {
        rows.push(Row {
            name: "archive (maintenance)".into(),
            detail: format!(
                "{:.2} RRU/event reading the log; an object per {} events of a shard-day",
                archiving.reads_per_event, PART_EVENTS
            ),
            per_event: both(&|i| archiving.cost(columns[i].rate)),
        });
        let months = |days: f64| days / DAYS_PER_MONTH;
        let s3 = archiving.bytes_per_event / 1e9
            * (prices::S3_GB_MONTH * months(30.0)
                + prices::S3_IA_GB_MONTH * months(stack.archive_days - 30.0));
        let dynamodb = stored.expiring * months(stack.retention_days) / 1e9 * prices::DDB_GB_MONTH;
        rows.push(Row {
            name: "storage".into(),
            detail: format!(
                "DynamoDB {:.0} B/event for {} days; S3 archive {:.0} B/event for {} days",
                stored.expiring,
                stack.retention_days,
                archiving.bytes_per_event,
                stack.archive_days
            ),
            per_event: [dynamodb + s3; 2],
        });
    }
    rows.push(Row {
        name: "X-Ray".into(),
        detail: "TracingMode PassThrough by default; HTTP APIs are not traced".into(),
        per_event: [0.0; 2],
    });
    rows
}

fn print_table(kind: &str, columns: &[&str; 2], rows: &[Row]) -> [f64; 2] {
    println!();
    println!(
        "| per {kind} | counted per event | {} $/M | {} $/M |",
        columns[0], columns[1]
    );
    println!("|---|---|---:|---:|");
    let mut totals = [0.0; 2];
    for row in rows {
        println!(
            "| {} | {} | {:.2} | {:.2} |",
            row.name,
            row.detail,
            row.per_event[0] * 1e6,
            row.per_event[1] * 1e6
        );
        totals[0] += row.per_event[0];
        totals[1] += row.per_event[1];
    }
    println!(
        "| **total** | | **{:.2}** | **{:.2}** |",
        totals[0] * 1e6,
        totals[1] * 1e6
    );
    totals
}
