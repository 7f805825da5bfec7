//! Secrets that never show up in logs or `Debug` output.

use std::fmt;

use subtle::ConstantTimeEq;

/// One shared secret or static token. `Debug` prints `Secret(***)`.
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into().into_boxed_slice())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Compares in time that depends only on the lengths, never on where the
    /// first differing byte is.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every secret currently accepted for one provider, oldest first. Several are
/// accepted at once so that a secret can be rotated without downtime: add the
/// new one, switch the provider over, then remove the old one.
#[derive(Clone, Debug)]
pub struct SecretSet(Vec<Secret>);

/// Why a configured secret list cannot be used. Never shows a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("no secret in the list")]
    Empty,
    #[error("starts with '[' but is not a JSON array of non-empty strings")]
    NotAStringArray,
}

impl SecretSet {
    /// Parses a configured list, in either of two forms:
    /// - a JSON array of strings, `["s3cr,et", "other"]`: any characters,
    ///   commas and surrounding spaces included, exactly as given;
    /// - otherwise a comma-separated list (surrounding whitespace ignored,
    ///   empty entries dropped), the historical form.
    ///
    /// A value starting with `[` is always read as JSON, so a secret that
    /// starts with `[` must be given in the array form.
    pub fn parse(text: &str) -> Result<Self, SecretFormatError> {
        let trimmed = text.trim();
        let secrets: Vec<Secret> = if trimmed.starts_with('[') {
            let list: Vec<String> =
                serde_json::from_str(trimmed).map_err(|_| SecretFormatError::NotAStringArray)?;
            if list.iter().any(String::is_empty) {
                return Err(SecretFormatError::NotAStringArray);
            }
            list.into_iter().map(Secret::new).collect()
        } else {
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect()
        };
        Self::from_secrets(secrets).ok_or(SecretFormatError::Empty)
    }

    pub fn from_secrets(secrets: Vec<Secret>) -> Option<Self> {
        (!secrets.is_empty()).then_some(Self(secrets))
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Secret)> {
        self.0.iter().enumerate()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let set = SecretSet::parse("hunter2, correct-horse").expect("two secrets");
        let shown = format!("{set:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("correct-horse"), "{shown}");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn empty_lists_are_refused() {
        assert_eq!(
            SecretSet::parse("").map(|_| ()),
            Err(SecretFormatError::Empty)
        );
        assert_eq!(
            SecretSet::parse(" , ,").map(|_| ()),
            Err(SecretFormatError::Empty)
        );
        assert_eq!(
            SecretSet::parse("[]").map(|_| ()),
            Err(SecretFormatError::Empty)
        );
    }

    #[test]
    fn a_json_array_carries_any_printable_character() {
        let printable: String = (' '..='~').collect();
        let text = serde_json::to_string(&vec![printable.as_str(), " a,b "]).expect("json");
        let set = SecretSet::parse(&text).expect("array form");
        let values: Vec<&[u8]> = set.iter().map(|(_, s)| s.expose()).collect();
        assert_eq!(values, vec![printable.as_bytes(), b" a,b ".as_slice()]);
        let list = SecretSet::parse(" one , two,,").expect("comma form");
        let values: Vec<&[u8]> = list.iter().map(|(_, s)| s.expose()).collect();
        assert_eq!(values, vec![b"one".as_slice(), b"two".as_slice()]);
        for bad in ["[1, 2]", "[\"a\"", "[\"\"]", "[\"a\", null]"] {
            assert_eq!(
                SecretSet::parse(bad).map(|_| ()),
                Err(SecretFormatError::NotAStringArray),
                "{bad}"
            );
        }
        let shown = SecretSet::parse("[\"x,y\"]")
            .map(|s| format!("{s:?}"))
            .expect("ok");
        assert!(!shown.contains("x,y"), "{shown}");
    }

    #[test]
    fn matches_requires_equal_bytes() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
        assert!(!s.matches(b"abcd"));
    }
}
