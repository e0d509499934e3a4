//! The governed pipeline: the spine every forwarded call runs through.
//!
//! A *call* is anything toolgate forwards on someone's behalf: a `tools/call`,
//! a `resources/read`, a `prompts/get`, a `completion/complete`, and (later) an
//! LLM chat completion. Each kind implements [`CallKind`]: how to find its
//! target and how to forward it. Everything else is shared: [`run`] takes one
//! [`CallContext`] through the same ordered stages for every kind.
//!
//! ```text
//!   authenticate → resolve → authorize → inspect input → await approval
//!     → record "decided" → forward → inspect output → record "completed"
//! ```
//!
//! Today the spine runs authenticate (the ingress's identity), resolve,
//! authorize (Cedar policies, [`crate::authorize`]), forward and record (a
//! structured `tracing` event per call). The stages in between are added by
//! later work as functions called from [`run`], in the order above; each one
//! reads and fills the context and returns early with `?` to refuse a call.

mod caller;
mod error;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use caller::{Caller, Credential};
pub use error::{CallError, Fault};

use crate::authorize::{Decision, Policies, Query};

/// Where the authorize stage finds the policies in force.
pub trait PolicySource {
    fn policies(&self) -> Arc<Policies>;
}

/// What the authorize stage asks the policies about one call.
pub struct PolicyQuestion<'a> {
    /// What the call is about (tool, resource, prompt, model).
    pub target: crate::authorize::Target<'a>,
    /// The call's arguments (tools, prompts).
    pub args: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// A kind of call: how it is resolved and forwarded.
pub trait CallKind: Sized + Send + Sync + 'static {
    /// The method name, for logs and (later) audit records and policies.
    const METHOD: &'static str;
    /// What the caller asked for.
    type Input: Send + Sync;
    /// What the call resolves to (an upstream server and its own name for
    /// the thing, a model route, …).
    type Target: Send + Sync;
    type Output: Send;
    /// The shared state the kind needs to resolve and forward (and the
    /// policies in force).
    type Env: Send + Sync + PolicySource;

    /// The name of what is being called, for logs (exposed tool name, URI…).
    fn subject(input: &Self::Input) -> &str;

    /// Find the target; an unknown name is [`CallError::NotFound`].
    fn resolve(env: &Self::Env, input: &Self::Input) -> Result<Self::Target, CallError>;

    /// What policies decide on; `None` only for calls that continue one
    /// already decided (a task's status), never to skip a decision.
    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a Self::Target,
    ) -> Option<PolicyQuestion<'a>>;

    /// Send the call to its target and return what came back.
    fn forward(
        env: &Self::Env,
        ctx: &CallContext<Self>,
        target: &Self::Target,
    ) -> impl Future<Output = Result<Self::Output, CallError>> + Send;
}

/// Process-unique call number, for correlating log lines (and later audit
/// records) of one call.
pub type CallId = u64;

fn next_call_id() -> CallId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Everything one call carries through the pipeline. Stages read it and fill
/// it in; nothing about a call lives anywhere else.
pub struct CallContext<K: CallKind> {
    pub id: CallId,
    /// Who is calling. Set by the ingress from what it knows, confirmed by
    /// [`authenticate`].
    pub caller: Caller,
    pub input: K::Input,
    /// Set by [`resolve`].
    pub target: Option<K::Target>,
    /// Set by [`authorize`]: what the policies decided, and which ones.
    pub decision: Option<Decision>,
    /// Cancelled when the caller gives up (MCP `notifications/cancelled`,
    /// closed connection); forwarding must stop and tell the upstream.
    pub cancel: CancellationToken,
    pub received: Instant,
    /// Time spent in each stage, in order.
    pub timings: Vec<(&'static str, Duration)>,
}

impl<K: CallKind> CallContext<K> {
    pub fn new(caller: Caller, input: K::Input, cancel: CancellationToken) -> Self {
        Self {
            id: next_call_id(),
            caller,
            input,
            target: None,
            decision: None,
            cancel,
            received: Instant::now(),
            timings: Vec::with_capacity(4),
        }
    }

    fn mark(&mut self, stage: &'static str, since: Instant) {
        self.timings.push((stage, since.elapsed()));
    }
}

/// Run one call through every stage, in order.
pub async fn run<K: CallKind>(
    env: &K::Env,
    mut ctx: CallContext<K>,
) -> Result<K::Output, CallError> {
    let result = stages(env, &mut ctx).await;
    record_completed(&ctx, &result);
    result
}

async fn stages<K: CallKind>(
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
    ctx.decision = authorize(env, ctx)?;
    ctx.mark("authorize", t);

    let t = Instant::now();
    let output = forward(env, ctx).await;
    ctx.mark("forward", t);
    output
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
fn authorize<K: CallKind>(
    env: &K::Env,
    ctx: &CallContext<K>,
) -> Result<Option<Decision>, CallError> {
    let Some(target) = &ctx.target else {
        unreachable!("authorize runs after resolve")
    };
    let Some(question) = K::question(ctx, target) else {
        return Ok(None);
    };
    let policies = env.policies();
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
        return Err(CallError::NotFound {
            kind: query.target.kind(),
            name: K::subject(&ctx.input).to_string(),
        });
    }
    query.args = Some(question.args.unwrap_or(&EMPTY_ARGS));
    let decision = policies.decide(&query);
    if !decision.allowed {
        return Err(CallError::Denied(Box::new(decision)));
    }
    Ok(Some(decision))
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

/// Stage 9: one structured event per call, whatever its outcome.
fn record_completed<K: CallKind, T>(ctx: &CallContext<K>, result: &Result<T, CallError>) {
    let latency_us = ctx.received.elapsed().as_micros() as u64;
    let subject = K::subject(&ctx.input);
    match result {
        Ok(_) => tracing::debug!(
            call = ctx.id, method = K::METHOD, subject, caller = %ctx.caller.subject, latency_us, outcome = "ok",
            stages = ?ctx.timings, "call completed"
        ),
        Err(e) => tracing::info!(
            call = ctx.id, method = K::METHOD, subject, caller = %ctx.caller.subject, latency_us,
            outcome = "error", fault = ?e.fault(), error = %e, stages = ?ctx.timings,
            "call failed"
        ),
    }
}
