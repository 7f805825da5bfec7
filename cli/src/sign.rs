//! Signs a delivery the way its provider would, with the first configured
//! secret: `terima send` re-signs the samples for the current time (BitByBit
//! refuses old signatures), and the tests and the load generator sign what
//! they make up.

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use terima_core::providers::bitbybit;
use terima_core::{Provider, Scheme, Verification};
use terima_service::config::secrets_var;
use terima_service::{ConfigError, EndpointConfig, Lookup};

/// How one provider's deliveries are signed, read from the same variables
/// the endpoint verifies with.
#[derive(Clone, Debug)]
pub enum Signer {
    /// `TERIMA_<P>_VERIFY=off`: headers are sent as they are.
    Unsigned,
    Signed {
        scheme: Scheme,
        secret: Vec<u8>,
    },
}

impl Signer {
    /// The first configured scheme, with its first (oldest) secret.
    pub fn load(provider: Provider, lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let config = EndpointConfig::load(provider, lookup)?;
        let Verification::Enforced(verifiers) = config.verification else {
            return Ok(Self::Unsigned);
        };
        let first = verifiers.first().and_then(|v| {
            let (_, secret) = v.secrets().iter().next()?;
            Some((v.scheme().clone(), secret.expose().to_vec()))
        });
        let (scheme, secret) = first.ok_or_else(|| ConfigError::NoSecrets {
            provider,
            vars: secrets_var(provider),
        })?;
        Ok(Self::Signed { scheme, secret })
    }

    /// Replaces the authentication headers in `headers` for `body`, signed at
    /// `now_unix`.
    pub fn sign(&self, headers: &mut HeaderMap, body: &[u8], now_unix: i64) {
        let Self::Signed { scheme, secret } = self else {
            return;
        };
        match scheme {
            Scheme::StaticToken { header, .. } => {
                if let Ok(value) = HeaderValue::from_bytes(secret) {
                    headers.insert(header.clone(), value);
                }
            }
            Scheme::TimestampedHmac { header, .. } => {
                let mac = hmac_hex(secret, &[now_unix.to_string().as_bytes(), b".", body]);
                headers.insert(
                    header.clone(),
                    header_value(&format!("t={now_unix},v1={mac}")),
                );
                if headers.contains_key(bitbybit::TIMESTAMP_HEADER) {
                    headers.insert(
                        bitbybit::TIMESTAMP_HEADER,
                        header_value(&now_unix.to_string()),
                    );
                }
            }
            Scheme::BodyHmac { header } => {
                let mac = hmac_hex(secret, &[body]);
                headers.insert(header.clone(), header_value(&format!("sha256={mac}")));
            }
        }
    }
}

fn header_value(text: &str) -> HeaderValue {
    // Hex digits, digits, `t=`, `v1=`, `sha256=`: always a valid value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        // HMAC accepts keys of any length.
        return String::new();
    };
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use terima_core::SystemClock;
    use terima_core::verify::Clock;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "TERIMA_BITBYBIT_SECRETS" => Some("first, second".to_owned()),
            "TERIMA_OMS_SECRETS" => Some("oms-secret".to_owned()),
            "TERIMA_BITESHIP_SECRETS" => Some("token".to_owned()),
            "TERIMA_BITESHIP_HEADER" => Some("X-Token".to_owned()),
            "TERIMA_BEBASKIRIM_VERIFY" => Some("off".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn what_is_signed_verifies() {
        let now = SystemClock.now_unix();
        for provider in [Provider::BitByBit, Provider::Oms, Provider::Biteship] {
            let signer = Signer::load(provider, &lookup).expect("configured");
            let mut headers = HeaderMap::new();
            signer.sign(&mut headers, b"{\"a\":1}", now);
            let config = EndpointConfig::load(provider, &lookup).expect("configured");
            let verified = config
                .verification
                .verify(&headers, b"{\"a\":1}", &SystemClock);
            assert_eq!(verified.map(|v| v.secret_index), Ok(Some(0)), "{provider}");
        }
        assert!(matches!(
            Signer::load(Provider::BebasKirim, &lookup),
            Ok(Signer::Unsigned)
        ));
    }

    #[test]
    fn a_missing_secret_is_a_configuration_error() {
        let err = Signer::load(Provider::BitByBit, &|_: &str| None).expect_err("no secret");
        assert!(err.to_string().contains("TERIMA_BITBYBIT_SECRETS"), "{err}");
    }
}
