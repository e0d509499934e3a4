//! Anthropic's Messages API as toolgate reads it: what a request asks for
//! ([`messages_request`]), the parts the guardrails read, the usage an
//! answer reports, the error envelope, and the translation to and from
//! OpenAI's chat completions for targets that do not speak it
//! ([`to_chat`], [`from_chat`], [`StreamTranslator`]).
//!
//! The translation keeps what both APIs can say: text, images, tool use
//! and tool results, the system prompt, stop sequences, sampling
//! parameters, and usage. What only one side has (Anthropic's thinking
//! blocks, OpenAI's `n` and logprobs) does not cross; a block toolgate
//! cannot carry over is refused, never dropped silently.

use serde_json::{Map, Value, json};

use super::openai::{self, BadRequest, Usage};
use crate::call::{Channel, ModelRequest, Part};

/// What policies are told of a Messages request, checked.
pub fn messages_request(body: &Map<String, Value>) -> Result<ModelRequest, BadRequest> {
    let max_tokens = match body.get("max_tokens") {
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            BadRequest::new("max_tokens", "`max_tokens` must be a whole number ≥ 1")
        })?,
        None => return Err(BadRequest::new("max_tokens", "`max_tokens` is required")),
    };
    match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {
            for (i, m) in messages.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str);
                if !matches!(role, Some("user" | "assistant")) {
                    return Err(BadRequest::new(
                        &format!("messages.{i}.role"),
                        "each message needs `role`: \"user\" or \"assistant\"",
                    ));
                }
                match m.get("content") {
                    Some(Value::String(_)) => {}
                    Some(Value::Array(blocks)) if blocks.iter().all(Value::is_object) => {}
                    _ => {
                        return Err(BadRequest::new(
                            &format!("messages.{i}.content"),
                            "`content` must be a string or an array of content blocks",
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(BadRequest::new(
                "messages",
                "`messages` is required: a non-empty array of messages",
            ));
        }
    }
    Ok(ModelRequest {
        max_tokens: Some(max_tokens),
        tools: openai::tools_offered(body)?,
        stream: openai::optional_bool(body, "stream")?,
    })
}

/// The texts of a `content` (a string, or blocks) and the inputs of its
/// tool uses.
fn content_parts(content: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    match content {
        Value::String(text) => visit(Part::Text(text)),
        Value::Array(blocks) => {
            for block in blocks {
                if let Some(Value::String(text)) = block.get_mut("text") {
                    visit(Part::Text(text));
                }
                if let Some(input) = block.get_mut("input") {
                    visit(Part::Value(input));
                }
                // A tool's result, a search result, a document: quoted.
                let quoted = matches!(
                    block["type"].as_str(),
                    Some("tool_result" | "search_result" | "document")
                );
                for key in ["content", "source"] {
                    match block.get_mut(key) {
                        Some(inner) if quoted => visit(Part::Quoted(inner)),
                        Some(inner) if key == "content" => content_parts(inner, visit),
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    }
}

/// The parts of a Messages request the guardrails read: the system
/// prompt, every message's text, tool uses and tool results.
pub fn message_parts(body: &mut Map<String, Value>, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(system) = body.get_mut("system") {
        content_parts(system, visit);
    }
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for message in messages {
            if let Some(content) = message.get_mut("content") {
                content_parts(content, visit);
            }
        }
    }
}

/// The parts of a message (an answer).
pub fn answer_parts(message: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(content) = message.get_mut("content") {
        content_parts(content, visit);
    }
}

/// The parts of one streamed event: a text or tool-input delta, on its
/// content block's channel, or what a block's start carries.
pub fn event_parts(event: &mut Value, visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {
    let block = event.get("index").and_then(Value::as_u64);
    if let Some(delta) = event.get_mut("delta") {
        for key in ["text", "partial_json"] {
            if let Some(Value::String(text)) = delta.get_mut(key) {
                visit(block, Part::Text(text));
            }
        }
    }
    // A block's opening may already carry text or a tool's input.
    if let Some(start) = event.get_mut("content_block") {
        if let Some(Value::String(text)) = start.get_mut("text") {
            visit(None, Part::Text(text));
        }
        if let Some(input) = start.get_mut("input") {
            visit(None, Part::Value(input));
        }
    }
}

/// The usage of an answer or of a `message_start` / `message_delta` event.
pub fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value
        .get("usage")
        .or_else(|| value.get("message").and_then(|m| m.get("usage")))
        .filter(|u| u.is_object())?;
    let count = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input: count("input_tokens"),
        output: count("output_tokens"),
        cached: count("cache_read_input_tokens"),
    })
}

/// The stop reason of an answer or a `message_delta` event.
pub fn stop_reason(value: &Value) -> Option<&str> {
    value
        .get("stop_reason")
        .or_else(|| value.get("delta").and_then(|d| d.get("stop_reason")))
        .and_then(Value::as_str)
}

/// Anthropic's error envelope, its type chosen by `status`.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// The text of a `content`: a string, or its text blocks (or an OpenAI
/// message's text parts) joined.
pub(super) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// An image block as an OpenAI content part.
fn image_part(block: &Value, at: &str) -> Result<Value, BadRequest> {
    let source = &block["source"];
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/png"),
            source["data"].as_str().unwrap_or_default()
        ),
        Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
        _ => {
            return Err(BadRequest::new(
                at,
                "an image's `source` must be base64 or url",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A Messages request as a chat completions request for `model`.
pub fn to_chat(body: &Map<String, Value>, model: &str) -> Result<Map<String, Value>, BadRequest> {
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        messages.push(json!({"role": "system", "content": text_of(system)}));
    }
    for (i, message) in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let role = message["role"].as_str().unwrap_or("user");
        let blocks = match &message["content"] {
            Value::String(text) => {
                messages.push(json!({"role": role, "content": text}));
                continue;
            }
            Value::Array(blocks) => blocks,
            _ => continue,
        };
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match block["type"].as_str() {
                Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
                Some("image") => parts.push(image_part(block, &at)?),
                Some("tool_use") => calls.push(json!({
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": block["input"].to_string()},
                })),
                // Tool results are messages of their own, before the text
                // that follows them.
                Some("tool_result") => messages.push(json!({
                    "role": "tool",
                    "tool_call_id": block["tool_use_id"],
                    "content": text_of(&block["content"]),
                })),
                // Reasoning the model showed earlier: no chat equivalent.
                Some("thinking" | "redacted_thinking") => {}
                other => {
                    return Err(BadRequest::new(
                        &at,
                        format!(
                            "a `{}` block cannot be sent to this model's provider (it speaks OpenAI's API)",
                            other.unwrap_or("untyped")
                        ),
                    ));
                }
            }
        }
        if parts.is_empty() && calls.is_empty() {
            continue;
        }
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if only_text {
            let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            if text.is_empty() {
                Value::Null
            } else {
                Value::String(text.join("\n"))
            }
        } else {
            Value::Array(parts)
        };
        let mut out = json!({"role": role, "content": content});
        if !calls.is_empty() {
            out["tool_calls"] = Value::Array(calls);
        }
        messages.push(out);
    }
    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model.to_string()));
    chat.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
        ("stream", "stream"),
    ] {
        if let Some(v) = body.get(from) {
            chat.insert(to.into(), v.clone());
        }
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(user) = body.get("metadata").and_then(|m| m.get("user_id")) {
        chat.insert("user".into(), user.clone());
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t["name"],
                    "description": t.get("description").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
                }})
            })
            .collect();
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice") {
        let mapped = match choice["type"].as_str() {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            _ => {
                return Err(BadRequest::new(
                    "tool_choice",
                    "`tool_choice.type`: auto, any, tool or none",
                ));
            }
        };
        chat.insert("tool_choice".into(), mapped);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            chat.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    Ok(chat)
}

