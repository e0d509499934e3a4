//! Approval requests: a call an approval gate holds ([`Gate`]) waits, as a
//! request in the store, until members of the gate's group approve or deny
//! it, or it expires.
//!
//! - An approval is bound to who asked, the tool, the hash of its
//!   definition and the hash of the arguments, and is used once: changed
//!   arguments, a changed tool definition or a second identical call need
//!   a new approval.
//! - Whoever asked can never approve their own call; an approver must be in
//!   the gate's group; a gate may ask for N distinct approvers. A single
//!   deny decides.
//! - Requests live in the store (SQLite or PostgreSQL), and a waiting call
//!   looks at its request every [`POLL`], so a decision taken on any
//!   replica releases a call waiting on another.
//! - Each request and each decision goes into the audit trail, linked to
//!   the call by its call id.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, Kind, Record, Who, now_ms};
use crate::call::{CallError, CallId, Caller, Cleared, Confirmation, Gate, PolicyQuestion};
use crate::config::ApprovalsConfig;

/// How often a waiting call looks at its request.
pub const POLL: Duration = Duration::from_millis(200);

/// What an approval is bound to.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The caller's subject.
    pub subject: String,
    /// The tool as the caller named it.
    pub tool: String,
    /// SHA-256 of the tool's definition (empty when it has none).
    pub definition_hash: String,
    /// Keyed hash of the arguments' canonical JSON ([`Audit::args_hash`]):
    /// an approval given for some arguments is spent only on the same.
    pub args_hash: String,
}

/// One call's request for approval under one gate, before it is stored.
pub struct Request<'a> {
    pub binding: &'a Binding,
    pub caller: &'a Caller,
    pub server: Option<&'a str>,
    /// The arguments as approvers see them (redacted).
    pub args: &'a Value,
    pub gate: &'a Gate,
    /// The group that decides (the gate's `@approval`).
    pub group: &'a str,
    pub call_id: &'a str,
}

/// How a request ended, for the waiting call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    Denied { by: String, comment: Option<String> },
    Expired,
}

/// How often a call waiting for approval tells its caller so.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How the stage reaches the people a held call waits on. The front end
/// that took the call supplies it (for MCP: elicitation, progress
/// notifications); the stage knows no protocol.
pub trait Asker: Sync {
    /// Ask the end user to confirm the call (a `@confirm` gate), showing
    /// them `question`.
    fn confirm(&self, gate: &Gate, question: &str) -> impl Future<Output = Confirmation> + Send;
    /// Tell the caller the call is still waiting (`step` counts from 1).
    fn progress(&self, step: u32, message: &str) -> impl Future<Output = ()> + Send;
}

/// The call whose gates are being cleared, as the stage sees it.
pub struct Held<'a> {
    pub call: CallId,
    pub caller: &'a Caller,
    /// The tool as the caller named it.
    pub tool: &'a str,
    /// What policies decided on: the target (its server), the arguments,
    /// the definition's hash.
    pub question: PolicyQuestion<'a>,
    /// Cancelled when the caller gives up: the wait ends and its requests
    /// are withdrawn.
    pub cancel: &'a CancellationToken,
}

