//! The sample Lambda events in `events/`, generated from the payload fixtures
//! in `shared/core/tests/fixtures/<provider>/` and signed with the test-only
//! secrets in `events/test-secrets.env`.
//!
//! The same files serve `cargo lambda invoke --data-file`, `sam local invoke
//! -e` and the tests, so they must stay in step with the fixtures and the
//! secrets: [`generate`] builds every file in memory, deterministically (fixed
//! times and ids, no randomness), and [`drift`] lists what differs on disk.
//!
//! What is written:
//! - `<provider>/<event_type>.json`: an API Gateway HTTP API (payload 2.0)
//!   event for each canonical fixture (a name without `--`), signed as the
//!   provider signs;
//! - `bebaskirim/order.to_process--base64.json`: the same with a base64 body;
//! - `biteship/order.status--rest-v1.json`: a REST API (payload 1.0) event;
//! - `biteship/probe.json`: Biteship's installation probe (`{}`, no secret);
//! - `processor/batch.json` and `processor/<provider>.json`: SQS events whose
//!   bodies are the queue messages the provider functions would send.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};
use terima_core::providers::{bitbybit, oms};
use terima_core::{Provider, QueueMessage, Timestamp, inspect};
use terima_service::config::parse_env_file;

/// The signed time of every sample (`t=` of BitByBit's signature), and the
/// request time of every event: 2024-01-20T15:30:00Z.
pub const SIGNED_AT: i64 = 1_705_764_600;

/// The file under `events/` holding the test-only secrets. Hand-written, not
/// generated.
pub const SECRETS_FILE: &str = "test-secrets.env";

/// Files under `events/` that the generator reads but does not write.
pub const HAND_WRITTEN: &[&str] = &[SECRETS_FILE];

/// The region and account the samples pretend to run in.
const REGION: &str = "ap-southeast-3";
const ACCOUNT: &str = "123456789012";
const API_ID: &str = "terima0api";
const SOURCE_IP: &str = "203.0.113.10";

/// The event each provider contributes to the processor's samples.
pub const PROCESSOR_SAMPLES: [(Provider, &str); 4] = [
    (Provider::BebasKirim, "order.to_process"),
    (Provider::BitByBit, "order.created"),
    (Provider::Oms, "package.created"),
    (Provider::Biteship, "order.status"),
];

/// Why generation failed.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(message: impl Into<String>) -> Error {
    Error(message.into())
}

pub type Result<T> = std::result::Result<T, Error>;

/// `events/` of the workspace rooted at `root`.
pub fn events_dir(root: &Path) -> PathBuf {
    root.join("events")
}

/// `shared/core/tests/fixtures` of the workspace rooted at `root`.
pub fn fixtures_dir(root: &Path) -> PathBuf {
    root.join("shared")
        .join("core")
        .join("tests")
        .join("fixtures")
}

/// The workspace root, from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

// ---------------------------------------------------------------------------
// Test secrets
// ---------------------------------------------------------------------------

/// Parses an env file (see `terima_service::config::parse_env_file`).
pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>> {
    parse_env_file(text).map_err(|e| err(e.to_string()))
}

/// Reads `events/test-secrets.env`.
pub fn read_secrets(root: &Path) -> Result<BTreeMap<String, String>> {
    let path = events_dir(root).join(SECRETS_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
    parse_env(&text)
}

/// The first secret of a provider's list: the one the samples are signed with.
fn signing_secret(secrets: &BTreeMap<String, String>, provider: Provider) -> Result<String> {
    let var = format!("TERIMA_{}_SECRETS", provider.env_infix());
    secrets
        .get(&var)
        .and_then(|list| list.split(',').map(str::trim).find(|s| !s.is_empty()))
        .map(str::to_owned)
        .ok_or_else(|| err(format!("{SECRETS_FILE} does not set {var}")))
}

fn biteship_header(secrets: &BTreeMap<String, String>) -> Result<String> {
    secrets
        .get("TERIMA_BITESHIP_HEADER")
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            err(format!(
                "{SECRETS_FILE} does not set TERIMA_BITESHIP_HEADER"
            ))
        })
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// One canonical fixture: an event type and its exact bytes.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub provider: Provider,
    pub event_type: String,
    pub body: String,
}

