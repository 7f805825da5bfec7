//! Configuration, read once per cold start into typed structs. Every problem
//! is reported with the variable's name, before any request is served.

use std::collections::BTreeMap;

use http::HeaderName;
use terima_core::providers::{bitbybit, oms};
use terima_core::verify::DEFAULT_TIMESTAMP_TOLERANCE_SECS;
use terima_core::{Provider, Scheme, SecretSet, Verification, Verifier};

/// Default largest body accepted: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Default lifetime of a dedup record: 7 days, longer than the longest retry
/// window of any provider (Bebas Kirim retries for 24 hours).
pub const DEFAULT_DEDUP_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(String),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: String, reason: String },
    #[error(
        "no secret configured for {provider}: set {var} (a comma-separated list), or set \
         TERIMA_{infix}_VERIFY=off to accept unverified deliveries on purpose",
        infix = provider.env_infix()
    )]
    NoSecrets { provider: Provider, var: String },
}

/// Where configuration values come from: the process environment in the
/// functions and the CLI, a map in tests.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Lookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A bad line in an env file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EnvFileError {
    pub line: usize,
    pub reason: &'static str,
}

/// Reads an env file such as `events/test-secrets.env`: `KEY=value` lines,
/// `#` comments and blank lines skipped, an optional `export ` prefix and one
/// pair of surrounding quotes removed. The one parser of that format for the
/// CLI, the sample generator, the tests and the benchmarks.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, EnvFileError> {
    let mut vars = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason| EnvFileError {
            line: index + 1,
            reason,
        };
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or(bad("expected KEY=value"))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("the key is not a variable name"));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.to_owned(), unquoted.to_owned());
    }
    Ok(vars)
}

pub fn secrets_var(provider: Provider) -> String {
    format!("TERIMA_{}_SECRETS", provider.env_infix())
}

/// Parses an optional numeric variable.
pub fn number<T: std::str::FromStr>(
    lookup: &dyn Lookup,
    var: &str,
    default: T,
) -> Result<T, ConfigError> {
    match lookup.get(var) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| ConfigError::Invalid {
            var: var.to_owned(),
            reason: format!("expected a non-negative whole number, got {text:?}"),
        }),
    }
}

/// One provider endpoint's settings.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub provider: Provider,
    pub verification: Verification,
    pub body_limit: usize,
    pub dedup_ttl_secs: i64,
}

impl EndpointConfig {
    /// Reads `TERIMA_<P>_VERIFY`, `TERIMA_<P>_SECRETS` and the provider's
    /// scheme settings, `TERIMA_MAX_BODY_BYTES` and `TERIMA_DEDUP_TTL_SECS`.
    pub fn load(provider: Provider, lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        Ok(Self {
            provider,
            verification: verification(provider, lookup)?,
            body_limit: number(lookup, "TERIMA_MAX_BODY_BYTES", DEFAULT_BODY_LIMIT)?,
            dedup_ttl_secs: number(lookup, "TERIMA_DEDUP_TTL_SECS", DEFAULT_DEDUP_TTL_SECS)?,
        })
    }
}

fn verification(provider: Provider, lookup: &dyn Lookup) -> Result<Verification, ConfigError> {
    let infix = provider.env_infix();
    let verify_var = format!("TERIMA_{infix}_VERIFY");
    match lookup.get(&verify_var).as_deref().map(str::trim) {
        None | Some("on") => {}
        Some("off") => return Ok(Verification::Disabled),
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: verify_var,
                reason: format!("expected on or off, got {other:?}"),
            });
        }
    }
    let var = secrets_var(provider);
    let secrets = lookup
        .get(&var)
        .and_then(|list| SecretSet::parse_list(&list))
        .ok_or(ConfigError::NoSecrets {
            provider,
            var: var.clone(),
        })?;
    Ok(Verification::Enforced(Verifier::new(
        scheme(provider, lookup)?,
        secrets,
    )))
}

fn header_var(lookup: &dyn Lookup, var: &str) -> Result<Option<HeaderName>, ConfigError> {
    lookup
        .get(var)
        .map(|name| {
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| ConfigError::Invalid {
                var: var.to_owned(),
                reason: format!("{name:?} is not a valid HTTP header name"),
            })
        })
        .transpose()
}

