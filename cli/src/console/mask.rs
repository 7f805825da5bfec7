//! What the console never shows: the values of headers that prove a
//! delivery (each provider's verification headers, `Authorization`, and any
//! header named like a credential), and the configured secrets themselves,
//! wherever they would appear. Every JSON answer passes through
//! [`Masker::json`] on its way out.

use std::collections::BTreeSet;

use serde_json::Value;
use terima_core::verify::Scheme;
use terima_core::{Lookup, Provider};

/// Parts of a header name that make it a credential, whatever the provider.
const CREDENTIAL_WORDS: [&str; 8] = [
    "authorization",
    "signature",
    "token",
    "secret",
    "cookie",
    "password",
    "api-key",
    "apikey",
];
/// Secrets shorter than this are not scrubbed from text (they would match
/// everywhere); configuration refuses none that short in practice.
const MIN_SCRUBBED: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Lower-case names of the headers each provider verifies.
    headers: BTreeSet<String>,
    /// Configured secret values, longest first.
    secrets: Vec<String>,
}

/// How a masked value is shown: its length only.
pub fn masked(value: &str) -> String {
    format!("•••• ({} chars)", value.chars().count())
}

impl Masker {
    /// Learns a provider's verification headers and secrets from its
    /// configuration. A provider whose configuration is incomplete is
    /// skipped: the credential words still mask its headers.
    pub fn learn(&mut self, provider: Provider, lookup: &dyn Lookup) {
        let Ok(schemes) = provider.spec().schemes(lookup) else {
            return;
        };
        for setting in schemes {
            let header = match &setting.scheme {
                Scheme::StaticToken { header, .. }
                | Scheme::TimestampedHmac { header, .. }
                | Scheme::BodyHmac { header } => header,
            };
            self.headers.insert(header.as_str().to_ascii_lowercase());
            if let Some(list) = lookup.get(&setting.secrets_var) {
                self.secrets.extend(secret_values(&list));
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.secrets.dedup();
    }

    /// Every provider's, from one configuration.
    pub fn from_settings(lookup: &dyn Lookup) -> Self {
        let mut masker = Self::default();
        for provider in Provider::ALL {
            masker.learn(provider, lookup);
        }
        masker
    }

    pub fn is_secret_header(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.headers.contains(&name) || CREDENTIAL_WORDS.iter().any(|w| name.contains(w))
    }

    /// `value` with its secret headers masked (any object under a
    /// `headers` key) and every configured secret scrubbed from its text.
    pub fn json(&self, mut value: Value) -> String {
        self.mask_headers(&mut value);
        self.scrub(&value.to_string())
    }

    fn mask_headers(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if key == "headers"
                        && let Value::Object(headers) = inner
                    {
                        for (name, v) in headers.iter_mut() {
                            if self.is_secret_header(name) {
                                *v = masked(v.as_str().unwrap_or_default()).into();
                            }
                        }
                    } else {
                        self.mask_headers(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_headers(v)),
            _ => {}
        }
    }

    /// `text` with every configured secret replaced by its mask.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), &masked(secret));
            }
        }
        text
    }

    /// Raw bytes, scrubbed the same way; `true` when something was masked.
    pub fn scrub_bytes(&self, bytes: Vec<u8>) -> (Vec<u8>, bool) {
        let found = self
            .secrets
            .iter()
            .any(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()));
        if !found {
            return (bytes, false);
        }
        (
            self.scrub(&String::from_utf8_lossy(&bytes)).into_bytes(),
            true,
        )
    }
}

/// A secrets variable's values: a JSON array of strings or a comma-separated
/// list, as the configuration reads them.
fn secret_values(list: &str) -> Vec<String> {
    let values: Vec<String> = match serde_json::from_str::<Vec<String>>(list) {
        Ok(values) => values,
        Err(_) => list.split(',').map(str::to_owned).collect(),
    };
    values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| v.len() >= MIN_SCRUBBED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(name: &str) -> Option<String> {
        match name {
            "TERIMA_BITESHIP_SECRETS" => Some("biteship-secret-one, biteship-two".to_owned()),
            "TERIMA_BITESHIP_HEADER" => Some("X-Biteship-Hook".to_owned()),
            "TERIMA_OMS_SECRETS" => Some(r#"["oms-secret-1"]"#.to_owned()),
            _ => None,
        }
    }

    #[test]
    fn masks_verification_headers_and_scrubs_secrets() {
        // GIVEN Biteship's user-named header and two providers' secrets
        let masker = Masker::from_settings(&settings);
        // THEN the user-named header, Authorization and any signature are secret
        assert!(masker.is_secret_header("x-biteship-hook"));
        assert!(masker.is_secret_header("Authorization"));
        assert!(masker.is_secret_header("x-whisperer-signature"));
        assert!(masker.is_secret_header("X-Custom-Token"));
        assert!(!masker.is_secret_header("x-bitbybit-webhook-id"));
        // WHEN a value holding them is rendered
        let text = masker.json(json!({
            "headers": {"x-biteship-hook": "biteship-two", "x-bitbybit-webhook-id": "evt-1"},
            "nested": [{"headers": {"authorization": "Bearer x"}}],
            "body": "a body quoting oms-secret-1 and biteship-secret-one",
        }));
        // THEN no secret is in it, and lengths are shown instead
        for secret in [
            "biteship-two",
            "oms-secret-1",
            "biteship-secret-one",
            "Bearer x",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("evt-1"));
        assert!(text.contains("•••• (8 chars)"));
        let (bytes, masked) = masker.scrub_bytes(b"{\"k\":\"oms-secret-1\"}".to_vec());
        assert!(masked);
        assert!(!String::from_utf8_lossy(&bytes).contains("oms-secret-1"));
    }
}
