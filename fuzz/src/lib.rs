//! The driver shared by the four fuzz targets: it turns arbitrary bytes into
//! one delivery (headers and body), verifies it as the provider's endpoint
//! would, and reads it when it verifies.
//!
//! Input layout:
//!
//! ```text
//! byte 0       flags: bit 0  sign the body properly with SECRET
//!                     bit 1  static tokens: send "Bearer <SECRET>"
//!                     bits 2-4  clock skew, an index into SKEWS
//!                     bit 7  (unsigned only) leave the signature header out
//! line 1       the signature / token header value (ignored when signing)
//! line 2, 3    BitByBit only: the event-type and delivery-id header values
//! rest         the body, raw bytes
//! ```
//!
//! Lines end at `\n`; a line that is not a valid header value leaves that
//! header out. Signing half of the inputs means the parser is reached for
//! every shape the fuzzer finds, not only for ones that guess a MAC.
//!
//! Besides "no panic", the driver checks properties that must hold for any
//! input: a properly signed delivery verifies (or is refused only for its
//! age), keys are non-empty and deterministic, and the queue message built
//! from an accepted delivery decodes back to itself.

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use terima_core::providers::{Inspected, TypedEvent, bitbybit, biteship, oms};
use terima_core::verify::{DEFAULT_TIMESTAMP_TOLERANCE_SECS, FixedClock};
use terima_core::{
    Provider, QueueMessage, Scheme, SecretSet, Timestamp, Verified, Verifier, VerifyError, inspect,
    status_rank,
};

/// The one secret every target's verifier accepts.
pub const SECRET: &str = "fuzz-secret-2024";
/// A second, never-used secret, so that rotation code runs too.
pub const OLD_SECRET: &str = "fuzz-secret-2023";
/// When a properly signed BitByBit delivery says it was signed.
pub const SIGNED_AT: i64 = 1_705_314_600;
/// How far the verifier's clock is from `SIGNED_AT`.
pub const SKEWS: [i64; 8] = [0, 1, 299, 300, 301, -300, -301, 86_400];
/// The name Biteship users give their token header (matched case-insensitively).
pub const BITESHIP_HEADER: &str = "X-Biteship-Token";

type HmacSha256 = Hmac<Sha256>;

