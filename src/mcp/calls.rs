//! The MCP call kinds: how a `tools/call`, `resources/read`, `prompts/get`
//! and `completion/complete` are resolved through the catalog and forwarded
//! to their upstream. Everything around that is the shared pipeline.

#![expect(
    deprecated,
    reason = "resources/subscribe is how 2025-11-25 clients follow a resource"
)]
//!
//! Results from an upstream on the 2025-11-25 era carry no `resultType`; a
//! complete one is marked `complete` here, which 2026-07-28 clients require
//! (rmcp strips it again for older clients).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ResourceTemplateReference, ResultType, ServerRequest, ServerResult, SubscribeRequest,
    SubscribeRequestParams, UnsubscribeRequest, UnsubscribeRequestParams,
};

use rmcp::model::{
    CancelTaskParams, CancelTaskRequest, GetTaskParams, GetTaskRequest, UpdateTaskParams,
    UpdateTaskRequest,
};

use super::hub::{Downstream, LaneDownstream, ResourceSubscriber};
use super::ingress::confirm;
use super::payload;
use super::upstream::link::RawReply;
use super::upstream::{self, Upstream};
use crate::authorize::{Annotations, Target};
use crate::call::{
    CallContext, CallError, CallKind, Confirmation, NoStream, Part, PolicyQuestion, Reply,
};
use crate::mcp::state::McpState;

/// The upstream a call goes to, and the name it knows the thing by.
pub struct UpstreamTarget {
    pub upstream: Arc<Upstream>,
    pub upstream_name: String,
    /// A tool's hints from its definition (worst case for anything else).
    pub annotations: Annotations,
    /// SHA-256 of a tool's definition (see `catalog::definition_hash`).
    pub definition_hash: Option<Arc<str>>,
    /// A tool's flow labels (none for anything else).
    pub labels: crate::config::Labels,
}

/// What the MCP ingress hands the pipeline: the request and where it came from.
pub struct McpInput<P> {
    pub params: P,
    /// Where progress and server-to-client requests go back to.
    pub origin: Origin,
    /// What a 2026-07-28 `tools/call` brought back for toolgate (the
    /// answer to an `@confirm` question), taken out of the request by the
    /// ingress ([`confirm::take`]); `None` for every other call.
    pub returned: Option<confirm::Returned>,
}

/// Where a call came from: how its caller is reached again, and (for a
/// `tools/call`) which link forwards it.
#[expect(
    clippy::large_enum_variant,
    reason = "one per call, held in its context; boxing would add an allocation to every call"
)]
pub enum Origin {
    /// An rmcp session (over HTTP or stdio).
    Session(Downstream),
    /// The fast lane ([`crate::mcp::ingress::lane`]): forwarded by the
    /// upstream's lane link; the caller is reached on the call's own
    /// response.
    Lane(LaneDownstream),
}

impl Origin {
    /// The rmcp session behind the call, if it came through one.
    pub fn session(&self) -> Option<&Downstream> {
        match self {
            Origin::Session(downstream) => Some(downstream),
            Origin::Lane(_) => None,
        }
    }
}

fn target(
    mcp: &McpState,
    server: &str,
    upstream_name: String,
) -> Result<UpstreamTarget, CallError> {
    let upstream = mcp
        .upstream(server)
        .ok_or_else(|| CallError::UpstreamUnavailable {
            server: server.to_string(),
            reason: "not configured".into(),
        })?;
    Ok(UpstreamTarget {
        upstream,
        upstream_name,
        annotations: Annotations::WORST,
        definition_hash: None,
        labels: crate::config::Labels::NONE,
    })
}

/// The policy question of a tool call (both ingress paths).
pub fn tool_question<'a>(
    name: &'a str,
    target: &'a UpstreamTarget,
    args: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> PolicyQuestion<'a> {
    PolicyQuestion {
        target: Target::Tool {
            name,
            server: &target.upstream.config.facts,
            annotations: target.annotations,
            labels: target.labels,
        },
        args,
        definition_hash: target.definition_hash.as_deref(),
    }
}

fn resource_question<'a>(uri: &'a str, target: &'a UpstreamTarget) -> PolicyQuestion<'a> {
    PolicyQuestion {
        target: Target::Resource {
            uri,
            server: &target.upstream.config.facts,
        },
        args: None,
        definition_hash: None,
    }
}

