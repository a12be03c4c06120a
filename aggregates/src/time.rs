//! Reading event timestamps fast.
//!
//! Every event carries an `at`, written by chrono as RFC 3339 in UTC
//! (`2026-01-01T09:00:00Z`, with a fraction when there is one). chrono's own parser is
//! general (any offset, relaxed separators) and was the largest single cost of decoding
//! an event during a replay of the log; [`deserialize`] reads the canonical UTC form
//! directly and hands anything else to chrono, so it accepts exactly what chrono does.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::de::{Deserializer, Error, Visitor};

/// `#[serde(deserialize_with = "crate::time::deserialize")]` for a `DateTime<Utc>`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(Rfc3339)
}

struct Rfc3339;

impl Visitor<'_> for Rfc3339 {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an RFC 3339 date and time")
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
        match canonical_utc(s.as_bytes()) {
            Some(t) => Ok(t),
            None => s
                .parse::<DateTime<chrono::FixedOffset>>()
                .map(|t| t.with_timezone(&Utc))
                .map_err(E::custom),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.F{1,9}]Z` (or `+00:00` for the `Z`), as chrono writes UTC.
fn canonical_utc(s: &[u8]) -> Option<DateTime<Utc>> {
    if s.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        s[range].iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    if s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(20..20 + digits)? * 10u32.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    if rest != b"Z" && rest != b"+00:00" {
        return None;
    }
    // Leap seconds (second 60) and anything chrono would reject go the general way.
    if second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_parse(s: &str) -> Option<DateTime<Utc>> {
        serde_json::from_value::<DateTime<Utc>>(serde_json::Value::String(s.into())).ok()
    }

    fn ours(s: &str) -> Option<DateTime<Utc>> {
        serde_json::from_value::<Wrapped>(serde_json::json!({ "at": s }))
            .ok()
            .map(|w| w.at)
    }

    #[derive(serde::Deserialize)]
    struct Wrapped {
        #[serde(deserialize_with = "deserialize")]
        at: DateTime<Utc>,
    }

    #[test]
    fn accepts_exactly_what_chrono_accepts() {
        for s in [
            "2026-01-01T00:00:00Z",
            "2026-11-26T14:02:03.5Z",
            "2026-11-26T14:02:03.123456789Z",
            "2026-11-26T14:02:03.1234567891Z",
            "2026-11-26T14:02:03+00:00",
            "2026-11-26T14:02:03+02:00",
            "2026-11-26T14:02:03-05:30",
            "2026-11-26 14:02:03Z",
            "2026-11-26t14:02:03z",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T23:59:59.Z",
            "2026-12-31T23:59:59",
            "2026-12-31T23:59:59ZZ",
            "+2026-12-31T23:59:59Z",
            "",
            "not a time",
        ] {
            assert_eq!(ours(s), chrono_parse(s), "{s:?}");
        }
        let now = Utc::now();
        let written = serde_json::to_value(now).unwrap();
        assert!(canonical_utc(written.as_str().unwrap().as_bytes()).is_some());
        assert_eq!(ours(written.as_str().unwrap()), Some(now));
    }
}
