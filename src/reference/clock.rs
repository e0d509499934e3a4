//! `clock`: what time it is, in UTC, and date arithmetic an LLM gets wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::dates::{format_date, format_unix, parse_date};

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

// The error stays a string: it is the tool error text the client reads.
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
        annotations(read_only_hint = true, open_world_hint = false)
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
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn weekday(&self, Parameters(a): Parameters<DateArgs>) -> CallToolResult {
        text_or_error(
            parse_date(a.date.trim())
                .map(|date| date.weekday().to_string())
                .map_err(|e| e.to_string()),
        )
    }

    #[tool(
        description = "Add (or subtract) days to a date (YYYY-MM-DD).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn add_days(&self, Parameters(a): Parameters<AddDaysArgs>) -> CallToolResult {
        text_or_error(
            parse_date(a.date.trim())
                .map_err(|e| e.to_string())
                .and_then(|date| {
                    date.checked_add(time::Duration::days(a.days))
                        .map(format_date)
                        .ok_or_else(|| "out of range: years 0000 to 9999".to_string())
                }),
        )
    }

    #[tool(
        description = "Unix seconds as an RFC 3339 UTC time.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn from_unix(&self, Parameters(a): Parameters<UnixArgs>) -> CallToolResult {
        text_or_error(
            time::OffsetDateTime::from_unix_timestamp(a.seconds)
                .map(|_| format_unix(a.seconds))
                .map_err(|_| "out of range: years 0000 to 9999".to_string()),
        )
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
        let day = |text: &str| parse_date(text).map(|d| d.weekday().to_string());
        assert_eq!(day("2026-11-23").as_deref(), Ok("Monday"));
        assert_eq!(day("2024-02-29").as_deref(), Ok("Thursday"));
        assert!(day("2026-02-30").is_err());
        assert!(day("2026-02-29").is_err());
    }
}
