//! `clock`: what time it is, in UTC, and date arithmetic an LLM gets wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::dates::{civil_from_days, days_from_civil, format_unix};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Clone)]
pub struct Clock {
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, JsonSchema)]
pub struct DateArgs {
    /// A date as YYYY-MM-DD.
    pub date: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct AddDaysArgs {
    /// A date as YYYY-MM-DD.
    pub date: String,
    /// Days to add (negative to subtract).
    pub days: i64,
}

#[derive(Deserialize, JsonSchema)]
pub struct UnixArgs {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_date(s: &str) -> Result<i64, String> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let bad = || format!("`{s}` is not a date like 2026-11-23");
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let days = days_from_civil(y, m, d);
    if !(1..=12).contains(&m) || civil_from_days(days) != (y, m, d) {
        return Err(format!("`{s}` is not a real calendar date"));
    }
    Ok(days)
}

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

fn text_or_error(r: Result<String, String>) -> CallToolResult {
    match r {
        Ok(t) => CallToolResult::success(vec![ContentBlock::text(t)]),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
    }
}

#[tool_router]
impl Clock {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "The current UTC time (RFC 3339) and Unix seconds.",
        annotations(read_only_hint = true)
    )]
    async fn now(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        format!("{} (unix {secs})", format_unix(secs))
    }

    #[tool(
        description = "The weekday of a date (YYYY-MM-DD).",
        annotations(read_only_hint = true)
    )]
    async fn weekday(&self, Parameters(a): Parameters<DateArgs>) -> CallToolResult {
        text_or_error(
            parse_date(&a.date).map(|days| WEEKDAYS[days.rem_euclid(7) as usize].to_string()),
        )
    }

    #[tool(
        description = "Add (or subtract) days to a date (YYYY-MM-DD).",
        annotations(read_only_hint = true)
    )]
    async fn add_days(&self, Parameters(a): Parameters<AddDaysArgs>) -> CallToolResult {
        text_or_error(parse_date(&a.date).and_then(|days| {
            let days = days
                .checked_add(a.days)
                .filter(|d| d.abs() < 3_000_000)
                .ok_or("out of range")?;
            let (y, m, d) = civil_from_days(days);
            Ok(format!("{y:04}-{m:02}-{d:02}"))
        }))
    }

    #[tool(
        description = "Unix seconds as an RFC 3339 UTC time.",
        annotations(read_only_hint = true)
    )]
    async fn from_unix(&self, Parameters(a): Parameters<UnixArgs>) -> CallToolResult {
        text_or_error(if a.seconds.abs() < 90_000_000_000 {
            Ok(format_unix(a.seconds))
        } else {
            Err("out of range".into())
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Clock {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Time and dates in UTC.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(WEEKDAYS[20_780usize % 7], "Monday");
        assert!(parse_date("2026-02-30").is_err());
    }
}
