//! The audit records of a call: its `decided` record (stage 6, durable
//! before anything is forwarded) and its `completed` record (stage 9,
//! queued when the call ends: when `forward` returns, or when a streamed
//! reply ends or its caller goes away, see [`super::stream`]).

use super::Pipeline;
use crate::audit::{Audit, Kind, Record, Who};
use crate::call::{CallContext, CallError, CallKind};
use crate::config::Labels;

/// Stage 6: the `decided` record of an allowed call, durable before the
/// call goes anywhere. If the audit trail cannot record it, the call is
/// refused (unless `audit.fail_open`, a dev-only setting, says otherwise).
pub(super) async fn decided<K: CallKind>(
    pipeline: &Pipeline,
    ctx: &CallContext<K>,
) -> Result<Option<u64>, CallError> {
    let audit = &pipeline.audit;
    if ctx.decision.is_none() {
        // A call that continues one already decided (a task's status).
        return Ok(None);
    }
    match audit.write(decided_record(pipeline, ctx)).await {
        Ok(seq) => Ok(Some(seq)),
        Err(e) if audit.config().fail_open => {
            tracing::error!(call = ctx.id, error = %e, "audit.fail_open: forwarding a call without its audit record");
            Ok(None)
        }
        Err(e) => Err(CallError::AuditUnavailable(e.to_string())),
    }
}

/// The `decided` record of a call, from what the stages so far found.
fn decided_record<K: CallKind>(pipeline: &Pipeline, ctx: &CallContext<K>) -> Record {
    let audit = &pipeline.audit;
    let mut record = call_record(audit, Kind::Decided, ctx);
    record.decision = Some(match (&ctx.target, ctx.verdict) {
        (None, _) => "unknown",
        (Some(_), Some(verdict)) => verdict,
        (Some(_), None) => "none",
    });
    if let Some(decision) = &ctx.decision {
        record.policies = decision.policies.clone();
        if !decision.allowed {
            // A policy's evaluation error may quote an argument's value.
            record.reason = Some(audit.redactor().text(&decision.to_string()));
        }
        if !decision.gates.is_empty() {
            let gates: Vec<serde_json::Value> = decision
                .gates
                .iter()
                .map(|g| serde_json::json!({"policy": g.policy, "approver_group": g.group, "confirm": g.confirm.is_some()}))
                .collect();
            record.detail = Some(serde_json::json!({
                "gates": gates,
                "approvals": ctx.approvals.approvals,
                "confirmed": ctx.approvals.confirmed,
            }));
        }
    }
    // A call that can send data out, in a session that touched other
    // labels: the flow, naming the tools that touched each.
    let labels = super::labels_of(ctx);
    if labels.contains(Labels::PUBLIC_SINK)
        && !ctx.touched.is_empty()
        && let Some(flow) = &ctx.flow
    {
        let touched = pipeline.flows.touched(flow);
        let detail = record.detail.get_or_insert_with(|| serde_json::json!({}));
        detail["flow"] = serde_json::json!({
            "labels": labels.names().collect::<Vec<_>>(),
            "touched": touched.describe(),
        });
    }
    if let Some(question) = ctx.target.as_ref().and_then(|t| K::question(ctx, t)) {
        record.server = question.target.server().map(|s| s.name.clone());
        record.definition_hash = question.definition_hash.map(str::to_string);
        if let Some(args) = question.args {
            record.args_hash = Some(audit.args_hash(args));
            // Masked by the audit's detectors (the guardrails', or the
            // secret rules alone), whatever the guardrails did with the call.
            record.args = Some(audit.redactor().copy(args));
        }
    }
    record
}

/// The fields every record of a call has. The target goes through the
/// masker too: a resource URI (or an unknown name) may carry a credential.
fn call_record<K: CallKind>(audit: &Audit, kind: Kind, ctx: &CallContext<K>) -> Record {
    let mut record = Record::new(kind);
    if !ctx.report.findings.is_empty() || !ctx.report.truncated.is_empty() {
        record.findings = Some(serde_json::json!({
            "found": ctx.report.findings,
            "unscanned": ctx.report.truncated,
        }));
    }
    record.call = Some(crate::audit::call_id(ctx.id));
    record.caller = Some(Who::of(&ctx.caller));
    record.session = ctx.session.clone();
    record.trace = ctx.trace.clone();
    record.method = Some(K::METHOD);
    record.target = Some(audit.redactor().text(K::subject(&ctx.input)));
    record
}

/// Stage 9: the `completed` audit record (and, for a call refused before
/// stage 6, its `decided` record first) and one structured event per call,
/// whatever its outcome. The records are queued, not waited for.
///
/// `result` is the call's outcome: the size of what came back (a whole
/// result's, or the sum of a stream's chunks), or why it failed.
pub(super) async fn completed<K: CallKind>(
    pipeline: &Pipeline,
    ctx: &CallContext<K>,
    result: Result<Option<u64>, &CallError>,
) {
    let audit = &pipeline.audit;
    let latency_us = ctx.received.elapsed().as_micros() as u64;
    let refused = matches!(
        result,
        Err(CallError::NotFound { .. }
            | CallError::Denied(_)
            | CallError::Refused { .. }
            | CallError::ApprovalDenied(_)
            | CallError::ApprovalUnavailable(_)
            | CallError::Unauthenticated)
    );
    if ctx.decided.is_none() && refused {
        let mut decided = decided_record(pipeline, ctx);
        if let Err(e @ CallError::Refused { .. }) = result {
            // An inspector's refusal is no policy's: its own words, masked.
            decided.reason = Some(audit.redactor().text(&e.to_string()));
        }
        audit.submit(decided).await;
    }
    let mut record = call_record(audit, Kind::Completed, ctx);
    record.latency_us = Some(latency_us);
    record.detail = K::completed_detail(ctx);
    record.decided_seq = ctx.decided;
    match result {
        Ok(bytes) => {
            record.outcome = Some("ok");
            record.result_bytes = bytes;
        }
        Err(e) => {
            record.outcome = Some(if refused { "refused" } else { "error" });
            record.error_class = Some(e.class().to_string());
            record.error = Some(audit.redactor().text(&e.to_string()));
        }
    }
    audit.submit(record).await;
    // Logs hold no more than the audit does: subject and error masked.
    let subject = || audit.redactor().text(K::subject(&ctx.input));
    match result {
        Ok(_) => tracing::debug!(
            call = ctx.id, method = K::METHOD, subject = %subject(), caller = %ctx.caller.subject, latency_us, outcome = "ok",
            stages = ?ctx.timings, "call completed"
        ),
        Err(e) => tracing::info!(
            call = ctx.id, method = K::METHOD, subject = %subject(), caller = %ctx.caller.subject, latency_us,
            outcome = "error", fault = ?e.fault(), error = %audit.redactor().text(&e.to_string()), stages = ?ctx.timings,
            "call failed"
        ),
    }
}
