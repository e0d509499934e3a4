//! OpenAI's Responses API (`/v1/responses`, what the OpenAI Agents SDK
//! uses by default) as toolgate reads it: what a request asks for, the
//! parts the guardrails read, the usage an answer reports and when its
//! stream has ended. Requests pass through to targets that serve the API
//! (`responses = true`); there is no translation.

use serde_json::{Map, Value};

use super::openai::{self, BadRequest, Usage, content_parts};
use crate::call::{Channel, ModelRequest, Part};

/// What policies are told of a Responses request, checked.
pub fn responses_request(body: &Map<String, Value>) -> Result<ModelRequest, BadRequest> {
    match body.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => {}
        None if body.contains_key("previous_response_id") => {}
        _ => {
            return Err(BadRequest::new(
                "input",
                "`input` is required: a string or an array of input items",
            ));
        }
    }
    Ok(ModelRequest {
        max_tokens: openai::optional_count(body, "max_output_tokens")?,
        tools: openai::tools_offered(body)?,
        stream: openai::optional_bool(body, "stream")?,
    })
}

/// An item's texts: a message's content, a function call's arguments, a
/// function call's output.
fn item_parts(item: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(content) = item.get_mut("content") {
        content_parts(content, visit);
    }
    if let Some(Value::String(arguments)) = item.get_mut("arguments") {
        visit(Part::Text(arguments));
    }
    // A tool's result, passed back to the model: quoted.
    if let Some(output) = item.get_mut("output") {
        match output {
            Value::String(_) | Value::Array(_) => visit(Part::Quoted(output)),
            _ => {}
        }
    }
}

/// The parts of a request the guardrails read: the instructions and
/// every input item.
pub fn request_parts(body: &mut Map<String, Value>, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(Value::String(instructions)) = body.get_mut("instructions") {
        visit(Part::Text(instructions));
    }
    match body.get_mut("input") {
        Some(Value::String(text)) => visit(Part::Text(text)),
        Some(Value::Array(items)) => items.iter_mut().for_each(|i| item_parts(i, visit)),
        _ => {}
    }
}

/// The parts of a response: its output items.
pub fn response_parts(response: &mut Value, visit: &mut dyn FnMut(Part<'_>)) {
    if let Some(Value::Array(items)) = response.get_mut("output") {
        items.iter_mut().for_each(|i| item_parts(i, visit));
    }
}

/// The parts of one streamed event: a delta (text, arguments) on its
/// channel (output item, content part, kind of delta), and the whole
/// texts the closing events repeat (`.done` events, the final response),
/// which the guardrails must read too.
pub fn event_parts(event: &mut Value, visit: &mut dyn FnMut(Option<Channel>, Part<'_>)) {
    let number = |key: &str| event.get(key).and_then(Value::as_u64).unwrap_or(0);
    let kind = match event.get("type").and_then(Value::as_str) {
        Some(t) if t.ends_with("output_text.delta") => 0,
        Some(t) if t.ends_with("arguments.delta") => 1,
        _ => 2,
    };
    let channel =
        number("output_index").wrapping_shl(32) | (number("content_index") & 0xFF_FFFF) << 8 | kind;
    if let Some(Value::String(delta)) = event.get_mut("delta") {
        visit(Some(channel), Part::Text(delta));
    }
    for key in ["text", "arguments"] {
        if let Some(Value::String(text)) = event.get_mut(key) {
            visit(None, Part::Text(text));
        }
    }
    let mut alone = |part: Part<'_>| visit(None, part);
    if let Some(Value::String(text)) = event.get_mut("part").and_then(|p| p.get_mut("text")) {
        alone(Part::Text(text));
    }
    if let Some(item) = event.get_mut("item") {
        item_parts(item, &mut alone);
    }
    if let Some(response) = event.get_mut("response") {
        response_parts(response, &mut alone);
    }
}

/// The response an answer or an event carries (`response.completed`
/// carries the whole response).
fn response_of(value: &Value) -> &Value {
    match value.get("response") {
        Some(inner) if inner.is_object() => inner,
        _ => value,
    }
}

/// The usage of a response or a final event.
pub fn usage_of(value: &Value) -> Option<Usage> {
    let usage = response_of(value).get("usage").filter(|u| u.is_object())?;
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input: count(usage.get("input_tokens")),
        output: count(usage.get("output_tokens")),
        cached: count(
            usage
                .get("input_tokens_details")
                .and_then(|d| d.get("cached_tokens")),
        ),
    })
}

