//! Reference MCP server ("conformance fixture") for the official MCP conformance
//! suite (`@modelcontextprotocol/conformance`).
//!
//! The suite's *server* scenarios call fixed fixture names: tools such as
//! `test_simple_text` or `test_sampling`, resources under `test://`, prompts such
//! as `test_simple_prompt`, plus completion, logging, subscriptions and the
//! 2026-07-28 multi round-trip (`InputRequiredResult`) tools. The suite does not
//! publish a fixture server of its own, so this module implements every name the
//! server scenarios use, following the suite's TypeScript reference server. It is
//! served directly (to check the fixture) and behind toolgate (to check that the
//! gateway forwards MCP faithfully); `tests/conformance/run.sh` drives the suite.
//!
//! Both protocol eras are supported by one handler:
//! - 2025-11-25 and older (`initialize` + sessions): sampling and elicitation are
//!   server-to-client requests on the tool call's stream; logging follows
//!   `logging/setLevel`; `resources/subscribe` is honoured.
//! - 2026-07-28 (stateless, per-request `_meta`): server-to-client requests are
//!   forbidden, so the `test_input_required_result_*` tools answer with an
//!   `InputRequiredResult` (SEP-2322) and the client retries with
//!   `inputResponses`; logs are only sent when the request's `_meta` carries a
//!   log level; `subscriptions/listen` replaces `resources/subscribe`.
//!
//! The SEP-2663 Tasks extension fixtures (`greet`, `slow_compute`, `failing_job`,
//! `protocol_error_job`, `confirm_delete`, `multi_input`, `test_tool_with_task`)
//! are served through rmcp's `TaskManager`.
//!
//! `requestState` values are opaque handles into a bounded server-side table,
//! so a tampered value simply is not found and is rejected (SEP-2322 integrity).
//!
//! Layout, by what each part serves:
//! - this file: the server value and its process-wide state, the constants
//!   and small content helpers every part shares, and the `ServerHandler`
//!   impl that routes each request to the part below that answers it;
//! - `tools`: the tool catalogue and the plain (session-era) tool bodies;
//! - `input`: asking the client for input in both eras: sampling and
//!   elicitation on the tool call's stream, and the 2026-07-28
//!   `InputRequiredResult` tools with their `requestState` handles;
//! - `tasks`: the SEP-2663 task fixture tools and the jobs they spawn;
//! - `resources`, `prompts`: the `test://` resources and the prompts;
//! - `logging`: which log messages a request may receive, and sending them.

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 in rmcp 3.11, but the 2025-11-25 scenarios exercise exactly those features"
)]

mod input;
mod logging;
mod prompts;
mod resources;
mod tasks;
mod tools;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
        GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult, Implementation,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        LoggingLevel, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        Reference, ResourceContents, ServerCapabilities, ServerConfig, SetLevelRequestParams,
        SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
        UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext, SubscriptionSink},
    task_manager::TaskManager,
};
use serde_json::Value;

use crate::util::sync::LockExt;
use logging::{level_name, session_key};
use tasks::TASK_FIXTURE_TOOLS;

/// A 1x1 PNG, base64.
const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file, base64.
const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const SERVER_NAME: &str = "toolgate-conformance-fixture";
const LOGGER_NAME: &str = "conformance-fixture";
/// Freshness advertised on list and read results (SEP-2549).
const CACHE_TTL_MS: u64 = 300_000;
/// Most `requestState` handles kept at once; the oldest are forgotten first.
const MAX_REQUEST_STATES: usize = 4096;
/// Most per-session log levels kept at once.
const MAX_SESSION_LOG_LEVELS: usize = 4096;
const WATCHED_RESOURCE_URI: &str = "test://watched-resource";

/// The conformance fixture server.
///
/// Every value, whether cloned or made by [`ConformanceServer::new`], shares one
/// process-wide state (subscriptions, `requestState` handles, tasks, per-session
/// log levels). rmcp's `StreamableHttpService` calls its factory once per
/// session and, for 2026-07-28, once per *request*, while an MRTR retry or a
/// `tasks/get` must find what an earlier request stored, so a factory may
/// return `ConformanceServer::new()` or a clone of one value alike.
#[derive(Clone)]
pub struct ConformanceServer {
    state: Arc<SharedState>,
}

struct SharedState {
    /// URIs subscribed through legacy `resources/subscribe`.
    resource_subscriptions: Mutex<HashSet<String>>,
    /// Open `subscriptions/listen` streams (2026-07-28).
    listeners: Mutex<HashMap<u64, SubscriptionSink>>,
    next_listener: AtomicU64,
    /// `logging/setLevel` per session (keyed by `Mcp-Session-Id`, or "" on stdio).
    log_levels: Mutex<BoundedMap<LoggingLevel>>,
    /// Server-side MRTR state; `requestState` carries only the handle.
    request_states: Mutex<BoundedMap<Value>>,
    handle_counter: AtomicU64,
    handle_seed: std::collections::hash_map::RandomState,
    /// SEP-2663 tasks created by the task fixture tools.
    tasks: TaskManager,
}

