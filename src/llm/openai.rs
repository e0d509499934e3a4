//! OpenAI's API as toolgate reads it: what a request asks for (checked
//! before any stage, [`chat_request`], [`embeddings_request`]), which of
//! its parts the guardrails read ([`message_parts`], [`completion_parts`],
//! [`chunk_parts`]), the usage an answer reports ([`Usage`]), and OpenAI's
//! error envelope ([`error_body`]).

use serde_json::{Map, Value};

use crate::call::{Channel, ModelRequest, Part};

/// A request refused before any stage: status 400 with OpenAI's
/// `invalid_request_error`, naming the parameter.
#[derive(Debug, Clone)]
pub struct BadRequest {
    pub param: Option<String>,
    pub message: String,
}

impl BadRequest {
    pub(super) fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }
}

/// The body of a request, strictly parsed (one value for every reader,
/// `util::json`), as an object.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    match crate::util::json::parse(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BadRequest {
            param: None,
            message: "the body must be a JSON object".into(),
        }),
        Err(e) => Err(BadRequest {
            param: None,
            message: format!("the body is not valid JSON: {e}"),
        }),
    }
}

/// The model a request names.
pub fn model(body: &Map<String, Value>) -> Result<String, BadRequest> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        Some(_) => Err(BadRequest::new(
            "model",
            "`model` must be a non-empty string",
        )),
        None => Err(BadRequest::new(
            "model",
            "you must provide a model parameter (a name GET /v1/models lists)",
        )),
    }
}

/// A boolean parameter; absent or null is false.
pub(super) fn optional_bool(body: &Map<String, Value>, key: &str) -> Result<bool, BadRequest> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(BadRequest::new(key, format!("`{key}` must be a boolean"))),
    }
}

/// A whole-number parameter, when given.
pub(super) fn optional_count(
    body: &Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, BadRequest> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| BadRequest::new(key, format!("`{key}` must be a whole number ≥ 0"))),
    }
}

/// Whether a request offers the model tools (`tools`: an array).
pub(super) fn tools_offered(body: &Map<String, Value>) -> Result<bool, BadRequest> {
    match body.get("tools") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(tools)) => Ok(!tools.is_empty()),
        Some(_) => Err(BadRequest::new("tools", "`tools` must be an array")),
    }
}

/// What policies are told of a chat completion request, checked.
pub fn chat_request(body: &Map<String, Value>) -> Result<ModelRequest, BadRequest> {
    match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {
            for (i, m) in messages.iter().enumerate() {
                if !m.is_object() {
                    return Err(BadRequest::new(
                        &format!("messages[{i}]"),
                        "each message must be an object with a `role`",
                    ));
                }
            }
        }
        Some(Value::Array(_)) => {
            return Err(BadRequest::new("messages", "`messages` must not be empty"));
        }
        _ => {
            return Err(BadRequest::new(
                "messages",
                "`messages` is required: an array of messages",
            ));
        }
    }
    let max_tokens = match optional_count(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => optional_count(body, "max_tokens")?,
    };
    let tools = tools_offered(body)?;
    if let Some(n) = optional_count(body, "n")?
        && n == 0
    {
        return Err(BadRequest::new("n", "`n` must be at least 1"));
    }
    let stream = optional_bool(body, "stream")?;
    match body.get("stream_options") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(BadRequest::new(
                "stream_options",
                "`stream_options` must be an object",
            ));
        }
    }
    Ok(ModelRequest {
        max_tokens,
        tools,
        stream,
    })
}

/// Whether the caller asked for usage in its stream
/// (`stream_options.include_usage`).
pub fn wants_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// What policies are told of an embeddings request, checked.
pub fn embeddings_request(body: &Map<String, Value>) -> Result<ModelRequest, BadRequest> {
    match body.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if !items.is_empty() => {}
        _ => {
            return Err(BadRequest::new(
                "input",
                "`input` is required: a string or a non-empty array",
            ));
        }
    }
    Ok(ModelRequest::default())
}

/// The text of a message's `content`: a string, or the `text` of each
/// content part.
pub(super) fn content_parts(content: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    match content {
        Value::String(text) => visit(Part::Text(text)),
        Value::Array(parts) => {
            for part in parts {
                if let Some(Value::String(text)) = part.get_mut("text") {
                    visit(Part::Text(text));
                }
            }
        }
        _ => {}
    }
}

/// The function calls of a message or a delta: their arguments, as the
/// JSON text the model wrote.
fn tool_call_parts(message: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
        for call in calls {
            if let Some(Value::String(arguments)) = call
                .get_mut("function")
                .and_then(|f| f.get_mut("arguments"))
            {
                visit(Part::Text(arguments));
            }
        }
    }
}

/// The parts of a chat request the guardrails read: every message's text
/// (tool results among them) and the arguments of the tool calls it
/// carries back.
pub fn message_parts(body: &mut Map<String, Value>, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        for message in messages {
            // A tool's result, passed back to the model: quoted.
            let quoted = matches!(message["role"].as_str(), Some("tool" | "function"));
            match message.get_mut("content") {
                Some(content) if quoted => visit(Part::Quoted(content)),
                Some(content) => content_parts(content, visit),
                None => {}
            }
            tool_call_parts(message, visit);
        }
    }
}

