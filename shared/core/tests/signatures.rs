//! Webhook authentication against vectors computed outside the code under
//! test: every HMAC here comes from Python's `hmac` module, run during the
//! test, over the exact bytes the verifier sees.
//!
//! Covers the three schemes the providers use: BitByBit's timestamped HMAC,
//! Akinon's body HMAC and the static tokens of Bebas Kirim and Biteship.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use http::{HeaderMap, HeaderName, HeaderValue};
use terima_core::providers::{bitbybit, oms};
use terima_core::verify::{DEFAULT_TIMESTAMP_TOLERANCE_SECS, FixedClock};
use terima_core::{Scheme, SecretSet, Verification, Verified, Verifier, VerifyError};

// ---------------------------------------------------------------------------
// The independent oracle
// ---------------------------------------------------------------------------

/// Python computes the MAC: the key as hex in argv (any bytes), the body on
/// stdin (raw bytes, never decoded), and for the timestamped scheme the
/// timestamp text, joined as `"<t>.<body>"` by Python itself.
const PYTHON_HMAC: &str = r#"
import hashlib, hmac, sys
key = bytes.fromhex(sys.argv[1])
body = sys.stdin.buffer.read()
msg = sys.argv[2].encode("ascii") + b"." + body if len(sys.argv) > 2 else body
sys.stdout.write(hmac.new(key, msg, hashlib.sha256).hexdigest())
"#;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn python_hmac(key: &[u8], timestamp: Option<&str>, body: &[u8]) -> String {
    let mut command = Command::new(python());
    command.arg("-c").arg(PYTHON_HMAC).arg(hex::encode(key));
    if let Some(t) = timestamp {
        command.arg(t);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (set PYTHON to another interpreter if needed)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(body)
        .expect("body written to python");
    let out = child.wait_with_output().expect("python finishes");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = String::from_utf8(out.stdout).expect("python prints hex");
    assert_eq!(hex.len(), 64, "python printed {hex:?}");
    hex
}

/// HMAC-SHA256 over the raw body: Akinon's `sha256=<hex>`.
fn body_mac(key: &str, body: &[u8]) -> String {
    python_hmac(key.as_bytes(), None, body)
}

/// HMAC-SHA256 over `"<t>.<body>"`: BitByBit's `v1=`.
fn timestamped_mac(key: &str, t: i64, body: &[u8]) -> String {
    python_hmac(key.as_bytes(), Some(&t.to_string()), body)
}

