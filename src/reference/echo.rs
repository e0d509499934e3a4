//! `echo`: the benchmark upstream, plus helpers that exercise what a gateway
//! must pass through (progress, cancellation, sampling, elicitation, a crash,
//! tool list changes).

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but are how 2025-11-25 clients and servers talk"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, ElicitRequestParams,
    ElicitationSchema, ProgressNotificationParam, SamplingMessage, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Clone)]
pub struct Echo {
    tool_router: ToolRouter<Self>,
    /// Set by `add_tool`: a tool named `extra` appears in the list.
    extra: Arc<AtomicBool>,
    /// Progress notifications received from the client (on requests this
    /// server sent it, such as sampling).
    progress_seen: Arc<AtomicUsize>,
    /// The `echo://counter` resource: its value and who subscribed to it.
    counter: Arc<AtomicUsize>,
    counter_subscribers: Arc<std::sync::Mutex<Vec<rmcp::Peer<RoleServer>>>>,
}

/// The one resource, for subscription tests.
pub const COUNTER_URI: &str = "echo://counter";

#[derive(Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// Text to send back.
    pub message: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct SleepArgs {
    /// How long to take, in milliseconds.
    pub ms: u64,
    /// Progress notifications to send along the way.
    #[serde(default)]
    pub steps: u32,
}

#[derive(Deserialize, JsonSchema)]
pub struct AskArgs {
    /// What to ask.
    pub question: String,
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Echo {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            extra: Arc::new(AtomicBool::new(false)),
            progress_seen: Arc::new(AtomicUsize::new(0)),
            counter: Arc::new(AtomicUsize::new(0)),
            counter_subscribers: Arc::default(),
        }
    }

    #[tool(
        description = "Return the message unchanged.",
        annotations(read_only_hint = true)
    )]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.message
    }

    #[tool(
        description = "Wait `ms` milliseconds, reporting progress `steps` times; stops early if cancelled."
    )]
    async fn sleep(
        &self,
        Parameters(args): Parameters<SleepArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let steps = args.steps.max(1);
        let slice = Duration::from_millis(args.ms / u64::from(steps));
        for i in 1..=steps {
            tokio::select! {
                _ = tokio::time::sleep(slice) => {}
                _ = context.ct.cancelled() => return Err(ErrorData::internal_error("cancelled", None)),
            }
            if args.steps > 0
                && let Some(token) = context.meta.get_progress_token()
            {
                let _ = context
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token, f64::from(i))
                            .with_total(f64::from(steps)),
                    )
                    .await;
            }
        }
        Ok(format!("slept {} ms", args.ms))
    }

    #[tool(description = "Ask the client's LLM (sampling) and return its answer.")]
    async fn ask_llm(
        &self,
        Parameters(args): Parameters<AskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(args.question)], 100);
        let result = context
            .peer
            .create_message(params)
            .await
            .map_err(|e| ErrorData::internal_error(format!("sampling failed: {e}"), None))?;
        Ok(result
            .message
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default())
    }

    #[tool(
        description = "Ask the client's LLM but give up after 200 ms (the client is told: notifications/cancelled)."
    )]
    async fn ask_llm_briefly(
        &self,
        Parameters(args): Parameters<AskArgs>,
        context: RequestContext<RoleServer>,
    ) -> String {
        let params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(args.question)], 100);
        let request = rmcp::model::ServerRequest::CreateMessageRequest(
            rmcp::model::CreateMessageRequest::new(params),
        );
        let options = rmcp::service::PeerRequestOptions::with_timeout(Duration::from_millis(200));
        let answer = match context
            .peer
            .send_request_with_option(request, options)
            .await
        {
            Ok(handle) => handle.await_response().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(_) => "answered".into(),
            Err(e) => format!("gave up: {e}"),
        }
    }

    #[tool(description = "Ask the user (elicitation) and return what they answered.")]
    async fn ask_user(
        &self,
        Parameters(args): Parameters<AskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: args.question,
            requested_schema: ElicitationSchema::new(Default::default()),
        };
        let result = context
            .peer
            .create_elicitation(params)
            .await
            .map_err(|e| ErrorData::internal_error(format!("elicitation failed: {e}"), None))?;
        Ok(format!(
            "{:?} {}",
            result.action,
            result.content.map(|c| c.to_string()).unwrap_or_default()
        ))
    }

    #[tool(description = "Return a tool error (isError: true).")]
    async fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("failed on purpose")])
    }

    #[tool(
        description = "Exit the server process at once (to test restarts).",
        annotations(destructive_hint = true)
    )]
    async fn crash(&self) -> String {
        std::process::exit(3)
    }

    #[tool(description = "Add a tool named `extra` and announce the change (tools/list_changed).")]
    async fn add_tool(&self, context: RequestContext<RoleServer>) -> String {
        self.extra.store(true, Ordering::SeqCst);
        let _ = context.peer.notify_tool_list_changed().await;
        "added".into()
    }

    #[tool(description = "How many progress notifications the client has sent this server.")]
    async fn progress_seen(&self) -> String {
        self.progress_seen.load(Ordering::SeqCst).to_string()
    }

    #[tool(description = "Add one to echo://counter and tell its subscribers (resources/updated).")]
    async fn bump(&self) -> String {
        let value = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let subscribers = self
            .counter_subscribers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        for peer in subscribers {
            let _ = peer
                .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(
                    COUNTER_URI,
                ))
                .await;
        }
        value.to_string()
    }

    #[tool(description = "Present only after add_tool.")]
    async fn extra(&self) -> String {
        "extra".into()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let counter =
            rmcp::model::Resource::new(COUNTER_URI, "counter").with_mime_type("text/plain");
        Ok(rmcp::model::ListResourcesResult::with_all_items(vec![
            counter,
        ]))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        if request.uri != COUNTER_URI {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        }
        let value = self.counter.load(Ordering::SeqCst).to_string();
        let contents = rmcp::model::ResourceContents::text(value, COUNTER_URI);
        Ok(rmcp::model::ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if request.uri != COUNTER_URI {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        }
        if let Ok(mut subscribers) = self.counter_subscribers.lock() {
            subscribers.push(context.peer);
        }
        Ok(())
    }

    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleServer>,
    ) {
        self.progress_seen.fetch_add(1, Ordering::SeqCst);
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        let extra = self.extra.load(Ordering::SeqCst);
        let tools = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| extra || t.name != "extra")
            .collect();
        Ok(rmcp::model::ListToolsResult::with_all_items(tools))
    }
}
