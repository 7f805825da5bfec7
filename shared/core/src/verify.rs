//! Webhook authentication: the three schemes the providers use, with secret
//! rotation, constant-time comparison, an injected clock and precise errors.

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::SecretSet;

type HmacSha256 = Hmac<Sha256>;

/// BitByBit's documentation recommends refusing a signature older than this.
pub const DEFAULT_TIMESTAMP_TOLERANCE_SECS: u64 = 300;

/// A source of "now", injected so that tests and replays control time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        self.now_millis().div_euclid(1_000)
    }
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock stopped at one instant, in Unix seconds.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        self.0.saturating_mul(1_000)
    }
}

/// How a provider proves that a delivery is its own.
#[derive(Clone, Debug)]
pub enum Scheme {
    /// The secret itself travels in a header (Bebas Kirim, Biteship, Akinon's
    /// `additional_headers`). With `bearer`, a `Bearer ` prefix is accepted too.
    StaticToken { header: HeaderName, bearer: bool },
    /// `t=<unix>,v1=<hex>`: HMAC-SHA256 over `"<t>.<raw body>"` (BitByBit).
    TimestampedHmac {
        header: HeaderName,
        tolerance_secs: u64,
    },
    /// `sha256=<hex>`: HMAC-SHA256 over the raw body (Akinon's dj-whisperer).
    BodyHmac { header: HeaderName },
}

impl Scheme {
    /// A short, stable name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::StaticToken { .. } => "static_token",
            Self::TimestampedHmac { .. } => "timestamped_hmac",
            Self::BodyHmac { .. } => "body_hmac",
        }
    }
}

/// Why a delivery was refused. The variants are precise for the log and the
/// metrics; the HTTP answer is the same generic 401 for all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(HeaderName),
    #[error("malformed header {header}: {reason}")]
    MalformedHeader {
        header: HeaderName,
        reason: &'static str,
    },
    #[error("signature timestamp is {age_secs} s old, more than the tolerated {tolerance_secs} s")]
    TimestampTooOld { age_secs: u64, tolerance_secs: u64 },
    #[error(
        "signature timestamp is {ahead_secs} s in the future, more than the tolerated {tolerance_secs} s"
    )]
    TimestampInFuture {
        ahead_secs: u64,
        tolerance_secs: u64,
    },
    #[error("no configured secret matched")]
    NoSecretMatched,
}

impl VerifyError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader { .. } => "malformed_header",
            Self::TimestampTooOld { .. } => "timestamp_too_old",
            Self::TimestampInFuture { .. } => "timestamp_in_future",
            Self::NoSecretMatched => "no_secret_matched",
        }
    }
}

/// A successful verification: which scheme and which secret matched, for
/// the metrics (rotations, and providers with more than one scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The scheme that matched; `None` when verification is off.
    pub scheme: Option<&'static str>,
    /// Index into that scheme's secret list; `None` when verification is off.
    pub secret_index: Option<usize>,
}

/// A scheme with the secrets it accepts. It cannot be built without at least
/// one secret, so there is no way to end up verifying against nothing.
#[derive(Clone, Debug)]
pub struct Verifier {
    scheme: Scheme,
    secrets: SecretSet,
}

/// What a provider endpoint does with deliveries: verify them against one or
/// more schemes (a delivery passing any of them is accepted), or (only when
/// the operator said so explicitly) accept them unverified.
#[derive(Clone, Debug)]
pub enum Verification {
    Enforced(Vec<Verifier>),
    Disabled,
}