/// A response's status (`completed`, `incomplete`, `failed`), once final.
pub fn status_of(value: &Value) -> Option<&str> {
    let response = response_of(value);
    let status = response.get("status").and_then(Value::as_str)?;
    (status != "in_progress" && status != "queued").then_some(status)
}

/// The model a response names.
pub fn model_of(value: &Value) -> Option<&str> {
    response_of(value).get("model").and_then(Value::as_str)
}

/// Whether a streamed event is the last of its stream.
pub fn is_final(event: &Value) -> bool {
    matches!(
        event.get("type").and_then(Value::as_str),
        Some("response.completed" | "response.failed" | "response.incomplete" | "error")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The texts of an event, with their channels.
    fn texts(mut event: Value) -> Vec<(Option<Channel>, String)> {
        let mut seen = Vec::new();
        event_parts(&mut event, &mut |channel, part| {
            if let Part::Text(t) = part {
                seen.push((channel, t.clone()));
            }
        });
        seen
    }

    #[test]
    fn deltas_have_channels_and_the_texts_closing_events_repeat_are_read() {
        let delta = |kind: &str, output: u64, content: u64| json!({"type": kind, "output_index": output, "content_index": content, "delta": "d"});
        let a = texts(delta("response.output_text.delta", 0, 0));
        let b = texts(delta("response.output_text.delta", 0, 1));
        let c = texts(delta("response.function_call_arguments.delta", 0, 0));
        let d = texts(delta("response.output_text.delta", 1, 0));
        let channels: Vec<_> = [&a, &b, &c, &d]
            .iter()
            .map(|t| t[0].0.expect("a delta has a channel"))
            .collect();
        for (i, x) in channels.iter().enumerate() {
            assert_eq!(
                channels.iter().filter(|y| *y == x).count(),
                1,
                "{i}: {channels:?}"
            );
        }
        assert_eq!(
            texts(delta("response.output_text.delta", 0, 0)),
            a,
            "stable"
        );
        // What closing events repeat is read whole, on no channel.
        let done = json!({"type": "response.output_text.done", "text": "all of it"});
        assert_eq!(texts(done), [(None, "all of it".to_string())]);
        let part = json!({"type": "response.content_part.done", "part": {"type": "output_text", "text": "p"}});
        assert_eq!(texts(part), [(None, "p".to_string())]);
        let completed = json!({"type": "response.completed", "response": {"output": [
            {"type": "message", "content": [{"type": "output_text", "text": "final"}]},
            {"type": "function_call", "arguments": "{}"}]}});
        assert_eq!(
            texts(completed),
            [(None, "final".to_string()), (None, "{}".to_string())]
        );
    }

    #[test]
    fn requests_are_checked_and_their_texts_read() {
        let Value::Object(mut body) = json!({"model": "m", "instructions": "be brief", "max_output_tokens": 9,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c", "output": "noon"}]})
        else {
            unreachable!()
        };
        let request = responses_request(&body).expect("valid");
        assert_eq!(request.max_tokens, Some(9));
        let mut seen = Vec::new();
        request_parts(&mut body, &mut |p| match p {
            Part::Text(t) => seen.push(t.clone()),
            // A tool's result is quoted: the caller passes it on.
            Part::Quoted(v) => seen.push(format!("quoted {v}")),
            _ => {}
        });
        assert_eq!(seen, ["be brief", "hi", "{}", "quoted \"noon\""]);
        let Value::Object(missing) = json!({"model": "m"}) else {
            unreachable!()
        };
        assert_eq!(
            responses_request(&missing)
                .expect_err("no input")
                .param
                .as_deref(),
            Some("input")
        );
        let done = json!({"type": "response.completed", "response": {"status": "completed", "model": "x",
            "usage": {"input_tokens": 3, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 1}}}});
        assert!(is_final(&done));
        assert_eq!(status_of(&done), Some("completed"));
        assert_eq!(
            usage_of(&done).map(|u| (u.input, u.output, u.cached)),
            Some((3, 4, 1))
        );
    }
}
