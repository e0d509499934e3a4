//! `notes`: a small in-memory notebook. Tools to add, list, read and delete
//! notes; each note is also a resource (`note://TITLE`); a prompt to
//! summarize them. The notebook is bounded ([`MAX_NOTES`] notes of at most
//! [`MAX_NOTE_BYTES`] each); beyond that, `add_note` answers with a tool error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::util::sync::LockExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    Prompt, PromptMessage, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

pub const MAX_NOTES: usize = 1000;
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct Notes {
    tool_router: ToolRouter<Self>,
    notes: Arc<Mutex<BTreeMap<String, String>>>,
}

#[derive(Deserialize, JsonSchema)]
pub struct AddArgs {
    /// Short title; letters, digits, `-`, `_` (it becomes part of a URI).
    pub title: String,
    pub body: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct TitleArgs {
    pub title: String,
}

impl Default for Notes {
    fn default() -> Self {
        Self::new()
    }
}

fn valid_title(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[tool_router]
impl Notes {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            notes: Arc::default(),
        }
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.notes.locked()
    }

    #[tool(
        description = "Add or replace a note.",
        annotations(
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn add_note(
        &self,
        Parameters(a): Parameters<AddArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        if !valid_title(&a.title) {
            return CallToolResult::error(vec![ContentBlock::text(
                "title must be 1-64 letters, digits, '-' or '_'",
            )]);
        }
        if a.body.len() > MAX_NOTE_BYTES {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "body is over {MAX_NOTE_BYTES} bytes"
            ))]);
        }
        {
            let mut notes = self.notes();
            if notes.len() >= MAX_NOTES && !notes.contains_key(&a.title) {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "the notebook is full ({MAX_NOTES} notes); delete one first"
                ))]);
            }
            notes.insert(a.title.clone(), a.body);
        }
        let _ = context.peer.notify_resource_list_changed().await;
        CallToolResult::success(vec![ContentBlock::text(format!(
            "saved note://{}",
            a.title
        ))])
    }

    #[tool(
        description = "List note titles.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_notes(&self) -> String {
        self.notes().keys().cloned().collect::<Vec<_>>().join("\n")
    }

    #[tool(
        description = "Read one note.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_note(&self, Parameters(a): Parameters<TitleArgs>) -> CallToolResult {
        match self.notes().get(&a.title) {
            Some(body) => CallToolResult::success(vec![ContentBlock::text(body.clone())]),
            None => CallToolResult::error(vec![ContentBlock::text(format!(
                "no note titled `{}`",
                a.title
            ))]),
        }
    }

    #[tool(
        description = "Delete a note for good.",
        annotations(
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_note(
        &self,
        Parameters(a): Parameters<TitleArgs>,
        context: RequestContext<RoleServer>,
    ) -> String {
        let existed = self.notes().remove(&a.title).is_some();
        if existed {
            let _ = context.peer.notify_resource_list_changed().await;
        }
        if existed {
            format!("deleted {}", a.title)
        } else {
            format!("no note titled `{}`", a.title)
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_prompts()
            .build();
        ServerConfig::new(caps).with_instructions("A notebook: add_note, list_notes, read_note, delete_note; notes are resources note://TITLE.")
    }

    async fn list_resources(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = self
            .notes()
            .keys()
            .map(|t| Resource::new(format!("note://{t}"), t.clone()).with_mime_type("text/plain"))
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let t = ResourceTemplate::new("note://{title}", "note")
            .with_description("A note by title")
            .with_mime_type("text/plain");
        Ok(ListResourceTemplatesResult::with_all_items(vec![t]))
    }

    async fn read_resource(
        &self,
        r: ReadResourceRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let title = r.uri.strip_prefix("note://").unwrap_or_default();
        match self.notes().get(title) {
            Some(body) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                body.clone(),
                r.uri.clone(),
            )])
            .into()),
            None => Err(ErrorData::resource_not_found(
                format!("no note at {}", r.uri),
                None,
            )),
        }
    }

    async fn list_prompts(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "summarize_notes",
            Some("Ask for a summary of every note"),
            None,
        )]))
    }

    async fn get_prompt(
        &self,
        r: GetPromptRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if r.name != "summarize_notes" {
            return Err(ErrorData::invalid_params(
                format!("Unknown prompt: {}", r.name),
                None,
            ));
        }
        let all = self
            .notes()
            .iter()
            .map(|(t, b)| format!("## {t}\n{b}"))
            .collect::<Vec<_>>()
            .join("\n\n");
        let text = format!("Summarize these notes in a few bullet points:\n\n{all}");
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }
}
