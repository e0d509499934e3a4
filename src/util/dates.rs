//! Calendar dates and times: parsed and formatted by the `time` crate,
//! never by hand-written calendar code (which accepted `2026-02-31` and
//! shifted it into March).
//!
//! Why `time` (of the date crates already in the dependency tree: `time`,
//! `jiff`, `chrono`): its RFC 3339 parser is strict (four-digit year, two-
//! digit fields, an offset required), refuses impossible dates and times
//! (`2026-04-31`, `2026-02-29`, `24:00`), and accepts a leap second only
//! where one can occur (`23:59:60` UTC on a month's last day), counting it
//! as the second before; `jiff` turns any `:60` into `:59`, and `chrono`
//! accepts `:60` at any minute.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// A date, a time or a number that is not one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("`{text}` is not a calendar date like 2026-11-23 ({why})")]
    Date { text: String, why: String },
    #[error("`{text}` is not an RFC 3339 time like 2026-11-23T08:00:00Z ({why})")]
    Time { text: String, why: String },
    #[error("{0} is beyond the years 0000 to 9999")]
    OutOfRange(i64),
}

/// `YYYY-MM-DD`, a real day of the proleptic Gregorian calendar.
pub fn parse_date(text: &str) -> Result<Date, DateError> {
    Date::parse(text, format_description!("[year repr:full]-[month]-[day]")).map_err(|e| {
        DateError::Date {
            text: text.to_string(),
            why: e.to_string(),
        }
    })
}

/// An RFC 3339 time with its offset (`Z` or `±HH:MM`), as milliseconds
/// since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, DateError> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| DateError::Time {
        text: text.to_string(),
        why: e.to_string(),
    })?;
    // At most ±253402300800 s · 1000: within i64.
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The first millisecond of `date` in UTC, since the epoch.
pub fn date_start_ms(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp() * 1000
}

/// Unix seconds as RFC 3339 in UTC (`2026-11-23T08:00:00Z`); a value
/// beyond the years 0000-9999 says so instead.
pub fn format_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.to_offset(UtcOffset::UTC).format(&Rfc3339).ok())
        .unwrap_or_else(|| DateError::OutOfRange(secs).to_string())
}

/// `date` as `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    date.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_else(|_| DateError::OutOfRange(i64::from(date.year())).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_dates_only() {
        for (text, day_number) in [
            ("1970-01-01", 0),
            ("2026-11-23", 20_780),
            ("1969-12-31", -1),
            ("2024-02-29", 19_782),
            ("2000-02-29", 11_016),
        ] {
            let date = parse_date(text).expect(text);
            assert_eq!(date_start_ms(date), day_number * 86_400_000, "{text}");
            assert_eq!(format_date(date), text);
        }
        for bad in [
            "2026-02-29",
            "2026-02-31",
            "2026-04-31",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-1-5",
            "26-01-05",
            "2026-01-05T00:00:00Z",
            "2026/01/05",
            " 2026-01-05",
            "",
        ] {
            let err = parse_date(bad).expect_err(bad);
            assert!(
                err.to_string().contains("not a calendar date"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn real_times_only() {
        for (text, ms) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-24T08:00:00Z", 1_795_507_200_000),
            ("2026-11-24t08:00:00z", 1_795_507_200_000),
            ("2026-11-24 08:00:00Z", 1_795_507_200_000),
            ("2026-11-24T09:00:00.5+01:00", 1_795_507_200_500),
            ("2024-02-29T23:59:59-00:30", 1_709_252_999_000),
            // A leap second where one can be: the second before.
            ("2016-12-31T23:59:60Z", 1_483_228_799_999),
        ] {
            assert_eq!(parse_rfc3339_ms(text), Ok(ms), "{text}");
        }
        for bad in [
            "2026-02-31T08:00:00Z",
            "2026-02-29T08:00:00Z",
            "2026-04-31T08:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T23:60:00Z",
            "2026-11-24T08:00:61Z",
            // Leap seconds where none can be.
            "2026-11-24T08:00:60Z",
            "2026-11-24T23:59:60+01:00",
            "2026-11-24T08:00:00",
            "2026-11-24T08:00Z",
            "2026-11-24T08:00:00+24:00",
            "2026-11-24",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(86_399), "1970-01-01T23:59:59Z");
        assert_eq!(format_unix(-1), "1969-12-31T23:59:59Z");
        assert_eq!(
            format_unix(i64::MAX),
            "9223372036854775807 is beyond the years 0000 to 9999"
        );
    }
}
