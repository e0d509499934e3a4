//! `toolgate reference llm --http ADDR`: a reference LLM provider that
//! speaks the OpenAI API (`/v1/chat/completions`, streaming and not, with
//! tools; `/v1/embeddings`; `/v1/models`; the Responses API,
//! `/v1/responses`) and Anthropic's Messages API (`/v1/messages`,
//! streaming and not, with tools), for demos, tests and
//! benchmarks of the LLM gateway. Its answers are deterministic: a chat
//! completion says back the last user message; with `tools` and no tool
//! result after the last user message, it calls the first tool. Knobs
//! ([`Knobs`]): latency before the first byte, the pace of streamed
//! chunks, a failure rate, and how many words an answer has.
//!
//! Requests are parsed strictly (`util::json`) and bounded; a bad request
//! gets OpenAI's error envelope with status 400.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The largest request body the reference provider reads.
const MAX_BODY: usize = 4 << 20;
/// The models it serves.
pub const MODELS: [&str; 2] = ["ref-small", "ref-large"];

/// How the reference provider behaves.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Waited before the first byte of every answer.
    pub latency: Duration,
    /// Waited between streamed chunks.
    pub pace: Duration,
    /// The share of requests (0 to 1) answered with an error,
    /// deterministically spread (every 1/rate-th request).
    pub fail_rate: f64,
    /// The status of those errors (500 unless set).
    pub fail_status: u16,
    /// Seconds in a `Retry-After` header on those errors.
    pub retry_after: Option<u32>,
    /// Words in an answer beyond the echo (filler), for streams of a size.
    pub words: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            pace: Duration::ZERO,
            fail_rate: 0.0,
            fail_status: 500,
            retry_after: None,
            words: 0,
        }
    }
}

struct Provider {
    knobs: Knobs,
    requests: AtomicU64,
}

/// Serve the reference provider at `addr` until the process ends.
pub async fn serve(addr: SocketAddr, knobs: Knobs) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "reference LLM provider at http://{addr}/v1");
    axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |s| {
            let _ = s.set_nodelay(true);
        }),
        router(knobs),
    )
    .await
}

/// The provider's routes (also for tests in process).
pub fn router(knobs: Knobs) -> axum::Router {
    use axum::routing::{get, post};
    let provider = Arc::new(Provider {
        knobs,
        requests: AtomicU64::new(0),
    });
    axum::Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/messages", post(messages))
        .route("/v1/responses", post(responses))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(provider)
}

/// Why a request is refused: status, OpenAI error type, message.
/// Why a request is refused: status, error type, message, and the
/// seconds of a `Retry-After` header.
struct Refusal(StatusCode, &'static str, String, Option<u32>);

fn refusal(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(status, kind, message.into(), None)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = error(self.0, self.1, self.2);
        if let Some(seconds) = self.3 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// OpenAI's error envelope.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

impl Provider {
    /// Wait the latency; fail when this request's turn has come.
    async fn begin(&self) -> Result<u64, Refusal> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.knobs.latency.is_zero() {
            tokio::time::sleep(self.knobs.latency).await;
        }
        let rate = self.knobs.fail_rate;
        if rate > 0.0 && (n as f64 * rate).floor() != ((n + 1) as f64 * rate).floor() {
            let status = StatusCode::from_u16(self.knobs.fail_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = match status.as_u16() {
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            return Err(Refusal(
                status,
                kind,
                format!(
                    "the reference provider failed this request with {} (fail_rate)",
                    status.as_u16()
                ),
                self.knobs.retry_after,
            ));
        }
        Ok(n)
    }
}

async fn models() -> Response {
    let data: Vec<Value> = MODELS
        .iter()
        .map(
            |m| json!({"id": m, "object": "model", "created": 0, "owned_by": "toolgate-reference"}),
        )
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// The request's JSON object, strictly parsed, and its known model.
fn request(body: &Bytes) -> Result<(serde_json::Map<String, Value>, String), Refusal> {
    let value = crate::util::json::parse(body).map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body must be a JSON object",
        ));
    };
    let model = match map.get("model") {
        Some(Value::String(m)) if MODELS.contains(&m.as_str()) => m.clone(),
        Some(Value::String(m)) => {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!(
                    "The model `{m}` does not exist; this provider serves {}",
                    MODELS.join(", ")
                ),
            ));
        }
        _ => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`model` is required",
            ));
        }
    };
    Ok((map, model))
}

/// Rough token count: words (enough for usage numbers that add up).
fn tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

/// What the model answers: a text, or a call of the first tool.
enum Answer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

