//! A protocol-neutral view of what a call carries ([`Part`]), and the
//! stages that read and may rewrite it ([`Inspect`]): guardrails see text
//! and JSON values, never an MCP or provider type. A kind shows its parts
//! through [`super::CallKind::input_parts`] (arguments, prompts),
//! [`super::CallKind::output_parts`] (a result) and
//! [`super::CallKind::chunk_parts`] (each chunk of a streamed result); the
//! pipeline's inspect stages hand them to each inspector in turn.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{CallError, Target};
use crate::config::ServerFacts;

/// One part of a payload, lent for reading and rewriting in place.
#[derive(Debug)]
pub enum Part<'a> {
    /// Text (a tool result's text block, a prompt, a completion's delta).
    Text(&'a mut String),
    /// A JSON value (structured content).
    Value(&'a mut Value),
    /// A JSON object (a call's arguments).
    Object(&'a mut Map<String, Value>),
    /// What a caller passes on from elsewhere (a tool's result, a
    /// retrieved document) inside its own request: read like a value, and
    /// in a model call's input the only text judged for prompt injection
    /// (the rest is the caller's own prompt).
    Quoted(&'a mut Value),
}

/// Which text a streamed chunk's part continues (a choice's content, a
/// tool call's arguments, a content block), as a kind numbers them: the
/// pipeline reads the parts of one channel across chunks as one text.
pub type Channel = u64;

impl Part<'_> {
    /// The same part, lent again (to the next inspector).
    pub fn reborrow(&mut self) -> Part<'_> {
        match self {
            Part::Text(text) => Part::Text(text),
            Part::Value(value) => Part::Value(value),
            Part::Object(object) => Part::Object(object),
            Part::Quoted(value) => Part::Quoted(value),
        }
    }
}

/// What an inspector knows of the call whose payload it reads: what the
/// call is about ([`Target`], owned, so the payload can be lent mutably
/// beside it).
#[derive(Debug, Clone)]
pub struct Inspected {
    /// `tool`, `resource`, `prompt`, `model` ([`Target::kind`]).
    pub kind: &'static str,
    /// The exposed name (tool, prompt, model) or URI.
    pub name: String,
    /// The server it goes to, when it goes to one.
    pub server: Option<ServerFacts>,
}

impl Inspected {
    pub fn of(target: &Target<'_>) -> Self {
        let name = match target {
            Target::Tool { name, .. } | Target::Prompt { name, .. } => name,
            Target::Resource { uri, .. } => uri,
            Target::Model { name, .. } | Target::Admin { name } => name,
        };
        Inspected {
            kind: target.kind(),
            name: name.to_string(),
            server: target.server().cloned(),
        }
    }
}

/// What the inspectors noted about one call: what they found (for the
/// audit records), and the holds they asked for.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub findings: Vec<Noted>,
    pub holds: Vec<Hold>,
    /// A payload was longer than an inspector reads: the rest passed
    /// unread (by its settings), in this direction.
    pub truncated: Vec<&'static str>,
    /// Bytes read so far, per direction (for an inspector's bound).
    pub scanned_input: usize,
    pub scanned_output: usize,
    /// Text an inspector reads whole once every part was shown.
    pub gathered: Gathered,
}

/// Text an inspector gathers from the parts of one direction (or of one
/// streamed chunk) to judge it whole when the last part was shown (an
/// injection split over two content blocks is one text), with where each
/// piece came from: its byte offset in `text` and its place (as
/// [`Noted::at`]). Emptied when judged.
#[derive(Debug, Default, Clone)]
pub struct Gathered {
    pub text: String,
    pub pieces: Vec<(usize, String)>,
}

impl Gathered {
    /// Add a piece, apart from the one before so words do not run together.
    pub fn push(&mut self, at: String, text: &str) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.pieces.push((self.text.len(), at));
        self.text.push_str(text);
    }

    /// The place of the piece holding byte `offset`.
    pub fn place(&self, offset: usize) -> &str {
        let i = self.pieces.partition_point(|(start, _)| *start <= offset);
        self.pieces
            .get(i.saturating_sub(1))
            .map_or("", |(_, at)| at.as_str())
    }
}

/// One kind of finding in one part of a call, never the matched text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Noted {
    /// The inspector's rule that decided what to do with it (or the
    /// inspector, when no rule did).
    pub rule: String,
    /// The detector family and the finding's type.
    pub detector: &'static str,
    pub kind: Arc<str>,
    /// `input` or `output`.
    pub direction: &'static str,
    /// Where: a JSON path into the arguments (`$.to`), or the part's
    /// position in the result (`part 2`).
    pub at: String,
    pub count: u32,
    /// The highest score among them (1.0 for a rule whose checks passed).
    pub score: f32,
    /// What was done: `record`, `redact`, `approve`, `block`.
    pub action: &'static str,
}

/// An inspector asks that the call wait for an approver group (its
/// finding's `approve` action); the await-approval stage holds it like a
/// policy's approval gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    /// The rule that asks (`guardrails:<rule>`), as the gate's name.
    pub rule: String,
    pub group: String,
    /// Shown to approvers and the caller: the finding types, never the text.
    pub reason: String,
}

/// A stage that reads a call's payload and may rewrite it (mask a secret)
/// or refuse the call (return an error, usually [`CallError::Refused`]).
/// Input is inspected after authorize (guardrails never see calls the
/// policies refuse) and before approval, so approvers, the `decided`
/// record and the upstream all see the rewritten input; output is
/// inspected as it comes back, chunk by chunk for a stream.
pub trait Inspect: Send + Sync {
    /// Its name, in audit records of the calls it refuses.
    fn name(&self) -> &str;

    /// Whether it may rewrite calls to `target`. A front end that forwards
    /// bytes as they came (the MCP fast lane) cannot apply a rewrite, so it
    /// sends such calls the typed way.
    fn rewrites(&self, target: &Target<'_>) -> bool;

    /// Read (and maybe rewrite) part number `at` of the input of `call`,
    /// noting what it finds in `report`.
    fn input(
        &self,
        call: &Inspected,
        at: usize,
        part: Part<'_>,
        report: &mut Report,
    ) -> Result<(), CallError>;

    /// Read (and maybe rewrite) part number `at` of a call's result, or of
    /// one chunk of a streamed result.
    fn output(
        &self,
        call: &Inspected,
        at: usize,
        part: Part<'_>,
        report: &mut Report,
    ) -> Result<(), CallError>;

    /// Every part of a call's input was shown: judge what must be read
    /// whole ([`Report::gathered`]). Nothing by default.
    fn finish_input(&self, _call: &Inspected, _report: &mut Report) -> Result<(), CallError> {
        Ok(())
    }

    /// Every part of a result (or of one streamed chunk) was shown.
    fn finish_output(&self, _call: &Inspected, _report: &mut Report) -> Result<(), CallError> {
        Ok(())
    }
}