/// An insertion-ordered map that forgets its oldest entries past a limit.
struct BoundedMap<V> {
    limit: usize,
    entries: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> BoundedMap<V> {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, key: String, value: V) {
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.limit {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }
}

impl Default for ConformanceServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ConformanceServer {
    /// A handle on the process-wide fixture state (see the type's docs).
    pub fn new() -> Self {
        static SHARED: OnceLock<Arc<SharedState>> = OnceLock::new();
        let state = SHARED.get_or_init(|| {
            Arc::new(SharedState {
                resource_subscriptions: Mutex::new(HashSet::new()),
                listeners: Mutex::new(HashMap::new()),
                next_listener: AtomicU64::new(0),
                log_levels: Mutex::new(BoundedMap::new(MAX_SESSION_LOG_LEVELS)),
                request_states: Mutex::new(BoundedMap::new(MAX_REQUEST_STATES)),
                handle_counter: AtomicU64::new(0),
                handle_seed: std::collections::hash_map::RandomState::new(),
                tasks: TaskManager::new(),
            })
        });
        Self {
            state: state.clone(),
        }
    }

    fn listener_sinks(&self) -> Vec<SubscriptionSink> {
        self.state.listeners.locked().values().cloned().collect()
    }
}

// ─── ServerHandler ──────────────────────────────────────────────────────────

impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_logging()
                .enable_completions()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "MCP conformance fixture: implements the tools, resources and prompts the \
             @modelcontextprotocol/conformance server scenarios call.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools())
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        Self::tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if name.starts_with("test_input_required_result_") || name == "test_streaming_elicitation" {
            return self.call_mrtr_tool(&request, &cx);
        }
        if TASK_FIXTURE_TOOLS.iter().any(|(tool, _, _)| *tool == name) {
            return self.call_task_tool(&request, &cx).await;
        }
        let args = request.arguments.clone().unwrap_or_default();
        self.call_session_tool(name, &args, &cx)
            .await
            .map(CallToolResponse::from)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(Self::resources())
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(
            ListResourceTemplatesResult::with_all_items(Self::resource_templates())
                .with_ttl_ms(CACHE_TTL_MS)
                .with_cache_scope(CacheScope::Public),
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read(&request.uri).map(ReadResourceResponse::from)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .resource_subscriptions
            .locked()
            .insert(request.uri.clone());
        self.log(
            &cx,
            LoggingLevel::Info,
            &format!("Subscribed to resource: {}", request.uri),
        )
        .await;
        self.schedule_watched_update(&cx, &request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .resource_subscriptions
            .locked()
            .remove(&request.uri);
        self.log(
            &cx,
            LoggingLevel::Info,
            &format!("Unsubscribed from resource: {}", request.uri),
        )
        .await;
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let key = self.state.next_listener.fetch_add(1, Ordering::Relaxed);
        let sink = context.sink().clone();
        self.state.listeners.locked().insert(key, sink.clone());
        let watches_resource = context
            .accepted()
            .resource_subscriptions
            .as_ref()
            .is_some_and(|uris| uris.iter().any(|uri| uri == WATCHED_RESOURCE_URI));
        if watches_resource {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = sink.notify_resource_updated(WATCHED_RESOURCE_URI).await;
            });
        }
        context.cancelled().await;
        self.state.listeners.locked().remove(&key);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(Self::prompts())
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.prompt(&request)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match &request.r#ref {
            Reference::Prompt(prompt) => {
                match (prompt.name.as_str(), request.argument.name.as_str()) {
                    ("test_prompt_with_arguments", "arg1" | "arg2") => {
                        &["paris", "park", "party", "test", "testValue1", "testValue2"]
                    }
                    ("test_prompt_with_embedded_resource", "resourceUri") => &[
                        "test://static-text",
                        "test://static-binary",
                        "test://watched-resource",
                    ],
                    _ => &[],
                }
            }
            Reference::Resource(template) => {
                if template.uri == "test://template/{id}/data" && request.argument.name == "id" {
                    &["1", "2", "3", "42", "123"]
                } else {
                    &[]
                }
            }
            _ => &[],
        };
        let prefix = request.argument.value.as_str();
        let values: Vec<String> = candidates
            .iter()
            .filter(|candidate| candidate.starts_with(prefix))
            .map(|candidate| (*candidate).to_owned())
            .collect();
        let info = CompletionInfo::with_all_values(values)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(
            self.state.tasks.get_task(&request.task_id)?,
        ))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .tasks
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state.tasks.cancel_task(&request.task_id)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state
            .log_levels
            .locked()
            .insert(session_key(&cx), request.level);
        self.log(
            &cx,
            LoggingLevel::Info,
            &format!("Log level set to: {}", level_name(request.level)),
        )
        .await;
        Ok(())
    }
}

// ─── helpers ────────────────────────────────────────────────────────────────

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn error_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn text_contents(uri: &str, mime_type: &str, text: impl Into<String>) -> ResourceContents {
    ResourceContents::TextResourceContents {
        uri: uri.to_owned(),
        mime_type: Some(mime_type.to_owned()),
        text: text.into(),
        meta: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_instance_shares_state() {
        // rmcp builds a fresh handler per stateless request; MRTR retries must
        // still find the handle an earlier instance stored.
        let handle = ConformanceServer::new().seal_state(json!({ "round": 1 }));
        assert_eq!(
            ConformanceServer::new().open_state(&handle).expect("test")["round"],
            1
        );
    }

    #[test]
    fn bounded_map_forgets_oldest() {
        let mut map = BoundedMap::new(2);
        map.insert("a".into(), 1);
        map.insert("b".into(), 2);
        map.insert("c".into(), 3);
        assert!(map.get("a").is_none());
        assert_eq!(map.get("c"), Some(&3));
    }
}