fn hmac_hex(parts: &[&[u8]]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(SECRET.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn signature_header(provider: Provider) -> HeaderName {
    match provider {
        Provider::BebasKirim => http::header::AUTHORIZATION,
        Provider::BitByBit => HeaderName::from_static(bitbybit::SIGNATURE_HEADER),
        Provider::Oms => HeaderName::from_static(oms::SIGNATURE_HEADER),
        Provider::Biteship => HeaderName::from_bytes(BITESHIP_HEADER.as_bytes())
            .unwrap_or_else(|_| unreachable!("a valid header name")),
    }
}

fn verifier(provider: Provider) -> Verifier {
    let header = signature_header(provider);
    let scheme = match provider {
        Provider::BebasKirim => Scheme::StaticToken {
            header,
            bearer: true,
        },
        Provider::Biteship => Scheme::StaticToken {
            header,
            bearer: false,
        },
        Provider::BitByBit => Scheme::TimestampedHmac {
            header,
            tolerance_secs: DEFAULT_TIMESTAMP_TOLERANCE_SECS,
        },
        Provider::Oms => Scheme::BodyHmac { header },
    };
    let secrets = SecretSet::parse(&format!("{OLD_SECRET},{SECRET}"))
        .unwrap_or_else(|_| unreachable!("two secrets"));
    Verifier::new(scheme, secrets)
}

/// The header value a provider would send for `body`.
fn proper_signature(provider: Provider, bearer: bool, body: &[u8]) -> String {
    match provider {
        Provider::BebasKirim if bearer => format!("Bearer {SECRET}"),
        Provider::BebasKirim | Provider::Biteship => SECRET.to_owned(),
        Provider::BitByBit => {
            let t = SIGNED_AT.to_string();
            format!("t={t},v1={}", hmac_hex(&[t.as_bytes(), b".", body]))
        }
        Provider::Oms => format!("sha256={}", hmac_hex(&[body])),
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
}

/// One fuzz input, end to end.
pub fn run(provider: Provider, data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let sign = flags & 0b1 != 0;
    let bearer = flags & 0b10 != 0;
    let skew = SKEWS[usize::from((flags >> 2) & 0b111)];
    let omit_signature = !sign && flags & 0x80 != 0;

    let (signature_line, rest) = split_line(rest);
    let mut headers = HeaderMap::new();
    let body = if provider == Provider::BitByBit {
        let (event, rest) = split_line(rest);
        let (id, body) = split_line(rest);
        insert(
            &mut headers,
            HeaderName::from_static(bitbybit::EVENT_HEADER),
            event,
        );
        insert(
            &mut headers,
            HeaderName::from_static(bitbybit::ID_HEADER),
            id,
        );
        body
    } else {
        rest
    };

    let proper = proper_signature(provider, bearer, body);
    if sign {
        insert(&mut headers, signature_header(provider), proper.as_bytes());
    } else if !omit_signature {
        insert(&mut headers, signature_header(provider), signature_line);
    }

    if provider == Provider::Biteship {
        // The endpoint answers the dashboard's probe before verifying.
        let _ = biteship::is_installation_probe(body);
    }

    let clock = FixedClock(SIGNED_AT + skew);
    let verified = verifier(provider).verify(&headers, body, &clock);
    if sign {
        check_signed(provider, skew, &verified);
    }
    match verified {
        Ok(_) => read(provider, &headers, body),
        Err(error) => {
            let _ = (error.reason(), error.to_string());
        }
    }
}

/// A delivery signed with the configured secret verifies, unless the
/// timestamped scheme finds it too old or too new.
fn check_signed(provider: Provider, skew: i64, verified: &Result<Verified, VerifyError>) {
    let tolerance = i64::try_from(DEFAULT_TIMESTAMP_TOLERANCE_SECS).unwrap_or(i64::MAX);
    let expected_ok = Ok(Verified {
        scheme: Some(verifier(provider).scheme().label()),
        secret_index: Some(1),
    });
    match provider {
        Provider::BitByBit if skew > tolerance => assert!(
            matches!(verified, Err(VerifyError::TimestampTooOld { .. })),
            "skew {skew}: {verified:?}"
        ),
        Provider::BitByBit if -skew > tolerance => assert!(
            matches!(verified, Err(VerifyError::TimestampInFuture { .. })),
            "skew {skew}: {verified:?}"
        ),
        _ => assert_eq!(
            verified, &expected_ok,
            "a properly signed delivery was refused"
        ),
    }
}

/// What the provider function does with a verified delivery, and the
/// properties its result must have.
fn read(provider: Provider, headers: &HeaderMap, body: &[u8]) {
    let inspected = match inspect(provider, headers, body) {
        Ok(inspected) => inspected,
        Err(error) => {
            let _ = (error.reason(), error.to_string());
            return;
        }
    };
    check(provider, &inspected);

    // Same bytes, same reading.
    let again = inspect(provider, headers, body);
    assert_eq!(
        again.as_ref(),
        Ok(&inspected),
        "inspect is not deterministic"
    );

    let _ = status_rank(
        provider,
        &inspected.reading.resource.kind,
        inspected.reading.status.as_deref().unwrap_or(""),
    );

    // Accepted bodies go on the queue: the message must survive the trip.
    if let Ok(text) = std::str::from_utf8(body) {
        let received_at = Timestamp::from_unix_millis(SIGNED_AT * 1_000);
        let message = QueueMessage::new(&inspected, headers, text, received_at, "fuzz");
        let encoded = message.encode();
        let decoded = QueueMessage::decode(&encoded);
        assert!(
            decoded.as_ref().is_ok_and(|d| *d == message),
            "queue message does not round-trip: {decoded:?}\n{encoded}"
        );
    }
}

fn check(provider: Provider, inspected: &Inspected) {
    let reading = &inspected.reading;
    assert!(
        !reading.dedup_key.is_empty(),
        "empty dedup key: {inspected:?}"
    );
    assert!(
        !reading.work_key.is_empty(),
        "empty work key: {inspected:?}"
    );
    assert!(!reading.event_type.is_empty() || provider != Provider::BitByBit);
    let typed_provider = match &inspected.typed() {
        TypedEvent::BebasKirim(_) => Provider::BebasKirim,
        TypedEvent::BitByBit(_) => Provider::BitByBit,
        TypedEvent::Oms(_) => Provider::Oms,
        TypedEvent::Biteship(_) => Provider::Biteship,
    };
    assert_eq!(typed_provider, provider);
    // Keys are capped so that they fit a table key (longer ones are hashed).
    for key in [&reading.dedup_key, &reading.work_key] {
        assert!(key.len() <= 256, "a key of {} bytes", key.len());
    }
    if let Some(t) = reading.occurred_at {
        let _ = t.to_string();
    }
}
