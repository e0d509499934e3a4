//! The governed pipeline: the spine every forwarded call runs through.
//!
//! A *call* is anything toolgate forwards on someone's behalf: a `tools/call`,
//! a `resources/read`, a `prompts/get`, a `completion/complete`, and (later) an
//! LLM chat completion. Each kind implements [`CallKind`] (in [`crate::call`]):
//! how to find its target, how to forward it, how to reach its user. Everything
//! else is shared: [`Pipeline::run`] takes one [`CallContext`] through the same
//! ordered stages for every kind.
//!
//! ```text
//!   admit → authenticate → resolve → authorize → inspect input → await approval
//!     → record "decided" → forward → inspect output → record "completed"
//! ```
//!
//! Today the spine runs admit (the in-flight limit, [`admit`]), authenticate
//! (the ingress's identity), resolve, authorize (Cedar policies,
//! [`crate::authorize`]), await approval (approval gates,
//! [`crate::approvals`]), record "decided" (the audit trail,
//! [`crate::audit`]: durable before anything is forwarded), forward and
//! record "completed" (an audit record and a `tracing` event per call). The
//! stages in between are added by later work as functions called from
//! [`Pipeline::run`], in the order above; each one reads and fills the
//! context and returns early with `?` to refuse a call. No stage knows a
//! protocol: what a front end must do (ask its user, tell of progress) it
//! does through its [`CallKind`].

pub mod admit;

use std::time::Instant;

pub use admit::{InFlight, InFlightGuard};

use crate::approvals::{self, Asker, Held};
use crate::audit::{Audit, Kind, Record, Who};
use crate::authorize::Engine;
use crate::call::{CallContext, CallError, CallKind, Confirmation, Gate, Query};
use crate::config::ApprovalsConfig;

/// The spine's own state: the policies in force, the audit trail, how
/// approval gates wait, and the in-flight limit. Each kind of call brings
/// its front end's state (its [`CallKind::Env`]); this is everything else.
pub struct Pipeline {
    /// The Cedar policies in force (`policies/`), hot-reloaded.
    pub policies: Engine,
    /// The audit trail's writer.
    pub audit: Audit,
    /// How approval gates wait (`[approvals]`).
    pub approvals: ApprovalsConfig,
    /// Calls in flight, up to `max_in_flight_calls`; closed at shutdown.
    pub admission: InFlight,
}

impl Pipeline {
    /// Run one call through every stage, in order. A call refused
    /// admission (stage 0) never started: it leaves no record.
    pub async fn run<K: CallKind>(
        &self,
        env: &K::Env,
        mut ctx: CallContext<K>,
    ) -> Result<K::Output, CallError> {
        let _admitted = self.admission.enter().map_err(CallError::NotAdmitted)?;
        let result = self.stages(env, &mut ctx).await;
        record_completed(&self.audit, &ctx, &result).await;
        result
    }

    async fn stages<K: CallKind>(
        &self,
        env: &K::Env,
        ctx: &mut CallContext<K>,
    ) -> Result<K::Output, CallError> {
        let t = Instant::now();
        authenticate(ctx)?;
        ctx.mark("authenticate", t);

        // Resolve before authorize: policies decide on the resolved target (its
        // server, its annotations), not on a name the caller typed.
        let t = Instant::now();
        ctx.target = Some(resolve(env, ctx)?);
        ctx.mark("resolve", t);

        let t = Instant::now();
        authorize(&self.policies, ctx)?;
        ctx.mark("authorize", t);

        let t = Instant::now();
        self.await_approval(env, ctx).await?;
        ctx.mark("await approval", t);

        let t = Instant::now();
        ctx.decided = record_decided(&self.audit, ctx).await?;
        ctx.mark("record decided", t);

        let t = Instant::now();
        let output = forward(env, ctx).await;
        ctx.mark("forward", t);
        output
    }

    /// Stage 5: an allowed call that approval gates hold (satisfied
    /// `@approval` policies, [`crate::call::Gate`]) goes ahead only once
    /// members of each gate's group approve it ([`crate::approvals`]). An
    /// approval already given for this very call (same caller, tool,
    /// definition and arguments) is used, once; otherwise a request is made
    /// and the call waits for its decision. Denied or expired: refused with
    /// the approver's comment, never forwarded.
    async fn await_approval<K: CallKind>(
        &self,
        env: &K::Env,
        ctx: &mut CallContext<K>,
    ) -> Result<(), CallError> {
        let gates = match &ctx.decision {
            Some(d) if !d.gates.is_empty() => d.gates.clone(),
            _ => return Ok(()),
        };
        ctx.verdict = Some("gated");
        let Some(target) = &ctx.target else {
            unreachable!("await approval runs after resolve")
        };
        let Some(question) = K::question(ctx, target) else {
            ctx.verdict = Some("allow");
            return Ok(());
        };
        let held = Held {
            call: ctx.id,
            caller: &ctx.caller,
            tool: K::subject(&ctx.input),
            question,
            cancel: &ctx.cancel,
        };
        let asker = FrontEnd { env, ctx };
        let cleared = approvals::clear(&self.audit, &self.approvals, &held, &gates, &asker).await;
        // A refusal leaves the verdict "gated", for the audit record.
        ctx.approvals = cleared?;
        ctx.verdict = Some("allow");
        Ok(())
    }
}

/// The people a held call waits on, reached the way its front end can
/// ([`CallKind::confirm`], [`CallKind::progress`]).
struct FrontEnd<'a, K: CallKind> {
    env: &'a K::Env,
    ctx: &'a CallContext<K>,
}

impl<K: CallKind> Asker for FrontEnd<'_, K> {
    async fn confirm(&self, gate: &Gate, question: &str) -> Confirmation {
        K::confirm(self.env, self.ctx, gate, question).await
    }

    async fn progress(&self, step: u32, message: &str) {
        K::progress(self.ctx, step, message).await;
    }
}

