//! The conformance fixture's prompts (`prompts/list`, `prompts/get`),
//! including the 2026-07-28 prompt that asks for input with an
//! `InputRequiredResult` (SEP-2322). Completion of prompt arguments is
//! answered by the `ServerHandler` impl in `mod.rs`.

use rmcp::{
    ErrorData,
    model::{
        ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        InputRequiredResult, Prompt, PromptArgument, PromptMessage, Role,
    },
};
use serde_json::{Value, json};

use super::input::{content_str, elicitation_request, input_response, requests_of};
use super::{ConformanceServer, TEST_IMAGE_BASE64};

impl ConformanceServer {
    pub(super) fn prompts() -> Vec<Prompt> {
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

    pub(super) fn prompt(
        &self,
        request: &GetPromptRequestParams,
    ) -> Result<GetPromptResponse, ErrorData> {
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