fn prompt_question<'a>(
    name: &'a str,
    target: &'a UpstreamTarget,
    args: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> PolicyQuestion<'a> {
    PolicyQuestion {
        target: Target::Prompt {
            name,
            server: &target.upstream.config.facts,
        },
        args,
        definition_hash: None,
    }
}

/// Most rounds of upstream input requests bridged for one legacy call.
const MAX_INPUT_ROUNDS: usize = 8;

/// Requests an upstream may answer with `InputRequiredResult`, and that are
/// retried carrying the answers (SEP-2322).
pub trait TakesInput: Clone {
    fn with_input(self, responses: Option<InputResponses>, state: Option<String>) -> Self;
}

macro_rules! takes_input {
    ($($params:ty),*) => {$(
        impl TakesInput for $params {
            fn with_input(mut self, responses: Option<InputResponses>, state: Option<String>) -> Self {
                // A first round keeps whatever the caller sent.
                if responses.is_some() || state.is_some() {
                    self.input_responses = responses;
                    self.request_state = state;
                }
                self
            }
        }
    )*};
}

takes_input!(
    CallToolRequestParams,
    ReadResourceRequestParams,
    GetPromptRequestParams
);

/// Forward `params` (wrapped by `request`); while the upstream asks for input
/// (`InputRequiredResult`) and the caller is a 2025-11-25 client, which can't
/// take that result, ask the caller with server-to-client requests and
/// retry with its answers. 2026-07-28 callers get the result as it is.
async fn send_bridging_input<K, P: TakesInput>(
    mcp: &McpState,
    ctx: &CallContext<K>,
    target: &UpstreamTarget,
    params: P,
    request: fn(P) -> ClientRequest,
) -> Result<ServerResult, CallError>
where
    K: CallKind<Input = McpInput<P>, Env = McpState>,
{
    let legacy_caller = ctx.input.origin.session().filter(|o| !o.modern);
    let (mut responses, mut state) = (None, None);
    for _ in 0..MAX_INPUT_ROUNDS {
        let round = request(params.clone().with_input(responses.take(), state.take()));
        match (send(mcp, ctx, target, round).await?, legacy_caller) {
            (ServerResult::InputRequiredResult(needed), Some(origin)) => {
                let requests = needed.input_requests.unwrap_or_default();
                let answers = ask_caller(&mcp.hub, origin, requests, &ctx.cancel)
                    .await
                    .map_err(|e| CallError::UpstreamFailed {
                        server: target.upstream.config.name.clone(),
                        reason: format!("it needs input the caller did not give: {}", e.message),
                    })?;
                responses = (!answers.is_empty()).then_some(answers);
                state = needed.request_state;
            }
            (other, _) => return Ok(other),
        }
    }
    Err(CallError::UpstreamFailed {
        server: target.upstream.config.name.clone(),
        reason: format!("asked for input more than {MAX_INPUT_ROUNDS} times"),
    })
}

/// Put each input request to the caller and collect the answers by key.
async fn ask_caller(
    hub: &std::sync::Arc<super::hub::Hub>,
    origin: &Downstream,
    requests: InputRequests,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<InputResponses, rmcp::ErrorData> {
    let mut answers = InputResponses::new();
    for (key, request) in requests {
        let request = match request {
            InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
            InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
            InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
            _ => {
                return Err(rmcp::ErrorData::invalid_request(
                    format!("unsupported input request `{key}`"),
                    None,
                ));
            }
        };
        let answer = upstream::relay_to(hub, origin, request, None, cancel).await?;
        let value = serde_json::to_value(&answer)
            .map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))?;
        answers.insert(key, value);
    }
    Ok(answers)
}

async fn send<K: CallKind<Input = McpInput<P>, Env = McpState>, P>(
    mcp: &McpState,
    ctx: &CallContext<K>,
    target: &UpstreamTarget,
    request: ClientRequest,
) -> Result<ServerResult, CallError> {
    upstream::send(
        &target.upstream,
        &mcp.hub,
        request,
        ctx.input.origin.session().cloned(),
        &ctx.cancel,
    )
    .await
}