/// The canonical fixtures of a provider (names without `--`), by event type.
pub fn read_fixtures(root: &Path, provider: Provider) -> Result<Vec<Fixture>> {
    let dir = fixtures_dir(root).join(provider.name());
    let entries =
        std::fs::read_dir(&dir).map_err(|e| err(format!("reading {}: {e}", dir.display())))?;
    let mut fixtures = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| err(format!("reading {}: {e}", dir.display())))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(event_type) = name.strip_suffix(".json") else {
            continue;
        };
        // Variants (`--`) are for the parser's tests, and include Biteship's
        // probe, which gets its own sample below.
        if event_type.contains("--") {
            continue;
        }
        let body = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        fixtures.push(Fixture {
            provider,
            event_type: event_type.to_owned(),
            body,
        });
    }
    fixtures.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    if fixtures.is_empty() {
        return Err(err(format!("no fixtures in {}", dir.display())));
    }
    Ok(fixtures)
}

// ---------------------------------------------------------------------------
// Deterministic ids
// ---------------------------------------------------------------------------

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A UUID-shaped id (version 4 layout) derived from a label.
fn uuid_from(label: &str) -> String {
    let mut b = sha256(label);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An API Gateway request id (`JKJaXmPLvHcESHA=`) derived from a label.
fn api_request_id(label: &str) -> String {
    BASE64.encode(&sha256(label)[..11])
}

fn trace_id(label: &str) -> String {
    format!("Root=1-{SIGNED_AT:x}-{}", hex::encode(&sha256(label)[..12]))
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> Result<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|e| err(format!("HMAC key: {e}")))?;
    for part in parts {
        mac.update(part);
    }
    let bytes: [u8; 32] = mac.finalize().into_bytes().into();
    Ok(hex::encode(bytes))
}

// ---------------------------------------------------------------------------
// Signing: the headers each provider sends
// ---------------------------------------------------------------------------

/// The headers a provider sends with `body`, lower-case names, as they reach
/// the function through an HTTP API. Only the provider's own headers; the
/// API Gateway ones are added by [`http_api_event`].
pub fn provider_headers(
    provider: Provider,
    event_type: &str,
    body: &str,
    secrets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let secret = signing_secret(secrets, provider)?;
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    match provider {
        Provider::BebasKirim => {
            headers.insert("authorization".to_owned(), secret);
        }
        Provider::BitByBit => {
            let t = SIGNED_AT.to_string();
            let v1 = hmac_hex(&secret, &[t.as_bytes(), b".", body.as_bytes()])?;
            headers.insert(
                bitbybit::SIGNATURE_HEADER.to_owned(),
                format!("t={t},v1={v1}"),
            );
            headers.insert(
                bitbybit::ID_HEADER.to_owned(),
                format!("evt_{}", event_type.replace('.', "_")),
            );
            headers.insert(bitbybit::EVENT_HEADER.to_owned(), event_type.to_owned());
            headers.insert(bitbybit::TIMESTAMP_HEADER.to_owned(), t);
            headers.insert("user-agent".to_owned(), "BitByBit-Webhooks/1.0".to_owned());
        }
        Provider::Oms => {
            let mac = hmac_hex(&secret, &[body.as_bytes()])?;
            headers.insert(oms::SIGNATURE_HEADER.to_owned(), format!("sha256={mac}"));
            headers.insert(oms::EVENT_HEADER.to_owned(), event_type.to_owned());
        }
        Provider::Biteship => {
            headers.insert(biteship_header(secrets)?.to_ascii_lowercase(), secret);
        }
    }
    Ok(headers)
}

