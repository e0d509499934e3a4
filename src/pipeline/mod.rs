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
//! Admit is the in-flight limit ([`admit`]); authenticate confirms the
//! ingress's identity; authorize asks the Cedar policies
//! ([`crate::authorize`]); inspect input and inspect output hand the
//! call's payload, as protocol-neutral [`Part`]s, to the inspectors
//! ([`Inspect`]: guardrails, which may rewrite it or refuse the call);
//! await approval holds a gated call for its approvers
//! ([`crate::approvals`]); record "decided" makes the decision durable in
//! the audit trail ([`crate::audit`]) before anything is forwarded; record
//! "completed" queues an audit record and a `tracing` event per call
//! ([`record`]). Each stage reads and fills the context and returns early
//! with `?` to refuse a call. No stage knows a protocol: what a front end
//! must do (ask its user, tell of progress, show its payload) it does
//! through its [`CallKind`].
//!
//! A reply is whole ([`Reply::Done`]: inspected and recorded before
//! [`Pipeline::run`] returns) or a stream ([`Reply::Stream`]): the front
//! end gets it [`Watched`], each chunk inspected as it passes, and the
//! call recorded once, when the stream ends or its caller drops it
//! ([`stream`]).

pub mod admit;
mod record;
pub mod stream;

use std::sync::Arc;
use std::time::Instant;

pub use admit::{InFlight, InFlightGuard};
pub use stream::Watched;

use crate::approvals::{self, Asker, Held};
use crate::audit::Audit;
use crate::authorize::Engine;
use crate::call::{
    CallContext, CallError, CallKind, Confirmation, Gate, Inspect, Inspected, Part, PolicyQuestion,
    Query, Reply, Target,
};
use crate::config::{ApprovalsConfig, Labels, StreamWindow};
use crate::integrity::Flows;
use crate::integrity::flows::flow_key;

/// The spine's own state: the policies in force, the audit trail, how
/// approval gates wait, the in-flight limit and the inspectors. Each kind
/// of call brings its front end's state (its [`CallKind::Env`]); this is
/// everything else.
pub struct Pipeline {
    /// The Cedar policies in force (`policies/`), hot-reloaded.
    pub policies: Engine,
    /// The audit trail's writer.
    pub audit: Audit,
    /// How approval gates wait (`[approvals]`).
    pub approvals: ApprovalsConfig,
    /// Calls in flight, up to `max_in_flight_calls`; closed at shutdown.
    pub admission: Arc<InFlight>,
    /// What reads (and may rewrite) each call's input and output, in
    /// order (guardrails). With none, the inspect stages cost nothing.
    pub inspectors: Vec<Arc<dyn Inspect>>,
    /// The flow labels each session has touched (toxic flows).
    pub flows: Flows,
    /// How streamed answers are held for inspection (`[llm.stream_window]`).
    pub stream_window: StreamWindow,
}

impl Pipeline {
    /// Run one call through every stage, in order. A call refused
    /// admission (stage 0) never started: it leaves no record.
    ///
    /// A whole reply is recorded before this returns; a streamed one is
    /// handed back [`Watched`], holding the call's in-flight slot and
    /// context until it is recorded, when it ends or is dropped.
    pub async fn run<K: CallKind>(
        self: &Arc<Self>,
        env: &K::Env,
        mut ctx: CallContext<K>,
    ) -> Result<Reply<K::Output, Watched<K>>, CallError> {
        let admitted = self.admission.enter().map_err(CallError::NotAdmitted)?;
        let result = match self.stages(env, &mut ctx).await {
            Ok(Reply::Stream(upstream)) => {
                let watched = Watched::new(self.clone(), admitted, ctx, upstream);
                return Ok(Reply::Stream(watched));
            }
            Ok(Reply::Done(output)) => Ok(output),
            Err(e) => Err(e),
        };
        record::completed(self, &ctx, result.as_ref().map(K::result_bytes)).await;
        result.map(Reply::Done)
    }

    /// Whether an inspector may rewrite calls to `target`: such a call
    /// cannot be forwarded as the bytes it came in (the MCP fast lane).
    pub fn rewrites(&self, target: &Target<'_>) -> bool {
        self.inspectors.iter().any(|i| i.rewrites(target))
    }

