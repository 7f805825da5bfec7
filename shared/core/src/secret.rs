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

impl SecretSet {
    /// Parses a comma-separated list (surrounding whitespace ignored, empty
    /// entries dropped). Returns `None` when nothing is left.
    pub fn parse_list(list: &str) -> Option<Self> {
        let secrets: Vec<Secret> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        Self::from_secrets(secrets)
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
        let set = SecretSet::parse_list("hunter2, correct-horse").expect("two secrets");
        let shown = format!("{set:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("correct-horse"), "{shown}");
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn empty_lists_are_refused() {
        assert!(SecretSet::parse_list("").is_none());
        assert!(SecretSet::parse_list(" , ,").is_none());
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
