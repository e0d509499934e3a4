//! The virtual server: the one MCP server agents connect to.
//!
//! A manual rmcp [`ServerHandler`]. Lists come straight from the catalog;
//! every call is handed to the pipeline (`Pipeline::run`) as a
//! [`CallContext`], and the pipeline's [`CallError`] is turned into what an
//! MCP client expects by the one rule both transports share
//! ([`super::errors`]).

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but are how 2025-11-25 clients and servers talk"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};

use rmcp::model::ProgressNotificationParam;
use rmcp::model::{CancelTaskParams, GetTaskParams, GetTaskResult, ServerResult, UpdateTaskParams};

use super::confirm;
use super::context;
use super::errors::{self, ToolAnswer, protocol_error};
use crate::call::{CallContext, CallError, CallKind, Caller, NoStream, Reply};
use crate::mcp::calls::{
    Completion, McpInput, Origin, PromptGet, ResourceRead, ResourceSubscription,
    SubscriptionChange, ToolCall, ToolReply,
};
use crate::mcp::calls::{TaskOp, TaskRequest};
use crate::mcp::hub::{Downstream, ListChanged, SessionId};
use crate::mcp::state::McpState;
use crate::mcp::views;

fn next_session_id() -> SessionId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One downstream session's view of the gateway.
#[derive(Clone)]
pub struct VirtualServer {
    mcp: Arc<McpState>,
    session: SessionId,
    caller: Caller,
}

impl VirtualServer {
    pub fn new(mcp: Arc<McpState>, caller: Caller) -> Self {
        Self {
            mcp,
            session: next_session_id(),
            caller,
        }
    }

    fn context<K: CallKind<Input = McpInput<P>>, P>(
        &self,
        params: P,
        returned: Option<confirm::Returned>,
        ctx: &RequestContext<RoleServer>,
    ) -> CallContext<K> {
        let modern = is_modern(ctx);
        let origin = Downstream {
            session: self.session,
            peer: ctx.peer.clone(),
            request_id: ctx.id.clone(),
            progress_token: ctx.meta.get_progress_token(),
            modern,
            // Only the 2026-07-28 link passes them on (see `upstream::send`).
            capabilities: modern.then(|| ctx.client_capabilities()).flatten(),
        };
        let caller = self.caller_of(ctx);
        let parts = ctx.extensions.get::<axum::http::request::Parts>();
        // The client's MCP session id over HTTP (none for a stateless
        // 2026-07-28 request); over stdio, this process's session number.
        let session = match parts {
            Some(p) => p
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            None => Some(format!("local-{}", self.session)),
        };
        let input = McpInput {
            params,
            origin: Origin::Session(origin),
            returned,
        };
        context::open(
            caller,
            input,
            ctx.ct.clone(),
            session,
            parts.map(|p| &p.headers),
        )
    }

    /// Over HTTP, whoever sent this request (the authenticate layer put
    /// them in its extensions); over stdio, the session's local user.
    fn caller_of(&self, ctx: &RequestContext<RoleServer>) -> Caller {
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .unwrap_or(&self.caller)
            .clone()
    }

    async fn run<K: CallKind<Input = McpInput<P>, Env = McpState, Stream = NoStream>, P>(
        &self,
        params: P,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<K::Output, CallError> {
        self.run_returned::<K, P>(params, None, ctx).await
    }

    async fn run_returned<
        K: CallKind<Input = McpInput<P>, Env = McpState, Stream = NoStream>,
        P,
    >(
        &self,
        params: P,
        returned: Option<confirm::Returned>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<K::Output, CallError> {
        let call = self.context::<K, P>(params, returned, ctx);
        let reply = self.mcp.pipeline.run::<K>(&self.mcp, call).await;
        reply.map(Reply::done)
    }
}

/// Whether the caller speaks 2026-07-28 or later.
fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

impl ServerHandler for VirtualServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_completions()
            .enable_logging()
            .build();
        let mut capabilities = capabilities;
        if self.mcp.upstreams_support_tasks() {
            // Offer tasks (SEP-2663) only when an upstream can run them.
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    rmcp::model::TASKS_EXTENSION_ID.to_string(),
                    Default::default(),
                );
        }
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("toolgate", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(self.mcp.instructions().to_string());
        info
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.mcp
            .hub
            .add_session(self.session, context.peer.clone(), self.caller_of(&context))
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = self.caller_of(&context);
        Ok(ListToolsResult::with_all_items(views::tools(
            &self.mcp, &caller,
        )))
    }

