//! Endpoint configuration: the schemes each provider accepts, the secret list
//! formats, and the limits that keep every body within what AWS carries.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{OMS_SECRET, hmac_hex, lookup};
use http::{HeaderMap, HeaderName, HeaderValue};
use terima_core::providers::oms;
use terima_core::verify::FixedClock;
use terima_core::{Provider, Verification};
use terima_service::config::MAX_BODY_LIMIT;
use terima_service::memory::MemoryStore;
use terima_service::metrics::{Metric, Point, emf_line};
use terima_service::{ConfigError, EndpointConfig, Ingest, Metrics};

fn config_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            )
        })
        .collect()
}

const BODY: &[u8] = br#"{"event": {"type": "package.created", "uuid": "0f8b7e5e6c1d4b0a9e3f2a1b0c9d8e7f"}, "payload": {"id": 7}}"#;

/// Akinon's settings are per subscription: some sign with a `secret_key`,
/// some only send a token in `additional_headers`. With both configured, a
/// delivery passing either is accepted, and the metric names the scheme.
#[tokio::test]
async fn akinon_accepts_signed_and_token_subscriptions_at_once() {
    let lookup = config_from(&[
        ("TERIMA_OMS_SECRETS", OMS_SECRET),
        ("TERIMA_OMS_HEADER", "X-Akinon-Token"),
        ("TERIMA_OMS_TOKENS", r#"["tok,en-1", "token-2"]"#),
    ]);
    let config = EndpointConfig::load(Provider::Oms, &lookup).expect("both schemes");
    let Verification::Enforced(verifiers) = &config.verification else {
        panic!("verification is on");
    };
    assert_eq!(verifiers.len(), 2);
    let clock = FixedClock(0);
    let signed = headers(&[(
        oms::SIGNATURE_HEADER,
        &format!("sha256={}", hmac_hex(OMS_SECRET, &[BODY])),
    )]);
    let token = headers(&[("x-akinon-token", "tok,en-1")]);
    let second_token = headers(&[("x-akinon-token", "token-2")]);
    let signed_v = config
        .verification
        .verify(&signed, BODY, &clock)
        .expect("signed");
    let token_v = config
        .verification
        .verify(&token, BODY, &clock)
        .expect("token");
    let second_v = config
        .verification
        .verify(&second_token, BODY, &clock)
        .expect("second token");
    assert_eq!(
        (signed_v.scheme, signed_v.secret_index),
        (Some("body_hmac"), Some(0))
    );
    assert_eq!(
        (token_v.scheme, token_v.secret_index),
        (Some("static_token"), Some(0))
    );
    assert_eq!(second_v.secret_index, Some(1));
    // Neither: refused, with the reason of the scheme whose header came.
    let wrong = headers(&[("x-akinon-token", "nope")]);
    let refused = config
        .verification
        .verify(&wrong, BODY, &clock)
        .expect_err("wrong token");
    assert_eq!(refused.reason(), "no_secret_matched");
    let nothing = config
        .verification
        .verify(&HeaderMap::new(), BODY, &clock)
        .expect_err("no header");
    assert_eq!(nothing.reason(), "missing_header");

    // Through the endpoint: both are accepted, and the metric line says
    // which scheme matched.
    let store = MemoryStore::new();
    let endpoint = Ingest::new(
        config,
        store.clone(),
        store.clone(),
        store,
        Arc::new(FixedClock(0)),
        Metrics::Silent,
    );
    for h in [&signed, &token] {
        assert_eq!(endpoint.handle(h, BODY, "r").await.status, 200);
    }
    let line = emf_line(
        0,
        Provider::Oms,
        &[Point::with_detail(Metric::Verified, "static_token")],
    );
    assert!(line.contains("\"scheme\":\"static_token\""), "{line}");
}

#[test]
fn akinon_token_settings_must_come_together() {
    let tokens_without_header = config_from(&[("TERIMA_OMS_TOKENS", "t")]);
    let err = EndpointConfig::load(Provider::Oms, &tokens_without_header).expect_err("no header");
    assert!(err.to_string().contains("TERIMA_OMS_HEADER"), "{err}");
    // A header without tokens, and no secret: nothing to verify with.
    let header_only = config_from(&[("TERIMA_OMS_HEADER", "X-Token")]);
    let err = EndpointConfig::load(Provider::Oms, &header_only).expect_err("no secret");
    assert!(matches!(err, ConfigError::NoSecrets { .. }), "{err}");
    assert!(err.to_string().contains("TERIMA_OMS_TOKENS"), "{err}");
    // Tokens only (subscriptions without a secret_key): fine.
    let tokens_only = config_from(&[("TERIMA_OMS_HEADER", "X-Token"), ("TERIMA_OMS_TOKENS", "t")]);
    assert!(EndpointConfig::load(Provider::Oms, &tokens_only).is_ok());
}

/// A secret typed in a dashboard is free text: the JSON array form carries
/// any printable character, the comma list still works, and a malformed
/// value is refused without echoing it.
#[test]
fn secrets_in_either_format_and_any_printable_character() {
    let printable: String = (' '..='~').collect();
    let array = serde_json::to_string(&vec![printable.as_str()]).expect("json");
    for (value, works) in [
        (array.as_str(), true),
        ("plain-one, plain-two", true),
        (r#"["a,b"]"#, true),
        (r#"["unterminated"#, false),
        ("[1, 2]", false),
        (" , ", false),
    ] {
        let lookup = config_from(&[
            ("TERIMA_BITESHIP_SECRETS", value),
            ("TERIMA_BITESHIP_HEADER", "X-Token"),
        ]);
        let result = EndpointConfig::load(Provider::Biteship, &lookup);
        assert_eq!(result.is_ok(), works, "{value}: {result:?}");
        if let Err(e) = result {
            let text = e.to_string();
            assert!(text.contains("TERIMA_BITESHIP_SECRETS"), "{text}");
            assert!(
                !text.contains("unterminated"),
                "the value is not echoed: {text}"
            );
        }
    }
    // The array form verifies a token with every printable character (a
    // header value cannot begin or end with a space, so those sit inside).
    let secret = format!("{}{}", &printable[1..], " ~");
    let array = serde_json::to_string(&vec![secret.as_str()]).expect("json");
    let lookup = config_from(&[
        ("TERIMA_BITESHIP_SECRETS", array.as_str()),
        ("TERIMA_BITESHIP_HEADER", "X-Token"),
    ]);
    let config = EndpointConfig::load(Provider::Biteship, &lookup).expect("configured");
    let exact = headers(&[("x-token", &secret)]);
    assert!(
        config
            .verification
            .verify(&exact, b"{}", &FixedClock(0))
            .is_ok()
    );
    let cut = headers(&[("x-token", &secret[..secret.len() - 1])]);
    assert!(
        config
            .verification
            .verify(&cut, b"{}", &FixedClock(0))
            .is_err()
    );
}

#[test]
fn the_body_limit_stays_within_what_lambda_carries() {
    for (value, ok) in [
        ("1", true),
        ("1048576", true),
        (&*MAX_BODY_LIMIT.to_string(), true),
        (&*(MAX_BODY_LIMIT + 1).to_string(), false),
        ("0", false),
        ("1MB", false),
    ] {
        let lookup = lookup(&[("TERIMA_MAX_BODY_BYTES", value)]);
        let result = EndpointConfig::load(Provider::BebasKirim, &lookup);
        assert_eq!(result.is_ok(), ok, "{value}: {result:?}");
    }
}
