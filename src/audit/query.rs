//! Reading the trail: filtered pages (the admin API) and exports (the
//! command line), in `seq` order.

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyPool;

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
) -> Result<Vec<Entry>, String> {
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
        .map_err(|e| format!("reading the audit trail: {e}"))?;
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
) -> Result<u64, String> {
    let mut after = 0;
    let mut count = 0;
    loop {
        let entries = page(pool, filter, after, MAX_PAGE).await?;
        let Some(last) = entries.last() else {
            return Ok(count);
        };
        after = last.seq;
        for entry in &entries {
            let line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(|e| format!("writing: {e}"))?;
            count += 1;
        }
    }
}

/// A point in time for `--since` / `--until` and the API, as milliseconds
/// since the epoch: RFC 3339 (`2026-11-24T08:00:00Z`, an offset, or a date
/// alone), Unix seconds, or a duration ago (`24h`, `7d`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let wrong = || {
        format!(
            "`{text}` is not a time: use RFC 3339 (2026-11-24T08:00:00Z or 2026-11-24), Unix seconds, or a duration ago (24h, 7d)"
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map(|s| s.saturating_mul(1000))
            .map_err(|_| wrong());
    }
    if let Some(days) = text.strip_suffix('d')
        && let Ok(days) = days.parse::<i64>()
    {
        return Ok(now_ms - days * 86_400_000);
    }
    if let Ok(ago) = crate::config::parse_duration(text) {
        return Ok(now_ms - ago.as_millis() as i64);
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| wrong());
    let (date, time) = text
        .split_once(['T', 't', ' '])
        .unwrap_or((text, "00:00:00Z"));
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (
        num(d.next().unwrap_or_default())?,
        num(d.next().unwrap_or_default())?,
        num(d.next().unwrap_or_default())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(wrong());
    }
    // The offset: Z, or ±HH:MM.
    let (clock, offset_min) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, mm) = offset[1..].split_once(':').ok_or_else(wrong)?;
        (clock, sign * (num(h)? * 60 + num(mm)?))
    } else {
        return Err(wrong());
    };
    let mut c = clock.splitn(3, ':');
    let (h, mi) = (
        num(c.next().unwrap_or_default())?,
        num(c.next().unwrap_or_default())?,
    );
    let seconds: f64 = c.next().unwrap_or("0").parse().map_err(|_| wrong())?;
    if h > 23 || mi > 59 || !(0.0..61.0).contains(&seconds) {
        return Err(wrong());
    }
    let days = crate::dates::days_from_civil(y, m as u32, day as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 - offset_min * 60;
    Ok(secs * 1000 + (seconds * 1000.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_form() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("1970-01-01", now), Ok(0));
        assert_eq!(
            parse_time("2026-11-24T08:00:00Z", now),
            Ok(1_795_478_400_000 + 8 * 3_600_000)
        );
        assert_eq!(
            parse_time("2026-11-24T09:00:00.5+01:00", now),
            Ok(1_795_478_400_000 + 8 * 3_600_000 + 500)
        );
        assert_eq!(parse_time("1700000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("24h", now), Ok(now - 86_400_000));
        assert_eq!(parse_time("7d", now), Ok(now - 7 * 86_400_000));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-24T25:00:00Z",
            "2026-11-24T08:00:00",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
