//! Values several settings share, parsed the same way everywhere:
//! durations (`"10s"`) and http(s) URLs. Also used outside config (API key
//! validity, audit queries, policy cases).

use std::time::Duration;

/// Longest duration any setting may name (100 years): beyond it a value is
/// a typo, and adding it to a clock or counting it in milliseconds as `i64`
/// could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// `"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"7d"`; at most [`MAX_DURATION`].
/// Why not stays a string: callers put it into a config report or their
/// own message, for a person.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let too_long = || format!("`{s}` is too long: at most 36500d (100 years)");
    let n: u64 = match num.parse() {
        Ok(n) => n,
        // All digits yet no u64: too many of them.
        Err(_) if !num.is_empty() => return Err(too_long()),
        Err(_) => {
            return Err(format!(
                "`{s}` is not a duration like \"500ms\", \"10s\", \"2m\""
            ));
        }
    };
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{s}`: unit must be ms, s, m, h or d (e.g. \"10s\")"
            ));
        }
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(too_long)
}

/// `text` as an absolute `http://` or `https://` URL with a host and no
/// user info (`https://a@b/` is a way to make `b` look like `a`), or why
/// not. Parsed by the `url` crate (WHATWG rules, as browsers and reqwest
/// read it), never by prefix. Why not stays a string: it goes into the
/// config report, for a person.
pub fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}`: use an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(format!("`{text}` names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` carries user info before `@`: write the host alone (secrets go in their own keys)"
        ));
    }
    Ok(url)
}

/// Whether `url` is on this machine: an IP loopback address (127.0.0.0/8,
/// ::1) or exactly `localhost`.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn durations_at_and_past_the_bound_and_overflow() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("876000h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("52560000m"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("3153600000s"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("3153600000000ms"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for too_long in [
            "36501d",
            "876001h",
            "52560001m",
            "3153600001s",
            "3153600000001ms",
            // These overflowed `n * 60` / `n * 3600` (a panic in debug
            // builds, a wrapped short duration in release ones).
            "307445734561825861m",
            "5124095576030432h",
            "18446744073709551615m",
            "18446744073709551615h",
            "18446744073709551615d",
            "18446744073709551615s",
            // More digits than a u64 holds.
            "99999999999999999999999s",
        ] {
            let err = parse_duration(too_long).expect_err(too_long);
            assert!(err.contains("too long"), "{too_long}: {err}");
        }
        for bad in ["-1s", "1.5h", "1 h", "h1", "1H", "1w", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