/// The header map the function would see, for inspection.
pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| err(format!("header {name}: {e}")))?;
        let value = HeaderValue::from_str(value).map_err(|e| err(format!("header {name}: {e}")))?;
        map.insert(name, value);
    }
    Ok(map)
}

// ---------------------------------------------------------------------------
// API Gateway events
// ---------------------------------------------------------------------------

fn domain() -> String {
    format!("{API_ID}.execute-api.{REGION}.amazonaws.com")
}

/// `20/Jan/2024:15:30:00 +0000`, API Gateway's request time format.
const REQUEST_TIME: &str = "20/Jan/2024:15:30:00 +0000";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpApiEvent {
    version: &'static str,
    route_key: String,
    raw_path: String,
    raw_query_string: &'static str,
    headers: BTreeMap<String, String>,
    request_context: HttpApiContext,
    body: String,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpApiContext {
    account_id: &'static str,
    api_id: &'static str,
    domain_name: String,
    domain_prefix: &'static str,
    http: HttpApiHttp,
    request_id: String,
    route_key: String,
    stage: &'static str,
    time: &'static str,
    time_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpApiHttp {
    method: &'static str,
    path: String,
    protocol: &'static str,
    source_ip: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
}

fn route(provider: Provider) -> String {
    format!("/webhooks/{}", provider.name())
}

/// The headers API Gateway adds in front of the provider's.
fn gateway_headers(label: &str, body_len: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("content-length".to_owned(), body_len.to_string()),
        ("host".to_owned(), domain()),
        ("x-amzn-trace-id".to_owned(), trace_id(label)),
        ("x-forwarded-for".to_owned(), SOURCE_IP.to_owned()),
        ("x-forwarded-port".to_owned(), "443".to_owned()),
        ("x-forwarded-proto".to_owned(), "https".to_owned()),
    ])
}

