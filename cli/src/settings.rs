//! Configuration for the CLI: the same variables as the functions, read from
//! the process environment first and then from an optional env file, so that
//! `terima serve --env-file events/test-secrets.env` runs with no other setup
//! and a real environment always wins.

use std::collections::HashMap;
use std::path::Path;

use terima_service::{Env, Lookup};

use crate::failure::Failure;

#[derive(Clone, Debug, Default)]
pub struct Settings {
    file: HashMap<String, String>,
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
        Self::parse(&text).map_err(|(line, reason)| {
            Failure::Config(format!("env file {} line {line}: {reason}", path.display()))
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut file = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line
                .split_once('=')
                .ok_or((index + 1, "expected KEY=value"))?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((index + 1, "the key is not a variable name"));
            }
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value);
            file.insert(key.to_owned(), unquoted.to_owned());
        }
        Ok(Self { file })
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
            Err((2, "expected KEY=value"))
        );
        assert_eq!(
            Settings::parse("BAD KEY=1").map(|_| ()),
            Err((1, "the key is not a variable name"))
        );
    }
}