    async fn stages<K: CallKind>(
        &self,
        env: &K::Env,
        ctx: &mut CallContext<K>,
    ) -> Result<Reply<K::Output, K::Stream>, CallError> {
        let t = Instant::now();
        authenticate(ctx)?;
        ctx.mark("authenticate", t);

        // Resolve before authorize: policies decide on the resolved target (its
        // server, its annotations), not on a name the caller typed.
        let t = Instant::now();
        ctx.target = Some(resolve(env, ctx)?);
        ctx.mark("resolve", t);

        // What the call's session touched before it: policies hold a sink
        // after private data and untrusted content (toxic flows).
        let flow = flow_key(
            ctx.session.as_deref(),
            ctx.trace.as_deref(),
            &ctx.caller.subject,
        );
        ctx.touched = self.flows.touched(&flow).labels;
        ctx.flow = Some(flow);

        let t = Instant::now();
        authorize(&self.policies, ctx)?;
        ctx.mark("authorize", t);

        // Inspect after authorize: guardrails never see calls the policies
        // refuse. Before approval: approvers, the decided record and the
        // upstream all see the input as rewritten.
        if !self.inspectors.is_empty() {
            let t = Instant::now();
            inspect_input(&self.inspectors, ctx)?;
            authorize_findings(&self.policies, ctx)?;
            ctx.mark("inspect input", t);
        }

        let t = Instant::now();
        self.await_approval(env, ctx).await?;
        ctx.mark("await approval", t);

        let t = Instant::now();
        ctx.decided = record::decided(self, ctx).await?;
        ctx.mark("record decided", t);

        let t = Instant::now();
        let reply = forward(env, ctx).await;
        ctx.mark("forward", t);

        // A stream's chunks are inspected as they pass (see `stream`).
        let mut reply = reply?;
        // Whatever comes of it now, the call reached its tool: its session
        // has touched the tool's labels.
        self.touch_flow(ctx);
        if let Reply::Done(output) = &mut reply
            && !self.inspectors.is_empty()
        {
            let t = Instant::now();
            inspect_output(&self.inspectors, ctx, |visit| {
                K::output_parts(output, visit)
            })?;
            ctx.mark("inspect output", t);
        }
        Ok(reply)
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

impl Pipeline {
    /// Note that `ctx`'s session has touched its tool's flow labels.
    fn touch_flow<K: CallKind>(&self, ctx: &CallContext<K>) {
        let (Some(flow), Some(target)) = (&ctx.flow, &ctx.target) else {
            return;
        };
        if let Some(question) = K::question(ctx, target)
            && let Target::Tool { name, labels, .. } = question.target
        {
            self.flows.touch(flow, labels, name);
        }
    }
}

/// The flow labels of a call's tool (none for anything else).
pub(crate) fn labels_of<K: CallKind>(ctx: &CallContext<K>) -> Labels {
    match ctx.target.as_ref().and_then(|t| K::question(ctx, t)) {
        Some(PolicyQuestion {
            target: Target::Tool { labels, .. },
            ..
        }) => labels,
        _ => Labels::NONE,
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
        findings: &[],
        touched: ctx.touched,
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

static EMPTY_ARGS: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
    std::sync::LazyLock::new(serde_json::Map::new);

/// Stage 4: the inspectors read the call's input and may rewrite it, ask
/// that it wait for an approver group (held by stage 5 like a policy's
/// gate), or refuse it (recorded `refused`, never forwarded). A call that
/// continues one already decided (no policy question) is not inspected.
fn inspect_input<K: CallKind>(
    inspectors: &[Arc<dyn Inspect>],
    ctx: &mut CallContext<K>,
) -> Result<(), CallError> {
    let Some(target) = &ctx.target else {
        unreachable!("inspect input runs after resolve")
    };
    let Some(question) = K::question(ctx, target) else {
        return Ok(());
    };
    let call = Inspected::of(&question.target);
    let mut report = std::mem::take(&mut ctx.report);
    let input = &mut ctx.input;
    let inspected = inspect(
        inspectors,
        |visit| K::input_parts(input, visit),
        |i, step| match step {
            Step::Part(at, part) => i.input(&call, at, part, &mut report),
            Step::Finish => i.finish_input(&call, &mut report),
        },
    );
    if let Some(decision) = &mut ctx.decision {
        decision
            .gates
            .extend(report.holds.drain(..).map(|hold| Gate {
                policy: hold.rule,
                group: Some(hold.group),
                confirm: None,
                timeout: Gate::DEFAULT_TIMEOUT,
                approvers: 1,
                reason: Some(hold.reason),
            }));
    }
    ctx.report = report;
    ctx.inspected = Some(call);
    if let Err(CallError::Refused { .. }) = &inspected {
        ctx.verdict = Some("refused");
    }
    inspected
}

/// Stage 8: the inspectors read what came back (a whole result, or one
/// chunk of a stream) and may rewrite it, or refuse to pass it on (the
/// call is recorded `refused`). Free with no inspectors.
fn inspect_output<K: CallKind>(
    inspectors: &[Arc<dyn Inspect>],
    ctx: &mut CallContext<K>,
    show: impl FnOnce(&mut dyn FnMut(Part<'_>)),
) -> Result<(), CallError> {
    if inspectors.is_empty() {
        return Ok(());
    }
    let Some(call) = &ctx.inspected else {
        // Not inspected on the way in: a call that continues one already
        // decided.
        return Ok(());
    };
    let report = &mut ctx.report;
    inspect(inspectors, show, |i, step| match step {
        Step::Part(at, part) => i.output(call, at, part, report),
        Step::Finish => i.finish_output(call, report),
    })
}

/// What an inspector is handed: part number `at`, or the end of the parts.
enum Step<'a> {
    Part(usize, Part<'a>),
    Finish,
}

/// Hand each part `show` lends (numbered from 0) to every inspector in
/// turn (`each`: its input or its output side), so each sees what the
/// ones before it left, then tell each the parts are done; the first error
/// stops the inspection and is the call's.
fn inspect(
    inspectors: &[Arc<dyn Inspect>],
    show: impl FnOnce(&mut dyn FnMut(Part<'_>)),
    mut each: impl FnMut(&dyn Inspect, Step<'_>) -> Result<(), CallError>,
) -> Result<(), CallError> {
    let mut failed = None;
    let mut at = 0;
    show(&mut |mut part| {
        if failed.is_some() {
            return;
        }
        for inspector in inspectors {
            if let Err(e) = each(inspector.as_ref(), Step::Part(at, part.reborrow())) {
                failed = Some(e);
                return;
            }
        }
        at += 1;
    });
    if let Some(e) = failed {
        return Err(e);
    }
    for inspector in inspectors {
        each(inspector.as_ref(), Step::Finish)?;
    }
    Ok(())
}

/// Stage 4, continued: when the inspectors found something in the input
/// and a policy reads `context.findings`, the call is decided again with
/// them (each detector, and each `detector:type`), so policies can combine
/// findings with identity and server facts; the inspectors' holds stay
/// among its gates. Nothing happens otherwise.
fn authorize_findings<K: CallKind>(
    engine: &Engine,
    ctx: &mut CallContext<K>,
) -> Result<(), CallError> {
    let policies = engine.current();
    if !policies.reads_findings() {
        return Ok(());
    }
    let mut found: Vec<String> = Vec::new();
    for noted in ctx
        .report
        .findings
        .iter()
        .filter(|n| n.direction == "input")
    {
        for name in [
            noted.detector.to_string(),
            format!("{}:{}", noted.detector, noted.kind),
        ] {
            if !found.contains(&name) {
                found.push(name);
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let Some(target) = &ctx.target else {
        unreachable!("inspect input runs after resolve")
    };
    let Some(question) = K::question(ctx, target) else {
        return Ok(());
    };
    let request_id = ctx.id.to_string();
    let mut decision = policies.decide(&Query {
        caller: &ctx.caller,
        target: question.target,
        args: Some(question.args.unwrap_or(&EMPTY_ARGS)),
        request_id: &request_id,
        findings: &found,
        touched: ctx.touched,
    });
    if !decision.allowed {
        ctx.verdict = Some("deny");
        ctx.decision = Some(decision.clone());
        return Err(CallError::Denied(Box::new(decision)));
    }
    if let Some(before) = &ctx.decision {
        decision.gates.extend(
            before
                .gates
                .iter()
                .filter(|g| g.policy.starts_with("guardrails:"))
                .cloned(),
        );
    }
    ctx.decision = Some(decision);
    Ok(())
}

/// Stage 7: send it to the resolved target, unless the caller has already
/// given up.
async fn forward<K: CallKind>(
    env: &K::Env,
    ctx: &CallContext<K>,
) -> Result<Reply<K::Output, K::Stream>, CallError> {
    if ctx.cancel.is_cancelled() {
        return Err(CallError::Cancelled);
    }
    let Some(target) = &ctx.target else {
        unreachable!("forward runs after resolve")
    };
    K::forward(env, ctx, target).await
}
