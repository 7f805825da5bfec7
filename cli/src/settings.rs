//! Configuration for the CLI: the same variables as the functions, read from
//! the process environment first and then from an optional env file, so that
//! `terima serve --env-file events/test-secrets.env` runs with no other setup
//! and a real environment always wins.

use std::collections::BTreeMap;
use std::path::Path;

use terima_service::config::{EnvFileError, parse_env_file};
use terima_service::{Env, Lookup};

use crate::failure::Failure;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    file: BTreeMap<String, String>,
}

impl Settings {
    /// Reads `path` if given: `KEY=value` lines, `#` comments, an optional
    /// `export ` prefix and optional surrounding quotes.
    pub fn load(path: Option<&Path>) -> Result<Self, Failure> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::Config(format!("cannot read env file {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| Failure::Config(format!("env file {} {e}", path.display())))
    }

    fn parse(text: &str) -> Result<Self, EnvFileError> {
        Ok(Self {
            file: parse_env_file(text)?,
        })
    }
}

impl Lookup for Settings {
    fn get(&self, name: &str) -> Option<String> {
        Env.get(name).or_else(|| {
            self.file
                .get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_secrets_format() {
        let settings = Settings::parse(
            "# comment\n\nTERIMA_X_ONE=a=b\nexport TERIMA_X_TWO=\"quoted\"\nTERIMA_X_EMPTY=\n",
        )
        .expect("valid file");
        assert_eq!(settings.get("TERIMA_X_ONE").as_deref(), Some("a=b"));
        assert_eq!(settings.get("TERIMA_X_TWO").as_deref(), Some("quoted"));
        assert_eq!(settings.get("TERIMA_X_EMPTY"), None);
        assert_eq!(settings.get("TERIMA_X_MISSING"), None);
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(
            Settings::parse("A=1\nnonsense\n").map(|_| ()),
            Err(EnvFileError {
                line: 2,
                reason: "expected KEY=value"
            })
        );
        assert_eq!(
            Settings::parse("BAD KEY=1").map(|_| ()),
            Err(EnvFileError {
                line: 1,
                reason: "the key is not a variable name"
            })
        );
    }
}