/// A resource URI (or one made from a template) to its upstream.
fn resolve_resource(mcp: &McpState, uri: &str) -> Result<UpstreamTarget, CallError> {
    let route = mcp
        .catalog()
        .resource(uri)
        .ok_or_else(|| CallError::NotFound {
            kind: "resource",
            name: uri.to_string(),
        })?;
    target(mcp, &route.server, route.upstream_name)
}

fn unexpected(target: &UpstreamTarget, what: &str) -> CallError {
    CallError::UpstreamFailed {
        server: target.upstream.config.name.clone(),
        reason: format!("answered {what} with an unexpected result type"),
    }
}

/// `tools/call`, from either transport: an rmcp session's call is
/// forwarded over the upstream's rmcp link; a fast-lane call over its lane
/// link, as the JSON the upstream sent (see [`Origin`]).
pub struct ToolCall;

/// What a tool call brings back: rmcp's typed response, or (on the fast
/// lane) the upstream's JSON-RPC `result` or `error` as it was sent.
pub enum ToolReply {
    Typed(CallToolResponse),
    Raw(RawReply),
    /// The upstream asks a 2026-07-28 caller for input. `confirmed` are
    /// the `@confirm` gates its user confirmed in this call: the ingress
    /// seals them into the result's state, so the call's next round is not
    /// asked again ([`confirm::wrap`]).
    InputRequired {
        result: InputRequiredResult,
        confirmed: Vec<String>,
    },
}

/// The upstream serving the exposed tool `name`.
pub fn resolve_tool(mcp: &McpState, name: &str) -> Result<UpstreamTarget, CallError> {
    let catalog = mcp.catalog();
    let entry = catalog.tool(name).ok_or_else(|| CallError::NotFound {
        kind: "tool",
        name: name.to_string(),
    })?;
    let mut target = target(mcp, &entry.route.server, entry.route.upstream_name.clone())?;
    target.annotations = crate::mcp::catalog::annotations(&entry.upstream);
    target.definition_hash = Some(entry.definition_hash.clone());
    target.labels = entry.labels;
    Ok(target)
}

