//! ISO-8601 timestamps as the providers send them: with or without a
//! fraction, with `Z`, an offset, or nothing (taken as UTC).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
const MIN_MILLIS: i64 = -62_167_219_200_000;
const MAX_MILLIS: i64 = 253_402_300_799_999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO-8601 timestamp: {0}")]
pub struct TimestampError(&'static str);

impl Timestamp {
    pub fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub fn unix_millis(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let b = text.trim().as_bytes();
        if b.len() < 19 {
            return Err(TimestampError("too short"));
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        let second = digits(b, 17, 2)?;
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(TimestampError("expected YYYY-MM-DDTHH:MM:SS"));
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(TimestampError("expected HH:MM:SS"));
        }
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(TimestampError("no such date"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(TimestampError("no such time"));
        }
        let mut rest = &b[19..];
        let mut millis = 0i64;
        if let Some((b'.' | b',', frac)) = rest.split_first() {
            let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if len == 0 {
                return Err(TimestampError("empty fraction"));
            }
            for (i, c) in frac[..len].iter().take(3).enumerate() {
                millis += i64::from(c - b'0') * [100, 10, 1][i];
            }
            rest = &frac[len..];
        }
        let offset_minutes = match rest {
            [] | [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), tail @ ..] => {
                let (h, m) = match tail {
                    [_, _, b':', _, _] => (digits(tail, 0, 2)?, digits(tail, 3, 2)?),
                    [_, _, _, _] => (digits(tail, 0, 2)?, digits(tail, 2, 2)?),
                    [_, _] => (digits(tail, 0, 2)?, 0),
                    _ => return Err(TimestampError("bad offset")),
                };
                if h > 23 || m > 59 {
                    return Err(TimestampError("bad offset"));
                }
                let minutes = h * 60 + m;
                if *sign == b'-' { -minutes } else { minutes }
            }
            _ => return Err(TimestampError("unexpected trailing text")),
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
        let utc = seconds * 1_000 + millis;
        // `Display` writes a four-digit UTC year: an offset that pushes a time
        // out of 0000..=9999 would give text that no longer parses, and a
        // queue message that cannot be read back.
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&utc) {
            return Err(TimestampError("outside years 0000 to 9999 in UTC"));
        }
        Ok(Self(utc))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds: `2024-01-20T15:30:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.rem_euclid(1_000);
        let secs = self.0.div_euclid(1_000);
        let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3_600,
            sod % 3_600 / 60,
            sod % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn digits(b: &[u8], at: usize, len: usize) -> Result<i64, TimestampError> {
    let slice = b.get(at..at + len).ok_or(TimestampError("truncated"))?;
    slice.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit()
            .then(|| acc * 10 + i64::from(c - b'0'))
            .ok_or(TimestampError("expected a digit"))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_the_providers_send() {
        let utc = Timestamp::parse("2024-01-20T15:30:00Z").expect("plain");
        assert_eq!(utc.0, 1_705_764_600_000);
        assert_eq!(
            Timestamp::parse("2024-01-20T15:30:00").expect("no offset"),
            utc
        );
        assert_eq!(
            Timestamp::parse("2024-01-20T22:30:00+07:00").expect("offset"),
            utc
        );
        assert_eq!(
            Timestamp::parse("2024-01-20T22:30:00+0700").expect("offset"),
            utc
        );
        assert_eq!(
            Timestamp::parse("2024-01-20T15:30:00.000Z").expect("millis"),
            utc
        );
        assert_eq!(
            Timestamp::parse("2024-01-20T15:30:00.123456Z")
                .expect("micros")
                .0,
            utc.0 + 123
        );
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59.5Z")
                .expect("pre-epoch")
                .0,
            -500
        );
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for bad in [
            "",
            "2024-01-20",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-20T25:00:00Z",
            "2024-01-20T15:30:00.Z",
            "2024-01-20T15:30:00+7",
            "2024-01-20T15:30:00Zjunk",
            "yesterday at noon, roughly",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "2024-01-20T15:30:00.000Z",
            "1999-12-31T23:59:59.999Z",
            "2000-02-29T00:00:00.001Z",
        ] {
            let t = Timestamp::parse(text).expect("valid");
            assert_eq!(t.to_string(), text);
        }
    }
}
