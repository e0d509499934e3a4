//! An approver's say on a request ([`decide`]), for the admin API and the
//! approver page: only members of the request's group decide, never the
//! caller who asked, each once; a request needs its gate's number of
//! approvals, and a single deny decides. The call waiting in
//! [`super::wait`] sees the outcome.

use serde_json::json;

use crate::audit::{Audit, Kind, Record, Who, now_ms};
use crate::call::Caller;

/// Why an approver's decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no approval request `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Invalid(String),
}

impl DecideError {
    /// The HTTP status that says so (REST API and approver page alike).
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            DecideError::NotFound(_) => StatusCode::NOT_FOUND,
            DecideError::Forbidden(_) => StatusCode::FORBIDDEN,
            DecideError::Conflict(_) => StatusCode::CONFLICT,
            DecideError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            DecideError::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The longest comment an approver may give.
pub const MAX_COMMENT: usize = 4096;

/// An approver's say on request `id`: approve or deny, with a comment.
/// Returns the request's state after it (`pending` while more approvers
/// are needed).
pub async fn decide(
    audit: &Audit,
    id: &str,
    approver: &Caller,
    approve: bool,
    comment: Option<&str>,
) -> Result<String, DecideError> {
    if comment.is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(DecideError::Invalid(format!(
            "the comment is over {MAX_COMMENT} bytes; shorten it"
        )));
    }
    // Kept and shown to others (the caller, other approvers, the audit):
    // through the same masker as arguments.
    let masked = comment.map(|c| audit.redactor().mask(c));
    let comment = masked.as_deref();
    let store_error = |e: sqlx::Error| DecideError::Store(e.to_string());
    let pool = audit.store().pool();
    /// state, requester, approver group, approvers needed, expiry, tool, call.
    type Request = (String, String, String, i64, i64, String, Option<String>);
    let row: Option<Request> = sqlx::query_as(
        "SELECT state, subject, approver_group, approvers_needed, expires_ms, tool, call_id \
         FROM approvals WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(store_error)?;
    let Some((state, requester, group, needed, expires, tool, call_id)) = row else {
        return Err(DecideError::NotFound(id.to_string()));
    };
    if !approver.groups.iter().any(|g| g == &group) {
        return Err(DecideError::Forbidden(format!(
            "only members of `{group}` decide this request; you are in {:?}",
            approver.groups
        )));
    }
    if approver.subject == requester {
        return Err(DecideError::Forbidden(format!(
            "you asked for this call: another member of `{group}` must decide it"
        )));
    }
    if state != "pending" {
        return Err(DecideError::Conflict(format!(
            "this request is already {state}"
        )));
    }
    let now = now_ms();
    if now >= expires {
        return Err(DecideError::Conflict("this request has expired".into()));
    }
    let mut tx = pool.begin().await.map_err(store_error)?;
    let voted = sqlx::query(
        "INSERT INTO approval_votes (approval_id, approver, approve, comment, at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&approver.subject)
    .bind(i64::from(approve))
    .bind(comment)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    if voted.rows_affected() == 0 {
        return Err(DecideError::Conflict(
            "you have already decided this request; another approver is needed".into(),
        ));
    }
    let (approvals,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM approval_votes WHERE approval_id = $1 AND approve = 1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(store_error)?;
    let new_state = match (approve, approvals >= needed) {
        (false, _) => "denied",
        (true, true) => "approved",
        (true, false) => "pending",
    };
    if new_state != "pending" {
        let changed = sqlx::query(
            "UPDATE approvals SET state = $1, decided_ms = $2, decided_by = $3, comment = $4 \
             WHERE id = $5 AND state = 'pending'",
        )
        .bind(new_state)
        .bind(now)
        .bind(&approver.subject)
        .bind(comment)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        if changed.rows_affected() == 0 {
            return Err(DecideError::Conflict(
                "this request was decided meanwhile".into(),
            ));
        }
    }
    let mut record = Record::new(Kind::ApprovalDecided);
    record.call = call_id;
    record.caller = Some(Who::of(approver));
    record.target = Some(tool);
    record.decision = Some(if approve { "approve" } else { "deny" });
    record.reason = comment.map(|c| audit.redactor().text(c));
    record.detail = Some(json!({"approval": id, "state": new_state}));
    crate::audit::append_in(&mut tx, &[&record])
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(new_state.to_string())
}
