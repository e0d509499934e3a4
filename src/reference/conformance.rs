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

// Sampling, roots and logging are deprecated by SEP-2577 in rmcp 3.11, but the
// 2025-11-25 scenarios exercise exactly those features.
#![allow(deprecated)]

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{BuildHasher, Hasher},
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        AudioContent, CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult,
        CancelTaskParams, ClientCapabilities, ClientResult, CompleteRequestParams, CompleteResult,
        CompletionInfo, ContentBlock, CreateTaskResult, ElicitRequest, GetPromptRequestParams,
        GetPromptResponse, GetPromptResult, GetTaskParams, GetTaskResult, Implementation,
        InputRequest, InputRequests, InputRequiredResult, InputResponses, JsonObject,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
        ProgressNotificationParam, Prompt, PromptArgument, PromptMessage, ProtocolVersion,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Reference, Resource,
        ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam, Role,
        ServerCapabilities, ServerConfig, ServerRequest, SetLevelRequestParams,
        SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
        UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext, SubscriptionSink},
    task_manager::{TaskContext, TaskExit, TaskManager, TaskOptions},
};
use serde_json::{Value, json};

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

/// Every tool the fixture lists whose input schema is an empty object.
const NO_ARG_TOOLS: &[(&str, &str)] = &[
    ("test_simple_text", "Tests simple text content response"),
    ("test_image_content", "Tests image content response"),
    ("test_audio_content", "Tests audio content response"),
    (
        "test_embedded_resource",
        "Tests embedded resource content response",
    ),
    (
        "test_multiple_content_types",
        "Tests response with multiple content types (text, image, resource)",
    ),
    (
        "test_tool_with_logging",
        "Tests tool that emits log messages during execution",
    ),
    (
        "test_tool_with_progress",
        "Tests tool that reports progress notifications",
    ),
    ("test_error_handling", "Tests error response handling"),
    (
        "test_elicitation_sep1034_defaults",
        "Tests elicitation with default values per SEP-1034",
    ),
    (
        "test_elicitation_sep1330_enums",
        "Tests elicitation with enum schema improvements per SEP-1330",
    ),
    (
        "test_reconnection",
        "Tests SSE stream reconnection (SEP-1699); completes after a short delay",
    ),
    (
        "test_trigger_tool_change",
        "Sends notifications/tools/list_changed to matching subscriptions/listen streams",
    ),
    (
        "test_trigger_prompt_change",
        "Sends notifications/prompts/list_changed to matching subscriptions/listen streams",
    ),
    (
        "test_missing_capability",
        "Requires the client's sampling capability; rejects with -32021 otherwise",
    ),
    (
        "test_streaming_elicitation",
        "Returns an InputRequiredResult carrying an elicitation request",
    ),
    (
        "test_logging_tool",
        "Emits notifications/message only when the request's _meta sets a log level",
    ),
    (
        "test_input_required_result_elicitation",
        "MRTR: returns InputRequiredResult with an elicitation request (SEP-2322)",
    ),
    (
        "test_input_required_result_sampling",
        "MRTR: returns InputRequiredResult with a sampling request (SEP-2322)",
    ),
    (
        "test_input_required_result_list_roots",
        "MRTR: returns InputRequiredResult with a roots/list request (SEP-2322)",
    ),
    (
        "test_input_required_result_request_state",
        "MRTR: round-trips requestState (SEP-2322)",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "MRTR: elicitation, sampling and roots input requests in one round (SEP-2322)",
    ),
    (
        "test_input_required_result_multi_round",
        "MRTR: two input rounds with evolving requestState (SEP-2322)",
    ),
    (
        "test_input_required_result_tampered_state",
        "MRTR: rejects a tampered requestState with a JSON-RPC error (SEP-2322)",
    ),
    (
        "test_input_required_result_capabilities",
        "MRTR: only requests inputs the client declared capabilities for (SEP-2322)",
    ),
];

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