/// Stage 1: who is calling. Nothing reaches an upstream without a caller.
fn authenticate<K: CallKind>(ctx: &CallContext<K>) -> Result<(), CallError> {
    if ctx.caller.subject.is_empty() {
        return Err(CallError::Unauthenticated);
    }
    Ok(())
}

/// Stage 2: which upstream (or provider) serves this call.
fn resolve<K: CallKind>(env: &K::Env, ctx: &CallContext<K>) -> Result<K::Target, CallError> {
    K::resolve(env, &ctx.input)
}

/// Stage 3: may this caller do this? A caller who may not even see the
/// target gets the same answer as for an unknown one (no existence leak);
/// one who may see it but not make this call (its arguments) is refused
/// naming the deciding policies and their reasons.
fn authorize<K: CallKind>(engine: &Engine, ctx: &mut CallContext<K>) -> Result<(), CallError> {
    let Some(target) = &ctx.target else {
        unreachable!("authorize runs after resolve")
    };
    let Some(question) = K::question(ctx, target) else {
        return Ok(());
    };
    let policies = engine.current();
    let request_id = ctx.id.to_string();
    let mut query = Query {
        caller: &ctx.caller,
        target: question.target,
        args: None,
        request_id: &request_id,
    };
    let visible = policies.decide(&query);
    if !visible.allowed {
        tracing::debug!(call = ctx.id, %visible, "hidden by policy");
        let kind = query.target.kind();
        ctx.verdict = Some("hidden");
        ctx.decision = Some(visible);
        return Err(CallError::NotFound {
            kind,
            name: K::subject(&ctx.input).to_string(),
        });
    }
    query.args = Some(question.args.unwrap_or(&EMPTY_ARGS));
    let decision = policies.decide(&query);
    if !decision.allowed {
        ctx.verdict = Some("deny");
        ctx.decision = Some(decision.clone());
        return Err(CallError::Denied(Box::new(decision)));
    }
    ctx.verdict = Some("allow");
    ctx.decision = Some(decision);
    Ok(())
}

/// Stage 6: the `decided` record of an allowed call, durable before the
/// call goes anywhere. If the audit trail cannot record it, the call is
/// refused (unless `audit.fail_open`, a dev-only setting, says otherwise).
async fn record_decided<K: CallKind>(
    audit: &Audit,
    ctx: &CallContext<K>,
) -> Result<Option<u64>, CallError> {
    if ctx.decision.is_none() {
        // A call that continues one already decided (a task's status).
        return Ok(None);
    }
    match audit.write(decided_record(audit, ctx)).await {
        Ok(seq) => Ok(Some(seq)),
        Err(e) if audit.config().fail_open => {
            tracing::error!(call = ctx.id, error = %e, "audit.fail_open: forwarding a call without its audit record");
            Ok(None)
        }
        Err(e) => Err(CallError::AuditUnavailable(e.to_string())),
    }
}

/// The `decided` record of a call, from what the stages so far found.
fn decided_record<K: CallKind>(audit: &Audit, ctx: &CallContext<K>) -> Record {
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
    if let Some(question) = ctx.target.as_ref().and_then(|t| K::question(ctx, t)) {
        record.server = question.target.server().map(|s| s.name.clone());
        record.definition_hash = question.definition_hash.map(str::to_string);
        if let Some(args) = question.args {
            record.args_hash = Some(audit.args_hash(args));
            record.args = Some(audit.redactor().copy(args));
        }
    }
    record
}

/// The fields every record of a call has. The target goes through the
/// masker too: a resource URI (or an unknown name) may carry a credential.
fn call_record<K: CallKind>(audit: &Audit, kind: Kind, ctx: &CallContext<K>) -> Record {
    let mut record = Record::new(kind);
    record.call = Some(crate::audit::call_id(ctx.id));
    record.caller = Some(Who::of(&ctx.caller));
    record.session = ctx.session.clone();
    record.trace = ctx.trace.clone();
    record.method = Some(K::METHOD);
    record.target = Some(audit.redactor().text(K::subject(&ctx.input)));
    record
}

static EMPTY_ARGS: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
    std::sync::LazyLock::new(serde_json::Map::new);

/// Stage 7: send it to the resolved target, unless the caller has already
/// given up.
async fn forward<K: CallKind>(env: &K::Env, ctx: &CallContext<K>) -> Result<K::Output, CallError> {
    if ctx.cancel.is_cancelled() {
        return Err(CallError::Cancelled);
    }
    let Some(target) = &ctx.target else {
        unreachable!("forward runs after resolve")
    };
    K::forward(env, ctx, target).await
}

/// Stage 9: the `completed` audit record (and, for a call refused before
/// stage 6, its `decided` record first) and one structured event per call,
/// whatever its outcome. The records are queued, not waited for.
async fn record_completed<K: CallKind>(
    audit: &Audit,
    ctx: &CallContext<K>,
    result: &Result<K::Output, CallError>,
) {
    let latency_us = ctx.received.elapsed().as_micros() as u64;
    let refused = matches!(
        result,
        Err(CallError::NotFound { .. }
            | CallError::Denied(_)
            | CallError::ApprovalDenied(_)
            | CallError::ApprovalUnavailable(_)
            | CallError::Unauthenticated)
    );
    if ctx.decided.is_none() && refused {
        audit.submit(decided_record(audit, ctx)).await;
    }
    let mut record = call_record(audit, Kind::Completed, ctx);
    record.latency_us = Some(latency_us);
    record.decided_seq = ctx.decided;
    match result {
        Ok(output) => {
            record.outcome = Some("ok");
            record.result_bytes = K::result_bytes(output);
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