fn answer(req: &serde_json::Map<String, Value>, words: usize) -> Result<(Answer, u64), Refusal> {
    let Some(Value::Array(messages)) = req.get("messages") else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`messages` must be an array",
        ));
    };
    let text_of = |m: &Value| match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let prompt: u64 = messages.iter().map(|m| tokens(&text_of(m))).sum();
    let last_user = messages.iter().rposition(|m| m["role"] == "user");
    let tool_after_user =
        last_user.is_some_and(|i| messages[i..].iter().any(|m| m["role"] == "tool"));
    let first_tool = req
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t["function"]["name"].as_str());
    if let (Some(name), false) = (first_tool, tool_after_user)
        && req.get("tool_choice").and_then(Value::as_str) != Some("none")
    {
        return Ok((
            Answer::ToolCall {
                name: name.to_string(),
                arguments: "{}".into(),
            },
            prompt,
        ));
    }
    let said = match (tool_after_user, messages.last()) {
        (true, Some(last)) => format!("The tool said: {}", text_of(last)),
        _ => format!(
            "You said: {}",
            last_user.map(|i| text_of(&messages[i])).unwrap_or_default()
        ),
    };
    let filler = " lorem".repeat(words);
    Ok((Answer::Text(format!("{said}{filler}")), prompt))
}

async fn chat(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    let (req, model) = match request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (answer, prompt) = match answer(&req, p.knobs.words) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let n = match p.begin().await {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let id = format!("chatcmpl-ref-{n}");
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let (message, finish, completion) = match &answer {
        Answer::Text(text) => (
            json!({"role": "assistant", "content": text}),
            "stop",
            tokens(text),
        ),
        Answer::ToolCall { name, arguments } => (
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("call_ref_{n}"), "type": "function", "function": {"name": name, "arguments": arguments}}
            ]}),
            "tool_calls",
            1,
        ),
    };
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if !stream {
        return axum::Json(json!({
            "id": id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events: Vec<Value> = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    match &answer {
        Answer::Text(text) => {
            for word in text.split_inclusive(' ') {
                events.push(chunk(json!({"content": word}), None));
            }
        }
        Answer::ToolCall { .. } => {
            events.push(chunk(json!({"tool_calls": message["tool_calls"].as_array().map(|calls| {
                calls.iter().enumerate().map(|(i, c)| { let mut c = c.clone(); c["index"] = json!(i); c }).collect::<Vec<_>>()
            })}), None));
        }
    }
    events.push(chunk(json!({}), Some(finish)));
    if include_usage {
        events.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [], "usage": usage}),
        );
    }
    let frames = events.iter().map(|event| format!("data: {event}\n\n"));
    sse(
        frames.chain(["data: [DONE]\n\n".to_string()]).collect(),
        p.knobs.pace,
    )
}

/// A server-sent event named by its `type`, as Anthropic's and the
/// Responses API's streams send them.
fn named(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or("message");
    format!("event: {kind}\ndata: {event}\n\n")
}

/// A stream of server-sent events: `frames`, one by one, `pace` apart.
fn sse(frames: Vec<String>, pace: Duration) -> Response {
    use futures::StreamExt as _;
    let body = futures::stream::iter(frames).then(move |frame| async move {
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(frame))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A deterministic vector for `text` (8 dimensions, or `dimensions`).
fn vector(text: &str, dims: usize) -> Vec<f64> {
    let digest = crate::util::digest::sha256_hex(text.as_bytes());
    let bytes = digest.as_bytes();
    (0..dims)
        .map(|i| f64::from(bytes[i % bytes.len()]) / 255.0 - 0.5)
        .collect()
}

async fn embeddings(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    let (req, model) = match request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`input` must be a string or an array of strings",
            );
        }
    };
    let dims = match req.get("dimensions").map(Value::as_u64) {
        None => 8,
        Some(Some(d)) if (1..=4096).contains(&d) => d as usize,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`dimensions`: 1 to 4096",
            );
        }
    };
    if let Err(e) = p.begin().await {
        return e.into_response();
    }
    let prompt: u64 = inputs.iter().map(|i| tokens(i)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(
            |(i, text)| json!({"object": "embedding", "index": i, "embedding": vector(text, dims)}),
        )
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}))
    .into_response()
}

/// Anthropic's error envelope.
fn anthropic_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