/// An HTTP API (payload 2.0) event carrying `body` with the provider's headers.
fn http_api_event(
    provider: Provider,
    label: &str,
    provider_headers: BTreeMap<String, String>,
    body: &str,
    base64: bool,
) -> HttpApiEvent {
    let path = route(provider);
    let route_key = format!("POST {path}");
    let mut headers = gateway_headers(label, body.len());
    let user_agent = provider_headers.get("user-agent").cloned();
    headers.extend(provider_headers);
    HttpApiEvent {
        version: "2.0",
        route_key: route_key.clone(),
        raw_path: path.clone(),
        raw_query_string: "",
        headers,
        request_context: HttpApiContext {
            account_id: ACCOUNT,
            api_id: API_ID,
            domain_name: domain(),
            domain_prefix: API_ID,
            http: HttpApiHttp {
                method: "POST",
                path,
                protocol: "HTTP/1.1",
                source_ip: SOURCE_IP,
                user_agent,
            },
            request_id: api_request_id(label),
            route_key,
            stage: "$default",
            time: REQUEST_TIME,
            time_epoch: SIGNED_AT * 1_000,
        },
        body: if base64 {
            BASE64.encode(body.as_bytes())
        } else {
            body.to_owned()
        },
        is_base64_encoded: base64,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestApiEvent {
    resource: String,
    path: String,
    http_method: &'static str,
    headers: BTreeMap<String, String>,
    multi_value_headers: BTreeMap<String, Vec<String>>,
    query_string_parameters: Option<()>,
    multi_value_query_string_parameters: Option<()>,
    path_parameters: Option<()>,
    stage_variables: Option<()>,
    request_context: RestApiContext,
    body: String,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestApiContext {
    account_id: &'static str,
    api_id: &'static str,
    domain_name: String,
    domain_prefix: &'static str,
    extended_request_id: String,
    http_method: &'static str,
    identity: RestApiIdentity,
    path: String,
    protocol: &'static str,
    request_id: String,
    request_time: &'static str,
    request_time_epoch: i64,
    resource_id: &'static str,
    resource_path: String,
    stage: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestApiIdentity {
    source_ip: &'static str,
    user_agent: Option<String>,
}

/// Header names as a REST API passes them: as the sender wrote them.
fn canonical_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A REST API (payload 1.0) event: headers keep their case, the stage is in
/// the path.
fn rest_api_event(
    provider: Provider,
    label: &str,
    provider_headers: BTreeMap<String, String>,
    body: &str,
    secret_header: Option<&str>,
) -> RestApiEvent {
    let resource = route(provider);
    let mut lower = gateway_headers(label, body.len());
    lower.extend(provider_headers);
    let headers: BTreeMap<String, String> = lower
        .into_iter()
        .map(|(name, value)| {
            // The secret header keeps the exact spelling typed in the dashboard.
            let name = match secret_header {
                Some(original) if original.eq_ignore_ascii_case(&name) => original.to_owned(),
                _ => canonical_case(&name),
            };
            (name, value)
        })
        .collect();
    let multi_value_headers = headers
        .iter()
        .map(|(k, v)| (k.clone(), vec![v.clone()]))
        .collect();
    RestApiEvent {
        resource: resource.clone(),
        path: resource.clone(),
        http_method: "POST",
        headers,
        multi_value_headers,
        query_string_parameters: None,
        multi_value_query_string_parameters: None,
        path_parameters: None,
        stage_variables: None,
        request_context: RestApiContext {
            account_id: ACCOUNT,
            api_id: API_ID,
            domain_name: domain(),
            domain_prefix: API_ID,
            extended_request_id: api_request_id(&format!("{label}/extended")),
            http_method: "POST",
            identity: RestApiIdentity {
                source_ip: SOURCE_IP,
                user_agent: None,
            },
            path: format!("/prod{resource}"),
            protocol: "HTTP/1.1",
            request_id: uuid_from(label),
            request_time: REQUEST_TIME,
            request_time_epoch: SIGNED_AT * 1_000,
            resource_id: "a1b2c3",
            resource_path: resource,
            stage: "prod",
        },
        body: body.to_owned(),
        is_base64_encoded: false,
    }
}

// ---------------------------------------------------------------------------
// SQS events for the processor
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct SqsEvent {
    #[serde(rename = "Records")]
    records: Vec<SqsRecord>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SqsRecord {
    message_id: String,
    receipt_handle: String,
    body: String,
    attributes: SqsAttributes,
    message_attributes: BTreeMap<&'static str, SqsMessageAttribute>,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: String,
    aws_region: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SqsAttributes {
    approximate_receive_count: &'static str,
    sent_timestamp: String,
    sender_id: String,
    approximate_first_receive_timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SqsMessageAttribute {
    string_value: String,
    string_list_values: Vec<String>,
    binary_list_values: Vec<String>,
    data_type: &'static str,
}

fn string_attribute(value: &str) -> SqsMessageAttribute {
    SqsMessageAttribute {
        string_value: value.to_owned(),
        string_list_values: Vec::new(),
        binary_list_values: Vec::new(),
        data_type: "String",
    }
}

/// The function name SAM gives a provider function in a stack named `terima`.
fn function_name(provider: Provider) -> &'static str {
    match provider {
        Provider::BebasKirim => "terima-BebasKirimFunction-AbCdEf012345",
        Provider::BitByBit => "terima-BitByBitFunction-AbCdEf012345",
        Provider::Oms => "terima-OmsFunction-AbCdEf012345",
        Provider::Biteship => "terima-BiteshipFunction-AbCdEf012345",
    }
}

/// The queue message a provider function sends for this delivery, as the
/// processor receives it. `index` spaces the receive times one second apart.
pub fn queue_message(
    provider: Provider,
    headers: &BTreeMap<String, String>,
    body: &str,
    index: i64,
) -> Result<QueueMessage> {
    let map = header_map(headers)?;
    let inspected = inspect(provider, &map, body.as_bytes())
        .map_err(|e| err(format!("{provider} fixture does not inspect: {e}")))?;
    let received_at = Timestamp::from_unix_millis(SIGNED_AT * 1_000 + 250 + index * 1_000);
    let request_id = uuid_from(&format!(
        "lambda-request/{provider}/{}",
        inspected.reading.event_type
    ));
    Ok(QueueMessage::new(
        &inspected,
        &map,
        body,
        received_at,
        &request_id,
    ))
}

fn sqs_record(message: &QueueMessage) -> SqsRecord {
    let label = format!("sqs/{}/{}", message.provider, message.event_type);
    let sent = message.received_at.unix_millis() + 37;
    let receipt = BASE64.encode(sha256(&format!("{label}/receipt")).repeat(3));
    SqsRecord {
        message_id: uuid_from(&label),
        receipt_handle: format!("AQEB{receipt}"),
        body: message.encode(),
        attributes: SqsAttributes {
            approximate_receive_count: "1",
            sent_timestamp: sent.to_string(),
            sender_id: format!("AROAEXAMPLEROLEID00000:{}", function_name(message.provider)),
            approximate_first_receive_timestamp: (sent + 15).to_string(),
        },
        message_attributes: BTreeMap::from([
            ("event_type", string_attribute(&message.event_type)),
            ("provider", string_attribute(message.provider.name())),
            ("resource_kind", string_attribute(&message.resource.kind)),
        ]),
        event_source: "aws:sqs",
        event_source_arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT}:terima-Queue-AbCdEf012345"),
        aws_region: REGION,
    }
}

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

fn pretty<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| err(format!("serialising: {e}")))?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// Every generated file, by path relative to `events/` (with `/`), and its
/// exact bytes.
pub fn generate(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let secrets = read_secrets(root)?;
    let mut files = BTreeMap::new();
    let mut samples = Vec::new();
    for provider in Provider::ALL {
        for fixture in read_fixtures(root, provider)? {
            let label = format!("{provider}/{}", fixture.event_type);
            let headers = provider_headers(provider, &fixture.event_type, &fixture.body, &secrets)?;
            let event = http_api_event(provider, &label, headers.clone(), &fixture.body, false);
            files.insert(format!("{label}.json"), pretty(&event)?);
            if PROCESSOR_SAMPLES.contains(&(provider, fixture.event_type.as_str())) {
                samples.push((provider, headers.clone(), fixture.body.clone()));
            }
            match (provider, fixture.event_type.as_str()) {
                (Provider::BebasKirim, "order.to_process") => {
                    let label = format!("{label}--base64");
                    let event = http_api_event(provider, &label, headers, &fixture.body, true);
                    files.insert(format!("{label}.json"), pretty(&event)?);
                }
                (Provider::Biteship, "order.status") => {
                    let label = format!("{label}--rest-v1");
                    let original = biteship_header(&secrets)?;
                    let event =
                        rest_api_event(provider, &label, headers, &fixture.body, Some(&original));
                    files.insert(format!("{label}.json"), pretty(&event)?);
                }
                _ => {}
            }
        }
    }

    // Biteship's installation probe: `{}` and no secret header.
    let probe_headers =
        BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]);
    let probe = http_api_event(
        Provider::Biteship,
        "biteship/probe",
        probe_headers,
        "{}",
        false,
    );
    files.insert("biteship/probe.json".to_owned(), pretty(&probe)?);

    if samples.len() != PROCESSOR_SAMPLES.len() {
        return Err(err("a processor sample's fixture is missing"));
    }
    samples.sort_by_key(|(provider, ..)| Provider::ALL.iter().position(|p| p == provider));
    let mut records = Vec::new();
    for (index, (provider, headers, body)) in (0_i64..).zip(samples) {
        let message = queue_message(provider, &headers, &body, index)?;
        let record = sqs_record(&message);
        files.insert(
            format!("processor/{provider}.json"),
            pretty(&SqsEvent {
                records: vec![sqs_record(&message)],
            })?,
        );
        records.push(record);
    }
    files.insert(
        "processor/batch.json".to_owned(),
        pretty(&SqsEvent { records })?,
    );
    Ok(files)
}

/// Every file under `events/`, by path relative to it (with `/`), except the
/// hand-written ones.
pub fn existing(root: &Path) -> Result<BTreeSet<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(format!("reading {}: {e}", dir.display()))),
        };
        for entry in entries {
            let entry = entry.map_err(|e| err(format!("reading {}: {e}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if entry.path().is_dir() {
                walk(&entry.path(), &rel, out)?;
            } else if !HAND_WRITTEN.contains(&rel.as_str()) {
                out.insert(rel);
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(&events_dir(root), "", &mut out)?;
    Ok(out)
}

/// How a file on disk differs from what the generator writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    Differs(String),
    Missing(String),
    Extra(String),
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Differs(p) => write!(f, "differs: events/{p}"),
            Self::Missing(p) => write!(f, "missing: events/{p}"),
            Self::Extra(p) => write!(f, "extra:   events/{p}"),
        }
    }
}