/// Clear `gates` for a held call (the pipeline's await-approval stage):
/// what it took, or why it may not go ahead.
///
/// 1. `@confirm` gates ask the end user first ([`Asker::confirm`]); a gate
///    with a group falls back to the group when the user cannot be asked.
/// 2. Approvals already given to this very call are found; the others are
///    requested all at once (or, with `[approvals] wait = false`, the
///    caller is told where each stands).
/// 3. The requests are waited for together, telling the caller what it
///    waits for ([`Asker::progress`]).
/// 4. The approvals are spent only once every gate is satisfied, so a call
///    refused under one gate spends none.
pub async fn clear(
    audit: &Audit,
    settings: &ApprovalsConfig,
    held: &Held<'_>,
    gates: &[Gate],
    asker: &impl Asker,
) -> Result<Cleared, CallError> {
    let none = serde_json::Map::new();
    let args = held.question.args.unwrap_or(&none);
    let mut cleared = Cleared::default();
    let for_groups = confirm_users(audit, held, args, gates, asker, &mut cleared).await?;
    if for_groups.is_empty() {
        return Ok(cleared);
    }
    let binding = Binding {
        subject: held.caller.subject.clone(),
        tool: held.tool.to_string(),
        definition_hash: held
            .question
            .definition_hash
            .unwrap_or_default()
            .to_string(),
        args_hash: audit.args_hash(args),
    };
    let server = held.question.target.server().map(|s| s.name.clone());
    let shown = audit.redactor().copy(args);
    let call_id = crate::audit::call_id(held.call);
    let pool = audit.store().pool();
    let mut approved = Vec::new();
    let mut needed = Vec::new();
    for (gate, group) in for_groups {
        match find_approved(pool, &binding, &gate.policy)
            .await
            .map_err(CallError::ApprovalUnavailable)?
        {
            Some(id) => approved.push(id),
            None => needed.push((gate, group)),
        }
    }
    let asking = |(gate, group)| Request {
        binding: &binding,
        caller: held.caller,
        server: server.as_deref(),
        args: &shown,
        gate,
        group,
        call_id: &call_id,
    };
    if !needed.is_empty() && !settings.wait {
        // Not waiting: the caller is told where each request stands and
        // makes the identical call again once they are approved.
        let mut told = Vec::new();
        for held in &needed {
            let standing = standing(audit, &asking(*held))
                .await
                .map_err(CallError::ApprovalUnavailable)?;
            told.push(standing.to_string());
        }
        return Err(CallError::ApprovalDenied(told.join("; ")));
    }
    // Every request is made before waiting, so approvers of several gates
    // decide side by side.
    let mut requested = Vec::new();
    for (gate, group) in needed {
        let id = request(audit, &asking((gate, group)))
            .await
            .map_err(CallError::ApprovalUnavailable)?;
        tracing::info!(call = held.call, approval = %id, gate = %gate.policy, %group, "waiting for approval");
        requested.push((gate, group, id));
    }
    if !requested.is_empty() {
        approved.extend(await_decisions(audit, held, &requested, asker).await?);
    }
    // Each approval is used once: by this call, unless an identical call
    // took one meanwhile; then it spends none.
    if let Some(taken) = use_approved(pool, &approved)
        .await
        .map_err(CallError::ApprovalUnavailable)?
    {
        return Err(CallError::ApprovalDenied(format!(
            "this call was not forwarded: its approval {taken} was used by another, identical call; make it again for a new request"
        )));
    }
    cleared.approvals = approved;
    Ok(cleared)
}

/// Phase 1: ask the end user for each `@confirm` gate; the gates left for
/// their groups (a group gate, or a confirm gate whose user cannot be
/// asked but which has a group).
async fn confirm_users<'g>(
    audit: &Audit,
    held: &Held<'_>,
    args: &serde_json::Map<String, Value>,
    gates: &'g [Gate],
    asker: &impl Asker,
    cleared: &mut Cleared,
) -> Result<Vec<(&'g Gate, &'g str)>, CallError> {
    let mut for_groups = Vec::new();
    for gate in gates {
        if let Some(ask) = &gate.confirm {
            let shown = audit.redactor().copy(args);
            let question = confirm_question(ask, gate, held.tool, &shown);
            let answer = tokio::time::timeout(gate.timeout, asker.confirm(gate, &question))
                .await
                .unwrap_or_else(|_| {
                    Confirmation::No(format!("did not answer within {}s", gate.timeout.as_secs()))
                });
            if held.cancel.is_cancelled() {
                return Err(CallError::Cancelled);
            }
            match answer {
                Confirmation::Yes => {
                    tracing::info!(call = held.call, gate = %gate.policy, "the user confirmed the call");
                    cleared.confirmed.push(gate.policy.clone());
                    continue;
                }
                Confirmation::Asked(result) => return Err(CallError::ConfirmationNeeded(result)),
                Confirmation::No(why) => {
                    return Err(CallError::ApprovalDenied(format!(
                        "this call was not forwarded: the user {why} (gate `{}`)",
                        gate.policy
                    )));
                }
                Confirmation::CannotAsk(why) if gate.group.is_none() => {
                    return Err(CallError::ApprovalDenied(format!(
                        "this call needs the user's confirmation (gate `{}`), but {why}; use a client that supports MCP elicitation. It was not forwarded",
                        gate.policy
                    )));
                }
                Confirmation::CannotAsk(why) => {
                    tracing::info!(call = held.call, gate = %gate.policy, reason = %why, "cannot ask the user; asking the gate's group");
                }
            }
        }
        if let Some(group) = &gate.group {
            for_groups.push((gate, group.as_str()));
        }
    }
    Ok(for_groups)
}