/// The parts of an embeddings request: its input text(s).
pub fn input_parts(body: &mut Map<String, Value>, visit: &mut dyn FnMut(Part<'_>)) {
    match body.get_mut("input") {
        Some(Value::String(text)) => visit(Part::Text(text)),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::String(text) = item {
                    visit(Part::Text(text));
                }
            }
        }
        _ => {}
    }
}

/// The parts of a chat completion: each choice's text, refusal and tool
/// call arguments.
pub fn completion_parts(completion: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    choice_parts(completion, "message", visit);
}

/// The parts of one streamed chunk: each choice's delta, on its channel
/// (the choice's content, its refusal, each tool call's arguments).
pub fn chunk_parts(chunk: &mut Value, visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {
    let Some(Value::Array(choices)) = chunk.get_mut("choices") else {
        return;
    };
    for (i, choice) in choices.iter_mut().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(i as u64);
        let channel = |n: u64| Some(index.wrapping_shl(32) | n);
        let Some(delta) = choice.get_mut("delta") else {
            continue;
        };
        match delta.get_mut("content") {
            Some(Value::String(text)) => visit(channel(0), Part::Text(text)),
            Some(content) => content_parts(content, &mut |part| visit(None, part)),
            None => {}
        }
        if let Some(Value::String(refusal)) = delta.get_mut("refusal") {
            visit(channel(1), Part::Text(refusal));
        }
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            for (k, call) in calls.iter_mut().enumerate() {
                let n = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(k as u64);
                if let Some(Value::String(arguments)) = call
                    .get_mut("function")
                    .and_then(|f| f.get_mut("arguments"))
                {
                    visit(channel(2 + (n & 0xFFFF)), Part::Text(arguments));
                }
            }
        }
    }
}

fn choice_parts(answer: &mut Value, field: &str, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(Value::Array(choices)) = answer.get_mut("choices") {
        for choice in choices {
            let Some(message) = choice.get_mut(field) else {
                continue;
            };
            if let Some(content) = message.get_mut("content") {
                content_parts(content, visit);
            }
            if let Some(Value::String(refusal)) = message.get_mut("refusal") {
                visit(Part::Text(refusal));
            }
            tool_call_parts(message, visit);
        }
    }
}

/// What an answer says it used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
}

impl Usage {
    /// The `usage` of a completion, a chunk or an embeddings answer.
    pub fn of(answer: &Value) -> Option<Usage> {
        let usage = answer.get("usage").filter(|u| u.is_object())?;
        let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        Some(Usage {
            input: count(usage.get("prompt_tokens")),
            output: count(usage.get("completion_tokens")),
            cached: count(
                usage
                    .get("prompt_tokens_details")
                    .and_then(|d| d.get("cached_tokens")),
            ),
        })
    }
}

/// The finish reasons of an answer's choices.
pub fn finish_reasons(answer: &Value) -> impl Iterator<Item = &str> {
    answer
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
}

/// OpenAI's error envelope.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    serde_json::json!({
        "error": {"message": message, "type": kind, "param": param, "code": code}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_chat_request_is_checked_before_any_stage() {
        let ok = map(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5, "tools": [{"type": "function"}], "stream": true}),
        );
        assert_eq!(
            chat_request(&ok).expect("valid"),
            ModelRequest {
                max_tokens: Some(5),
                tools: true,
                stream: true
            }
        );
        for (body, param) in [
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m", "messages": ["x"]}), "messages[0]"),
            (
                json!({"model": "m", "messages": [{}], "max_tokens": -1}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{}], "max_tokens": 1.5}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "messages": [{}], "stream": "yes"}),
                "stream",
            ),
            (
                json!({"model": "m", "messages": [{}], "tools": {}}),
                "tools",
            ),
            (json!({"model": "m", "messages": [{}], "n": 0}), "n"),
        ] {
            let err = chat_request(&map(body.clone())).expect_err(&body.to_string());
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
        assert!(model(&map(json!({"model": 3}))).is_err());
    }

    #[test]
    fn guardrails_read_texts_and_tool_arguments_both_ways() {
        let mut body = map(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "image_url"}]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "content": "c"},
        ]}));
        let mut seen = Vec::new();
        message_parts(&mut body, &mut |p| match p {
            Part::Text(t) => seen.push(t.clone()),
            // A tool's result is quoted: the caller passes it on.
            Part::Quoted(v) => seen.push(format!("quoted {v}")),
            _ => {}
        });
        assert_eq!(seen, ["a", "b", "{\"x\":1}", "quoted \"c\""]);
        let mut chunk = json!({"choices": [{"delta": {"content": "d"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}});
        let mut seen = Vec::new();
        chunk_parts(&mut chunk, &mut |_, p| {
            if let Part::Text(t) = p {
                seen.push(t.clone());
            }
        });
        assert_eq!(seen, ["d"]);
        assert_eq!(
            Usage::of(&chunk),
            Some(Usage {
                input: 3,
                output: 4,
                cached: 2
            })
        );
        assert_eq!(finish_reasons(&chunk).collect::<Vec<_>>(), ["stop"]);
    }
}