/// Locks a mutex, recovering the data if a previous holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    // ─── requestState handles ───────────────────────────────────────────────

    /// Stores `state` server-side and returns an unguessable opaque handle.
    fn seal_state(&self, state: Value) -> String {
        let counter = self.state.handle_counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self.state.handle_seed.build_hasher();
        first.write_u64(counter);
        first.write_u8(1);
        let mut second = self.state.handle_seed.build_hasher();
        second.write_u64(counter);
        second.write_u8(2);
        let handle = format!("rs-{:016x}{:016x}", first.finish(), second.finish());
        lock(&self.state.request_states).insert(handle.clone(), state);
        handle
    }

    /// Looks up an echoed `requestState`; unknown (forged, tampered or expired)
    /// handles are a JSON-RPC invalid-params error.
    fn open_state(&self, handle: &str) -> Result<Value, ErrorData> {
        lock(&self.state.request_states)
            .get(handle)
            .cloned()
            .ok_or_else(|| {
                ErrorData::invalid_params("requestState failed integrity verification", None)
            })
    }

    // ─── logging ────────────────────────────────────────────────────────────

    /// Whether a log message at `level` may be sent for this request.
    ///
    /// 2026-07-28 requests carry their own threshold in `_meta`; without one no
    /// log is sent. Session-era requests follow the session's
    /// `logging/setLevel`, and everything is sent until a level is set.
    fn log_allowed(&self, cx: &RequestContext<RoleServer>, level: LoggingLevel) -> bool {
        if let Some(threshold) = cx.meta.log_level() {
            return severity(level) >= severity(threshold);
        }
        if is_stateless_request(cx) {
            return false;
        }
        match lock(&self.state.log_levels).get(&session_key(cx)) {
            Some(threshold) => severity(level) >= severity(*threshold),
            None => true,
        }
    }

    async fn log(&self, cx: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
        if self.log_allowed(cx, level) {
            let _ = cx
                .peer
                .notify_logging_message(
                    LoggingMessageNotificationParam::new(level, json!(message))
                        .with_logger(LOGGER_NAME),
                )
                .await;
        }
    }

    // ─── tools ──────────────────────────────────────────────────────────────

    fn tools() -> Vec<Tool> {
        let mut tools: Vec<Tool> = NO_ARG_TOOLS
            .iter()
            .map(|(name, description)| Tool::new(*name, *description, empty_object_schema()))
            .collect();
        tools.push(Tool::new(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            object_schema(json!({
                "type": "object",
                "properties": {
                    "prompt": { "type": "string", "description": "The prompt to send to the LLM" }
                },
                "required": ["prompt"]
            })),
        ));
        tools.push(Tool::new(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            object_schema(json!({
                "type": "object",
                "properties": {
                    "message": { "type": "string", "description": "The message to show the user" }
                },
                "required": ["message"]
            })),
        ));
        tools.push(Tool::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
            object_schema(json_schema_2020_12()),
        ));
        tools.push(Tool::new(
            "test_custom_header",
            "Echoes `value`, which clients mirror in a custom header (SEP-2243)",
            object_schema(json!({
                "type": "object",
                "properties": {
                    "value": { "type": "string", "x-mcp-header": "Value" }
                },
                "required": ["value"]
            })),
        ));
        tools.extend(
            TASK_FIXTURE_TOOLS
                .iter()
                .map(|(name, description, schema)| {
                    Tool::new(*name, *description, object_schema(schema()))
                }),
        );
        tools
    }

    async fn call_session_tool(
        &self,
        name: &str,
        args: &JsonObject,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        match name {
            "test_simple_text" => Ok(text_result("This is a simple text response for testing.")),
            "test_image_content" => Ok(CallToolResult::success(vec![ContentBlock::image(
                TEST_IMAGE_BASE64,
                "image/png",
            )])),
            "test_audio_content" => Ok(CallToolResult::success(vec![ContentBlock::Audio(
                AudioContent::new(TEST_AUDIO_BASE64, "audio/wav"),
            )])),
            "test_embedded_resource" => Ok(CallToolResult::success(vec![ContentBlock::resource(
                text_contents(
                    "test://embedded-resource",
                    "text/plain",
                    "This is an embedded resource content.",
                ),
            )])),
            "test_multiple_content_types" => Ok(CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ContentBlock::resource(text_contents(
                    "test://mixed-content-resource",
                    "application/json",
                    r#"{"test":"data","value":123}"#,
                )),
            ])),
            "test_tool_with_logging" => {
                self.log(cx, LoggingLevel::Info, "Tool execution started")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.log(cx, LoggingLevel::Info, "Tool processing data")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.log(cx, LoggingLevel::Info, "Tool execution completed")
                    .await;
                Ok(text_result("Tool with logging executed successfully"))
            }
            "test_tool_with_progress" => {
                let token = cx.meta.get_progress_token();
                for (step, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if step > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(token) = &token {
                        let _ = cx
                            .peer
                            .notify_progress(
                                ProgressNotificationParam::new(token.clone(), progress)
                                    .with_total(100.0)
                                    .with_message(format!("Completed step {progress} of 100")),
                            )
                            .await;
                    }
                }
                let token_text = token
                    .and_then(|t| serde_json::to_value(t).ok())
                    .map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "no progress token".to_owned());
                Ok(text_result(token_text))
            }
            "test_error_handling" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])),
            "test_sampling" => {
                let prompt = args
                    .get("prompt")
                    .and_then(Value::as_str)
                    .unwrap_or("Hello");
                Ok(self.sample(cx, prompt).await)
            }
            "test_elicitation" => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Please provide your information");
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" }
                    },
                    "required": ["username", "email"]
                });
                Ok(self.elicit(cx, message, schema, "User response").await)
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "User name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User age", "default": 30 },
                        "score": { "type": "number", "description": "User score", "default": 95.5 },
                        "status": {
                            "type": "string",
                            "description": "User status",
                            "enum": ["active", "inactive", "pending"],
                            "default": "active"
                        },
                        "verified": { "type": "boolean", "description": "Verification status", "default": true }
                    },
                    "required": []
                });
                let message = "Please review and update the form fields with defaults";
                Ok(self
                    .elicit(cx, message, schema, "Elicitation completed")
                    .await)
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {
                            "type": "string",
                            "description": "Select one option",
                            "enum": ["option1", "option2", "option3"]
                        },
                        "titledSingle": {
                            "type": "string",
                            "description": "Select one option with titles",
                            "oneOf": [
                                { "const": "value1", "title": "First Option" },
                                { "const": "value2", "title": "Second Option" },
                                { "const": "value3", "title": "Third Option" }
                            ]
                        },
                        "legacyEnum": {
                            "type": "string",
                            "description": "Select one option (legacy)",
                            "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]
                        },
                        "untitledMulti": {
                            "type": "array",
                            "description": "Select multiple options",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                        },
                        "titledMulti": {
                            "type": "array",
                            "description": "Select multiple options with titles",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": {
                                "anyOf": [
                                    { "const": "value1", "title": "First Choice" },
                                    { "const": "value2", "title": "Second Choice" },
                                    { "const": "value3", "title": "Third Choice" }
                                ]
                            }
                        }
                    },
                    "required": []
                });
                let message = "Please select options from the enum fields";
                Ok(self
                    .elicit(cx, message, schema, "Elicitation completed")
                    .await)
            }
            "json_schema_2020_12_tool" => Ok(text_result(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(args.clone())
            ))),
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(text_result(
                    "Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.",
                ))
            }
            "test_custom_header" => {
                let value = args
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ErrorData::invalid_params("value must be a string", None))?;
                Ok(text_result(value))
            }
            "test_trigger_tool_change" => {
                for sink in self.listener_sinks() {
                    let _ = sink.notify_tool_list_changed().await;
                }
                Ok(text_result("Mutation triggered"))
            }
            "test_trigger_prompt_change" => {
                for sink in self.listener_sinks() {
                    let _ = sink.notify_prompt_list_changed().await;
                }
                Ok(text_result("Mutation triggered"))
            }
            "test_missing_capability" => {
                let declared = cx
                    .client_capabilities()
                    .is_some_and(|caps| caps.sampling.is_some());
                if !declared {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ));
                }
                Ok(text_result("Success"))
            }
            "test_logging_tool" => {
                // Only a request-level threshold authorises logs here.
                if let Some(threshold) = cx.meta.log_level()
                    && severity(LoggingLevel::Info) >= severity(threshold)
                {
                    self.log(cx, LoggingLevel::Info, "Diagnostic trace logging activated")
                        .await;
                }
                Ok(text_result("Logging evaluated"))
            }
            other => Err(ErrorData::invalid_params(
                format!("Unknown tool: {other}"),
                None,
            )),
        }
    }

    /// `sampling/createMessage` on the tool call's stream (session era).
    async fn sample(&self, cx: &RequestContext<RoleServer>, prompt: &str) -> CallToolResult {
        let request = json!({
            "method": "sampling/createMessage",
            "params": {
                "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                "maxTokens": 100
            }
        });
        let request = match serde_json::from_value(request) {
            Ok(request) => ServerRequest::CreateMessageRequest(request),
            Err(e) => return error_result(format!("Sampling request could not be built: {e}")),
        };
        match cx.peer.send_request(request).await {
            Ok(ClientResult::CreateMessageResult(result)) => {
                let value = serde_json::to_value(&*result).unwrap_or(Value::Null);
                let text = value
                    .pointer("/content/text")
                    .and_then(Value::as_str)
                    .or_else(|| value.pointer("/content/0/text").and_then(Value::as_str))
                    .unwrap_or("No response");
                text_result(format!("LLM response: {text}"))
            }
            Ok(_) => error_result("Sampling returned an unexpected result"),
            Err(e) => error_result(format!("Sampling not supported or error: {e}")),
        }
    }

    /// `elicitation/create` on the tool call's stream (session era).
    async fn elicit(
        &self,
        cx: &RequestContext<RoleServer>,
        message: &str,
        requested_schema: Value,
        label: &str,
    ) -> CallToolResult {
        let request = json!({
            "method": "elicitation/create",
            "params": { "mode": "form", "message": message, "requestedSchema": requested_schema }
        });
        let request: ElicitRequest = match serde_json::from_value(request) {
            Ok(request) => request,
            Err(e) => return error_result(format!("Elicitation request could not be built: {e}")),
        };
        match cx
            .peer
            .send_request(ServerRequest::ElicitRequest(request))
            .await
        {
            Ok(ClientResult::ElicitResult(result)) => {
                let value = serde_json::to_value(&result).unwrap_or(Value::Null);
                let action = value
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                let content = value.get("content").cloned().unwrap_or_else(|| json!({}));
                text_result(format!("{label}: action={action}, content={content}"))
            }
            Ok(_) => error_result("Elicitation returned an unexpected result"),
            Err(e) => error_result(format!("Elicitation not supported or error: {e}")),
        }
    }

    fn listener_sinks(&self) -> Vec<SubscriptionSink> {
        lock(&self.state.listeners).values().cloned().collect()
    }

    // ─── MRTR tools (2026-07-28, SEP-2322) ──────────────────────────────────

    fn call_mrtr_tool(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let responses = request.input_responses.as_ref();
        let state = request
            .request_state
            .as_deref()
            .map(|handle| self.open_state(handle))
            .transpose()?;
        let name = request.name.as_ref();
        match name {
            "test_input_required_result_elicitation" => {
                match input_response(responses, "user_name") {
                    Some(response) => {
                        let who = content_str(response, "name").unwrap_or("friend");
                        Ok(text_result(format!("Hello, {who}!")).into())
                    }
                    None => Ok(input_required(
                        [("user_name", ask_name("What is your name?")?)],
                        None,
                    )),
                }
            }
            "test_input_required_result_sampling" => {
                match input_response(responses, "capital_question") {
                    Some(response) => {
                        let text = response
                            .get("content")
                            .and_then(|c| c.get("text"))
                            .and_then(Value::as_str)
                            .unwrap_or("no response");
                        Ok(text_result(format!("Sampling result: {text}")).into())
                    }
                    None => Ok(input_required(
                        [(
                            "capital_question",
                            sampling_request("What is the capital of France?", 100)?,
                        )],
                        None,
                    )),
                }
            }
            "test_input_required_result_list_roots" => {
                match input_response(responses, "client_roots") {
                    Some(response) => {
                        let roots = response
                            .get("roots")
                            .and_then(Value::as_array)
                            .map(|roots| {
                                roots
                                    .iter()
                                    .filter_map(|r| r.get("uri").and_then(Value::as_str))
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default();
                        Ok(text_result(format!(
                            "Found {} root(s): [{}]",
                            roots.len(),
                            roots.join(", ")
                        ))
                        .into())
                    }
                    None => Ok(input_required(
                        [("client_roots", list_roots_request()?)],
                        None,
                    )),
                }
            }
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                let kind = if name.ends_with("request_state") {
                    "request-state"
                } else {
                    "tamper-test"
                };
                let confirmed = state
                    .as_ref()
                    .is_some_and(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                    && input_response(responses, "confirm").is_some();
                if confirmed {
                    let message = if kind == "request-state" {
                        "state-ok: requestState validated"
                    } else {
                        "integrity-ok: state verified"
                    };
                    return Ok(text_result(message).into());
                }
                let handle = self.seal_state(json!({ "kind": kind }));
                Ok(input_required(
                    [(
                        "confirm",
                        elicitation_request(
                            "Please confirm",
                            json!({ "ok": { "type": "boolean" } }),
                            json!(["ok"]),
                        )?,
                    )],
                    Some(handle),
                ))
            }
            "test_input_required_result_multiple_inputs" => {
                let name_response = input_response(responses, "user_name");
                let greeting = input_response(responses, "greeting");
                let roots = input_response(responses, "client_roots");
                let state_ok = state.as_ref().is_some_and(|s| {
                    s.get("kind").and_then(Value::as_str) == Some("multiple-inputs")
                });
                if let (true, Some(name_response), Some(greeting), Some(roots)) =
                    (state_ok, name_response, greeting, roots)
                {
                    let who = content_str(name_response, "name").unwrap_or("unknown");
                    let greeting = greeting
                        .get("content")
                        .and_then(|c| c.get("text"))
                        .and_then(Value::as_str)
                        .unwrap_or("Hello there!");
                    let root_count = roots
                        .get("roots")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    return Ok(text_result(format!(
                        "Name: {who}; Greeting: {greeting}; Roots: {root_count}"
                    ))
                    .into());
                }
                let handle = self.seal_state(json!({ "kind": "multiple-inputs" }));
                Ok(input_required(
                    [
                        ("user_name", ask_name("What is your name?")?),
                        ("greeting", sampling_request("Generate a greeting", 50)?),
                        ("client_roots", list_roots_request()?),
                    ],
                    Some(handle),
                ))
            }
            "test_input_required_result_multi_round" => {
                let round = state
                    .as_ref()
                    .and_then(|s| s.get("round"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                match (round, responses) {
                    (1, _) if input_response(responses, "step1").is_some() => {
                        let who = input_response(responses, "step1")
                            .and_then(|r| content_str(r, "name"))
                            .unwrap_or("friend");
                        let handle = self.seal_state(json!({ "round": 2, "name": who }));
                        Ok(input_required(
                            [(
                                "step2",
                                elicitation_request(
                                    "Step 2: What is your favorite color?",
                                    json!({ "color": { "type": "string" } }),
                                    json!(["color"]),
                                )?,
                            )],
                            Some(handle),
                        ))
                    }
                    (2, _) if input_response(responses, "step2").is_some() => {
                        let who = state
                            .as_ref()
                            .and_then(|s| s.get("name"))
                            .and_then(Value::as_str)
                            .unwrap_or("friend");
                        let color = input_response(responses, "step2")
                            .and_then(|r| content_str(r, "color"))
                            .unwrap_or("unknown");
                        Ok(
                            text_result(format!(
                                "Multi-round complete for {who} who likes {color}"
                            ))
                            .into(),
                        )
                    }
                    _ => {
                        let handle = self.seal_state(json!({ "round": 1 }));
                        Ok(input_required(
                            [("step1", ask_name("Step 1: What is your name?")?)],
                            Some(handle),
                        ))
                    }
                }
            }
            "test_input_required_result_capabilities" => {
                if responses.is_some_and(|r| !r.is_empty()) {
                    let keys = responses
                        .map(|r| r.keys().cloned().collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                    return Ok(text_result(format!("capabilities-ok: received {keys}")).into());
                }
                let caps = cx.meta.client_capabilities().unwrap_or_default();
                let mut requests = InputRequests::new();
                if caps.elicitation.is_some() {
                    requests.insert("elicit_input".into(), ask_name("Elicitation input")?);
                }
                if caps.sampling.is_some() {
                    requests.insert(
                        "sample_input".into(),
                        sampling_request("Sample request", 50)?,
                    );
                }
                if caps.roots.is_some() {
                    requests.insert("roots_input".into(), list_roots_request()?);
                }
                if requests.is_empty() {
                    return Ok(text_result("No supported capabilities declared").into());
                }
                Ok(InputRequiredResult::from_input_requests(requests).into())
            }
            "test_streaming_elicitation" => Ok(input_required(
                [(
                    "streaming_elicitation",
                    elicitation_request(
                        "Provide a value",
                        json!({ "value": { "type": "string" } }),
                        json!(["value"]),
                    )?,
                )],
                None,
            )),
            other => Err(ErrorData::invalid_params(
                format!("Unknown tool: {other}"),
                None,
            )),
        }
    }

    // ─── Tasks extension fixtures (SEP-2663) ────────────────────────────────

    /// Task-supporting tools become tasks when the request declares the tasks
    /// extension; task-*required* tools reject other clients with -32021.
    async fn call_task_tool(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let client_tasks = cx
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks());
        let name = request.name.as_ref();
        if TASK_REQUIRED_TOOLS.contains(&name) && !client_tasks {
            return Err(ErrorData::missing_required_client_capability(
                ClientCapabilities::builder().enable_tasks().build(),
            ));
        }
        let args = request.arguments.clone().unwrap_or_default();
        let tasks = &self.state.tasks;
        let spawn = |work: fn(TaskContext, JsonObject) -> TaskFuture| -> CallToolResponse {
            let args = args.clone();
            CreateTaskResult::new(tasks.spawn(TaskOptions::default(), move |ctx| work(ctx, args)))
                .into()
        };
        match name {
            "greet" => {
                let who = args.get("name").and_then(Value::as_str).unwrap_or("friend");
                Ok(text_result(format!("Hello, {who}!")).into())
            }
            "slow_compute" if client_tasks => Ok(spawn(slow_compute)),
            "failing_job" => Ok(spawn(failing_job)),
            "protocol_error_job" if client_tasks => Ok(spawn(protocol_error_job)),
            "confirm_delete" => Ok(spawn(confirm_delete)),
            "multi_input" => Ok(spawn(multi_input)),
            // Synchronous fallbacks for clients without the tasks extension.
            "slow_compute" => {
                let (seconds, label) = slow_compute_args(&args);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                Ok(text_result(format!("slow_compute({label}) done after {seconds}s")).into())
            }
            "protocol_error_job" => Err(ErrorData::internal_error(
                "protocol_error_job: intentional protocol-level failure",
                None,
            )),
            "test_tool_with_task" => {
                match input_response(request.input_responses.as_ref(), "user_name") {
                    None => Ok(input_required(
                        [("user_name", ask_name("What is your name?")?)],
                        None,
                    )),
                    Some(response) => {
                        let who = content_str(response, "name").unwrap_or("friend").to_owned();
                        Ok(CreateTaskResult::new(tasks.spawn(
                            TaskOptions::default(),
                            move |_ctx| {
                                Box::pin(async move {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    Ok(text_result(format!("Hello, {who}! (async)")))
                                })
                            },
                        ))
                        .into())
                    }
                }
            }
            other => Err(ErrorData::invalid_params(
                format!("Unknown tool: {other}"),
                None,
            )),
        }
    }

    // ─── resources ──────────────────────────────────────────────────────────

    fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let contents = match uri {
            "test://static-text" => text_contents(
                uri,
                "text/plain",
                "This is the content of the static text resource.",
            ),
            "test://static-binary" => ResourceContents::BlobResourceContents {
                uri: uri.to_owned(),
                mime_type: Some("image/png".to_owned()),
                blob: TEST_IMAGE_BASE64.to_owned(),
                meta: None,
            },
            WATCHED_RESOURCE_URI => text_contents(uri, "text/plain", "Watched resource content"),
            _ => match template_id(uri) {
                Some(id) => text_contents(
                    uri,
                    "application/json",
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                        .to_string(),
                ),
                // rmcp turns RESOURCE_NOT_FOUND into -32602 for 2026-07-28 peers (SEP-2164).
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!("Resource not found: {uri}"),
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents])
            .with_ttl_ms(CACHE_TTL_MS)
            .with_cache_scope(CacheScope::Private))
    }

    /// Sends one `notifications/resources/updated` shortly after a legacy
    /// subscription to the watched resource, so clients (and gateways) can see a
    /// server-initiated notification outside any request.
    fn schedule_watched_update(&self, cx: &RequestContext<RoleServer>, uri: &str) {
        if uri != WATCHED_RESOURCE_URI {
            return;
        }
        let peer = cx.peer.clone();
        let state = self.state.clone();
        let uri = uri.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if lock(&state.resource_subscriptions).contains(&uri) {
                let _ = peer
                    .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                    .await;
            }
        });
    }

    // ─── prompts ────────────────────────────────────────────────────────────

    fn prompts() -> Vec<Prompt> {
        vec![
            Prompt::new(
                "test_simple_prompt",
                Some("A simple prompt without arguments"),
                None,
            )
            .with_title("Simple Test Prompt"),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt with required arguments"),
                Some(vec![
                    PromptArgument::new("arg1")
                        .with_description("First test argument")
                        .with_required(true),
                    PromptArgument::new("arg2")
                        .with_description("Second test argument")
                        .with_required(true),
                ]),
            )
            .with_title("Prompt With Arguments"),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that includes an embedded resource"),
                Some(vec![
                    PromptArgument::new("resourceUri")
                        .with_description("URI of the resource to embed")
                        .with_required(true),
                ]),
            )
            .with_title("Prompt With Embedded Resource"),
            Prompt::new(
                "test_prompt_with_image",
                Some("A prompt that includes image content"),
                None,
            )
            .with_title("Prompt With Image"),
            Prompt::new(
                "test_input_required_result_prompt",
                Some("MRTR: prompt that requires elicitation input (SEP-2322)"),
                None,
            ),
        ]
    }

    fn prompt(&self, request: &GetPromptRequestParams) -> Result<GetPromptResponse, ErrorData> {
        let arg = |key: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|args| args.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let arg1 = arg("arg1").unwrap_or_default();
                let arg2 = arg("arg2").unwrap_or_default();
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = arg("resourceUri").unwrap_or_else(|| "test://static-text".to_owned());
                vec![
                    PromptMessage::new_resource(
                        Role::User,
                        uri,
                        Some("text/plain".to_owned()),
                        Some("Embedded resource content for testing.".to_owned()),
                        None,
                        None,
                        None,
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(
                    Role::User,
                    ContentBlock::image(TEST_IMAGE_BASE64, "image/png"),
                ),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            "test_input_required_result_prompt" => {
                return match input_response(request.input_responses.as_ref(), "user_context") {
                    Some(response) => {
                        let context = content_str(response, "context").unwrap_or("unknown");
                        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                            Role::User,
                            format!("Prompt with context: {context}"),
                        )])
                        .into())
                    }
                    None => Ok(InputRequiredResult::from_input_requests(requests_of([(
                        "user_context",
                        elicitation_request(
                            "What context should the prompt use?",
                            json!({ "context": { "type": "string" } }),
                            json!(["context"]),
                        )?,
                    )]))
                    .into()),
                };
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Unknown prompt: {other}"),
                    None,
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
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
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new("test://static-text", "static-text")
                .with_title("Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "static-binary")
                .with_title("Static Binary Resource")
                .with_description("A static binary resource (image) for testing")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_RESOURCE_URI, "watched-resource")
                .with_title("Watched Resource")
                .with_description("A resource that supports subscriptions")
                .with_mime_type("text/plain"),
        ])
        .with_ttl_ms(CACHE_TTL_MS)
        .with_cache_scope(CacheScope::Public))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("test://template/{id}/data", "template")
                .with_title("Resource Template")
                .with_description("A resource template with parameter substitution")
                .with_mime_type("application/json"),
        ])
        .with_ttl_ms(CACHE_TTL_MS)
        .with_cache_scope(CacheScope::Public))
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
        lock(&self.state.resource_subscriptions).insert(request.uri.clone());
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
        lock(&self.state.resource_subscriptions).remove(&request.uri);
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
        lock(&self.state.listeners).insert(key, sink.clone());
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
        lock(&self.state.listeners).remove(&key);
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
        lock(&self.state.log_levels).insert(session_key(&cx), request.level);
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

