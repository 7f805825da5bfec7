//! Dedup and work keys: the parts that identify a state change, joined so
//! that no two different part lists give the same key, with personal data
//! hashed before it reaches a table key or a log line.
//!
//! Encoding: each part has `%` written `%25` and `|` written `%7C`, and the
//! parts are joined with `|`. Decoding splits on `|` and undoes the two
//! escapes, so the part list comes back exactly: `O1|X` + `Y` and `O1` +
//! `X|Y` give `O1%7CX|Y` and `O1|X%7CY`. Parts without either character are
//! written as they are, so keys stay readable. A key longer than
//! [`MAX_KEY_LEN`] is replaced by `sha256:<hex>` of its encoding, which
//! keeps it unambiguous (up to SHA-256 collisions) and within DynamoDB's key
//! limit.

use sha2::{Digest, Sha256};

/// Longest key kept as text.
pub const MAX_KEY_LEN: usize = 256;

/// Builds one key from its parts.
#[derive(Default)]
pub struct KeyBuilder {
    encoded: String,
    parts: usize,
}

impl KeyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part as it is.
    pub fn part(mut self, part: &str) -> Self {
        if self.parts > 0 {
            self.encoded.push('|');
        }
        for c in part.chars() {
            match c {
                '%' => self.encoded.push_str("%25"),
                '|' => self.encoded.push_str("%7C"),
                c => self.encoded.push(c),
            }
        }
        self.parts += 1;
        self
    }

    /// Adds a part that is personal data (a plate number, a phone): only a
    /// one-way digest of it is kept. Empty stays empty.
    pub fn private_part(self, part: &str) -> Self {
        if part.is_empty() {
            return self.part("");
        }
        let mut hasher = Sha256::new();
        hasher.update(b"terima-key-part:");
        hasher.update(part.as_bytes());
        let digest = hex::encode(&hasher.finalize()[..16]);
        self.part(&format!("h:{digest}"))
    }

    pub fn finish(self) -> String {
        if self.encoded.len() <= MAX_KEY_LEN {
            self.encoded
        } else {
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(self.encoded.as_bytes()))
            )
        }
    }
}

/// Splits a key that was not hashed back into its parts.
pub fn decode(key: &str) -> Option<Vec<String>> {
    if key.starts_with("sha256:") && key.len() == 71 {
        return None;
    }
    Some(
        key.split('|')
            .map(|part| part.replace("%7C", "|").replace("%25", "%"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> String {
        parts
            .iter()
            .fold(KeyBuilder::new(), |b, p| b.part(p))
            .finish()
    }

    #[test]
    fn separator_bearing_parts_never_collide() {
        assert_ne!(key(&["O1|X", "Y"]), key(&["O1", "X|Y"]));
        assert_ne!(key(&["a%7C", "b"]), key(&["a|", "b"]));
        assert_ne!(key(&["a", ""]), key(&["a"]));
        assert_eq!(
            key(&["TEN-1", "order.packed", "ORD-1"]),
            "TEN-1|order.packed|ORD-1"
        );
        for parts in [
            vec!["O1|X", "Y"],
            vec!["%", "|", "%7C", "%25"],
            vec!["", "", ""],
            vec!["plain"],
        ] {
            let decoded = decode(&key(&parts)).expect("short keys decode");
            assert_eq!(decoded, parts, "{parts:?}");
        }
    }

    #[test]
    fn private_parts_are_hashed_and_long_keys_bounded() {
        let k = KeyBuilder::new()
            .part("o1")
            .private_part("B 1234 XYZ")
            .finish();
        assert!(!k.contains("1234"), "{k}");
        assert!(k.starts_with("o1|h:"), "{k}");
        let other = KeyBuilder::new()
            .part("o1")
            .private_part("B 1234 XYA")
            .finish();
        assert_ne!(k, other);
        let long = key(&["a", &"x".repeat(300)]);
        assert!(long.starts_with("sha256:") && long.len() == 71, "{long}");
        assert_eq!(decode(&long), None);
    }
}
