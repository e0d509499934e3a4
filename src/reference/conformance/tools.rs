//! The conformance fixture's tool catalogue (`tools/list`) and the bodies of
//! its plain tools: content types, logging, progress, errors, session-era
//! sampling and elicitation, list-change triggers. `mod.rs` routes the
//! `test_input_required_result_*` tools to `input` and the task fixtures to
//! `tasks`; everything else lands in [`ConformanceServer::call_session_tool`].

use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        AudioContent, CallToolResult, ClientCapabilities, ContentBlock, JsonObject, LoggingLevel,
        ProgressNotificationParam, Tool,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use super::logging::severity;
use super::tasks::TASK_FIXTURE_TOOLS;
use super::{ConformanceServer, TEST_AUDIO_BASE64, TEST_IMAGE_BASE64, text_contents, text_result};

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

impl ConformanceServer {
    pub(super) fn tools() -> Vec<Tool> {
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

    pub(super) async fn call_session_tool(
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
}