/// What differs between `generated` and `events/` on disk.
pub fn drift(root: &Path, generated: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Drift>> {
    let dir = events_dir(root);
    let mut found = Vec::new();
    for (rel, bytes) in generated {
        match std::fs::read(dir.join(rel)) {
            Ok(on_disk) if &on_disk == bytes => {}
            Ok(_) => found.push(Drift::Differs(rel.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found.push(Drift::Missing(rel.clone()))
            }
            Err(e) => return Err(err(format!("reading events/{rel}: {e}"))),
        }
    }
    for rel in existing(root)? {
        if !generated.contains_key(&rel) {
            found.push(Drift::Extra(rel));
        }
    }
    Ok(found)
}

/// Writes the generated files and removes extra ones. Returns how many files
/// changed.
pub fn write(root: &Path, generated: &BTreeMap<String, Vec<u8>>) -> Result<usize> {
    let dir = events_dir(root);
    let changes = drift(root, generated)?;
    for change in &changes {
        match change {
            Drift::Differs(rel) | Drift::Missing(rel) => {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| err(format!("creating {}: {e}", parent.display())))?;
                }
                std::fs::write(&path, &generated[rel])
                    .map_err(|e| err(format!("writing {}: {e}", path.display())))?;
            }
            Drift::Extra(rel) => {
                let path = dir.join(rel);
                std::fs::remove_file(&path)
                    .map_err(|e| err(format!("removing {}: {e}", path.display())))?;
            }
        }
    }
    Ok(changes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_parse_like_a_shell() {
        let vars = parse_env("# comment\n\nA=1\nexport B=\"two\"\nC='x,y'\n").expect("parses");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "x,y");
        assert!(parse_env("no equals sign").is_err());
    }

    #[test]
    fn ids_are_stable_and_shaped() {
        assert_eq!(uuid_from("x"), uuid_from("x"));
        let id = uuid_from("x");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(api_request_id("x").len(), 16);
    }

    #[test]
    fn rest_headers_are_capitalised() {
        assert_eq!(canonical_case("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_case("content-type"), "Content-Type");
    }

    #[test]
    fn bitbybit_signature_matches_the_documented_scheme() {
        // HMAC-SHA256("secret", "1705764600.{}"), computed with Python's hmac.
        let secrets = BTreeMap::from([("TERIMA_BITBYBIT_SECRETS".to_owned(), "secret".to_owned())]);
        let headers =
            provider_headers(Provider::BitByBit, "order.created", "{}", &secrets).expect("signs");
        assert_eq!(
            headers[bitbybit::SIGNATURE_HEADER],
            "t=1705764600,v1=2519a1564bedae32ec38155e5e496eef33a06d7e35f66cccf64204c0798a8b44"
        );
        assert_eq!(headers[bitbybit::ID_HEADER], "evt_order_created");
    }
}