/// Phase 3: wait for the `requested` approvals together, telling the
/// caller at once what for and then every [`PROGRESS_EVERY`] (which keeps
/// clients that time out idle requests from giving up). Their ids when
/// every one is approved; the first refusal otherwise, with the call's
/// other requests withdrawn.
async fn await_decisions(
    audit: &Audit,
    held: &Held<'_>,
    requested: &[(&Gate, &str, String)],
    asker: &impl Asker,
) -> Result<Vec<String>, CallError> {
    let message = requested
        .iter()
        .map(|(gate, group, id)| {
            format!(
                "waiting for approval by `{group}` (gate `{}`, request {id})",
                gate.policy
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let ids: Vec<String> = requested.iter().map(|(_, _, id)| id.clone()).collect();
    let outcome = {
        let waiting = wait(audit.store().pool(), &ids, held.cancel);
        tokio::pin!(waiting);
        let mut beat = tokio::time::interval(PROGRESS_EVERY);
        let mut step = 0;
        loop {
            tokio::select! {
                outcome = &mut waiting => break outcome,
                _ = beat.tick() => {
                    step += 1;
                    asker.progress(step, &message).await;
                }
            }
        }
    };
    let (i, outcome) = match outcome.map_err(CallError::ApprovalUnavailable)? {
        None => {
            // The caller has gone: nobody should decide for nothing.
            withdraw(audit, &ids, "the caller cancelled the call").await;
            return Err(CallError::Cancelled);
        }
        Some(found) => found,
    };
    let (gate, group, id) = &requested[i];
    let why = match outcome {
        Outcome::Approved => return Ok(ids),
        Outcome::Denied { by, comment } => denied_by(&by, comment.as_deref()),
        Outcome::Expired => format!(
            "no member of `{group}` decided within {}s",
            gate.timeout.as_secs()
        ),
    };
    // The call's other requests have no call left to release.
    let others: Vec<String> = ids.iter().filter(|o| *o != id).cloned().collect();
    withdraw(
        audit,
        &others,
        &format!("the call was refused under gate `{}`", gate.policy),
    )
    .await;
    Err(CallError::ApprovalDenied(format!(
        "this call was not forwarded: {why} (approval {id}, gate `{}`)",
        gate.policy
    )))
}

/// "denied by <approver>: <comment>", as callers are told.
fn denied_by(by: &str, comment: Option<&str>) -> String {
    match comment {
        Some(c) => format!("denied by {by}: {c}"),
        None => format!("denied by {by}"),
    }
}

/// What the user is asked for a `@confirm` gate: its question, the tool
/// and the arguments (redacted), and the gate's reason.
fn confirm_question(ask: &str, gate: &Gate, tool: &str, args: &Value) -> String {
    let mut text = format!("{ask}\n\nTool: {tool}\nArguments: {args}");
    if let Some(reason) = &gate.reason {
        text.push_str(&format!("\nWhy you are asked: {reason}"));
    }
    text
}

/// An approved, unused approval of this binding and gate, if there is
/// one (the oldest); [`use_approved`] spends it.
pub async fn find_approved(
    pool: &AnyPool,
    b: &Binding,
    gate: &str,
) -> Result<Option<String>, String> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM approvals WHERE state = 'approved' AND subject = $1 AND tool = $2 \
         AND definition_hash = $3 AND args_hash = $4 AND gate = $5 ORDER BY created_ms LIMIT 1",
    )
    .bind(&b.subject)
    .bind(&b.tool)
    .bind(&b.definition_hash)
    .bind(&b.args_hash)
    .bind(gate)
    .fetch_optional(pool)
    .await
    .map_err(|e| format!("looking for an approval: {e}"))?;
    Ok(row.map(|(id,)| id))
}

/// A new pending request for a call and the gate that holds it; its id.
pub async fn request(audit: &Audit, r: &Request<'_>) -> Result<String, String> {
    let Request {
        binding: b,
        caller,
        server,
        args,
        gate,
        group,
        call_id,
    } = *r;
    let id = crate::util::digest::random_hex(12).map_err(|e| e.to_string())?;
    let now = now_ms();
    let expires = now + gate.timeout.as_millis() as i64;
    let who = serde_json::to_string(&Who::of(caller)).map_err(|e| e.to_string())?;
    let mut record = Record::new(Kind::ApprovalRequested);
    record.call = Some(call_id.to_string());
    record.caller = Some(Who::of(caller));
    record.target = Some(b.tool.clone());
    record.server = server.map(str::to_string);
    record.args_hash = Some(b.args_hash.clone());
    record.detail = Some(json!({
        "approval": id,
        "gate": gate.policy,
        "approver_group": group,
        "approvers": gate.approvers,
        "expires_ms": expires,
    }));
    let store_error = |e: sqlx::Error| format!("recording the approval request: {e}");
    let mut tx = audit.store().pool().begin().await.map_err(store_error)?;
    sqlx::query(
        "INSERT INTO approvals (id, state, subject, caller, tool, server, definition_hash, \
         args_hash, args, gate, approver_group, approvers_needed, reason, call_id, created_ms, \
         expires_ms) VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15)",
    )
    .bind(&id)
    .bind(&b.subject)
    .bind(who)
    .bind(&b.tool)
    .bind(server)
    .bind(&b.definition_hash)
    .bind(&b.args_hash)
    .bind(args.to_string())
    .bind(&gate.policy)
    .bind(group)
    .bind(i64::from(gate.approvers))
    .bind(gate.reason.as_deref())
    .bind(call_id)
    .bind(now)
    .bind(expires)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    // The request and its audit record commit together.
    crate::audit::append_in(&mut tx, &[&record])
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(id)
}

/// For a caller that does not wait (`[approvals] wait = false`): where
/// this call's request stands, as the error to answer with. A request
/// still pending is reported (and not made twice); a denial or expiry not
/// yet told is told, once; otherwise a new request is made.
pub async fn standing(audit: &Audit, r: &Request<'_>) -> Result<crate::call::CallError, String> {
    use crate::call::CallError;
    let (b, gate, group) = (r.binding, r.gate, r.group);
    let pool = audit.store().pool();
    /// id, state, expiry, decided by, comment, reported.
    type Latest = (String, String, i64, Option<String>, Option<String>, i64);
    let latest: Option<Latest> = sqlx::query_as(
        "SELECT id, state, expires_ms, decided_by, comment, reported FROM approvals \
         WHERE subject = $1 AND tool = $2 AND definition_hash = $3 AND args_hash = $4 \
         AND gate = $5 ORDER BY created_ms DESC LIMIT 1",
    )
    .bind(&b.subject)
    .bind(&b.tool)
    .bind(&b.definition_hash)
    .bind(&b.args_hash)
    .bind(&gate.policy)
    .fetch_optional(pool)
    .await
    .map_err(|e| format!("looking for an approval request: {e}"))?;
    let pending = |id: &str, expires: i64| {
        CallError::ApprovalDenied(format!(
            "this call needs approval by `{group}` (gate `{}`); request {id} is pending, for {}s more: make the same call again, with the same arguments, once it is approved. It was not forwarded",
            gate.policy,
            ((expires - now_ms()) / 1000).max(0)
        ))
    };
    if let Some((id, state, expires, by, comment, reported)) = latest {
        match state.as_str() {
            "pending" if now_ms() < expires => return Ok(pending(&id, expires)),
            "denied" | "expired" | "pending" if reported == 0 => {
                sqlx::query(
                    "UPDATE approvals SET reported = 1, \
                     state = CASE WHEN state = 'pending' THEN 'expired' ELSE state END WHERE id = $1",
                )
                    .bind(&id)
                    .execute(pool)
                    .await
                    .map_err(|e| format!("updating approval {id}: {e}"))?;
                let why = match (state.as_str(), by) {
                    ("denied", Some(by)) => denied_by(&by, comment.as_deref()),
                    _ => format!("no member of `{group}` decided it in time"),
                };
                return Ok(CallError::ApprovalDenied(format!(
                    "this call was not forwarded: its approval request {id} was {why} (gate `{}`); calling again makes a new request",
                    gate.policy
                )));
            }
            _ => {}
        }
    }
    let id = request(audit, r).await?;
    Ok(pending(&id, now_ms() + gate.timeout.as_millis() as i64))
}

/// Wait until every request in `ids` is approved (`Approved`), or one of
/// them is denied or expires (then it is marked expired): that one's index
/// and outcome. `None` when `cancel` fires first. All are watched at once,
/// so a denial under any gate ends the wait.
pub async fn wait(
    pool: &AnyPool,
    ids: &[String],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Option<(usize, Outcome)>, String> {
    loop {
        let states = states_of(pool, ids).await?;
        for (i, state) in states.iter().enumerate() {
            if let Some(ended) = state
                && *ended != Outcome::Approved
            {
                return Ok(Some((i, ended.clone())));
            }
        }
        if states.iter().all(|s| *s == Some(Outcome::Approved)) {
            return Ok(Some((0, Outcome::Approved)));
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// How each request in `ids` ended, or `None` while it is pending, read
/// in one query. One past its expiry is marked expired (unless it was
/// decided meanwhile: then the next look sees how).
async fn states_of(pool: &AnyPool, ids: &[String]) -> Result<Vec<Option<Outcome>>, String> {
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, state, decided_by, comment, expires_ms FROM approvals WHERE id IN ({})",
        marks.join(", ")
    );
    let mut query = sqlx::query_as::<_, (String, String, Option<String>, Option<String>, i64)>(
        sqlx::AssertSqlSafe(sql),
    );
    for id in ids {
        query = query.bind(id);
    }
    let rows = query
        .fetch_all(pool)
        .await
        .map_err(|e| format!("reading approvals {ids:?}: {e}"))?;
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        let Some((_, state, by, comment, expires)) = rows.iter().find(|r| &r.0 == id) else {
            return Err(format!("approval {id} is gone from the store"));
        };
        states.push(match state.as_str() {
            "approved" => Some(Outcome::Approved),
            "denied" => Some(Outcome::Denied {
                by: by.clone().unwrap_or_default(),
                comment: comment.clone(),
            }),
            "expired" => Some(Outcome::Expired),
            _ if now_ms() >= *expires => {
                let marked = sqlx::query(
                    "UPDATE approvals SET state = 'expired', decided_ms = $1 \
                     WHERE id = $2 AND state = 'pending'",
                )
                .bind(now_ms())
                .bind(id)
                .execute(pool)
                .await
                .map_err(|e| format!("expiring approval {id}: {e}"))?;
                (marked.rows_affected() == 1).then_some(Outcome::Expired)
            }
            _ => None,
        });
    }
    Ok(states)
}

/// Spend approvals `ids` on the call they were given for, all or none
/// (atomic: of two identical calls, one gets them): the one already
/// spent, if any.
pub async fn use_approved(pool: &AnyPool, ids: &[String]) -> Result<Option<String>, String> {
    let failed = |e: sqlx::Error| format!("using approvals: {e}");
    let mut tx = pool.begin().await.map_err(failed)?;
    for id in ids {
        let done =
            sqlx::query("UPDATE approvals SET state = 'used' WHERE id = $1 AND state = 'approved'")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        if done.rows_affected() != 1 {
            // Dropping the transaction rolls back the others.
            return Ok(Some(id.clone()));
        }
    }
    tx.commit().await.map_err(failed)?;
    Ok(None)
}

/// Withdraw the still-pending requests `ids` (their call ended), each
/// with an `approval_decided` record saying `why`. Best effort: a
/// request left pending only expires later.
async fn withdraw(audit: &Audit, ids: &[String], why: &str) {
    if ids.is_empty() {
        return;
    }
    let result: Result<(), sqlx::Error> = async {
        let mut tx = audit.store().pool().begin().await?;
        let mut records = Vec::new();
        for id in ids {
            let row: Option<(String, Option<String>)> = sqlx::query_as(
                "UPDATE approvals SET state = 'withdrawn', decided_ms = $1, comment = $2 \
                 WHERE id = $3 AND state = 'pending' RETURNING tool, call_id",
            )
            .bind(now_ms())
            .bind(why)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((tool, call)) = row {
                let mut record = Record::new(Kind::ApprovalDecided);
                record.call = call;
                record.target = Some(tool);
                record.decision = Some("withdraw");
                record.reason = Some(why.to_string());
                record.detail = Some(json!({"approval": id, "state": "withdrawn"}));
                records.push(record);
            }
        }
        if !records.is_empty() {
            let records: Vec<&Record> = records.iter().collect();
            crate::audit::append_in(&mut tx, &records).await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not withdraw approval requests; they expire on their own");
    }
}

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

/// Which requests [`list`] returns.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// `pending`, `approved`, `denied`, `expired` or `used`; all when `None`.
    pub state: Option<String>,
    /// Only requests these groups decide; every request when `None`.
    pub groups: Option<Vec<String>>,
    /// The tool as callers named it.
    pub tool: Option<String>,
    /// The caller's subject.
    pub subject: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// The page after this [`Page::next`] (see [`cursor`]).
    pub before: Option<(i64, String)>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: i64,
}

/// The states a request can be in.
pub const STATES: &[&str] = &[
    "pending",
    "approved",
    "denied",
    "expired",
    "used",
    "withdrawn",
];
/// The largest page [`list`] returns.
pub const MAX_PAGE: i64 = 1000;

/// A page of requests, newest first; `next` is the `before` of the
/// following page (absent at the end).
#[derive(Debug)]
pub struct Page {
    pub approvals: Vec<Value>,
    pub next: Option<String>,
}

const COLUMNS: &str = "SELECT id, state, caller, tool, server, args, gate, approver_group, \
    approvers_needed, reason, created_ms, expires_ms, decided_ms, decided_by, comment, \
    (SELECT COUNT(*) FROM approval_votes v WHERE v.approval_id = approvals.id AND v.approve = 1) \
    FROM approvals";

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
);

/// Requests matching `filter`, newest first, with the group filter and
/// paging done by the store (a member's page is full even when other
/// groups' requests are newer).
pub async fn list(pool: &AnyPool, filter: &ListFilter) -> Result<Page, String> {
    enum Arg<'a> {
        Text(&'a str),
        Int(i64),
    }
    /// Binds `a` as the next placeholder, which it returns.
    fn arg<'a>(args: &mut Vec<Arg<'a>>, a: Arg<'a>) -> String {
        args.push(a);
        format!("${}", args.len())
    }
    let now = now_ms();
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<Arg<'_>> = Vec::new();
    // A pending request past its expiry is expired, whether or not a
    // waiting call has marked it so yet.
    match filter.state.as_deref() {
        None => {}
        Some("pending") => {
            let n = arg(&mut args, Arg::Int(now));
            conditions.push(format!("state = 'pending' AND expires_ms > {n}"));
        }
        Some("expired") => {
            let n = arg(&mut args, Arg::Int(now));
            conditions.push(format!(
                "(state = 'expired' OR (state = 'pending' AND expires_ms <= {n}))"
            ));
        }
        Some(state) => {
            let n = arg(&mut args, Arg::Text(state));
            conditions.push(format!("state = {n}"));
        }
    }
    if let Some(groups) = &filter.groups {
        if groups.is_empty() {
            return Ok(Page {
                approvals: Vec::new(),
                next: None,
            });
        }
        let list: Vec<String> = groups
            .iter()
            .map(|g| arg(&mut args, Arg::Text(g)))
            .collect();
        conditions.push(format!("approver_group IN ({})", list.join(", ")));
    }
    if let Some(tool) = &filter.tool {
        let n = arg(&mut args, Arg::Text(tool));
        conditions.push(format!("tool = {n}"));
    }
    if let Some(subject) = &filter.subject {
        let n = arg(&mut args, Arg::Text(subject));
        conditions.push(format!("subject = {n}"));
    }
    if let Some(since) = filter.since_ms {
        let n = arg(&mut args, Arg::Int(since));
        conditions.push(format!("created_ms >= {n}"));
    }
    if let Some((ms, id)) = &filter.before {
        let (a, b) = (arg(&mut args, Arg::Int(*ms)), arg(&mut args, Arg::Text(id)));
        conditions.push(format!(
            "(created_ms < {a} OR (created_ms = {a} AND id < {b}))"
        ));
    }
    let limit = arg(&mut args, Arg::Int(filter.limit.clamp(1, MAX_PAGE)));
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!("{COLUMNS}{clause} ORDER BY created_ms DESC, id DESC LIMIT {limit}");
    let mut query = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
    for a in &args {
        query = match a {
            Arg::Text(t) => query.bind(*t),
            Arg::Int(i) => query.bind(*i),
        };
    }
    let rows = query
        .fetch_all(pool)
        .await
        .map_err(|e| format!("listing approvals: {e}"))?;
    let next = (rows.len() as i64 == filter.limit)
        .then(|| rows.last().map(|r| format!("{}-{}", r.10, r.0)))
        .flatten();
    Ok(Page {
        approvals: rows.into_iter().map(|r| view(r, now)).collect(),
        next,
    })
}

/// A [`Page::next`] read back.
pub fn cursor(next: &str) -> Result<(i64, String), String> {
    next.split_once('-')
        .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| format!("before: `{next}` is not a `next` this API gave"))
}

