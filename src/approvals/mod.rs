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
//!
//! This file is the stage itself ([`clear`], and what it asks and answers);
//! the rest is by concern: `store` (the requests a waiting call makes,
//! finds, waits on, spends and withdraws), `decide` (an approver's say),
//! `list` (requests as the admin API and the approver page show them),
//! `notify` (the `[approvals.webhook]` feed). How a front end asks the
//! end user (`@confirm` gates) is its own: the stage only calls an
//! [`Asker`] (for MCP, `crate::mcp::ingress::confirm`).

mod decide;
mod list;
mod notify;
mod store;

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::audit::{Audit, now_ms};
use crate::call::{CallError, CallId, Caller, Cleared, Confirmation, Gate, PolicyQuestion};
use crate::config::ApprovalsConfig;

pub use decide::{DecideError, MAX_COMMENT, decide};
pub use list::{ListFilter, MAX_PAGE, Page, STATES, cursor, get, list};
pub use notify::{WEBHOOK_CURSOR, webhook_feed};
use store::withdraw;
pub use store::{find_approved, request, use_approved, wait};

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
            .map_err(unavailable)?
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
            let standing = standing(audit, &asking(*held)).await.map_err(unavailable)?;
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
            .map_err(unavailable)?;
        tracing::info!(call = held.call, approval = %id, gate = %gate.policy, %group, "waiting for approval");
        requested.push((gate, group, id));
    }
    if !requested.is_empty() {
        approved.extend(await_decisions(audit, held, &requested, asker).await?);
    }
    // Each approval is used once: by this call, unless an identical call
    // took one meanwhile; then it spends none.
    if let Some(taken) = use_approved(pool, &approved).await.map_err(unavailable)? {
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
    let (i, outcome) = match outcome.map_err(unavailable)? {
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

/// The call's answer when the store fails: `CallError` (shared with the
/// other stages) carries the text.
fn unavailable(e: ApprovalsError) -> CallError {
    CallError::ApprovalUnavailable(e.to_string())
}

/// Why the approvals store could not be read or written; the stage
/// answers the call with `CallError::ApprovalUnavailable`, the admin API
/// with 503 (a bad cursor: 400).
#[derive(Debug, thiserror::Error)]
pub enum ApprovalsError {
    #[error("looking for an approval: {0}")]
    Find(#[source] sqlx::Error),
    /// The OS gave no random bytes for a request id.
    #[error("{0}")]
    Random(#[from] getrandom::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("recording the approval request: {0}")]
    Record(#[source] sqlx::Error),
    #[error("reading approvals {ids:?}: {source}")]
    Read {
        ids: Vec<String>,
        #[source]
        source: sqlx::Error,
    },
    #[error("approval {0} is gone from the store")]
    Gone(String),
    #[error("expiring approval {id}: {source}")]
    Expire {
        id: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("using approvals: {0}")]
    Use(#[source] sqlx::Error),
    #[error("looking for an approval request: {0}")]
    FindRequest(#[source] sqlx::Error),
    #[error("updating approval {id}: {source}")]
    Update {
        id: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("listing approvals: {0}")]
    List(#[source] sqlx::Error),
    #[error("before: `{0}` is not a `next` this API gave")]
    BadCursor(String),
    #[error("reading approval {id}: {source}")]
    Get {
        id: String,
        #[source]
        source: sqlx::Error,
    },
}

/// For a caller that does not wait (`[approvals] wait = false`): where
/// this call's request stands, as the error to answer with. A request
/// still pending is reported (and not made twice); a denial or expiry not
/// yet told is told, once; otherwise a new request is made.
pub async fn standing(
    audit: &Audit,
    r: &Request<'_>,
) -> Result<crate::call::CallError, ApprovalsError> {
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
    .map_err(ApprovalsError::FindRequest)?;
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
                    .map_err(|source| ApprovalsError::Update {
                        id: id.clone(),
                        source,
                    })?;
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
