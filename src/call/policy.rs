//! The authorize stage's question and answer, shared by every stage: what
//! a call is about ([`Target`]), what policies are asked ([`Query`]), what
//! they answer ([`Decision`], with its approval [`Gate`]s). The engine that
//! answers is `crate::authorize`.

use std::fmt;

use serde_json::{Map, Value};

use super::Caller;
use crate::config::{Labels, ServerFacts};

/// An action policies decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Calling a tool; also whether it is listed.
    CallTool,
    ReadResource,
    GetPrompt,
    /// An LLM chat completion (the LLM proxy).
    Chat,
    /// Using an admin API area (`Admin::"policy"`, …).
    Administer,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::ReadResource => "read_resource",
            Action::GetPrompt => "get_prompt",
            Action::Chat => "chat",
            Action::Administer => "administer",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        [
            Action::CallTool,
            Action::ReadResource,
            Action::GetPrompt,
            Action::Chat,
            Action::Administer,
        ]
        .into_iter()
        .find(|a| a.name() == text)
    }
}

/// A tool's behaviour hints (MCP `ToolAnnotations`), as policies see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Annotations {
    /// What a tool that says nothing is assumed to be (the MCP defaults,
    /// which are also the worst case).
    pub const WORST: Annotations = Annotations {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: true,
    };

    /// What policies may believe: the hints of a trusted server, otherwise
    /// the worst case (an untrusted server could call anything read-only).
    pub fn believed(self, trusted: bool) -> Annotations {
        if trusted { self } else { Annotations::WORST }
    }
}

/// What policies know of one LLM request besides its model
/// (`context.request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ModelRequest {
    /// The most tokens it may generate, when it says.
    pub max_tokens: Option<u64>,
    /// It offers the model tools.
    pub tools: bool,
    /// It asks for a streamed answer.
    pub stream: bool,
}

/// The thing a request is about.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    Tool {
        /// The exposed (namespaced) name.
        name: &'a str,
        server: &'a ServerFacts,
        annotations: Annotations,
        /// Its flow labels (`context.labels`; see `crate::integrity::flows`).
        labels: Labels,
    },
    Resource {
        uri: &'a str,
        server: &'a ServerFacts,
    },
    Prompt {
        name: &'a str,
        server: &'a ServerFacts,
    },
    Model {
        /// The name the caller used (an alias in `[llm.models]`).
        name: &'a str,
        /// What the request asks for (`context.request`); `None` when
        /// listing models.
        request: Option<ModelRequest>,
    },
    /// An admin API area.
    Admin { name: &'a str },
}

impl Target<'_> {
    /// What it is, in "unknown {kind}" answers.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Tool { .. } => "tool",
            Target::Resource { .. } => "resource",
            Target::Prompt { .. } => "prompt",
            Target::Model { .. } => "model",
            Target::Admin { .. } => "admin area",
        }
    }

    /// The server it is on, if any.
    pub fn server(&self) -> Option<&ServerFacts> {
        match self {
            Target::Tool { server, .. }
            | Target::Resource { server, .. }
            | Target::Prompt { server, .. } => Some(server),
            Target::Model { .. } | Target::Admin { .. } => None,
        }
    }

    pub fn action(&self) -> Action {
        match self {
            Target::Tool { .. } => Action::CallTool,
            Target::Resource { .. } => Action::ReadResource,
            Target::Prompt { .. } => Action::GetPrompt,
            Target::Model { .. } => Action::Chat,
            Target::Admin { .. } => Action::Administer,
        }
    }
}

/// One question for the policies.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub caller: &'a Caller,
    pub target: Target<'a>,
    /// The call's arguments; `None` when deciding visibility (listing).
    pub args: Option<&'a Map<String, Value>>,
    pub request_id: &'a str,
    /// What the guardrails found in the call's input, as policies read it
    /// (`context.findings`): each detector (`secrets`) and type
    /// (`secrets:github-pat-classic`). Empty before inspection.
    pub findings: &'a [String],
    /// The flow labels the call's session has touched so far
    /// (`context.session.touched`); none when listing.
    pub touched: Labels,
}

/// The answer, with the policies that determined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `@id`s of the determining policies: the permits that allowed it, or
    /// the forbids that refused it (empty for default deny).
    pub policies: Vec<String>,
    /// `@reason`s of those policies, where they have one.
    pub reasons: Vec<String>,
    /// Policies that could not be evaluated (each one denies).
    pub errors: Vec<String>,
    /// The approval gates an allowed call must pass (its satisfied
    /// `@approval` policies); empty when it needs none, and always when
    /// deciding visibility.
    pub gates: Vec<Gate>,
}

/// An approval gate: a `permit` policy with `@approval("<group>")`,
/// `@confirm("<question>")` or both. It does not take part in allowing or
/// refusing; when an allowed call satisfies it, the call goes ahead only
/// once members of the group approve it, or the end user confirms it (MCP
/// elicitation). With both, the user is asked when their client can be,
/// and the group otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The gate policy's `@id`.
    pub policy: String,
    /// Members of this group decide (`@approval`).
    pub group: Option<String>,
    /// The end user confirms, asked this (`@confirm`).
    pub confirm: Option<String>,
    /// How long a request waits for a decision (`@timeout`, default
    /// [`Gate::DEFAULT_TIMEOUT`]); then it is denied.
    pub timeout: std::time::Duration,
    /// How many distinct approvers it takes (`@approvers`, default 1).
    pub approvers: u32,
    /// The policy's `@reason`, shown to approvers and to the caller.
    pub reason: Option<String>,
}

impl Gate {
    /// What the gate asks for, in words: "approval by `security`", "the
    /// user's confirmation", or both.
    pub fn needs(&self) -> String {
        match (&self.group, &self.confirm) {
            (Some(group), None) => format!("approval by `{group}`"),
            (None, _) => "the user's confirmation".to_string(),
            (Some(group), Some(_)) => {
                format!("the user's confirmation (else approval by `{group}`)")
            }
        }
    }

    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);
    /// Most distinct approvers a gate may ask for.
    pub const MAX_APPROVERS: u32 = 10;
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        match (
            self.allowed,
            self.policies.as_slice(),
            self.errors.is_empty(),
        ) {
            (_, _, false) => write!(
                f,
                "{verdict}: a policy could not be evaluated ({})",
                self.errors.join("; ")
            ),
            (false, [], true) => write!(f, "{verdict}: no policy permits it (default deny)"),
            (_, ids, true) => {
                let ids: Vec<String> = ids.iter().map(|i| format!("`{i}`")).collect();
                write!(f, "{verdict} by policy {}", ids.join(", "))?;
                if !self.reasons.is_empty() {
                    write!(f, ": {}", self.reasons.join("; "))?;
                }
                for gate in &self.gates {
                    write!(f, "; needs {} (gate `{}`)", gate.needs(), gate.policy)?;
                }
                Ok(())
            }
        }
    }
}
