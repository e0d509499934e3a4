//! Logging for the conformance fixture: whether a request may receive a log
//! message at a given level (a 2026-07-28 request's own `_meta` threshold, or
//! the session's `logging/setLevel`), and sending it as `notifications/message`.
//! Used by the tool bodies and the `ServerHandler` impl in `mod.rs`.

use rmcp::{
    RoleServer,
    model::{LoggingLevel, LoggingMessageNotificationParam, ProtocolVersion},
    service::RequestContext,
};
use serde_json::{Value, json};

use crate::util::sync::LockExt;

use super::{ConformanceServer, LOGGER_NAME};
impl ConformanceServer {
    /// Whether a log message at `level` may be sent for this request.
    ///
    /// 2026-07-28 requests carry their own threshold in `_meta`; without one no
    /// log is sent. Session-era requests follow the session's
    /// `logging/setLevel`, and everything is sent until a level is set.
    fn log_allowed(&self, cx: &RequestContext<RoleServer>, level: LoggingLevel) -> bool {
        if let Some(threshold) = cx.meta.log_level() {
            return severity(level) >= severity(threshold);
        }
        if is_stateless_request(cx) {
            return false;
        }
        match self.state.log_levels.locked().get(&session_key(cx)) {
            Some(threshold) => severity(level) >= severity(*threshold),
            None => true,
        }
    }

    pub(super) async fn log(
        &self,
        cx: &RequestContext<RoleServer>,
        level: LoggingLevel,
        message: &str,
    ) {
        if self.log_allowed(cx, level) {
            let _ = cx
                .peer
                .notify_logging_message(
                    LoggingMessageNotificationParam::new(level, json!(message))
                        .with_logger(LOGGER_NAME),
                )
                .await;
        }
    }
}

/// Whether the request uses the 2026-07-28 per-request lifecycle.
fn is_stateless_request(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The Streamable HTTP session this request belongs to ("" without one, e.g. stdio).
pub(super) fn session_key(cx: &RequestContext<RoleServer>) -> String {
    cx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

pub(super) fn level_name(level: LoggingLevel) -> String {
    match serde_json::to_value(level) {
        Ok(Value::String(name)) => name,
        _ => format!("{level:?}"),
    }
}