impl CallKind for ToolCall {
    const METHOD: &'static str = "tools/call";
    type Input = McpInput<CallToolRequestParams>;
    type Target = UpstreamTarget;
    type Output = ToolReply;
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &Self::Input) -> &str {
        &input.params.name
    }

    fn resolve(mcp: &McpState, input: &Self::Input) -> Result<UpstreamTarget, CallError> {
        resolve_tool(mcp, &input.params.name)
    }

    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        Some(tool_question(
            &ctx.input.params.name,
            target,
            ctx.input.params.arguments.as_ref(),
        ))
    }

    fn input_parts(input: &mut Self::Input, visit: &mut dyn FnMut(Part<'_>)) {
        if let Some(arguments) = &mut input.params.arguments {
            visit(Part::Object(arguments));
        }
    }

    fn output_parts(output: &mut ToolReply, visit: &mut dyn FnMut(Part<'_>)) {
        match output {
            ToolReply::Typed(CallToolResponse::Complete(result)) => {
                payload::blocks(&mut result.content, visit);
                if let Some(structured) = &mut result.structured_content {
                    visit(Part::Value(structured));
                }
            }
            ToolReply::Raw(reply) => payload::raw(reply, visit),
            // A question for the caller, or a task whose result comes by
            // `tasks/get`: no result yet.
            _ => {}
        }
    }

    async fn progress(ctx: &CallContext<Self>, step: u32, message: &str) {
        confirm::progress(&ctx.input.origin, step, message).await;
    }

    async fn confirm(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        gate: &crate::call::Gate,
        question: &str,
    ) -> Confirmation {
        let input = &ctx.input;
        let returned = input.returned.as_ref();
        confirm::confirm(mcp, &input.origin, returned, &ctx.cancel, gate, question).await
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<ToolReply, NoStream>, CallError> {
        if let Origin::Lane(down) = &ctx.input.origin {
            return forward_on_lane(mcp, ctx, target, down)
                .await
                .map(Reply::Done);
        }
        let mut params = ctx.input.params.clone();
        params.name = target.upstream_name.clone().into();
        strip_progress_token(&mut params.meta);
        match send_bridging_input(mcp, ctx, target, params, |p| {
            ClientRequest::CallToolRequest(CallToolRequest::new(p))
        })
        .await?
        {
            ServerResult::CallToolResult(mut r) => {
                r.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(Reply::Done(ToolReply::Typed(CallToolResponse::Complete(r))))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(Reply::Done(ToolReply::InputRequired {
                    result,
                    confirmed: ctx.approvals.confirmed.clone(),
                }))
            }
            ServerResult::CreateTaskResult(r) => {
                mcp.hub
                    .remember_task(r.task.task_id.clone(), target.upstream.name.clone());
                Ok(Reply::Done(ToolReply::Typed(CallToolResponse::Task(r))))
            }
            _ => Err(unexpected(target, "tools/call")),
        }
    }
}

/// A tool call from the fast lane, forwarded by the upstream's
/// [`upstream::LaneLink`]: the arguments the stages decided on, serialised
/// for the upstream; its answer kept as it was sent.
async fn forward_on_lane(
    mcp: &McpState,
    ctx: &CallContext<ToolCall>,
    target: &UpstreamTarget,
    down: &LaneDownstream,
) -> Result<ToolReply, CallError> {
    let upstream = &target.upstream;
    let link = upstream
        .lane()
        .ok_or_else(|| CallError::UpstreamUnavailable {
            server: upstream.config.name.clone(),
            reason: "no HTTP link".into(),
        })?;
    let arguments = ctx.input.params.arguments.as_ref();
    let timeout = upstream.config.call_timeout;
    link.call(mcp, target, arguments, down, &ctx.cancel, timeout)
        .await
        .map(ToolReply::Raw)
}

pub struct ResourceRead;

impl CallKind for ResourceRead {
    const METHOD: &'static str = "resources/read";
    type Input = McpInput<ReadResourceRequestParams>;
    type Target = UpstreamTarget;
    type Output = ReadResourceResponse;
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &Self::Input) -> &str {
        &input.params.uri
    }

    fn resolve(mcp: &McpState, input: &Self::Input) -> Result<UpstreamTarget, CallError> {
        resolve_resource(mcp, &input.params.uri)
    }

    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        Some(resource_question(&ctx.input.params.uri, target))
    }

    fn output_parts(output: &mut ReadResourceResponse, visit: &mut dyn FnMut(Part<'_>)) {
        if let ReadResourceResponse::Complete(result) = output {
            for contents in &mut result.contents {
                payload::resource(contents, visit);
            }
        }
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<ReadResourceResponse, NoStream>, CallError> {
        let mut params = ctx.input.params.clone();
        params.uri = target.upstream_name.clone();
        strip_progress_token(&mut params.meta);
        match send_bridging_input(mcp, ctx, target, params, |p| {
            ClientRequest::ReadResourceRequest(ReadResourceRequest::new(p))
        })
        .await?
        {
            ServerResult::ReadResourceResult(mut r) => {
                r.result_type.get_or_insert(ResultType::COMPLETE);
                // Contents name the URI they came from: show the caller's name for it.
                let prefix_len = ctx.input.params.uri.len() - target.upstream_name.len();
                let prefix = &ctx.input.params.uri[..prefix_len];
                if !prefix.is_empty() {
                    for content in &mut r.contents {
                        rename_resource_contents(content, prefix);
                    }
                }
                Ok(Reply::Done(ReadResourceResponse::Complete(r)))
            }
            ServerResult::InputRequiredResult(r) => {
                Ok(Reply::Done(ReadResourceResponse::InputRequired(r)))
            }
            _ => Err(unexpected(target, "resources/read")),
        }
    }
}

fn rename_resource_contents(content: &mut rmcp::model::ResourceContents, prefix: &str) {
    match content {
        rmcp::model::ResourceContents::TextResourceContents { uri, .. }
        | rmcp::model::ResourceContents::BlobResourceContents { uri, .. } => {
            *uri = format!("{prefix}{uri}");
        }
        _ => {}
    }
}

pub struct PromptGet;

impl CallKind for PromptGet {
    const METHOD: &'static str = "prompts/get";
    type Input = McpInput<GetPromptRequestParams>;
    type Target = UpstreamTarget;
    type Output = GetPromptResponse;
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &Self::Input) -> &str {
        &input.params.name
    }

    fn resolve(mcp: &McpState, input: &Self::Input) -> Result<UpstreamTarget, CallError> {
        let catalog = mcp.catalog();
        let route = catalog
            .prompt(&input.params.name)
            .ok_or_else(|| CallError::NotFound {
                kind: "prompt",
                name: input.params.name.clone(),
            })?;
        target(mcp, &route.server, route.upstream_name.clone())
    }

    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        let params = &ctx.input.params;
        Some(prompt_question(
            &params.name,
            target,
            params.arguments.as_ref(),
        ))
    }

    fn input_parts(input: &mut Self::Input, visit: &mut dyn FnMut(Part<'_>)) {
        if let Some(arguments) = &mut input.params.arguments {
            visit(Part::Object(arguments));
        }
    }

    fn output_parts(output: &mut GetPromptResponse, visit: &mut dyn FnMut(Part<'_>)) {
        if let GetPromptResponse::Complete(result) = output {
            payload::blocks(result.messages.iter_mut().map(|m| &mut m.content), visit);
        }
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<GetPromptResponse, NoStream>, CallError> {
        let mut params = ctx.input.params.clone();
        params.name = target.upstream_name.clone();
        strip_progress_token(&mut params.meta);
        match send_bridging_input(mcp, ctx, target, params, |p| {
            ClientRequest::GetPromptRequest(GetPromptRequest::new(p))
        })
        .await?
        {
            ServerResult::GetPromptResult(mut r) => {
                r.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(Reply::Done(GetPromptResponse::Complete(r)))
            }
            ServerResult::InputRequiredResult(r) => {
                Ok(Reply::Done(GetPromptResponse::InputRequired(r)))
            }
            _ => Err(unexpected(target, "prompts/get")),
        }
    }
}

pub struct Completion;

impl CallKind for Completion {
    const METHOD: &'static str = "completion/complete";
    type Input = McpInput<CompleteRequestParams>;
    type Target = UpstreamTarget;
    type Output = CompleteResult;
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &Self::Input) -> &str {
        match &input.params.r#ref {
            Reference::Prompt(p) => &p.name,
            Reference::Resource(r) => &r.uri,
            _ => "",
        }
    }

    fn resolve(mcp: &McpState, input: &Self::Input) -> Result<UpstreamTarget, CallError> {
        let catalog = mcp.catalog();
        match &input.params.r#ref {
            Reference::Prompt(p) => {
                let route = catalog.prompt(&p.name).ok_or_else(|| CallError::NotFound {
                    kind: "prompt",
                    name: p.name.clone(),
                })?;
                target(mcp, &route.server, route.upstream_name.clone())
            }
            Reference::Resource(r) => resolve_resource(mcp, &r.uri),
            _ => Err(CallError::NotFound {
                kind: "completion reference",
                name: String::new(),
            }),
        }
    }

    /// Completing an argument of a prompt or resource template is governed
    /// like getting the prompt or reading the resource.
    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        match &ctx.input.params.r#ref {
            Reference::Prompt(p) => Some(prompt_question(&p.name, target, None)),
            Reference::Resource(r) => Some(resource_question(&r.uri, target)),
            // `resolve` refused every other kind of reference.
            _ => None,
        }
    }

    fn input_parts(input: &mut Self::Input, visit: &mut dyn FnMut(Part<'_>)) {
        visit(Part::Text(&mut input.params.argument.value));
    }

    fn output_parts(output: &mut CompleteResult, visit: &mut dyn FnMut(Part<'_>)) {
        for value in &mut output.completion.values {
            visit(Part::Text(value));
        }
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<CompleteResult, NoStream>, CallError> {
        let mut params = ctx.input.params.clone();
        params.r#ref = match &params.r#ref {
            Reference::Prompt(p) => {
                let mut p = p.clone();
                p.name = target.upstream_name.clone();
                Reference::Prompt(p)
            }
            Reference::Resource(_) => {
                Reference::Resource(ResourceTemplateReference::new(target.upstream_name.clone()))
            }
            other => other.clone(),
        };
        strip_progress_token(&mut params.meta);
        match send(
            mcp,
            ctx,
            target,
            ClientRequest::CompleteRequest(CompleteRequest::new(params)),
        )
        .await?
        {
            ServerResult::CompleteResult(mut r) => {
                r.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(Reply::Done(r))
            }
            _ => Err(unexpected(target, "completion/complete")),
        }
    }
}

/// `resources/subscribe` (`subscribe: true`) and `resources/unsubscribe`.
/// Upstream subscriptions are shared: the upstream is asked once, for the
/// first subscriber, and released with the last.
pub struct SubscriptionChange {
    pub uri: String,
    pub subscribe: bool,
}

pub struct ResourceSubscription;

impl CallKind for ResourceSubscription {
    const METHOD: &'static str = "resources/subscribe";
    type Input = McpInput<SubscriptionChange>;
    type Target = UpstreamTarget;
    type Output = ();
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &Self::Input) -> &str {
        &input.params.uri
    }

    fn resolve(mcp: &McpState, input: &Self::Input) -> Result<UpstreamTarget, CallError> {
        resolve_resource(mcp, &input.params.uri)
    }

    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        Some(resource_question(&ctx.input.params.uri, target))
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<(), NoStream>, CallError> {
        let Some(origin) = ctx.input.origin.session() else {
            return Err(CallError::NotFound {
                kind: "session",
                name: "subscriptions need a session".into(),
            });
        };
        let server = &target.upstream.name;
        let uri = &target.upstream_name;
        let request = if ctx.input.params.subscribe {
            let subscriber = ResourceSubscriber {
                peer: origin.peer.clone(),
                exposed_uri: ctx.input.params.uri.clone(),
            };
            let first = mcp
                .hub
                .subscribe_resource(server, uri, origin.session, subscriber)
                .map_err(|reason| CallError::UpstreamFailed {
                    server: server.to_string(),
                    reason,
                })?;
            if !first {
                return Ok(Reply::Done(()));
            }
            ClientRequest::SubscribeRequest(SubscribeRequest::new(SubscribeRequestParams::new(
                uri.clone(),
            )))
        } else {
            if !mcp.hub.unsubscribe_resource(server, uri, origin.session) {
                return Ok(Reply::Done(()));
            }
            ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                UnsubscribeRequestParams::new(uri.clone()),
            ))
        };
        let result = send(mcp, ctx, target, request).await;
        if result.is_err() && ctx.input.params.subscribe {
            mcp.hub.unsubscribe_resource(server, uri, origin.session);
        }
        result.map(|_| Reply::Done(()))
    }
}