    /// A 2026-07-28 caller's call may bring back toolgate's own
    /// `requestState` (an `@confirm` question's): it is taken out before
    /// the pipeline (the upstream sees only its own), read by the
    /// await-approval stage, and sealed again around the upstream's own
    /// question after the pipeline.
    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let audit = &self.mcp.pipeline.audit;
        let returned = is_modern(&context)
            .then(|| confirm::take(audit, &self.caller_of(&context), &mut request));
        let binding = returned.as_ref().map(|r| r.binding().to_string());
        let reply = self
            .run_returned::<ToolCall, _>(request, returned, &context)
            .await;
        match reply {
            Ok(ToolReply::Typed(response)) => Ok(response),
            Ok(ToolReply::InputRequired {
                mut result,
                confirmed,
            }) => {
                if let Some(binding) = &binding {
                    confirm::wrap(audit, binding, &confirmed, &mut result);
                }
                Ok(CallToolResponse::InputRequired(result))
            }
            // Only a fast-lane call is forwarded raw; read it the same way
            // should one ever come here.
            Ok(ToolReply::Raw(raw)) => raw.into_typed(),
            Err(e) => match errors::tool_call(e) {
                ToolAnswer::Protocol(error) => Err(error),
                ToolAnswer::ToolError(result) => Ok(result.into()),
                ToolAnswer::Question(question) => Ok((*question).into()),
            },
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller_of(&context);
        Ok(ListResourcesResult::with_all_items(views::resources(
            &self.mcp, &caller,
        )))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let caller = self.caller_of(&context);
        Ok(ListResourceTemplatesResult::with_all_items(
            views::resource_templates(&self.mcp, &caller),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.run::<ResourceRead, _>(request, &context)
            .await
            .map_err(protocol_error)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let caller = self.caller_of(&context);
        Ok(ListPromptsResult::with_all_items(views::prompts(
            &self.mcp, &caller,
        )))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.run::<PromptGet, _>(request, &context)
            .await
            .map_err(protocol_error)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.run::<Completion, _>(request, &context)
            .await
            .map_err(protocol_error)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let change = SubscriptionChange {
            uri: request.uri,
            subscribe: true,
        };
        self.run::<ResourceSubscription, _>(change, &context)
            .await
            .map_err(protocol_error)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let change = SubscriptionChange {
            uri: request.uri,
            subscribe: false,
        };
        self.run::<ResourceSubscription, _>(change, &context)
            .await
            .map_err(protocol_error)
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        match self
            .run::<TaskOp, _>(TaskRequest::Get(request), &context)
            .await
            .map_err(protocol_error)?
        {
            ServerResult::GetTaskResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "upstream answered tasks/get with something else",
                None,
            )),
        }
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.run::<TaskOp, _>(TaskRequest::Update(request), &context)
            .await
            .map(|_| ())
            .map_err(protocol_error)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.run::<TaskOp, _>(TaskRequest::Cancel(request), &context)
            .await
            .map(|_| ())
            .map_err(protocol_error)
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        // Lets rmcp check `Mcp-Param-*` headers against the tool's schema.
        self.mcp
            .catalog()
            .tool(name)
            .map(|entry| entry.visible.clone())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // The level applies to what upstreams send; pass it to each that logs.
        self.mcp.set_upstream_log_level(request).await;
        Ok(())
    }

    async fn on_progress(
        &self,
        mut params: ProgressNotificationParam,
        _context: NotificationContext<RoleServer>,
    ) {
        // Progress on a request an upstream sent this caller goes back there.
        if let Some((upstream, token)) = self
            .mcp
            .hub
            .reverse_progress_target(self.session, &params.progress_token)
        {
            params.progress_token = token;
            let _ = upstream.notify_progress(params).await;
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        accepted.prompts_list_changed = requested.prompts_list_changed;
        accepted.resources_list_changed = requested.resources_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let accepted = context.accepted();
        let wants = ListChanged {
            tools: accepted.tools_list_changed == Some(true),
            resources: accepted.resources_list_changed == Some(true),
            prompts: accepted.prompts_list_changed == Some(true),
        };
        self.mcp.hub.add_subscription(
            self.session,
            context.sink().clone(),
            wants,
            self.caller_of(context.request_context()),
        );
        context.cancelled().await;
        self.mcp.hub.remove_subscription(self.session);
        Ok(())
    }
}