impl Verification {
    /// One scheme.
    pub fn single(verifier: Verifier) -> Self {
        Self::Enforced(vec![verifier])
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<Verified, VerifyError> {
        let verifiers = match self {
            Self::Disabled => {
                return Ok(Verified {
                    scheme: None,
                    secret_index: None,
                });
            }
            Self::Enforced(verifiers) => verifiers,
        };
        // Every scheme is tried; the first to accept wins. When none does,
        // the reason reported is that of a scheme whose header was present
        // (its signature or token was wrong), else the first missing header.
        let mut refusal: Option<VerifyError> = None;
        for verifier in verifiers {
            match verifier.verify(headers, body, clock) {
                Ok(verified) => return Ok(verified),
                Err(e) => {
                    let better = match (&refusal, &e) {
                        (None, _) => true,
                        (Some(VerifyError::MissingHeader(_)), VerifyError::MissingHeader(_)) => {
                            false
                        }
                        (Some(VerifyError::MissingHeader(_)), _) => true,
                        _ => false,
                    };
                    if better {
                        refusal = Some(e);
                    }
                }
            }
        }
        Err(refusal.unwrap_or(VerifyError::NoSecretMatched))
    }
}

impl Verifier {
    pub fn new(scheme: Scheme, secrets: SecretSet) -> Self {
        Self { scheme, secrets }
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<Verified, VerifyError> {
        let found = match &self.scheme {
            Scheme::StaticToken { header, bearer } => {
                let value = header_bytes(headers, header)?;
                self.static_token(value, *bearer)
            }
            Scheme::TimestampedHmac {
                header,
                tolerance_secs,
            } => {
                let value = header_str(headers, header)?;
                let signed = TimestampedSignature::parse(value)
                    .map_err(|reason| malformed(header, reason))?;
                check_age(signed.timestamp, clock.now_unix(), *tolerance_secs)?;
                self.timestamped_hmac(&signed, body)
            }
            Scheme::BodyHmac { header } => {
                let value = header_str(headers, header)?;
                let hex = value
                    .strip_prefix("sha256=")
                    .ok_or_else(|| malformed(header, "expected sha256=<hex>"))?;
                let mac = decode_mac(hex).map_err(|reason| malformed(header, reason))?;
                self.body_hmac(&mac, body)
            }
        };
        found
            .map(|index| Verified {
                scheme: Some(self.scheme.label()),
                secret_index: Some(index),
            })
            .ok_or(VerifyError::NoSecretMatched)
    }

    /// Every secret is tried, whatever matched first, so the time taken says
    /// nothing about which one matched.
    fn first_match(&self, mut matches: impl FnMut(&[u8]) -> bool) -> Option<usize> {
        self.secrets.iter().fold(None, |found, (index, secret)| {
            let hit = matches(secret.expose());
            found.or(hit.then_some(index))
        })
    }

    fn static_token(&self, value: &[u8], bearer: bool) -> Option<usize> {
        let stripped = bearer.then(|| strip_bearer(value)).flatten();
        self.first_match(|secret| {
            let whole: bool = secret.ct_eq(value).into();
            let bare: bool = stripped.is_some_and(|s| secret.ct_eq(s).into());
            whole | bare
        })
    }

    fn timestamped_hmac(&self, signed: &TimestampedSignature<'_>, body: &[u8]) -> Option<usize> {
        self.first_match(|secret| {
            let mut mac = new_mac(secret);
            mac.update(signed.timestamp_text.as_bytes());
            mac.update(b".");
            mac.update(body);
            let expected: [u8; 32] = mac.finalize().into_bytes().into();
            signed.macs.iter().fold(false, |any, candidate| {
                any | bool::from(expected.ct_eq(candidate))
            })
        })
    }

    fn body_hmac(&self, candidate: &[u8; 32], body: &[u8]) -> Option<usize> {
        self.first_match(|secret| {
            let mut mac = new_mac(secret);
            mac.update(body);
            mac.verify_slice(candidate).is_ok()
        })
    }
}

fn new_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; the error case cannot happen for it.
    <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    const PREFIX: &[u8] = b"bearer ";
    (value.len() > PREFIX.len() && value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX))
        .then(|| value[PREFIX.len()..].trim_ascii_start())
}

fn malformed(header: &HeaderName, reason: &'static str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.clone(),
        reason,
    }
}

fn header_bytes<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h [u8], VerifyError> {
    let value = headers
        .get(name)
        .ok_or_else(|| VerifyError::MissingHeader(name.clone()))?;
    let bytes = value.as_bytes().trim_ascii();
    if bytes.is_empty() {
        return Err(malformed(name, "empty value"));
    }
    Ok(bytes)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h str, VerifyError> {
    let bytes = header_bytes(headers, name)?;
    std::str::from_utf8(bytes).map_err(|_| malformed(name, "not ASCII text"))
}

fn decode_mac(hex_text: &str) -> Result<[u8; 32], &'static str> {
    let mut mac = [0u8; 32];
    if hex_text.len() != 64 {
        return Err("signature is not 64 hex digits");
    }
    hex::decode_to_slice(hex_text, &mut mac).map_err(|_| "signature is not hex")?;
    Ok(mac)
}

