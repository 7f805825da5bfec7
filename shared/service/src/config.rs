//! Configuration, read once per cold start into typed structs. Every problem
//! is reported with the variable's name, before any request is served.

use std::collections::BTreeMap;

use terima_core::providers::{SchemeError, SchemeSetting};
use terima_core::{Provider, SecretSet, Verification, Verifier};

pub use terima_core::Lookup;

/// Default largest body accepted: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The largest body limit that can be configured. A Lambda function's
/// request is at most 6 MB, and API Gateway's event carries the body as a
/// JSON string: its quotes and backslashes are escaped (a fifth more for a
/// JSON body heavy in short strings) besides the headers around it. 4 MiB
/// leaves that room.
pub const MAX_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Default lifetime of the event log, work and conflict records, in days. A
/// work record is also what answers `duplicate`, so this is the dedup window:
/// far beyond every provider's retries (Bebas Kirim retries for 24 hours).
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// Default time raw bodies are kept after the event log expired (the S3
/// archive, the embedded store's archive table), in days.
pub const DEFAULT_ARCHIVE_DAYS: i64 = 400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(String),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: String, reason: String },
    #[error(
        "no secret configured for {provider}: set {vars} (a JSON array of strings, or a \
         comma-separated list), or set TERIMA_{infix}_VERIFY=off to accept unverified \
         deliveries on purpose",
        infix = provider.env_infix()
    )]
    NoSecrets { provider: Provider, vars: String },
}

impl From<SchemeError> for ConfigError {
    fn from(e: SchemeError) -> Self {
        match e {
            SchemeError::Missing(var) => Self::Missing(var),
            SchemeError::Invalid { var, reason } => Self::Invalid { var, reason },
        }
    }
}

/// The process environment.
pub struct Env;

impl Lookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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

/// The variable holding a provider's (first scheme's) secrets.
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

/// `TERIMA_RETENTION_DAYS`, at least 1.
pub fn retention_days(lookup: &dyn Lookup) -> Result<i64, ConfigError> {
    let days = number(lookup, "TERIMA_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)?;
    if days < 1 {
        return Err(ConfigError::Invalid {
            var: "TERIMA_RETENTION_DAYS".to_owned(),
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(days)
}

/// `TERIMA_ARCHIVE_DAYS`, at least the retention period.
pub fn archive_days(lookup: &dyn Lookup) -> Result<i64, ConfigError> {
    let days = number(lookup, "TERIMA_ARCHIVE_DAYS", DEFAULT_ARCHIVE_DAYS)?;
    let retention = retention_days(lookup)?;
    if days < retention {
        return Err(ConfigError::Invalid {
            var: "TERIMA_ARCHIVE_DAYS".to_owned(),
            reason: format!("must be at least TERIMA_RETENTION_DAYS ({retention})"),
        });
    }
    Ok(days)
}

/// One provider endpoint's settings.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub provider: Provider,
    pub verification: Verification,
    pub body_limit: usize,
}

impl EndpointConfig {
    /// Reads `TERIMA_<P>_VERIFY`, the provider's schemes and their secrets,
    /// and `TERIMA_MAX_BODY_BYTES`.
    pub fn load(provider: Provider, lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let body_limit = number(lookup, "TERIMA_MAX_BODY_BYTES", DEFAULT_BODY_LIMIT)?;
        if !(1..=MAX_BODY_LIMIT).contains(&body_limit) {
            return Err(ConfigError::Invalid {
                var: "TERIMA_MAX_BODY_BYTES".to_owned(),
                reason: format!(
                    "must be between 1 and {MAX_BODY_LIMIT} (Lambda's 6 MB request, with the event around the body)"
                ),
            });
        }
        Ok(Self {
            provider,
            verification: verification(provider, lookup)?,
            body_limit,
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
    let settings = provider.spec().schemes(lookup)?;
    let vars: Vec<String> = settings.iter().map(|s| s.secrets_var.clone()).collect();
    let mut verifiers = Vec::new();
    for SchemeSetting {
        scheme,
        secrets_var,
    } in settings
    {
        let Some(list) = lookup.get(&secrets_var) else {
            continue;
        };
        let secrets = SecretSet::parse(&list).map_err(|e| ConfigError::Invalid {
            var: secrets_var.clone(),
            reason: e.to_string(),
        })?;
        verifiers.push(Verifier::new(scheme, secrets));
    }
    if verifiers.is_empty() {
        return Err(ConfigError::NoSecrets {
            provider,
            vars: vars.join(" or "),
        });
    }
    Ok(Verification::Enforced(verifiers))
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

    /// How long one event's work may run: five sixths of the lease, so the
    /// holder gives up (and records the failure) before its lease can lapse
    /// and another copy take over work still running.
    pub fn deadline_millis(&self) -> i64 {
        (self.lease_millis / 6 * 5).max(1)
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
                vars: "TERIMA_BITBYBIT_SECRETS".into()
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
