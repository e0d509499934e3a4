//! Asking the client for input, in both protocol eras. Session era
//! (2025-11-25 and older): `sampling/createMessage` and `elicitation/create`
//! sent on the tool call's stream. 2026-07-28: the
//! `test_input_required_result_*` tools answer with an `InputRequiredResult`
//! (SEP-2322), keep their progress server-side behind an opaque
//! `requestState` handle, and read the client's `inputResponses` on retry.
//! The input-request builders here also serve `prompts` and `tasks`.

use std::{
    hash::{BuildHasher, Hasher},
    sync::atomic::Ordering,
};

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult, ElicitRequest,
        InputRequest, InputRequests, InputRequiredResult, InputResponses, ServerRequest,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use crate::util::sync::LockExt;

use super::{ConformanceServer, error_result, text_result};
impl ConformanceServer {
    // ─── requestState handles ───────────────────────────────────────────────

    /// Stores `state` server-side and returns an unguessable opaque handle.
    pub(super) fn seal_state(&self, state: Value) -> String {
        let counter = self.state.handle_counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self.state.handle_seed.build_hasher();
        first.write_u64(counter);
        first.write_u8(1);
        let mut second = self.state.handle_seed.build_hasher();
        second.write_u64(counter);
        second.write_u8(2);
        let handle = format!("rs-{:016x}{:016x}", first.finish(), second.finish());
        self.state
            .request_states
            .locked()
            .insert(handle.clone(), state);
        handle
    }

    /// Looks up an echoed `requestState`; unknown (forged, tampered or expired)
    /// handles are a JSON-RPC invalid-params error.
    pub(super) fn open_state(&self, handle: &str) -> Result<Value, ErrorData> {
        self.state
            .request_states
            .locked()
            .get(handle)
            .cloned()
            .ok_or_else(|| {
                ErrorData::invalid_params("requestState failed integrity verification", None)
            })
    }

    // ─── session era: requests on the tool call's stream ────────────────────

    /// `sampling/createMessage` on the tool call's stream (session era).
    pub(super) async fn sample(
        &self,
        cx: &RequestContext<RoleServer>,
        prompt: &str,
    ) -> CallToolResult {
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
    pub(super) async fn elicit(
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

    // ─── MRTR tools (2026-07-28, SEP-2322) ──────────────────────────────────

    pub(super) fn call_mrtr_tool(
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
}

/// A usable input response: a JSON object. Anything else counts as missing, so
/// the server asks again (SEP-2322 "validate inputResponses").
pub(super) fn input_response<'a>(
    responses: Option<&'a InputResponses>,
    key: &str,
) -> Option<&'a serde_json::Map<String, Value>> {
    responses
        .and_then(|responses| responses.get(key))
        .and_then(Value::as_object)
}

/// `content.<field>` of an elicitation response, as a string.
pub(super) fn content_str<'a>(
    response: &'a serde_json::Map<String, Value>,
    field: &str,
) -> Option<&'a str> {
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

pub(super) fn elicitation_request(
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

pub(super) fn ask_name(message: &str) -> Result<InputRequest, ErrorData> {
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

pub(super) fn requests_of<const N: usize>(entries: [(&str, InputRequest); N]) -> InputRequests {
    entries
        .into_iter()
        .map(|(key, request)| (key.to_owned(), request))
        .collect()
}

pub(super) fn input_required<const N: usize>(
    entries: [(&str, InputRequest); N],
    request_state: Option<String>,
) -> CallToolResponse {
    InputRequiredResult::new(Some(requests_of(entries)), request_state).into()
}

#[cfg(test)]
mod tests {
    use super::*;

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