/// Request `id`, as [`list`] shows it.
pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<Value>, String> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| format!("reading approval {id}: {e}"))?;
    Ok(row.map(|r| view(r, now_ms())))
}

/// A request row as the API shows it.
fn view(row: Row, now: i64) -> Value {
    let (
        id,
        state,
        caller,
        tool,
        server,
        args,
        gate,
        group,
        needed,
        reason,
        created,
        expires,
        decided,
        by,
        comment,
        votes,
    ) = row;
    let state = if state == "pending" && expires <= now {
        "expired".to_string()
    } else {
        state
    };
    json!({
        "id": id,
        "state": state,
        "caller": serde_json::from_str::<Value>(&caller).unwrap_or(Value::Null),
        "tool": tool,
        "server": server,
        "args": serde_json::from_str::<Value>(&args).unwrap_or(Value::Null),
        "gate": gate,
        "approver_group": group,
        "approvers": needed,
        "approvals": votes,
        "reason": reason,
        "created_ms": created,
        "expires_ms": expires,
        "decided_ms": decided,
        "decided_by": by,
        "comment": comment,
    })
}

/// The `[approvals.webhook]` feed's cursor (its row in `audit_forward`).
pub const WEBHOOK_CURSOR: &str = "approvals";

/// The `[approvals.webhook]` feed: each request and decision, as
/// `{"events": […]}` (see [`event`]) or, for Slack, `{"text": …}` with one
/// line per event and a link to the approver page when `ui_url` is set.
pub fn webhook_feed(slack: bool, ui_url: Option<String>) -> crate::audit::forward::Feed {
    crate::audit::forward::Feed {
        cursor: WEBHOOK_CURSOR,
        kinds: &["approval_requested", "approval_decided"],
        body: Box::new(move |records| {
            let events: Vec<Value> = records
                .iter()
                .map(|r| event(r.seq, &r.record, ui_url.as_deref()))
                .collect();
            if slack {
                let lines: Vec<String> = events.iter().map(slack_line).collect();
                json!({ "text": lines.join("\n") })
            } else {
                json!({ "events": events })
            }
        }),
    }
}

