//! A kind of call ([`CallKind`]) and the context one call carries through
//! the pipeline ([`CallContext`]): what every front end implements and every
//! stage reads.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::payload::{Inspected, Report};
use super::{CallError, Caller, Channel, Decision, Gate, Part, Reply, Target};

/// What the authorize stage asks the policies about one call.
pub struct PolicyQuestion<'a> {
    /// What the call is about (tool, resource, prompt, model).
    pub target: Target<'a>,
    /// The call's arguments (tools, prompts).
    pub args: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// SHA-256 of the target's definition, when it has one (tools).
    pub definition_hash: Option<&'a str>,
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
    /// One piece of a streamed result (a chat completion's delta);
    /// [`super::NoStream`] for a kind that never streams.
    type Chunk: Send + 'static;
    /// A streamed result, as [`CallKind::forward`] hands it over; the
    /// pipeline inspects and counts each chunk and records the call when
    /// it ends. [`super::NoStream`] for a kind that never streams.
    type Stream: futures::Stream<Item = Result<Self::Chunk, CallError>> + Send + Unpin + 'static;
    /// The state the kind needs to resolve and forward (its front end's:
    /// the MCP catalog and upstreams, …); the spine's own state is
    /// [`crate::pipeline::Pipeline`].
    type Env: Send + Sync;

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

    /// How big a result is, for the audit record (when cheap to know).
    fn result_bytes(_output: &Self::Output) -> Option<u64> {
        None
    }

    /// What the `completed` audit record says of the call besides its
    /// outcome (an LLM call's target, tokens, time to first token, finish
    /// reason), once it has ended. Nothing by default.
    fn completed_detail(_ctx: &CallContext<Self>) -> Option<serde_json::Value> {
        None
    }

    /// How big a chunk of a streamed result is; a stream's `result_bytes`
    /// is the sum over its chunks.
    fn chunk_bytes(_chunk: &Self::Chunk) -> Option<u64> {
        None
    }

    /// Show each part of the input that inspectors read and may rewrite
    /// (arguments, a prompt), as [`Part`]s. Nothing by default.
    fn input_parts(_input: &mut Self::Input, _visit: &mut dyn FnMut(Part<'_>)) {}

    /// Show each part of a result that inspectors read and may rewrite.
    /// Nothing by default.
    fn output_parts(_output: &mut Self::Output, _visit: &mut dyn FnMut(Part<'_>)) {}

    /// Show each part of one chunk of a streamed result, with the
    /// [`Channel`] of a piece of text that continues across chunks (a
    /// delta), or `None` for a part that stands alone. Nothing by default.
    fn chunk_parts(_chunk: &mut Self::Chunk, _visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {}

    /// Tell the caller the call is still under way (an MCP progress
    /// notification, when the caller asked for progress), during a long
    /// wait such as an approval. Nothing by default.
    fn progress(
        _ctx: &CallContext<Self>,
        _step: u32,
        _message: &str,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Ask the end user to confirm this call (an approval gate's
    /// `@confirm`), showing them `question`: by MCP elicitation where the
    /// caller's client supports it. Nobody can be asked by default.
    fn confirm(
        _env: &Self::Env,
        _ctx: &CallContext<Self>,
        _gate: &Gate,
        _question: &str,
    ) -> impl Future<Output = Confirmation> + Send {
        async { Confirmation::CannotAsk("this kind of call cannot ask its user".into()) }
    }

    /// Send the call to its target and return what came back: all of it,
    /// or a stream of it.
    fn forward(
        env: &Self::Env,
        ctx: &CallContext<Self>,
        target: &Self::Target,
    ) -> impl Future<Output = Result<Reply<Self::Output, Self::Stream>, CallError>> + Send;
}

/// The end user's answer to an approval gate's `@confirm`.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// They confirmed.
    Yes,
    /// They did not: what they did ("declined", "cancelled", …).
    No(String),
    /// They cannot be asked: why not.
    CannotAsk(String),
    /// The question goes back in the call's answer (as the front end
    /// wrote it: an MCP 2026-07-28 `InputRequiredResult`); the call comes
    /// again with the answer.
    Asked(Box<serde_json::Value>),
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
    /// the authenticate stage.
    pub caller: Caller,
    pub input: K::Input,
    /// Set by the resolve stage.
    pub target: Option<K::Target>,
    /// Set by the authorize stage: what the policies decided, and which ones.
    pub decision: Option<Decision>,
    /// Set by the authorize stage: `allow`, `deny` (refused for its arguments) or
    /// `hidden` (not even visible), or `gated` (allowed, held by an
    /// approval gate), for the audit record.
    pub verdict: Option<&'static str>,
    /// Set by the await-approval stage: the approvals this call used and the
    /// gates its user confirmed.
    pub approvals: Cleared,
    /// Set by the record-decided stage: the `seq` of the durable `decided` record.
    pub decided: Option<u64>,
    /// Set by the inspect stages (when there are inspectors): what the
    /// call is about, as they see it, and what they found.
    pub inspected: Option<Inspected>,
    pub report: Report,
    /// Set by the ingress when known: the MCP session and the W3C trace id.
    pub session: Option<String>,
    pub trace: Option<String>,
    /// Set before the authorize stage: the flow the call belongs to (its
    /// session, else its trace, else its caller) and the flow labels that
    /// flow has touched so far (toxic flows, `crate::integrity::flows`).
    pub flow: Option<String>,
    pub touched: crate::config::Labels,
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
            verdict: None,
            approvals: Default::default(),
            decided: None,
            inspected: None,
            report: Report::default(),
            session: None,
            trace: None,
            flow: None,
            touched: crate::config::Labels::NONE,
            cancel,
            received: Instant::now(),
            timings: Vec::with_capacity(4),
        }
    }

    pub fn mark(&mut self, stage: &'static str, since: Instant) {
        self.timings.push((stage, since.elapsed()));
    }
}

/// What clearing a call's gates took.
#[derive(Debug, Default)]
pub struct Cleared {
    /// The approvals it spent.
    pub approvals: Vec<String>,
    /// The `@confirm` gates the end user confirmed.
    pub confirmed: Vec<String>,
}
