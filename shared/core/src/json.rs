//! Reading verified bodies: a JSON parse that refuses what `serde_json::Value`
//! would silently accept (a key given twice keeps only its last value), field
//! readers that take what senders actually send (a number where the docs show
//! a string) and name the JSON path of anything they cannot use, and the
//! canonical form that tells a re-serialised retry from a different body.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::timestamp::Timestamp;

/// Where a value sits in a body, as `$.data.items[0].price`.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Why a body is not readable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("key {key:?} appears twice in the object at {path}")]
    DuplicateKey { path: String, key: String },
}

/// Parses a body into a [`Value`], refusing duplicate keys anywhere.
pub fn parse(body: &[u8]) -> Result<Value, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotUtf8)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Checked(&Path::Root)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix(DUPLICATE_MARK) {
            Some(rest) => {
                let (path, key) = rest.split_once('\u{1f}').unwrap_or((rest, ""));
                let key = key.rsplit_once(" at line").map_or(key, |(k, _)| k);
                ParseError::DuplicateKey {
                    path: path.to_owned(),
                    key: key.to_owned(),
                }
            }
            None => ParseError::Syntax(text),
        }
    })
}

/// Carries a duplicate key through serde's error type, which only holds text.
const DUPLICATE_MARK: &str = "\u{1e}duplicate\u{1e}";

struct Checked<'p>(&'p Path<'p>);

impl<'de> DeserializeSeed<'de> for Checked<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = Path::Index(self.0, items.len());
            match seq.next_element_seed(Checked(&path))? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "{DUPLICATE_MARK}{}\u{1f}{key}",
                    self.0
                )));
            }
            let path = Path::Key(self.0, &key);
            let value = map.next_value_seed(Checked(&path))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The value at `keys` below `value`, following object keys only.
pub fn at<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(value, |v, k| v.get(k))
}

/// A `$.a.b` path for messages.
pub fn path_text(keys: &[&str]) -> String {
    let mut text = String::from("$");
    for key in keys {
        text.push('.');
        text.push_str(key);
    }
    text
}

/// Why a field that is present cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{path} is {found}, expected {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path} is a number out of range for {what}")]
    OutOfRange { path: String, what: &'static str },
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The largest integer an `f64` holds exactly.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// A number as integer text, when it is a whole number held exactly.
fn whole_number_text(n: &serde_json::Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return Some(i.to_string());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.to_string());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < EXACT_F64).then(|| format!("{f:.0}"))
}

/// Text from a string or a number (ids, codes, statuses). `Ok(None)` when
/// absent or null.
pub fn text(
    value: Option<&Value>,
    path: &dyn Fn() -> String,
) -> Result<Option<String>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => match whole_number_text(n) {
            Some(text) => Ok(Some(text)),
            None if n
                .as_f64()
                .is_some_and(|f| f.fract() != 0.0 && f.abs() < EXACT_F64) =>
            {
                Ok(Some(n.to_string()))
            }
            None => Err(FieldError::OutOfRange {
                path: path(),
                what: "an exact identifier",
            }),
        },
        Some(other) => Err(FieldError::WrongType {
            path: path(),
            expected: "a string or a number",
            found: type_name(other),
        }),
    }
}

/// A whole amount (rupiah, a quantity): an integer, a float with no fraction
/// or a numeric string. A fraction is refused rather than rounded.
pub fn whole(value: Option<&Value>, path: &dyn Fn() -> String) -> Result<Option<i64>, FieldError> {
    let wrong = |found| FieldError::WrongType {
        path: path(),
        expected: "a whole number",
        found,
    };
    let range = || FieldError::OutOfRange {
        path: path(),
        what: "a 64-bit whole number",
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            if n.as_u64().is_some() {
                return Err(range());
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                Err(wrong("a number with a fraction"))
            } else if f.abs() < EXACT_F64 {
                Ok(Some(f as i64))
            } else {
                Err(range())
            }
        }
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
                ) =>
            {
                Err(range())
            }
            Err(_) => Err(wrong("a string that is not a whole number")),
        },
        Some(other) => Err(wrong(type_name(other))),
    }
}

