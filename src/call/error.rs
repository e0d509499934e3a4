//! Why a call did not produce a result. Every variant says whose fault it is;
//! each front end's boundary (for MCP, `mcp::server`) turns it into what
//! the caller sees. Nothing here is a protocol's type.

use std::time::Duration;

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was wrong (unknown name, bad arguments).
    Caller,
    /// The upstream failed, timed out or is down.
    Upstream,
    /// Ours.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no caller identity")]
    Unauthenticated,
    /// Unknown, filtered out or (later) hidden by policy: all look the same.
    #[error("unknown {kind}: {name}")]
    NotFound { kind: &'static str, name: String },
    #[error("upstream `{server}` is unavailable: {reason}")]
    UpstreamUnavailable { server: String, reason: String },
    #[error("upstream `{server}` did not answer within {}s", after.as_secs_f64())]
    UpstreamTimeout { server: String, after: Duration },
    /// The upstream refused the request with a protocol error (a JSON-RPC
    /// `error`; later, a provider's error status): the caller gets it as
    /// the upstream said it, in the front end's own form.
    #[error("upstream `{server}` returned an error: {0}", server = .0.server)]
    UpstreamRejected(Box<Rejection>),
    #[error("upstream `{server}` failed: {reason}")]
    UpstreamFailed { server: String, reason: String },
    #[error("cancelled by the caller")]
    Cancelled,
    /// Visible to the caller, but a policy refuses this call.
    #[error("{0}")]
    Denied(Box<super::Decision>),
    /// An inspector ([`super::Inspect`], a guardrail) refuses what the
    /// call carries or what came back.
    #[error("refused by `{by}`: {reason}")]
    Refused { by: String, reason: String },
    /// An approval gate held it, and it was denied or expired.
    #[error("{0}")]
    ApprovalDenied(String),
    /// A `@confirm` gate asks the user: the question goes back in the
    /// call's answer (as the front end wrote it: an MCP 2026-07-28
    /// `InputRequiredResult`), and the call comes again with the answer.
    #[error("the user's confirmation is needed; the call comes again with their answer")]
    ConfirmationNeeded(Box<serde_json::Value>),
    /// An approval gate held it, and the request could not be recorded or
    /// followed: not forwarded.
    #[error(
        "toolgate: this call needs approval, and the approval request could not be recorded ({0}); it was not forwarded"
    )]
    ApprovalUnavailable(String),
    /// Shutting down, or at the in-flight limit: try again later.
    #[error("{0}")]
    NotAdmitted(NotAdmitted),
    /// The audit trail could not record the decision: not forwarded.
    #[error(
        "toolgate: this call was not forwarded because the audit trail cannot record it ({0}); try again later"
    )]
    AuditUnavailable(String),
}

impl CallError {
    pub fn fault(&self) -> Fault {
        match self {
            CallError::Unauthenticated
            | CallError::NotFound { .. }
            | CallError::Denied(_)
            | CallError::Refused { .. }
            | CallError::ApprovalDenied(_)
            | CallError::ConfirmationNeeded(_)
            | CallError::Cancelled => Fault::Caller,
            CallError::UpstreamUnavailable { .. }
            | CallError::UpstreamTimeout { .. }
            | CallError::UpstreamRejected(_)
            | CallError::UpstreamFailed { .. } => Fault::Upstream,
            CallError::NotAdmitted(_)
            | CallError::AuditUnavailable(_)
            | CallError::ApprovalUnavailable(_) => Fault::Internal,
        }
    }

    /// `fault/kind`, e.g. `upstream/timeout`, for audit records.
    pub fn class(&self) -> &'static str {
        match self {
            CallError::Unauthenticated => "caller/unauthenticated",
            CallError::NotFound { .. } => "caller/not_found",
            CallError::Denied(_) => "caller/denied",
            CallError::Refused { .. } => "caller/refused",
            CallError::ApprovalDenied(_) => "caller/approval_denied",
            CallError::ConfirmationNeeded(_) => "caller/confirmation_needed",
            CallError::ApprovalUnavailable(_) => "internal/approval_unavailable",
            CallError::Cancelled => "caller/cancelled",
            CallError::UpstreamUnavailable { .. } => "upstream/unavailable",
            CallError::UpstreamTimeout { .. } => "upstream/timeout",
            CallError::UpstreamRejected(_) => "upstream/error",
            CallError::UpstreamFailed { .. } => "upstream/failed",
            CallError::NotAdmitted(_) => "internal/not_admitted",
            CallError::AuditUnavailable(_) => "internal/audit_unavailable",
        }
    }
}

/// Why a call was not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotAdmitted {
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error(
        "the gateway is at its limit of {0} calls in flight (max_in_flight_calls); retry shortly"
    )]
    Full(usize),
}

/// A protocol error an upstream answered with (JSON-RPC's `error`: code,
/// message, data).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub server: String,
    pub code: i64,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, "({data})")?;
        }
        Ok(())
    }
}
