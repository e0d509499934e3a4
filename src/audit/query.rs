//! Reading the trail: filtered pages (the admin API) and exports (the
//! command line), in `seq` order.

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyPool;

use super::AuditError;

/// Which records.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub subject: Option<String>,
    pub target: Option<String>,
    pub decision: Option<String>,
    pub kind: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    pub since_ms: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub until_ms: Option<i64>,
    /// Only these kinds (any kind when empty).
    pub kinds: Vec<&'static str>,
    /// Only records up to this `seq`, inclusive.
    pub until_seq: Option<i64>,
}

/// One record as read back.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub seq: i64,
    pub record_hash: String,
    pub prev_hash: String,
    pub record: Value,
}

/// Most records one page may hold.
pub const MAX_PAGE: i64 = 1000;

/// Up to `limit` records after `after_seq` that match `filter`.
pub async fn page(
    pool: &AnyPool,
    filter: &Filter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Entry>, AuditError> {
    let mut sql =
        String::from("SELECT seq, record_hash, prev_hash, body FROM audit_records WHERE seq > $1");
    let mut texts: Vec<&str> = Vec::new();
    let mut n = 1;
    for (column, value) in [
        ("subject", &filter.subject),
        ("target", &filter.target),
        ("decision", &filter.decision),
        ("kind", &filter.kind),
    ] {
        if let Some(value) = value {
            n += 1;
            sql.push_str(&format!(" AND {column} = ${n}"));
            texts.push(value);
        }
    }
    if !filter.kinds.is_empty() {
        let mut marks = Vec::new();
        for kind in &filter.kinds {
            n += 1;
            marks.push(format!("${n}"));
            texts.push(kind);
        }
        sql.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
    }
    let mut times: Vec<i64> = Vec::new();
    for (column, op, value) in [
        ("at_ms", ">=", filter.since_ms),
        ("at_ms", "<", filter.until_ms),
        ("seq", "<=", filter.until_seq),
    ] {
        if let Some(value) = value {
            n += 1;
            sql.push_str(&format!(" AND {column} {op} ${n}"));
            times.push(value);
        }
    }
    n += 1;
    sql.push_str(&format!(" ORDER BY seq LIMIT ${n}"));
    let mut query = sqlx::query_as::<_, (i64, String, String, String)>(sqlx::AssertSqlSafe(sql))
        .bind(after_seq);
    for t in texts {
        query = query.bind(t);
    }
    for t in times {
        query = query.bind(t);
    }
    let rows = query
        .bind(limit.clamp(1, MAX_PAGE))
        .fetch_all(pool)
        .await
        .map_err(AuditError::ReadTrail)?;
    Ok(rows
        .into_iter()
        .map(|(seq, record_hash, prev_hash, body)| Entry {
            seq,
            record_hash,
            prev_hash,
            record: serde_json::from_str(&body).unwrap_or(Value::String(body)),
        })
        .collect())
}

/// Every matching record, one JSON line each, to `out`; how many.
pub async fn export(
    pool: &AnyPool,
    filter: &Filter,
    out: &mut dyn std::io::Write,
) -> Result<u64, AuditError> {
    let mut after = 0;
    let mut count = 0;
    loop {
        let entries = page(pool, filter, after, MAX_PAGE).await?;
        let Some(last) = entries.last() else {
            return Ok(count);
        };
        after = last.seq;
        for entry in &entries {
            let line = serde_json::to_string(entry)?;
            writeln!(out, "{line}").map_err(AuditError::WriteOut)?;
            count += 1;
        }
    }
}

/// A point in time for `--since` / `--until` and the API, as milliseconds
/// since the epoch: RFC 3339 (`2026-11-24T08:00:00Z`, an offset, or a date
/// alone), Unix seconds, or a duration ago (`24h`, `7d`). Dates and times
/// that do not exist (`2026-02-31`, `24:00`) are refused, never shifted.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, AuditError> {
    let text = text.trim();
    let wrong = AuditError::BadTime;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| wrong(format!("`{text}` is too large for Unix seconds")));
    }
    if text.ends_with(|c: char| c.is_ascii_alphabetic())
        && text.starts_with(|c: char| c.is_ascii_digit())
        && !text.contains(['-', ':'])
    {
        // A duration ago; at most 100 years, so the subtraction fits.
        let ago = crate::config::parse_duration(text).map_err(wrong)?;
        return Ok(now_ms.saturating_sub(ago.as_millis() as i64));
    }
    if text.contains(['T', 't', ' ']) {
        crate::util::dates::parse_rfc3339_ms(text).map_err(|e| wrong(e.to_string()))
    } else {
        crate::util::dates::parse_date(text)
            .map(crate::util::dates::date_start_ms)
            .map_err(|e| wrong(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("1970-01-01", now).ok(), Some(0));
        assert_eq!(
            parse_time("2026-11-24T08:00:00Z", now).ok(),
            Some(1_795_478_400_000 + 8 * 3_600_000)
        );
        assert_eq!(
            parse_time("2026-11-24T09:00:00.5+01:00", now).ok(),
            Some(1_795_478_400_000 + 8 * 3_600_000 + 500)
        );
        assert_eq!(parse_time("1700000000", now).ok(), Some(1_700_000_000_000));
        assert_eq!(parse_time("24h", now).ok(), Some(now - 86_400_000));
        assert_eq!(parse_time("7d", now).ok(), Some(now - 7 * 86_400_000));
        assert_eq!(parse_time("2024-02-29", now).ok(), Some(1_709_164_800_000));
        assert_eq!(parse_time("90m", now).ok(), Some(now - 90 * 60_000));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-24T25:00:00Z",
            "2026-11-24T08:00:00",
            // Days and times that do not exist, once shifted silently.
            "2026-02-31",
            "2026-02-29",
            "2026-04-31",
            "2026-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T08:00:60Z",
            // Numbers past what fits.
            "99999999999999999",
            "99999999999999999999",
            "36501d",
            "18446744073709551615h",
            "-5d",
            "7 d",
        ] {
            let err = parse_time(bad, now).expect_err(bad).to_string();
            assert!(err.contains("use RFC 3339"), "{bad}: {err}");
        }
    }
}