fn empty_object_schema() -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), json!({}));
    schema
}

fn object_schema(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => empty_object_schema(),
    }
}

/// The SEP-1613 / SEP-2106 input schema, kept verbatim through `tools/list`.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": {
            "properties": { "contactMethod": { "const": "phone" } },
            "required": ["contactMethod"]
        },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    })
}

/// `id` from `test://template/{id}/data`.
fn template_id(uri: &str) -> Option<&str> {
    uri.strip_prefix("test://template/")
        .and_then(|rest| rest.strip_suffix("/data"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether the request uses the 2026-07-28 per-request lifecycle.
fn is_stateless_request(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The Streamable HTTP session this request belongs to ("" without one, e.g. stdio).
fn session_key(cx: &RequestContext<RoleServer>) -> String {
    cx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn level_name(level: LoggingLevel) -> String {
    match serde_json::to_value(level) {
        Ok(Value::String(name)) => name,
        _ => format!("{level:?}"),
    }
}

/// A usable input response: a JSON object. Anything else counts as missing, so
/// the server asks again (SEP-2322 "validate inputResponses").
fn input_response<'a>(
    responses: Option<&'a InputResponses>,
    key: &str,
) -> Option<&'a serde_json::Map<String, Value>> {
    responses
        .and_then(|responses| responses.get(key))
        .and_then(Value::as_object)
}

/// `content.<field>` of an elicitation response, as a string.
fn content_str<'a>(response: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a str> {
    response
        .get("content")
        .and_then(|content| content.get(field))
        .and_then(Value::as_str)
}

fn input_request(value: Value) -> Result<InputRequest, ErrorData> {
    serde_json::from_value(value).map_err(|e| {
        ErrorData::internal_error(format!("could not build an input request: {e}"), None)
    })
}

fn elicitation_request(
    message: &str,
    properties: Value,
    required: Value,
) -> Result<InputRequest, ErrorData> {
    input_request(json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": { "type": "object", "properties": properties, "required": required }
        }
    }))
}