/// A chat completion's finish reason as a Messages stop reason.
fn stop_of(finish: Option<&str>) -> Value {
    match finish {
        Some("stop") => json!("end_turn"),
        Some("length") => json!("max_tokens"),
        Some("tool_calls" | "function_call") => json!("tool_use"),
        Some("content_filter") => json!("refusal"),
        Some(_) => json!("end_turn"),
        None => Value::Null,
    }
}

fn usage_json(usage: Usage) -> Value {
    json!({"input_tokens": usage.input, "output_tokens": usage.output,
           "cache_read_input_tokens": usage.cached})
}

/// A tool call's arguments (JSON text) as a tool use's input.
fn input_of(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// A chat completion as a Messages answer (its first choice).
pub fn from_chat(completion: &Value) -> Value {
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": input_of(call["function"]["arguments"].as_str().unwrap_or("{}")),
        }));
    }
    json!({
        "id": format!("msg_{}", completion["id"].as_str().unwrap_or("toolgate")),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_of(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": usage_json(Usage::of(completion).unwrap_or_default()),
    })
}

/// Turns a stream of chat completion chunks into the Messages API's
/// events: `message_start`, then per block `content_block_start`,
/// `content_block_delta`s and `content_block_stop`, then `message_delta`
/// (stop reason, usage) and `message_stop`.
#[derive(Default)]
pub struct StreamTranslator {
    started: bool,
    /// The open block's index and whether it is text (else a tool use).
    open: Option<(usize, bool)>,
    next_index: usize,
    stop: Option<String>,
    usage: Usage,
}

