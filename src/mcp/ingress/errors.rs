//! The one rule that turns a call's failure ([`CallError`]) into what an
//! MCP caller sees, for both transports (rmcp's server and the fast lane):
//!
//! - unknown (or filtered, or hidden) tool / prompt / resource → JSON-RPC
//!   `-32602`, the same answer whatever the reason, so nothing leaks;
//! - no caller → `-32600`; a policy's refusal of a visible target's
//!   arguments → `-32600` naming the policies, and an inspector's refusal
//!   (a guardrail's) → `-32600` naming it; for `tools/call` both are
//!   tool errors (`isError: true`), like everything below;
//! - an upstream's JSON-RPC error → passed back as the upstream said it;
//! - a `@confirm` gate's question for a 2026-07-28 caller → the call's
//!   answer (`InputRequiredResult`);
//! - anything else (denied by an approver, upstream down or slow, audit or
//!   approvals unavailable, shutting down) → for `tools/call` a tool result
//!   with `isError: true` the agent can read and act on; for other methods
//!   `-32603` with the same text.
//!
//! This is the only place a [`CallError`] becomes an rmcp type.

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock, ErrorCode, InputRequiredResult};

use crate::call::CallError;
use crate::mcp::jsonrpc::INTERNAL_ERROR;

/// What a failed `tools/call` answers.
pub enum ToolAnswer {
    /// A JSON-RPC error.
    Protocol(ErrorData),
    /// A tool result with `isError: true`.
    ToolError(CallToolResult),
    /// The user's confirmation is needed: the question, as the call's answer.
    Question(Box<InputRequiredResult>),
}

/// The JSON-RPC error for a failed call of any method but `tools/call`.
pub fn protocol_error(e: CallError) -> ErrorData {
    match e {
        CallError::NotFound { kind, name } => {
            ErrorData::invalid_params(format!("Unknown {kind}: {name}"), None)
        }
        CallError::UpstreamRejected(r) => ErrorData::new(
            ErrorCode(i32::try_from(r.code).unwrap_or(INTERNAL_ERROR as i32)),
            r.message,
            r.data,
        ),
        CallError::Unauthenticated => ErrorData::invalid_request("unauthenticated", None),
        CallError::Denied(decision) => {
            ErrorData::invalid_request(format!("toolgate: {decision}"), None)
        }
        e @ CallError::Refused { .. } => ErrorData::invalid_request(format!("toolgate: {e}"), None),
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

/// What a failed `tools/call` answers: protocol errors stay protocol
/// errors; what the agent should read and decide on becomes a tool error.
pub fn tool_call(e: CallError) -> ToolAnswer {
    match e {
        CallError::ConfirmationNeeded(question) => {
            match serde_json::from_value::<InputRequiredResult>(*question) {
                Ok(question) => ToolAnswer::Question(Box::new(question)),
                Err(e) => ToolAnswer::Protocol(ErrorData::internal_error(
                    format!("toolgate: the user's question could not be sent: {e}"),
                    None,
                )),
            }
        }
        e @ (CallError::NotFound { .. }
        | CallError::UpstreamRejected(_)
        | CallError::Unauthenticated) => ToolAnswer::Protocol(protocol_error(e)),
        e => ToolAnswer::ToolError(CallToolResult::error(vec![ContentBlock::text(format!(
            "toolgate: {e}"
        ))])),
    }
}
