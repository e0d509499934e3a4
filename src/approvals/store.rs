//! Approval requests in the store, as the await-approval stage
//! ([`super::clear`]) uses them: make one ([`request`]), find an approval
//! already given ([`find_approved`]), wait for a decision ([`wait`]),
//! spend approvals ([`use_approved`]) and withdraw the requests of a call
//! that ended ([`withdraw`]). Approvers decide in `decide`; the admin API
//! and the approver page read in `list`.

use serde_json::json;
use sqlx::AnyPool;

use super::{ApprovalsError, Binding, Outcome, POLL, Request};
use crate::audit::{Audit, Kind, Record, Who, now_ms};

/// An approved, unused approval of this binding and gate, if there is
/// one (the oldest); [`use_approved`] spends it.
pub async fn find_approved(
    pool: &AnyPool,
    b: &Binding,
    gate: &str,
) -> Result<Option<String>, ApprovalsError> {
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
    .map_err(ApprovalsError::Find)?;
    Ok(row.map(|(id,)| id))
}

/// A new pending request for a call and the gate that holds it; its id.
pub async fn request(audit: &Audit, r: &Request<'_>) -> Result<String, ApprovalsError> {
    let Request {
        binding: b,
        caller,
        server,
        args,
        gate,
        group,
        call_id,
    } = *r;
    let id = crate::util::digest::random_hex(12)?;
    let now = now_ms();
    let expires = now + gate.timeout.as_millis() as i64;
    let who = serde_json::to_string(&Who::of(caller))?;
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
    let store_error = ApprovalsError::Record;
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

/// Wait until every request in `ids` is approved (`Approved`), or one of
/// them is denied or expires (then it is marked expired): that one's index
/// and outcome. `None` when `cancel` fires first. All are watched at once,
/// so a denial under any gate ends the wait.
pub async fn wait(
    pool: &AnyPool,
    ids: &[String],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Option<(usize, Outcome)>, ApprovalsError> {
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
async fn states_of(pool: &AnyPool, ids: &[String]) -> Result<Vec<Option<Outcome>>, ApprovalsError> {
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
        .map_err(|source| ApprovalsError::Read {
            ids: ids.to_vec(),
            source,
        })?;
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        let Some((_, state, by, comment, expires)) = rows.iter().find(|r| &r.0 == id) else {
            return Err(ApprovalsError::Gone(id.clone()));
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
                .map_err(|source| ApprovalsError::Expire {
                    id: id.clone(),
                    source,
                })?;
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
pub async fn use_approved(
    pool: &AnyPool,
    ids: &[String],
) -> Result<Option<String>, ApprovalsError> {
    let failed = ApprovalsError::Use;
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
pub(super) async fn withdraw(audit: &Audit, ids: &[String], why: &str) {
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