/// One request or decision, from its audit record: `event`
/// (`approval_requested` / `approval_decided`), `seq`, `approval`, `tool`,
/// `call`, and for a request `caller`, `gate`, `approver_group`,
/// `expires_ms`; for a decision `approver`, `decision`, `state`, `comment`;
/// `link` to the approver page when known.
fn event(seq: i64, record: &Value, ui_url: Option<&str>) -> Value {
    let detail = &record["detail"];
    let id = detail["approval"].as_str().unwrap_or_default();
    let mut event = json!({
        "event": record["kind"],
        "seq": seq,
        "approval": id,
        "tool": record["target"],
        "call": record["call"],
    });
    let fields = if record["kind"] == "approval_requested" {
        json!({
            "caller": record["caller"]["subject"],
            "gate": detail["gate"],
            "approver_group": detail["approver_group"],
            "expires_ms": detail["expires_ms"],
        })
    } else {
        json!({
            "approver": record["caller"]["subject"],
            "decision": record["decision"],
            "state": detail["state"],
            "comment": record["reason"],
        })
    };
    if let (Value::Object(e), Value::Object(f)) = (&mut event, fields) {
        e.extend(f);
        if let Some(ui) = ui_url {
            e.insert("link".into(), json!(format!("{ui}/ui/approvals/{id}")));
        }
    }
    event
}