/// `tasks/get`, `tasks/update`, `tasks/cancel` (SEP-2663): sent to the
/// upstream that created the task.
pub enum TaskRequest {
    Get(GetTaskParams),
    Update(UpdateTaskParams),
    Cancel(CancelTaskParams),
}

impl TaskRequest {
    fn task_id(&self) -> &str {
        match self {
            TaskRequest::Get(p) => &p.task_id,
            TaskRequest::Update(p) => &p.task_id,
            TaskRequest::Cancel(p) => &p.task_id,
        }
    }
}

pub struct TaskOp;

impl CallKind for TaskOp {
    const METHOD: &'static str = "tasks/*";
    type Input = McpInput<TaskRequest>;
    type Target = UpstreamTarget;
    type Output = ServerResult;
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &Self::Input) -> &str {
        input.params.task_id()
    }

    fn resolve(mcp: &McpState, input: &Self::Input) -> Result<UpstreamTarget, CallError> {
        let task_id = input.params.task_id();
        let server = mcp
            .hub
            .task_server(task_id)
            .ok_or_else(|| CallError::NotFound {
                kind: "task",
                name: task_id.to_string(),
            })?;
        target(mcp, &server, task_id.to_string())
    }

    /// A task continues a `tools/call` that was decided when it started.
    fn question<'a>(
        _ctx: &'a CallContext<Self>,
        _target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        None
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<ServerResult, NoStream>, CallError> {
        let request = match &ctx.input.params {
            TaskRequest::Get(p) => ClientRequest::GetTaskRequest(GetTaskRequest::new(p.clone())),
            TaskRequest::Update(p) => {
                ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(p.clone()))
            }
            TaskRequest::Cancel(p) => {
                ClientRequest::CancelTaskRequest(CancelTaskRequest::new(p.clone()))
            }
        };
        send(mcp, ctx, target, request).await.map(Reply::Done)
    }
}

/// The caller's progress token is theirs; the upstream gets its own (see `hub`).
fn strip_progress_token(meta: &mut Option<rmcp::model::RequestMetaObject>) {
    if let Some(meta) = meta {
        meta.remove("progressToken");
    }
}