impl StreamTranslator {
    /// The events one chunk makes (none, or several).
    pub fn chunk(&mut self, chunk: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(json!({"type": "message_start", "message": {
                "id": format!("msg_{}", chunk["id"].as_str().unwrap_or("toolgate")),
                "type": "message", "role": "assistant", "model": chunk["model"],
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}));
        }
        if let Some(usage) = Usage::of(chunk) {
            self.usage = usage;
        }
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if self.open.is_some_and(|(_, text)| !text) {
                self.close(&mut out);
            }
            let index = self.open_block(&mut out, true, || json!({"type": "text", "text": ""}));
            out.push(json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": text}}));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            if call.get("id").is_some_and(Value::is_string) {
                // A new tool call begins.
                self.close(&mut out);
                let block = json!({"type": "tool_use", "id": call["id"],
                                   "name": call["function"]["name"], "input": {}});
                self.open_block(&mut out, false, || block);
            }
            if let (Some((index, false)), Some(args)) =
                (self.open, call["function"]["arguments"].as_str())
                && !args.is_empty()
            {
                out.push(json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": args}}));
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.stop = Some(finish.to_string());
        }
        out
    }

    /// The events that end the message, once the chunks have.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        self.close(&mut out);
        out.push(json!({"type": "message_delta",
            "delta": {"stop_reason": stop_of(self.stop.as_deref()), "stop_sequence": null},
            "usage": usage_json(self.usage)}));
        out.push(json!({"type": "message_stop"}));
        out
    }

    fn open_block(
        &mut self,
        out: &mut Vec<Value>,
        text: bool,
        block: impl FnOnce() -> Value,
    ) -> usize {
        if let Some((index, _)) = self.open {
            return index;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, text));
        out.push(json!({"type": "content_block_start", "index": index, "content_block": block()}));
        index
    }

    fn close(&mut self, out: &mut Vec<Value>) {
        if let Some((index, _)) = self.open.take() {
            out.push(json!({"type": "content_block_stop", "index": index}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_messages_request_becomes_a_chat_request_with_its_tools_and_results() {
        let body = map(json!({
            "model": "claude", "max_tokens": 100, "system": "be brief",
            "stop_sequences": ["END"], "stream": true,
            "tools": [{"name": "get_time", "description": "now", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": "what time is it?"},
                {"role": "assistant", "content": [{"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "tu1", "name": "get_time", "input": {"tz": "UTC"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "noon"},
                    {"type": "text", "text": "thanks"}]},
            ],
        }));
        let chat = to_chat(&body, "gpt").expect("translates");
        assert_eq!(chat["model"], "gpt");
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert_eq!(
            chat["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        let messages = chat["messages"].as_array().expect("messages");
        let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["arguments"],
            "{\"tz\":\"UTC\"}"
        );
        assert_eq!(messages[3]["tool_call_id"], "tu1");
        assert_eq!(messages[3]["content"], "noon");
        assert_eq!(messages[4]["content"], "thanks");

        let document = map(json!({"model": "c", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "document", "source": {}}]}]}));
        let err = to_chat(&document, "gpt").expect_err("refused");
        assert_eq!(err.param.as_deref(), Some("messages.0.content.0"));
    }

    #[test]
    fn a_chat_answer_and_its_stream_become_messages_events() {
        let completion = json!({"id": "c1", "model": "gpt", "choices": [{"message": {
            "content": "hi", "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
        let message = from_chat(&completion);
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["content"][1]["input"], json!({"a": 1}));
        assert_eq!(message["usage"]["input_tokens"], 3);

        let mut t = StreamTranslator::default();
        let mut events = Vec::new();
        for chunk in [
            json!({"id": "c", "model": "gpt", "choices": [{"delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"delta": {"content": "he"}}]}),
            json!({"choices": [{"delta": {"content": "llo"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}),
        ] {
            events.extend(t.chunk(&chunk));
        }
        events.extend(t.finish());
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[5]["content_block"]["type"], "tool_use");
        assert_eq!(events[5]["index"], 1);
        assert_eq!(events[8]["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[8]["usage"]["output_tokens"], 7);
    }
}