fn ask_name(message: &str) -> Result<InputRequest, ErrorData> {
    elicitation_request(
        message,
        json!({ "name": { "type": "string" } }),
        json!(["name"]),
    )
}

fn sampling_request(prompt: &str, max_tokens: u32) -> Result<InputRequest, ErrorData> {
    input_request(json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": max_tokens
        }
    }))
}

fn list_roots_request() -> Result<InputRequest, ErrorData> {
    input_request(json!({ "method": "roots/list", "params": {} }))
}

fn requests_of<const N: usize>(entries: [(&str, InputRequest); N]) -> InputRequests {
    entries
        .into_iter()
        .map(|(key, request)| (key.to_owned(), request))
        .collect()
}

fn input_required<const N: usize>(
    entries: [(&str, InputRequest); N],
    request_state: Option<String>,
) -> CallToolResponse {
    InputRequiredResult::new(Some(requests_of(entries)), request_state).into()
}

// ─── Tasks extension work ───────────────────────────────────────────────────

type TaskFuture = rmcp::task_manager::TaskFuture;

/// (name, description, input schema) of the SEP-2663 fixture tools.
type TaskToolSpec = (&'static str, &'static str, fn() -> Value);

const TASK_FIXTURE_TOOLS: &[TaskToolSpec] = &[
    (
        "greet",
        "Sync-only greeting fixture (SEP-2663)",
        || json!({ "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }),
    ),
    (
        "slow_compute",
        "Task-supporting fixture: sleeps `seconds` then returns a result (SEP-2663)",
        || {
            json!({
                "type": "object",
                "properties": { "seconds": { "type": "number" }, "label": { "type": "string" } }
            })
        },
    ),
    (
        "failing_job",
        "Task-required fixture: ends with a tool execution error (SEP-2663)",
        || json!({ "type": "object", "properties": {} }),
    ),
    (
        "protocol_error_job",
        "Task-supporting fixture: fails with a protocol-level error (SEP-2663)",
        || json!({ "type": "object", "properties": {} }),
    ),
    (
        "confirm_delete",
        "Task-required fixture: parks on one elicitation input request (SEP-2663)",
        || json!({ "type": "object", "properties": { "filename": { "type": "string" } } }),
    ),
    (
        "multi_input",
        "Task-required fixture: parks on two parallel elicitation input requests (SEP-2663)",
        || json!({ "type": "object", "properties": {} }),
    ),
    (
        "test_tool_with_task",
        "MRTR round 1 asks for user_name, round 2 becomes a task (SEP-2663 composition)",
        || json!({ "type": "object", "properties": {} }),
    ),
];

/// Tools that cannot run without returning a task.
const TASK_REQUIRED_TOOLS: &[&str] = &[
    "failing_job",
    "confirm_delete",
    "multi_input",
    "test_tool_with_task",
];

/// `seconds` (clamped to 0..=600, default 1) and `label` of `slow_compute`.
fn slow_compute_args(args: &JsonObject) -> (f64, String) {
    let seconds = args
        .get("seconds")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
        .min(600.0);
    let label = args
        .get("label")
        .and_then(Value::as_str)
        .unwrap_or("compute")
        .to_owned();
    (seconds, label)
}

fn slow_compute(ctx: TaskContext, args: JsonObject) -> TaskFuture {
    let (seconds, label) = slow_compute_args(&args);
    Box::pin(async move {
        tokio::select! {
            _ = ctx.cancelled() => Err(TaskExit::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {
                Ok(text_result(format!("slow_compute({label}) done after {seconds}s")))
            }
        }
    })
}

fn failing_job(_ctx: TaskContext, _args: JsonObject) -> TaskFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        Ok(error_result(
            "failing_job: intentional tool execution error",
        ))
    })
}