fn check_age(signed_at: i64, now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
    let diff = i128::from(now) - i128::from(signed_at);
    let tolerance = i128::from(tolerance_secs);
    let secs = |d: i128| u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX);
    if diff > tolerance {
        Err(VerifyError::TimestampTooOld {
            age_secs: secs(diff),
            tolerance_secs,
        })
    } else if -diff > tolerance {
        Err(VerifyError::TimestampInFuture {
            ahead_secs: secs(diff),
            tolerance_secs,
        })
    } else {
        Ok(())
    }
}

/// A parsed `t=<unix>,v1=<hex>[,v1=<hex>...]` header. Unknown fields are
/// ignored so that the provider can add schemes later.
struct TimestampedSignature<'a> {
    timestamp: i64,
    timestamp_text: &'a str,
    macs: Vec<[u8; 32]>,
}

impl<'a> TimestampedSignature<'a> {
    fn parse(value: &'a str) -> Result<Self, &'static str> {
        let mut timestamp = None;
        let mut macs = Vec::new();
        for part in value.split(',') {
            let (key, val) = part
                .trim()
                .split_once('=')
                .ok_or("expected key=value pairs")?;
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err("more than one t=");
                    }
                    let parsed = val
                        .parse::<i64>()
                        .map_err(|_| "t= is not a unix timestamp")?;
                    timestamp = Some((parsed, val));
                }
                "v1" => macs.push(decode_mac(val)?),
                _ => {}
            }
            // A header cannot list signatures without bound.
            if macs.len() > 16 {
                return Err("too many v1= signatures");
            }
        }
        let (timestamp, timestamp_text) = timestamp.ok_or("no t= timestamp")?;
        if macs.is_empty() {
            return Err("no v1= signature");
        }
        Ok(Self {
            timestamp,
            timestamp_text,
            macs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretSet;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    fn token_verifier(bearer: bool) -> Verifier {
        Verifier::new(
            Scheme::StaticToken {
                header: http::header::AUTHORIZATION,
                bearer,
            },
            SecretSet::parse("old-secret,new-secret").expect("secrets"),
        )
    }

    #[test]
    fn static_token_accepts_bearer_prefix_only_when_allowed() {
        let clock = FixedClock(0);
        let v = token_verifier(true);
        let ok = v.verify(
            &headers(&[("authorization", "Bearer new-secret")]),
            b"",
            &clock,
        );
        assert_eq!(
            ok,
            Ok(Verified {
                scheme: Some("static_token"),
                secret_index: Some(1)
            })
        );
        let strict = token_verifier(false);
        let err = strict.verify(
            &headers(&[("authorization", "Bearer new-secret")]),
            b"",
            &clock,
        );
        assert_eq!(err, Err(VerifyError::NoSecretMatched));
    }

    #[test]
    fn disabled_verification_reports_no_secret() {
        let out = Verification::Disabled.verify(&HeaderMap::new(), b"x", &FixedClock(0));
        assert_eq!(
            out,
            Ok(Verified {
                scheme: None,
                secret_index: None
            })
        );
    }

    #[test]
    fn timestamped_signature_parsing_rejects_garbage() {
        for bad in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "nonsense",
            "t=1,t=2,v1=",
        ] {
            assert!(TimestampedSignature::parse(bad).is_err(), "{bad:?} parsed");
        }
        let hex = "ab".repeat(32);
        let header = format!("t=5, v1={hex}, v0=ignored, v1={hex}");
        let parsed = TimestampedSignature::parse(&header).expect("valid header");
        assert_eq!(parsed.timestamp, 5);
        assert_eq!(parsed.macs.len(), 2);
    }

    #[test]
    fn age_is_checked_in_both_directions() {
        assert!(check_age(1000, 1300, 300).is_ok());
        assert!(check_age(1000, 700, 300).is_ok());
        assert_eq!(
            check_age(1000, 1301, 300),
            Err(VerifyError::TimestampTooOld {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check_age(1000, 699, 300),
            Err(VerifyError::TimestampInFuture {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(check_age(i64::MIN, i64::MAX, 300).is_err());
    }
}