#[test]
fn the_oracle_agrees_with_rfc_4231() {
    // RFC 4231, test case 2.
    assert_eq!(
        python_hmac(b"Jefe", None, b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Three secrets, oldest first, as during a rotation.
const ROTATION: [&str; 3] = ["whsec_2023_old", "whsec_2024_current", "whsec_2025_next"];
const WRONG: &str = "whsec_not_configured";

fn secrets(list: &[&str]) -> SecretSet {
    SecretSet::parse(&list.join(",")).expect("at least one secret")
}

fn fixture(provider: &str, stem: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
        .join(format!("{stem}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn name(text: &str) -> HeaderName {
    HeaderName::from_bytes(text.as_bytes()).expect("a header name")
}

fn one_header(header: &str, value: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        name(header),
        HeaderValue::from_bytes(value).expect("a valid header value"),
    );
    map
}

const BB: &str = "timestamped_hmac";
const OMS: &str = "body_hmac";
const TOKEN: &str = "static_token";

fn ok(scheme: &'static str, index: usize) -> Result<Verified, VerifyError> {
    Ok(Verified {
        scheme: Some(scheme),
        secret_index: Some(index),
    })
}

fn malformed(header: &str, reason: &'static str) -> Result<Verified, VerifyError> {
    Err(VerifyError::MalformedHeader {
        header: name(header),
        reason,
    })
}

/// Bodies that are not JSON text at all: the MAC is over bytes, so these
/// verify like any other.
const NOT_UTF8: &[u8] = b"\x00\xff\xfe{\"id\": \"\xc3\x28\"}\x80\n";

/// The body with one byte changed at `at`.
fn flipped(body: &[u8], at: usize) -> Vec<u8> {
    let mut copy = body.to_vec();
    copy[at] ^= 0x01;
    copy
}

// ---------------------------------------------------------------------------
// BitByBit: t=<unix>,v1=<hex>, HMAC over "<t>.<body>"
// ---------------------------------------------------------------------------

const BB_SIG: &str = bitbybit::SIGNATURE_HEADER;
/// The instant the deliveries below are signed at.
const T: i64 = 1_705_314_600;

fn bitbybit(list: &[&str], tolerance_secs: u64) -> Verifier {
    Verifier::new(
        Scheme::TimestampedHmac {
            header: name(BB_SIG),
            tolerance_secs,
        },
        secrets(list),
    )
}

fn bitbybit_default(list: &[&str]) -> Verifier {
    bitbybit(list, DEFAULT_TIMESTAMP_TOLERANCE_SECS)
}

fn bb_headers(value: &str) -> HeaderMap {
    one_header(BB_SIG, value.as_bytes())
}

fn bb_signed(key: &str, t: i64, body: &[u8]) -> HeaderMap {
    bb_headers(&format!("t={t},v1={}", timestamped_mac(key, t, body)))
}

#[test]
fn bitbybit_right_secret_verifies() {
    let body = fixture("bitbybit", "order.created");
    let v = bitbybit_default(&[ROTATION[1]]);
    let headers = bb_signed(ROTATION[1], T, &body);
    assert_eq!(v.verify(&headers, &body, &FixedClock(T)), ok(BB, 0));
    assert_eq!(v.verify(&headers, &body, &FixedClock(T + 12)), ok(BB, 0));
    // Spaces after commas and unknown fields are accepted.
    let mac = timestamped_mac(ROTATION[1], T, &body);
    let spaced = bb_headers(&format!("t={T}, v0=legacy, v1={mac}"));
    assert_eq!(v.verify(&spaced, &body, &FixedClock(T)), ok(BB, 0));
    let reordered = bb_headers(&format!("v1={mac},t={T}"));
    assert_eq!(v.verify(&reordered, &body, &FixedClock(T)), ok(BB, 0));
}

#[test]
fn bitbybit_wrong_secret_is_refused() {
    let body = fixture("bitbybit", "order.created");
    let v = bitbybit_default(&ROTATION);
    let headers = bb_signed(WRONG, T, &body);
    assert_eq!(
        v.verify(&headers, &body, &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn bitbybit_rotation_reports_the_matching_secret() {
    let body = fixture("bitbybit", "customer.updated");
    let v = bitbybit_default(&ROTATION);
    for (index, key) in ROTATION.iter().enumerate() {
        let headers = bb_signed(key, T, &body);
        assert_eq!(
            v.verify(&headers, &body, &FixedClock(T)),
            ok(BB, index),
            "{key}"
        );
    }
    // A sender that signs with two secrets lists two v1= entries: the first
    // unknown to us, the second our newest.
    let header = format!(
        "t={T},v1={},v1={}",
        timestamped_mac(WRONG, T, &body),
        timestamped_mac(ROTATION[2], T, &body)
    );
    assert_eq!(
        v.verify(&bb_headers(&header), &body, &FixedClock(T)),
        ok(BB, 2)
    );
    // Two of ours: the lowest configured index is reported.
    let header = format!(
        "t={T},v1={},v1={}",
        timestamped_mac(ROTATION[2], T, &body),
        timestamped_mac(ROTATION[1], T, &body)
    );
    assert_eq!(
        v.verify(&bb_headers(&header), &body, &FixedClock(T)),
        ok(BB, 1)
    );
    // Once the old secret is removed, a delivery signed with it is refused.
    let retired = bitbybit_default(&ROTATION[1..]);
    let headers = bb_signed(ROTATION[0], T, &body);
    assert_eq!(
        retired.verify(&headers, &body, &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn bitbybit_one_changed_byte_is_refused() {
    let body = fixture("bitbybit", "order.created");
    let v = bitbybit_default(&ROTATION);
    let headers = bb_signed(ROTATION[1], T, &body);
    for at in [0, body.len() / 2, body.len() - 1] {
        assert_eq!(
            v.verify(&headers, &flipped(&body, at), &FixedClock(T)),
            Err(VerifyError::NoSecretMatched),
            "byte {at}"
        );
    }
    let mut longer = body.clone();
    longer.push(b'\n');
    assert_eq!(
        v.verify(&headers, &longer, &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
    // The timestamp is signed too: moving it breaks the MAC.
    let mac = timestamped_mac(ROTATION[1], T, &body);
    let moved = bb_headers(&format!("t={},v1={mac}", T + 1));
    assert_eq!(
        v.verify(&moved, &body, &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn bitbybit_stale_and_future_timestamps_are_refused_at_300_s() {
    let body = fixture("bitbybit", "message.received");
    let v = bitbybit_default(&ROTATION);
    assert_eq!(DEFAULT_TIMESTAMP_TOLERANCE_SECS, 300);
    let headers = bb_signed(ROTATION[1], T, &body);
    assert_eq!(v.verify(&headers, &body, &FixedClock(T + 300)), ok(BB, 1));
    assert_eq!(v.verify(&headers, &body, &FixedClock(T - 300)), ok(BB, 1));
    assert_eq!(
        v.verify(&headers, &body, &FixedClock(T + 301)),
        Err(VerifyError::TimestampTooOld {
            age_secs: 301,
            tolerance_secs: 300
        })
    );
    assert_eq!(
        v.verify(&headers, &body, &FixedClock(T + 86_400)),
        Err(VerifyError::TimestampTooOld {
            age_secs: 86_400,
            tolerance_secs: 300
        })
    );
    assert_eq!(
        v.verify(&headers, &body, &FixedClock(T - 301)),
        Err(VerifyError::TimestampInFuture {
            ahead_secs: 301,
            tolerance_secs: 300
        })
    );
    // The age is checked whatever the MAC: a replayed old delivery says so.
    let replay = bb_signed(WRONG, T, &body);
    assert_eq!(
        v.verify(&replay, &body, &FixedClock(T + 3_600)),
        Err(VerifyError::TimestampTooOld {
            age_secs: 3_600,
            tolerance_secs: 300
        })
    );
    // Extreme timestamps do not overflow.
    let far = bb_signed(ROTATION[1], i64::MIN, &body);
    assert!(matches!(
        v.verify(&far, &body, &FixedClock(i64::MAX)),
        Err(VerifyError::TimestampTooOld { .. })
    ));
}

#[test]
fn bitbybit_custom_tolerance_is_honoured() {
    let body = fixture("bitbybit", "message.received");
    let v = bitbybit(&ROTATION, 30);
    let headers = bb_signed(ROTATION[0], T, &body);
    assert_eq!(v.verify(&headers, &body, &FixedClock(T + 30)), ok(BB, 0));
    assert_eq!(v.verify(&headers, &body, &FixedClock(T - 30)), ok(BB, 0));
    assert_eq!(
        v.verify(&headers, &body, &FixedClock(T + 31)),
        Err(VerifyError::TimestampTooOld {
            age_secs: 31,
            tolerance_secs: 30
        })
    );
    assert_eq!(
        v.verify(&headers, &body, &FixedClock(T - 31)),
        Err(VerifyError::TimestampInFuture {
            ahead_secs: 31,
            tolerance_secs: 30
        })
    );
    // A zero tolerance accepts only the very second.
    let strict = bitbybit(&ROTATION, 0);
    assert_eq!(strict.verify(&headers, &body, &FixedClock(T)), ok(BB, 0));
    assert_eq!(
        strict.verify(&headers, &body, &FixedClock(T + 1)),
        Err(VerifyError::TimestampTooOld {
            age_secs: 1,
            tolerance_secs: 0
        })
    );
}

#[test]
fn bitbybit_missing_header_is_named() {
    let body = fixture("bitbybit", "order.created");
    let v = bitbybit_default(&ROTATION);
    assert_eq!(
        v.verify(&HeaderMap::new(), &body, &FixedClock(T)),
        Err(VerifyError::MissingHeader(name(BB_SIG)))
    );
    // Right value, wrong header.
    let mac = timestamped_mac(ROTATION[0], T, &body);
    let elsewhere = one_header(oms::SIGNATURE_HEADER, format!("t={T},v1={mac}").as_bytes());
    assert_eq!(
        v.verify(&elsewhere, &body, &FixedClock(T)),
        Err(VerifyError::MissingHeader(name(BB_SIG)))
    );
}

#[test]
fn bitbybit_garbled_headers_are_malformed_with_a_reason() {
    let body = fixture("bitbybit", "order.created");
    let v = bitbybit_default(&ROTATION);
    let mac = timestamped_mac(ROTATION[0], T, &body);
    let seventeen = std::iter::repeat_n(format!("v1={mac}"), 17)
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(Vec<u8>, &'static str)> = vec![
        (
            format!("t={T},v1={}", "zz".repeat(32)).into(),
            "signature is not hex",
        ),
        (
            format!("t={T},v1=abcd").into(),
            "signature is not 64 hex digits",
        ),
        (
            format!("t={T},v1={}", &mac[..63]).into(),
            "signature is not 64 hex digits",
        ),
        (
            format!("t={T},v1={mac}00").into(),
            "signature is not 64 hex digits",
        ),
        (
            format!("t={T},v1=").into(),
            "signature is not 64 hex digits",
        ),
        (format!("v1={mac}").into(), "no t= timestamp"),
        (format!("t={T}").into(), "no v1= signature"),
        (format!("t={T},v0={mac}").into(), "no v1= signature"),
        (
            format!("t=yesterday,v1={mac}").into(),
            "t= is not a unix timestamp",
        ),
        (format!("t=,v1={mac}").into(), "t= is not a unix timestamp"),
        (
            format!("t={T}.5,v1={mac}").into(),
            "t= is not a unix timestamp",
        ),
        (format!("t={T},t={T},v1={mac}").into(), "more than one t="),
        (
            format!("t={T};v1={mac}").into(),
            "t= is not a unix timestamp",
        ),
        (format!("sha256={mac}").into(), "no t= timestamp"),
        (b"garbage".to_vec(), "expected key=value pairs"),
        (
            format!("t={T},{seventeen}").into(),
            "too many v1= signatures",
        ),
        (b"   ".to_vec(), "empty value"),
        (b"".to_vec(), "empty value"),
        // Bytes that are not text at all (obs-text in HTTP terms).
        (
            [format!("t={T},v1=").as_bytes(), &[0xe9; 64]].concat(),
            "not ASCII text",
        ),
    ];
    for (value, reason) in cases {
        let headers = one_header(BB_SIG, &value);
        assert_eq!(
            v.verify(&headers, &body, &FixedClock(T)),
            malformed(BB_SIG, reason),
            "{:?}",
            String::from_utf8_lossy(&value)
        );
    }
    // Non-ASCII that happens to be UTF-8 is still refused as malformed.
    let utf8 = format!("t={T},v1={}", "é".repeat(32));
    assert!(matches!(
        v.verify(&bb_headers(&utf8), &body, &FixedClock(T)),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

#[test]
fn bitbybit_empty_body_verifies_over_t_dot_nothing() {
    let v = bitbybit_default(&ROTATION);
    let headers = bb_signed(ROTATION[2], T, b"");
    assert_eq!(v.verify(&headers, b"", &FixedClock(T)), ok(BB, 2));
    assert_eq!(
        v.verify(&headers, b"{}", &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn bitbybit_non_utf8_body_verifies_over_raw_bytes() {
    assert!(std::str::from_utf8(std::hint::black_box(NOT_UTF8)).is_err());
    let v = bitbybit_default(&ROTATION);
    let headers = bb_signed(ROTATION[1], T, NOT_UTF8);
    assert_eq!(v.verify(&headers, NOT_UTF8, &FixedClock(T)), ok(BB, 1));
    let lossy = String::from_utf8_lossy(NOT_UTF8).into_owned();
    assert_eq!(
        v.verify(&headers, lossy.as_bytes(), &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

// ---------------------------------------------------------------------------
// Akinon OMS: sha256=<hex>, HMAC over the raw body
// ---------------------------------------------------------------------------

const OMS_SIG: &str = oms::SIGNATURE_HEADER;

fn akinon(list: &[&str]) -> Verifier {
    Verifier::new(
        Scheme::BodyHmac {
            header: name(OMS_SIG),
        },
        secrets(list),
    )
}

fn oms_headers(value: &str) -> HeaderMap {
    one_header(OMS_SIG, value.as_bytes())
}

fn oms_signed(key: &str, body: &[u8]) -> HeaderMap {
    oms_headers(&format!("sha256={}", body_mac(key, body)))
}

#[test]
fn akinon_right_secret_verifies_whatever_the_clock() {
    let body = fixture("oms", "package.created");
    let v = akinon(&[ROTATION[1]]);
    let headers = oms_signed(ROTATION[1], &body);
    // No timestamp is signed: the clock plays no part.
    for now in [0, T, i64::MIN, i64::MAX] {
        assert_eq!(
            v.verify(&headers, &body, &FixedClock(now)),
            ok(OMS, 0),
            "now = {now}"
        );
    }
}

#[test]
fn akinon_wrong_secret_is_refused() {
    let body = fixture("oms", "package.created");
    let v = akinon(&ROTATION);
    assert_eq!(
        v.verify(&oms_signed(WRONG, &body), &body, &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn akinon_rotation_reports_the_matching_secret() {
    let body = fixture("oms", "package.status.shipped");
    let v = akinon(&ROTATION);
    for (index, key) in ROTATION.iter().enumerate() {
        assert_eq!(
            v.verify(&oms_signed(key, &body), &body, &FixedClock(T)),
            ok(OMS, index),
            "{key}"
        );
    }
    let two = akinon(&ROTATION[..2]);
    assert_eq!(
        two.verify(&oms_signed(ROTATION[2], &body), &body, &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn akinon_one_changed_byte_is_refused() {
    let body = fixture("oms", "package.created");
    let v = akinon(&ROTATION);
    let headers = oms_signed(ROTATION[0], &body);
    for at in [0, body.len() / 2, body.len() - 1] {
        assert_eq!(
            v.verify(&headers, &flipped(&body, at), &FixedClock(T)),
            Err(VerifyError::NoSecretMatched),
            "byte {at}"
        );
    }
    assert_eq!(
        v.verify(&headers, &body[..body.len() - 1], &FixedClock(T)),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn akinon_missing_header_is_named() {
    let body = fixture("oms", "package.created");
    let v = akinon(&ROTATION);
    assert_eq!(
        v.verify(&HeaderMap::new(), &body, &FixedClock(T)),
        Err(VerifyError::MissingHeader(name(OMS_SIG)))
    );
    // The event header alone is no signature.
    let event_only = one_header(oms::EVENT_HEADER, b"package.created");
    assert_eq!(
        v.verify(&event_only, &body, &FixedClock(T)),
        Err(VerifyError::MissingHeader(name(OMS_SIG)))
    );
}

#[test]
fn akinon_garbled_headers_are_malformed_with_a_reason() {
    let body = fixture("oms", "package.created");
    let v = akinon(&ROTATION);
    let mac = body_mac(ROTATION[0], &body);
    let cases: Vec<(Vec<u8>, &'static str)> = vec![
        (
            format!("sha256={}", "zz".repeat(32)).into(),
            "signature is not hex",
        ),
        (
            format!("sha256={}g", &mac[..63]).into(),
            "signature is not hex",
        ),
        (b"sha256=abcd".to_vec(), "signature is not 64 hex digits"),
        (
            format!("sha256={}", &mac[..62]).into(),
            "signature is not 64 hex digits",
        ),
        (
            format!("sha256={mac}00").into(),
            "signature is not 64 hex digits",
        ),
        (b"sha256=".to_vec(), "signature is not 64 hex digits"),
        (mac.clone().into(), "expected sha256=<hex>"),
        (format!("SHA256={mac}").into(), "expected sha256=<hex>"),
        (
            format!("sha1={}", &mac[..40]).into(),
            "expected sha256=<hex>",
        ),
        (format!("t={T},v1={mac}").into(), "expected sha256=<hex>"),
        (b"   ".to_vec(), "empty value"),
        (
            [b"sha256=".as_slice(), &[0xff; 64]].concat(),
            "not ASCII text",
        ),
    ];
    for (value, reason) in cases {
        let headers = one_header(OMS_SIG, &value);
        assert_eq!(
            v.verify(&headers, &body, &FixedClock(T)),
            malformed(OMS_SIG, reason),
            "{:?}",
            String::from_utf8_lossy(&value)
        );
    }
}

#[test]
fn akinon_empty_and_non_utf8_bodies_verify_over_raw_bytes() {
    let v = akinon(&ROTATION);
    assert_eq!(
        v.verify(&oms_signed(ROTATION[1], b""), b"", &FixedClock(T)),
        ok(OMS, 1)
    );
    assert_eq!(
        v.verify(&oms_signed(ROTATION[2], NOT_UTF8), NOT_UTF8, &FixedClock(T)),
        ok(OMS, 2)
    );
}

#[test]
fn akinon_escaped_unicode_verifies_only_over_the_exact_bytes() {
    let body = fixture("oms", "stock_location.updated--unicode");
    // Python's json.dumps default: ASCII only, `\uXXXX` escapes, ", " and ": ".
    assert!(body.is_ascii(), "the fixture is ASCII with \\u escapes");
    let text = std::str::from_utf8(&body).expect("ASCII is UTF-8");
    assert!(text.contains(r"\u0130stanbul"), "{text}");
    assert!(text.contains(r"\ud83d\udce6"), "a surrogate pair: {text}");
    assert!(text.contains("\", \""), "Python separators: {text}");

    let v = akinon(&ROTATION);
    let headers = oms_signed(ROTATION[1], &body);
    assert_eq!(v.verify(&headers, &body, &FixedClock(T)), ok(OMS, 1));

    // Re-serialised by serde_json, the same JSON value is other bytes, and
    // the MAC no longer verifies: verification must happen before parsing.
    let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    for reserialised in [
        serde_json::to_vec(&value).expect("serialises"),
        serde_json::to_vec_pretty(&value).expect("serialises"),
    ] {
        assert_ne!(reserialised, body);
        let again: serde_json::Value = serde_json::from_slice(&reserialised).expect("JSON");
        assert_eq!(again, value, "the same JSON value");
        assert_eq!(
            v.verify(&headers, &reserialised, &FixedClock(T)),
            Err(VerifyError::NoSecretMatched)
        );
    }
}

// ---------------------------------------------------------------------------
// Static tokens: Bebas Kirim (Authorization, optional Bearer) and Biteship
// (a header the user names)
// ---------------------------------------------------------------------------

fn bebaskirim(list: &[&str]) -> Verifier {
    Verifier::new(
        Scheme::StaticToken {
            header: http::header::AUTHORIZATION,
            bearer: true,
        },
        secrets(list),
    )
}

fn auth(value: &[u8]) -> HeaderMap {
    one_header("authorization", value)
}

#[test]
fn bebaskirim_token_with_and_without_bearer() {
    let body = fixture("bebaskirim", "order.packed");
    let v = bebaskirim(&ROTATION);
    let clock = FixedClock(T);
    let accepted: [(&[u8], usize); 6] = [
        (b"whsec_2024_current", 1),
        (b"Bearer whsec_2024_current", 1),
        (b"bearer whsec_2025_next", 2),
        (b"BEARER    whsec_2023_old", 0),
        (b"  whsec_2024_current  ", 1),
        (b"Bearer whsec_2025_next ", 2),
    ];
    for (value, index) in accepted {
        assert_eq!(
            v.verify(&auth(value), &body, &clock),
            ok(TOKEN, index),
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn bebaskirim_wrong_or_mangled_tokens_are_refused() {
    let body = fixture("bebaskirim", "order.packed");
    let v = bebaskirim(&ROTATION);
    let clock = FixedClock(T);
    let refused: [&[u8]; 11] = [
        WRONG.as_bytes(),
        b"Bearer whsec_not_configured",
        b"whsec_2024_curren",
        b"whsec_2024_currentx",
        b"WHSEC_2024_CURRENT",
        b"Token whsec_2024_current",
        b"Bearerwhsec_2024_current",
        // RFC 6750: one or more spaces after the scheme, not a tab.
        b"Bearer\twhsec_2024_current",
        b"Bearer",
        b"Bearer Bearer whsec_2024_current",
        b"whsec_2024_current\xe9",
    ];
    for value in refused {
        assert_eq!(
            v.verify(&auth(value), &body, &clock),
            Err(VerifyError::NoSecretMatched),
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
    // A token rejected when Bearer is not allowed.
    let strict = Verifier::new(
        Scheme::StaticToken {
            header: http::header::AUTHORIZATION,
            bearer: false,
        },
        secrets(&ROTATION),
    );
    assert_eq!(
        strict.verify(&auth(b"Bearer whsec_2024_current"), &body, &clock),
        Err(VerifyError::NoSecretMatched)
    );
    assert_eq!(
        strict.verify(&auth(b"whsec_2024_current"), &body, &clock),
        ok(TOKEN, 1)
    );
}

#[test]
fn bebaskirim_missing_and_empty_headers() {
    let body = fixture("bebaskirim", "order.packed");
    let v = bebaskirim(&ROTATION);
    let clock = FixedClock(T);
    assert_eq!(
        v.verify(&HeaderMap::new(), &body, &clock),
        Err(VerifyError::MissingHeader(http::header::AUTHORIZATION))
    );
    for empty in [&b""[..], b"   ", b"\t"] {
        assert_eq!(
            v.verify(&auth(empty), &body, &clock),
            malformed("authorization", "empty value"),
            "{empty:?}"
        );
    }
    // The token under another header is no token.
    let elsewhere = one_header("x-authorization", b"whsec_2024_current");
    assert_eq!(
        v.verify(&elsewhere, &body, &clock),
        Err(VerifyError::MissingHeader(http::header::AUTHORIZATION))
    );
}

/// A static token does not cover the body or a time: any body passes with
/// the right token. (This is why only the token is checked here.)
#[test]
fn bebaskirim_token_is_independent_of_body_and_clock() {
    let body = fixture("bebaskirim", "order.packed");
    let v = bebaskirim(&ROTATION);
    let headers = auth(b"Bearer whsec_2024_current");
    for (candidate, now) in [
        (body.clone(), T),
        (flipped(&body, 3), T),
        (Vec::new(), 0),
        (NOT_UTF8.to_vec(), i64::MAX),
    ] {
        assert_eq!(
            v.verify(&headers, &candidate, &FixedClock(now)),
            ok(TOKEN, 1)
        );
    }
}

fn biteship(list: &[&str]) -> Verifier {
    // As typed by the user in Biteship's dashboard.
    Verifier::new(
        Scheme::StaticToken {
            header: name("X-Biteship-Token"),
            bearer: false,
        },
        secrets(list),
    )
}

#[test]
fn biteship_custom_header_is_matched_case_insensitively() {
    let body = fixture("biteship", "order.status");
    let v = biteship(&ROTATION);
    let clock = FixedClock(T);
    for sent in ["x-biteship-token", "X-Biteship-Token", "X-BITESHIP-TOKEN"] {
        let headers = one_header(sent, b"whsec_2025_next");
        assert_eq!(v.verify(&headers, &body, &clock), ok(TOKEN, 2), "{sent}");
    }
    // The name configured in another case is the same header.
    let other_case = Verifier::new(
        Scheme::StaticToken {
            header: name("x-BITESHIP-token"),
            bearer: false,
        },
        secrets(&ROTATION),
    );
    let headers = one_header("x-biteship-token", b"whsec_2023_old");
    assert_eq!(other_case.verify(&headers, &body, &clock), ok(TOKEN, 0));
}

#[test]
fn biteship_wrong_missing_and_bearer_tokens_are_refused() {
    let body = fixture("biteship", "order.status");
    let v = biteship(&ROTATION);
    let clock = FixedClock(T);
    for (index, key) in ROTATION.iter().enumerate() {
        let headers = one_header("x-biteship-token", key.as_bytes());
        assert_eq!(v.verify(&headers, &body, &clock), ok(TOKEN, index), "{key}");
    }
    let wrong = one_header("x-biteship-token", WRONG.as_bytes());
    assert_eq!(
        v.verify(&wrong, &body, &clock),
        Err(VerifyError::NoSecretMatched)
    );
    let bearer = one_header("x-biteship-token", b"Bearer whsec_2024_current");
    assert_eq!(
        v.verify(&bearer, &body, &clock),
        Err(VerifyError::NoSecretMatched)
    );
    let misplaced = one_header("authorization", b"whsec_2024_current");
    assert_eq!(
        v.verify(&misplaced, &body, &clock),
        Err(VerifyError::MissingHeader(name("x-biteship-token")))
    );
    assert_eq!(
        v.verify(&one_header("x-biteship-token", b" "), &body, &clock),
        malformed("x-biteship-token", "empty value")
    );
    let non_ascii = one_header("x-biteship-token", b"whsec_2024_curr\xc3\xa9nt");
    assert_eq!(
        v.verify(&non_ascii, &body, &clock),
        Err(VerifyError::NoSecretMatched)
    );
}

#[test]
fn biteship_token_is_independent_of_the_body() {
    let v = biteship(&ROTATION);
    let headers = one_header("x-biteship-token", b"whsec_2024_current");
    for body in [&b""[..], b"{}", NOT_UTF8] {
        assert_eq!(v.verify(&headers, body, &FixedClock(T)), ok(TOKEN, 1));
    }
}

// ---------------------------------------------------------------------------
// Verification switched off, and the error labels
// ---------------------------------------------------------------------------

#[test]
fn disabled_verification_accepts_everything_and_names_no_secret() {
    let off = Verification::Disabled;
    let unverified = Ok(Verified {
        scheme: None,
        secret_index: None,
    });
    for (headers, body) in [
        (HeaderMap::new(), &b""[..]),
        (bb_headers("garbage"), NOT_UTF8),
        (auth(WRONG.as_bytes()), b"{}"),
    ] {
        assert_eq!(off.verify(&headers, body, &FixedClock(0)), unverified);
    }
    // Enforced delegates to the verifier.
    let on = Verification::single(akinon(&ROTATION));
    let body = fixture("oms", "package.created");
    assert_eq!(
        on.verify(&HeaderMap::new(), &body, &FixedClock(T)),
        Err(VerifyError::MissingHeader(name(OMS_SIG)))
    );
    assert_eq!(
        on.verify(&oms_signed(ROTATION[2], &body), &body, &FixedClock(T)),
        ok(OMS, 2)
    );
}

#[test]
fn errors_have_stable_labels() {
    let cases = [
        (VerifyError::MissingHeader(name(BB_SIG)), "missing_header"),
        (
            VerifyError::MalformedHeader {
                header: name(BB_SIG),
                reason: "x",
            },
            "malformed_header",
        ),
        (
            VerifyError::TimestampTooOld {
                age_secs: 1,
                tolerance_secs: 0,
            },
            "timestamp_too_old",
        ),
        (
            VerifyError::TimestampInFuture {
                ahead_secs: 1,
                tolerance_secs: 0,
            },
            "timestamp_in_future",
        ),
        (VerifyError::NoSecretMatched, "no_secret_matched"),
    ];
    for (error, label) in cases {
        assert_eq!(error.reason(), label);
    }
    // Secrets never show in a verifier's Debug output.
    let shown = format!("{:?}", bebaskirim(&ROTATION));
    for secret in ROTATION {
        assert!(!shown.contains(secret), "{shown}");
    }
}