/// A Messages request's conversation as the chat shape [`answer`] reads:
/// tool results become `tool` messages, text blocks one text.
fn as_chat(req: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    let mut messages = Vec::new();
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match &m["content"] {
            Value::String(text) => messages.push(json!({"role": m["role"], "content": text})),
            Value::Array(blocks) => {
                let mut text = Vec::new();
                for b in blocks {
                    match b["type"].as_str() {
                        Some("tool_result") => {
                            let said = match &b["content"] {
                                Value::String(s) => s.clone(),
                                Value::Array(inner) => inner
                                    .iter()
                                    .filter_map(|i| i["text"].as_str())
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                _ => String::new(),
                            };
                            messages.push(json!({"role": "tool", "content": said}));
                        }
                        Some("text") => text.extend(b["text"].as_str().map(str::to_string)),
                        _ => {}
                    }
                }
                if !text.is_empty() {
                    messages.push(json!({"role": m["role"], "content": text.join(" ")}));
                }
            }
            _ => {}
        }
    }
    let mut chat = serde_json::Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = req.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t["name"]}}))
            .collect();
        chat.insert("tools".into(), Value::Array(tools));
    }
    if req.get("tool_choice").and_then(|c| c["type"].as_str()) == Some("none") {
        chat.insert("tool_choice".into(), json!("none"));
    }
    chat
}

/// `POST /v1/messages`: Anthropic's Messages API, answering as
/// [`answer`] does (an echo, or a call of the first tool).
async fn messages(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    let (req, model) = match request(&body) {
        Ok(r) => r,
        Err(Refusal(status, kind, message, _)) => {
            let kind = if kind == "server_error" {
                "api_error"
            } else {
                kind
            };
            let kind = if status == StatusCode::NOT_FOUND {
                "not_found_error"
            } else {
                kind
            };
            return anthropic_error(status, kind, message);
        }
    };
    if !req.get("max_tokens").is_some_and(Value::is_u64) {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let (answer, prompt) = match answer(&as_chat(&req), p.knobs.words) {
        Ok(a) => a,
        Err(Refusal(status, _, message, _)) => {
            return anthropic_error(status, "invalid_request_error", message);
        }
    };
    let n = match p.begin().await {
        Ok(n) => n,
        Err(Refusal(status, _, message, _)) => {
            return anthropic_error(status, "api_error", message);
        }
    };
    let id = format!("msg_ref_{n}");
    let (block, stop, output) = match &answer {
        Answer::Text(text) => (
            json!({"type": "text", "text": text}),
            "end_turn",
            tokens(text),
        ),
        Answer::ToolCall { name, .. } => (
            json!({"type": "tool_use", "id": format!("toolu_ref_{n}"), "name": name, "input": {}}),
            "tool_use",
            1,
        ),
    };
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": prompt, "output_tokens": output},
        }))
        .into_response();
    }
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": prompt, "output_tokens": 1}}}),
        json!({"type": "ping"}),
    ];
    match &answer {
        Answer::Text(text) => {
            events.push(json!({"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}}));
            for word in text.split_inclusive(' ') {
                events.push(json!({"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": word}}));
            }
        }
        Answer::ToolCall { .. } => {
            events.push(json!({"type": "content_block_start", "index": 0, "content_block": block}));
            events.push(json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "input_json_delta", "partial_json": "{}"}}));
        }
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                       "usage": {"output_tokens": output}}),
    );
    events.push(json!({"type": "message_stop"}));
    sse(events.iter().map(named).collect(), p.knobs.pace)
}

