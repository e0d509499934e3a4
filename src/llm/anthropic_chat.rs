//! Chat completions served by Anthropic targets: the request translated
//! to the Messages API ([`to_messages`]), the answer back
//! ([`to_completion`]) and, for a stream, each event back into chat
//! completion chunks ([`ChunkTranslator`]). The reverse of what
//! [`super::anthropic`] does for `/v1/messages` on OpenAI-speaking targets.
//!
//! What both APIs can say crosses: text, images, tool calls and their
//! results, system and developer messages, stop sequences, sampling
//! parameters, `tool_choice`, usage. What only OpenAI's has and would
//! change the answer (`n` above 1, `response_format` other than text,
//! `logprobs`, audio or file parts) is refused with a 400 naming the
//! parameter, never dropped silently; penalties, `seed` and `logit_bias`
//! tune sampling only and are left out.

use serde_json::{Map, Value, json};

use super::anthropic::{self, text_of};
use super::openai::BadRequest;

/// `max_tokens` for a request that does not say: Anthropic's API needs
/// one, OpenAI's does not.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A chat content part as a Messages content block.
fn block_of(part: &Value, at: &str) -> Result<Value, BadRequest> {
    match part["type"].as_str() {
        Some("text") => Ok(json!({"type": "text", "text": part["text"]})),
        Some("image_url") => {
            let url = part["image_url"]["url"].as_str().unwrap_or_default();
            let source = match url.strip_prefix("data:") {
                Some(data) => {
                    let Some((media_type, data)) = data.split_once(";base64,") else {
                        return Err(BadRequest::new(
                            at,
                            "an image's data URL must be base64 (`data:image/png;base64,…`)",
                        ));
                    };
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                None => json!({"type": "url", "url": url}),
            };
            Ok(json!({"type": "image", "source": source}))
        }
        other => Err(BadRequest::new(
            at,
            format!(
                "a `{}` part cannot be sent to this model's provider (it speaks Anthropic's API)",
                other.unwrap_or("untyped")
            ),
        )),
    }
}

/// A message's blocks: its content's text and images.
fn blocks_of(content: &Value, at: &str) -> Result<Vec<Value>, BadRequest> {
    match content {
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| block_of(part, &format!("{at}.content[{j}]")))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// Add `blocks` as a `role` turn, joined to the last turn when it has the
/// same role (tool results after tool results, text after them).
fn push_turn(messages: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(Value::Array(content)) = last.get_mut("content")
    {
        content.append(&mut blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// A chat completions request as a Messages request for `model`.
pub fn to_messages(
    body: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, BadRequest> {
    refuse_what_cannot_cross(body)?;
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let listed = body.get("messages").and_then(Value::as_array);
    for (i, message) in listed.into_iter().flatten().enumerate() {
        let at = format!("messages[{i}]");
        let content = &message["content"];
        match message["role"].as_str() {
            Some("system" | "developer") => system.push(text_of(content)),
            Some("user") => push_turn(&mut messages, "user", blocks_of(content, &at)?),
            Some("assistant") => {
                let mut blocks = blocks_of(content, &at)?;
                for (k, call) in message["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input = match serde_json::from_str::<Value>(arguments) {
                        Ok(input @ Value::Object(_)) => input,
                        _ => {
                            return Err(BadRequest::new(
                                &format!("{at}.tool_calls[{k}].function.arguments"),
                                "a tool call's arguments must be a JSON object",
                            ));
                        }
                    };
                    blocks.push(json!({"type": "tool_use", "id": call["id"],
                                       "name": call["function"]["name"], "input": input}));
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            Some("tool" | "function") => {
                let result = json!({"type": "tool_result",
                                    "tool_use_id": message["tool_call_id"],
                                    "content": text_of(content)});
                push_turn(&mut messages, "user", vec![result]);
            }
            other => {
                return Err(BadRequest::new(
                    &format!("{at}.role"),
                    format!(
                        "role `{}`: use system, developer, user, assistant or tool",
                        other.unwrap_or("(none)")
                    ),
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n")));
    }
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(Value::String(user)) = body.get("user") {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        let mut listed = Vec::new();
        for (i, tool) in tools.iter().enumerate() {
            if tool["type"] != "function" {
                return Err(BadRequest::new(
                    &format!("tools[{i}].type"),
                    "only `function` tools can be sent to this model's provider",
                ));
            }
            let function = &tool["function"];
            let mut listed_tool = json!({"name": function["name"],
                "input_schema": function.get("parameters").cloned()
                    .unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(description) = function.get("description").filter(|d| d.is_string()) {
                listed_tool["description"] = description.clone();
            }
            listed.push(listed_tool);
        }
        out.insert("tools".into(), Value::Array(listed));
    }
    let mut choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(choice) if choice["function"]["name"].is_string() => {
            Some(json!({"type": "tool", "name": choice["function"]["name"]}))
        }
        Some(_) => {
            return Err(BadRequest::new(
                "tool_choice",
                "`tool_choice`: \"auto\", \"required\", \"none\" or {\"type\": \"function\", \"function\": {\"name\": …}}",
            ));
        }
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".into(), choice);
    }
    Ok(out)
}

/// Parameters whose meaning Anthropic's API cannot keep: refused.
fn refuse_what_cannot_cross(body: &Map<String, Value>) -> Result<(), BadRequest> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(BadRequest::new(
            "n",
            "this model's provider (Anthropic's API) answers one choice: leave `n` out or set it to 1",
        ));
    }
    if let Some(format) = body.get("response_format").filter(|f| !f.is_null())
        && format["type"] != "text"
    {
        return Err(BadRequest::new(
            "response_format",
            "this model's provider (Anthropic's API) has no JSON mode: describe the format in the prompt, or offer a tool whose parameters are the schema",
        ));
    }
    if body.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(BadRequest::new(
            "logprobs",
            "this model's provider (Anthropic's API) does not return log probabilities",
        ));
    }
    if body.get("audio").is_some_and(|a| !a.is_null()) {
        return Err(BadRequest::new(
            "audio",
            "this model's provider (Anthropic's API) does not answer with audio",
        ));
    }
    Ok(())
}

/// A Messages stop reason as a chat finish reason.
fn finish_of(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn" | "stop_sequence" | "pause_turn") => json!("stop"),
        Some("max_tokens" | "model_context_window_exceeded") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// Usage in OpenAI's words: prompt tokens count what was read from and
/// written to Anthropic's cache too.
fn usage_json(answer: &Value) -> Value {
    let usage = answer
        .get("usage")
        .or_else(|| answer.get("message").and_then(|m| m.get("usage")));
    let count = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = count("cache_read_input_tokens");
    let prompt = count("input_tokens") + cached + count("cache_creation_input_tokens");
    let completion = count("output_tokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

fn completion_id(id: &Value) -> String {
    format!("chatcmpl-{}", id.as_str().unwrap_or("toolgate"))
}

/// A Messages answer as a chat completion.
pub fn to_completion(answer: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in answer["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": completion_id(&answer["id"]),
        "object": "chat.completion",
        "created": now(),
        "model": answer["model"],
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_of(anthropic::stop_reason(answer))}],
        "usage": usage_json(answer),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Turns the Messages API's events into chat completion chunks: a first
/// chunk with the role, text and tool-call deltas, the finish reason, and
/// (when the caller asked) a last chunk with the usage.
pub struct ChunkTranslator {
    id: String,
    model: Value,
    created: u64,
    /// The chat tool-call index of each content block that is a tool use.
    calls: Vec<(u64, usize)>,
    usage: Value,
    include_usage: bool,
}

impl ChunkTranslator {
    pub fn new(include_usage: bool) -> Self {
        ChunkTranslator {
            id: completion_id(&Value::Null),
            model: Value::Null,
            created: now(),
            calls: Vec::new(),
            usage: json!({}),
            include_usage,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    }

    /// The chunks one event makes (none, or one), or the error an `error`
    /// event carries.
    pub fn event(&mut self, event: &Value) -> Result<Option<Value>, String> {
        let block = event["index"].as_u64().unwrap_or(0);
        let chunk = match event["type"].as_str() {
            Some("message_start") => {
                let message = &event["message"];
                self.id = completion_id(&message["id"]);
                self.model = message["model"].clone();
                self.usage = usage_json(event);
                Some(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null))
            }
            Some("content_block_start") if event["content_block"]["type"] == "tool_use" => {
                let call = &event["content_block"];
                let index = self.calls.len();
                self.calls.push((block, index));
                Some(self.chunk(
                    json!({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                           "function": {"name": call["name"], "arguments": ""}}]}),
                    Value::Null,
                ))
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        Some(self.chunk(json!({"content": delta["text"]}), Value::Null))
                    }
                    Some("input_json_delta") => {
                        let index = self
                            .calls
                            .iter()
                            .find(|(b, _)| *b == block)
                            .map_or(0, |(_, i)| *i);
                        Some(self.chunk(
                            json!({"tool_calls": [{"index": index,
                                    "function": {"arguments": delta["partial_json"]}}]}),
                            Value::Null,
                        ))
                    }
                    // Thinking and signatures have no chat equivalent.
                    _ => None,
                }
            }
            Some("message_delta") => {
                let input = self.usage["prompt_tokens"].as_u64().unwrap_or(0);
                let cached = self.usage["prompt_tokens_details"]["cached_tokens"].clone();
                let output = event["usage"]["output_tokens"].as_u64().unwrap_or(0);
                self.usage = json!({"prompt_tokens": input, "completion_tokens": output,
                    "total_tokens": input + output, "prompt_tokens_details": {"cached_tokens": cached}});
                let stop = event["delta"]["stop_reason"].as_str();
                Some(self.chunk(json!({}), finish_of(stop)))
            }
            Some("message_stop") if self.include_usage => Some(json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": self.usage,
            })),
            Some("error") => {
                return Err(event["error"]["message"]
                    .as_str()
                    .unwrap_or("the provider sent an error event")
                    .to_string());
            }
            _ => None,
        };
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_chat_request_becomes_a_messages_request() {
        let body = object(json!({"model": "alias", "max_completion_tokens": 50,
            "temperature": 0.2, "stop": "END", "stream": true, "user": "u1",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
                {"role": "user", "content": [{"type": "text", "text": "what is in it?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "look", "arguments": "{\"at\":1}"}},
                    {"id": "t2", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "a cat"},
                {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "a hat"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d",
                       "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false}));
        let messages = Value::Object(to_messages(&body, "claude-x").expect("translatable"));
        assert_eq!(messages["model"], "claude-x");
        assert_eq!(messages["system"], "be brief\nand kind");
        assert_eq!(messages["max_tokens"], 50);
        assert_eq!(messages["stop_sequences"], json!(["END"]));
        assert_eq!(messages["metadata"]["user_id"], "u1");
        assert_eq!(messages["stream"], true);
        let turns = messages["messages"].as_array().expect("messages");
        assert_eq!(turns.len(), 3, "{turns:?}");
        assert_eq!(turns[0]["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(turns[1]["content"][0]["input"], json!({"at": 1}));
        // Both tool results in one user turn.
        assert_eq!(turns[2]["role"], "user");
        assert_eq!(turns[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(turns[2]["content"][1]["content"], "a hat");
        assert_eq!(
            messages["tools"][0]["input_schema"],
            json!({"type": "object"})
        );
        assert_eq!(
            messages["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        // No max_tokens: Anthropic's API needs one.
        let plain = object(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            to_messages(&plain, "m").expect("translatable")["max_tokens"],
            DEFAULT_MAX_TOKENS
        );
    }

    #[test]
    fn what_cannot_cross_is_refused_by_name() {
        for (body, param) in [
            (json!({"n": 2}), "n"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (json!({"logprobs": true}), "logprobs"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [
                {"id": "t", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (
                json!({"messages": [{"role": "narrator", "content": "x"}]}),
                "messages[0].role",
            ),
        ] {
            let e = to_messages(&object(body), "m").expect_err(param);
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        }
    }

    #[test]
    fn an_answer_and_a_stream_come_back_as_chat() {
        let answer = json!({"id": "msg_1", "type": "message", "model": "claude-x",
            "content": [{"type": "text", "text": "let me look"},
                        {"type": "tool_use", "id": "t1", "name": "look", "input": {"at": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2}});
        let completion = to_completion(&answer);
        assert_eq!(completion["id"], "chatcmpl-msg_1");
        let choice = &completion["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "let me look");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"at\":1}"
        );
        assert_eq!(completion["usage"]["prompt_tokens"], 12);
        assert_eq!(
            completion["usage"]["prompt_tokens_details"]["cached_tokens"],
            2
        );

        let events = [
            json!({"type": "message_start", "message": {"id": "msg_2", "model": "claude-x",
                   "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1,
                   "content_block": {"type": "tool_use", "id": "t9", "name": "look", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1,
                   "delta": {"type": "input_json_delta", "partial_json": "{\"at\":"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
            json!({"type": "message_stop"}),
        ];
        let mut translator = ChunkTranslator::new(true);
        let chunks: Vec<Value> = events
            .iter()
            .filter_map(|e| translator.event(e).expect("no error"))
            .collect();
        assert_eq!(chunks.len(), 6, "{chunks:?}");
        assert_eq!(chunks[0]["id"], "chatcmpl-msg_2");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "t9"
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"at\":"
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 4);
        assert_eq!(chunks[5]["usage"]["prompt_tokens"], 7);
        let error =
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}});
        assert_eq!(translator.event(&error), Err("busy".to_string()));
    }
}