/// A boolean, or `None`.
pub fn boolean(
    value: Option<&Value>,
    path: &dyn Fn() -> String,
) -> Result<Option<bool>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(FieldError::WrongType {
            path: path(),
            expected: "a boolean",
            found: type_name(other),
        }),
    }
}

/// A time, if the field holds one that parses.
pub fn time(value: Option<&Value>) -> Option<Timestamp> {
    value
        .and_then(Value::as_str)
        .and_then(|t| Timestamp::parse(t).ok())
}

/// The canonical text of a value: object keys sorted, no whitespace. Two
/// bodies with the same JSON value (whatever their key order, spacing or
/// escapes) have the same canonical text.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Hex SHA-256 of the canonical text.
pub fn digest(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let err = parse(br#"{"a": 1, "data": {"id": 1, "x": [{"k": 1, "k": 2}]}}"#)
            .expect_err("duplicate");
        assert_eq!(
            err,
            ParseError::DuplicateKey {
                path: "$.data.x[0]".into(),
                key: "k".into()
            }
        );
        assert!(err.to_string().contains("\"k\" appears twice"), "{err}");
        assert!(matches!(parse(b"{\"a\":1} x"), Err(ParseError::Syntax(_))));
        assert_eq!(parse(b"\xff"), Err(ParseError::NotUtf8));
        assert_eq!(
            parse(br#"{"a": [1, 2.5, "t", null, true]}"#).expect("valid"),
            serde_json::json!({"a": [1, 2.5, "t", null, true]})
        );
    }

    #[test]
    fn text_takes_strings_and_whole_numbers() {
        let p = || "$.id".to_owned();
        let v = |s: &str| serde_json::from_str::<Value>(s).expect("json");
        assert_eq!(text(Some(&v("\"A1\"")), &p), Ok(Some("A1".into())));
        assert_eq!(text(Some(&v("1001")), &p), Ok(Some("1001".into())));
        assert_eq!(text(Some(&v("1001.0")), &p), Ok(Some("1001".into())));
        assert_eq!(text(Some(&v("-3")), &p), Ok(Some("-3".into())));
        assert_eq!(
            text(Some(&v("18446744073709551615")), &p),
            Ok(Some("18446744073709551615".into()))
        );
        assert!(matches!(
            text(Some(&v("123456789012345678901234567890")), &p),
            Err(FieldError::OutOfRange { .. })
        ));
        assert!(matches!(
            text(Some(&v("{}")), &p),
            Err(FieldError::WrongType { .. })
        ));
        assert_eq!(text(Some(&Value::Null), &p), Ok(None));
        assert_eq!(text(None, &p), Ok(None));
    }

    #[test]
    fn whole_amounts_refuse_fractions_and_overflow() {
        let p = || "$.price".to_owned();
        let v = |s: &str| serde_json::from_str::<Value>(s).expect("json");
        assert_eq!(whole(Some(&v("150000")), &p), Ok(Some(150_000)));
        assert_eq!(whole(Some(&v("150000.0")), &p), Ok(Some(150_000)));
        assert_eq!(whole(Some(&v("\" 150000 \"")), &p), Ok(Some(150_000)));
        assert!(matches!(
            whole(Some(&v("1.5")), &p),
            Err(FieldError::WrongType { .. })
        ));
        assert!(matches!(
            whole(Some(&v("18446744073709551615")), &p),
            Err(FieldError::OutOfRange { .. })
        ));
        assert!(matches!(
            whole(Some(&v("\"99999999999999999999\"")), &p),
            Err(FieldError::OutOfRange { .. })
        ));
    }

    #[test]
    fn canonical_text_ignores_order_spacing_and_escapes() {
        let a = parse(br#"{"b": 1, "a": {"y": "\u0130", "x": [1, 2]}}"#).expect("json");
        let b = parse("{\"a\":{\"x\":[1,2],\"y\":\"\u{130}\"},\"b\":1}".as_bytes()).expect("json");
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(digest(&a), digest(&b));
        let c = parse(br#"{"b": 2, "a": {"y": "\u0130", "x": [1, 2]}}"#).expect("json");
        assert_ne!(digest(&a), digest(&c));
    }
}