/// A Responses request's input as the chat shape [`answer`] reads.
fn responses_as_chat(req: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    let text = |content: &Value| match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let messages: Vec<Value> = match req.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| match item["type"].as_str() {
                Some("function_call_output") => {
                    Some(json!({"role": "tool", "content": text(&item["output"])}))
                }
                Some("message") | None if item.get("role").is_some() => {
                    Some(json!({"role": item["role"], "content": text(&item["content"])}))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut chat = serde_json::Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = req.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t["type"] == "function")
            .map(|t| json!({"type": "function", "function": {"name": t["name"]}}))
            .collect();
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.get("tool_choice") {
        chat.insert("tool_choice".into(), choice.clone());
    }
    chat
}

/// `POST /v1/responses`: the Responses API, answering as [`answer`] does.
async fn responses(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    let (req, model) = match request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (answer, prompt) = match answer(&responses_as_chat(&req), p.knobs.words) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let n = match p.begin().await {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let (item, output) = match &answer {
        Answer::Text(text) => (
            json!({"type": "message", "id": format!("msg_ref_{n}"), "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}),
            tokens(text),
        ),
        Answer::ToolCall { name, arguments } => (
            json!({"type": "function_call", "id": format!("fc_ref_{n}"), "call_id": format!("call_ref_{n}"),
                   "name": name, "arguments": arguments, "status": "completed"}),
            1,
        ),
    };
    let response = |status: &str, output_items: Vec<Value>| {
        json!({"id": format!("resp_ref_{n}"), "object": "response", "created_at": 0, "status": status,
               "model": model, "output": output_items, "error": null, "incomplete_details": null,
               "instructions": req.get("instructions").cloned().unwrap_or(Value::Null),
               "metadata": {}, "parallel_tool_calls": true, "temperature": 1.0, "top_p": 1.0,
               "tool_choice": "auto", "tools": req.get("tools").cloned().unwrap_or(json!([])),
               "text": {"format": {"type": "text"}},
               "usage": {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output,
                         "input_tokens_details": {"cached_tokens": 0},
                         "output_tokens_details": {"reasoning_tokens": 0}}})
    };
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return axum::Json(response("completed", vec![item])).into_response();
    }
    let mut events =
        vec![json!({"type": "response.created", "response": response("in_progress", vec![])})];
    match &answer {
        Answer::Text(text) => {
            let mut empty = item.clone();
            empty["content"][0]["text"] = json!("");
            events.push(
                json!({"type": "response.output_item.added", "output_index": 0, "item": empty}),
            );
            for word in text.split_inclusive(' ') {
                events.push(
                    json!({"type": "response.output_text.delta", "item_id": item["id"],
                                   "output_index": 0, "content_index": 0, "delta": word}),
                );
            }
            events.push(
                json!({"type": "response.output_text.done", "item_id": item["id"],
                               "output_index": 0, "content_index": 0, "text": text}),
            );
        }
        Answer::ToolCall { arguments, .. } => {
            let mut empty = item.clone();
            empty["arguments"] = json!("");
            events.push(
                json!({"type": "response.output_item.added", "output_index": 0, "item": empty}),
            );
            events.push(
                json!({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                               "output_index": 0, "delta": arguments}),
            );
        }
    }
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "response": response("completed", vec![item.clone()])}));
    for (i, event) in events.iter_mut().enumerate() {
        event["sequence_number"] = json!(i);
    }
    sse(events.iter().map(named).collect(), p.knobs.pace)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(knobs: Knobs) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router(knobs)).await;
        });
        format!("http://{addr}/v1")
    }

    #[tokio::test]
    async fn chat_completions_answer_plainly_and_call_tools() {
        let base = start(Knobs::default()).await;
        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "ref-small", "messages": [{"role": "user", "content": "hello there"}]}))
            .send().await.expect("send").json().await.expect("json");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "You said: hello there"
        );
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        let tools = json!([{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]);
        let v: Value = http
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "ref-small", "tools": tools, "messages": [{"role": "user", "content": "time?"}]}))
            .send().await.expect("send").json().await.expect("json");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_time"
        );
        let v: Value = http
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "ref-small", "tools": tools, "messages": [
                {"role": "user", "content": "time?"},
                {"role": "assistant", "content": null, "tool_calls": v["choices"][0]["message"]["tool_calls"].clone()},
                {"role": "tool", "tool_call_id": "call_ref_1", "content": "noon"}]}))
            .send().await.expect("send").json().await.expect("json");
        assert_eq!(v["choices"][0]["message"]["content"], "The tool said: noon");
    }

    #[tokio::test]
    async fn streams_end_with_usage_when_asked_and_done() {
        let base = start(Knobs::default()).await;
        let text = reqwest::Client::new()
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "ref-large", "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "a b c"}]}))
            .send().await.expect("send").text().await.expect("text");
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let content: String = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(content, "You said: a b c");
        let usage: Value = serde_json::from_str(events[events.len() - 2]).expect("usage chunk");
        assert_eq!(usage["usage"]["completion_tokens"], 5);
    }

    #[tokio::test]
    async fn bad_requests_and_failures_use_openais_envelope() {
        let base = start(Knobs {
            fail_rate: 0.5,
            ..Knobs::default()
        })
        .await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/chat/completions"))
            .body("{\"model\": 1,")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not valid JSON")),
            "{v}"
        );
        let r = http
            .post(format!("{base}/chat/completions"))
            .json(&json!({"model": "gpt-9", "messages": []}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let r = http
                .post(format!("{base}/embeddings"))
                .json(&json!({"model": "ref-small", "input": ["x", "y"]}))
                .send()
                .await
                .expect("send");
            statuses.push(r.status().as_u16());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 500).count(),
            2,
            "{statuses:?}"
        );
        let ok = http
            .post(format!("{base}/embeddings"))
            .json(&json!({"model": "ref-small", "input": "x", "dimensions": 3}))
            .send()
            .await
            .expect("send");
        let ok: Value = if ok.status() == 200 {
            ok.json().await.expect("json")
        } else {
            http.post(format!("{base}/embeddings"))
                .json(&json!({"model": "ref-small", "input": "x", "dimensions": 3}))
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json")
        };
        assert_eq!(ok["data"][0]["embedding"].as_array().map(Vec::len), Some(3));
    }
}