fn protocol_error_job(_ctx: TaskContext, _args: JsonObject) -> TaskFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Err(TaskExit::Error(ErrorData::internal_error(
            "protocol_error_job: intentional protocol-level failure",
            None,
        )))
    })
}

fn confirm_delete(ctx: TaskContext, args: JsonObject) -> TaskFuture {
    let filename = args
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("file.txt")
        .to_owned();
    Box::pin(async move {
        let request = elicitation_request(
            &format!("Delete {filename}?"),
            json!({ "confirm": { "type": "boolean" } }),
            json!(["confirm"]),
        )?;
        let response = ctx.request_input("confirm", request).await?;
        let confirmed = response
            .pointer("/content/confirm")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(text_result(format!(
            "confirm_delete({filename}): confirmed = {confirmed}"
        )))
    })
}

fn multi_input(ctx: TaskContext, _args: JsonObject) -> TaskFuture {
    Box::pin(async move {
        let value_schema = || json!({ "value": { "type": "string" } });
        let first = ctx.request_input(
            "input-a",
            elicitation_request("Provide value A", value_schema(), json!(["value"]))?,
        );
        let second = ctx.request_input(
            "input-b",
            elicitation_request("Provide value B", value_schema(), json!(["value"]))?,
        );
        let (a, b) = tokio::join!(first, second);
        let (a, b) = (a?, b?);
        let get = |v: &Value| {
            v.pointer("/content/value")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned()
        };
        Ok(text_result(format!(
            "multi_input: a = {}, b = {}",
            get(&a),
            get(&b)
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_fixture_tool_with_an_object_schema() {
        let tools = ConformanceServer::tools();
        for name in [
            "test_simple_text",
            "test_image_content",
            "test_audio_content",
            "test_embedded_resource",
            "test_multiple_content_types",
            "test_tool_with_logging",
            "test_tool_with_progress",
            "test_error_handling",
            "test_sampling",
            "test_elicitation",
            "test_elicitation_sep1034_defaults",
            "test_elicitation_sep1330_enums",
            "json_schema_2020_12_tool",
        ] {
            let tool = tools.iter().find(|t| t.name == name);
            let tool = tool.unwrap_or_else(|| panic!("missing tool {name}"));
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
            assert!(tool.description.is_some());
        }
        let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), tools.len(), "tool names are unique");
    }

    #[test]
    fn reads_static_and_templated_resources() {
        let server = ConformanceServer::new();
        let text =
            serde_json::to_value(server.read("test://static-text").expect("test")).expect("test");
        assert_eq!(
            text["contents"][0]["text"],
            "This is the content of the static text resource."
        );
        let blob =
            serde_json::to_value(server.read("test://static-binary").expect("test")).expect("test");
        assert_eq!(blob["contents"][0]["blob"], TEST_IMAGE_BASE64);
        let templated = serde_json::to_value(server.read("test://template/42/data").expect("test"))
            .expect("test");
        let body: Value =
            serde_json::from_str(templated["contents"][0]["text"].as_str().expect("test"))
                .expect("test");
        assert_eq!(body["id"], "42");
        assert!(server.read("test://nope").is_err());
    }

    #[test]
    fn request_state_handles_reject_tampering() {
        let server = ConformanceServer::new();
        let handle = server.seal_state(json!({ "kind": "tamper-test" }));
        assert_eq!(
            server.open_state(&handle).expect("test")["kind"],
            json!("tamper-test")
        );
        assert!(server.open_state(&format!("{handle}-TAMPERED")).is_err());
        assert_ne!(handle, server.seal_state(json!({})));
    }

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

    #[test]
    fn input_requests_build() {
        ask_name("x").expect("test");
        sampling_request("x", 10).expect("test");
        list_roots_request().expect("test");
    }

    #[test]
    fn elicitation_schemas_survive_rmcp_types() {
        // The SEP-1330 enum shapes must round-trip through rmcp's typed schema.
        let request: ElicitRequest = serde_json::from_value(json!({
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": "m",
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "legacyEnum": {
                            "type": "string",
                            "enum": ["opt1", "opt2"],
                            "enumNames": ["One", "Two"]
                        },
                        "titledMulti": {
                            "type": "array",
                            "items": { "anyOf": [{ "const": "v1", "title": "V1" }] }
                        },
                        "age": { "type": "integer", "default": 30 }
                    },
                    "required": []
                }
            }
        }))
        .expect("test");
        let back = serde_json::to_value(&request).expect("test");
        let props = &back["params"]["requestedSchema"]["properties"];
        assert_eq!(props["legacyEnum"]["enumNames"], json!(["One", "Two"]));
        assert_eq!(props["titledMulti"]["items"]["anyOf"][0]["const"], "v1");
        assert_eq!(props["age"]["default"], 30);
    }
}