/// An event as a line of Slack mrkdwn (what others wrote escaped).
fn slack_line(e: &Value) -> String {
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let review = match e["link"].as_str() {
        Some(link) => format!(" <{link}|Review it>"),
        None => String::new(),
    };
    if e["event"] == "approval_requested" {
        format!(
            ":raised_hand: Approval needed: {} wants to call `{}` (gate `{}`, decided by `{}`), request {}.{review}",
            text(&e["caller"]),
            text(&e["tool"]),
            text(&e["gate"]),
            text(&e["approver_group"]),
            text(&e["approval"]),
        )
    } else {
        let comment = match e["comment"].as_str() {
            Some(c) if !c.is_empty() => format!(": {}", text(&json!(c))),
            _ => String::new(),
        };
        if e["decision"] == "withdraw" {
            return format!(
                ":heavy_minus_sign: withdrawn: `{}`, request {}{comment}",
                text(&e["tool"]),
                text(&e["approval"]),
            );
        }
        let verb = if e["decision"] == "approve" {
            ":white_check_mark: approved"
        } else {
            ":no_entry: denied"
        };
        format!(
            "{verb} by {}: `{}`, request {} (now {}){comment}",
            text(&e["approver"]),
            text(&e["tool"]),
            text(&e["approval"]),
            text(&e["state"]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_lines_link_the_request_and_keep_what_others_wrote_inert() {
        let requested = json!({
            "kind": "approval_requested", "target": "gh__push", "call": "c-1",
            "caller": {"subject": "okta:<b>bob</b>"},
            "detail": {"approval": "ab12", "gate": "gate-push-to-main", "approver_group": "platform", "expires_ms": 5},
        });
        let e = event(7, &requested, Some("https://tg.example.com"));
        assert_eq!(e["link"], "https://tg.example.com/ui/approvals/ab12");
        assert_eq!(e["caller"], "okta:<b>bob</b>");
        let line = slack_line(&e);
        assert!(
            line.contains("okta:&lt;b&gt;bob&lt;/b&gt; wants to call `gh__push`"),
            "{line}"
        );
        assert!(
            line.ends_with("<https://tg.example.com/ui/approvals/ab12|Review it>"),
            "{line}"
        );
        let decided = json!({
            "kind": "approval_decided", "target": "gh__push", "call": "c-1",
            "caller": {"subject": "okta:alice"}, "decision": "deny", "reason": "not <now>",
            "detail": {"approval": "ab12", "state": "denied"},
        });
        let line = slack_line(&event(8, &decided, None));
        assert_eq!(
            line,
            ":no_entry: denied by okta:alice: `gh__push`, request ab12 (now denied): not &lt;now&gt;"
        );
        let withdrawn = json!({
            "kind": "approval_decided", "target": "gh__push", "call": "c-1",
            "decision": "withdraw", "reason": "the call was refused under gate `g`",
            "detail": {"approval": "cd34", "state": "withdrawn"},
        });
        assert_eq!(
            slack_line(&event(9, &withdrawn, None)),
            ":heavy_minus_sign: withdrawn: `gh__push`, request cd34: the call was refused under gate `g`"
        );
    }
}