fn scheme(provider: Provider, lookup: &dyn Lookup) -> Result<Scheme, ConfigError> {
    Ok(match provider {
        Provider::BebasKirim => Scheme::StaticToken {
            header: http::header::AUTHORIZATION,
            bearer: true,
        },
        Provider::BitByBit => Scheme::TimestampedHmac {
            header: HeaderName::from_static(bitbybit::SIGNATURE_HEADER),
            tolerance_secs: number(
                lookup,
                "TERIMA_BITBYBIT_TOLERANCE_SECS",
                DEFAULT_TIMESTAMP_TOLERANCE_SECS,
            )?,
        },
        // Akinon signs with the subscription's secret_key; a subscription
        // without one can only carry a static token in additional_headers.
        Provider::Oms => match header_var(lookup, "TERIMA_OMS_HEADER")? {
            Some(header) => Scheme::StaticToken {
                header,
                bearer: false,
            },
            None => Scheme::BodyHmac {
                header: HeaderName::from_static(oms::SIGNATURE_HEADER),
            },
        },
        // Biteship sends a header whose name the user typed in the dashboard.
        Provider::Biteship => Scheme::StaticToken {
            header: header_var(lookup, "TERIMA_BITESHIP_HEADER")?
                .ok_or_else(|| ConfigError::Missing("TERIMA_BITESHIP_HEADER".to_owned()))?,
            bearer: false,
        },
    })
}

/// The processor's settings.
#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    /// How long a lease on an event's work lasts. Longer than the processor's
    /// timeout, so a live holder never loses it; a dead one's lapses.
    pub lease_millis: i64,
    /// How many records of a batch run at once.
    pub concurrency: usize,
}

/// Default lease: the processor's 60 s timeout plus a margin.
pub const DEFAULT_LEASE_SECS: i64 = 90;
pub const DEFAULT_CONCURRENCY: usize = 8;

impl ProcessorConfig {
    pub fn load(lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let lease_secs: i64 = number(lookup, "TERIMA_LEASE_SECS", DEFAULT_LEASE_SECS)?;
        // A lease of zero or less lapses as soon as it is taken: every copy of
        // an event would take it and once-only processing would be lost.
        if lease_secs < 1 {
            return Err(ConfigError::Invalid {
                var: "TERIMA_LEASE_SECS".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        let concurrency = number(lookup, "TERIMA_CONCURRENCY", DEFAULT_CONCURRENCY)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid {
                var: "TERIMA_CONCURRENCY".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(Self {
            lease_millis: lease_secs.saturating_mul(1_000),
            concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Lookup {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn no_secret_refuses_to_start_with_the_variable_named() {
        let err = EndpointConfig::load(Provider::BitByBit, &lookup(&[])).expect_err("no secret");
        assert_eq!(
            err,
            ConfigError::NoSecrets {
                provider: Provider::BitByBit,
                var: "TERIMA_BITBYBIT_SECRETS".into()
            }
        );
        assert!(
            err.to_string().contains("TERIMA_BITBYBIT_VERIFY=off"),
            "{err}"
        );
    }

    #[test]
    fn verification_is_off_only_when_said_so() {
        let off = EndpointConfig::load(
            Provider::BebasKirim,
            &lookup(&[("TERIMA_BEBASKIRIM_VERIFY", "off")]),
        )
        .expect("explicitly off");
        assert!(matches!(off.verification, Verification::Disabled));
        let typo = EndpointConfig::load(
            Provider::BebasKirim,
            &lookup(&[("TERIMA_BEBASKIRIM_VERIFY", "of")]),
        );
        assert!(matches!(typo, Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn biteship_needs_its_header_name() {
        let err = EndpointConfig::load(
            Provider::Biteship,
            &lookup(&[("TERIMA_BITESHIP_SECRETS", "s")]),
        )
        .expect_err("no header name");
        assert_eq!(err, ConfigError::Missing("TERIMA_BITESHIP_HEADER".into()));
        let ok = EndpointConfig::load(
            Provider::Biteship,
            &lookup(&[
                ("TERIMA_BITESHIP_SECRETS", "s"),
                ("TERIMA_BITESHIP_HEADER", "X-Biteship-Token"),
            ]),
        )
        .expect("configured");
        assert_eq!(ok.body_limit, DEFAULT_BODY_LIMIT);
        assert_eq!(ok.dedup_ttl_secs, DEFAULT_DEDUP_TTL_SECS);
    }

    #[test]
    fn env_files_parse_like_a_shell_and_name_the_bad_line() {
        let vars =
            parse_env_file("# comment\n\nA=b=c\nexport B=\"two\"\nC='x,y'\nD=\n").expect("valid");
        assert_eq!(vars["A"], "b=c");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "x,y");
        assert_eq!(vars["D"], "");
        assert_eq!(
            parse_env_file("A=1\nnonsense\n"),
            Err(EnvFileError {
                line: 2,
                reason: "expected KEY=value"
            })
        );
        assert_eq!(
            parse_env_file("BAD KEY=1"),
            Err(EnvFileError {
                line: 1,
                reason: "the key is not a variable name"
            })
        );
    }

    #[test]
    fn numbers_are_checked() {
        let err = EndpointConfig::load(
            Provider::BebasKirim,
            &lookup(&[
                ("TERIMA_BEBASKIRIM_SECRETS", "s"),
                ("TERIMA_MAX_BODY_BYTES", "1MB"),
            ]),
        )
        .expect_err("not a number");
        assert!(
            matches!(err, ConfigError::Invalid { ref var, .. } if var == "TERIMA_MAX_BODY_BYTES")
        );
    }
}
