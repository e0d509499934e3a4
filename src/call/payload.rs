//! A protocol-neutral view of what a call carries ([`Part`]), and the
//! stages that read and may rewrite it ([`Inspect`]): guardrails see text
//! and JSON values, never an MCP or provider type. A kind shows its parts
//! through [`super::CallKind::input_parts`] (arguments, prompts),
//! [`super::CallKind::output_parts`] (a result) and
//! [`super::CallKind::chunk_parts`] (each chunk of a streamed result); the
//! pipeline's inspect stages hand them to each inspector in turn.

use serde_json::{Map, Value};

use super::{CallError, Target};

/// One part of a payload, lent for reading and rewriting in place.
#[derive(Debug)]
pub enum Part<'a> {
    /// Text (a tool result's text block, a prompt, a completion's delta).
    Text(&'a mut String),
    /// A JSON value (structured content).
    Value(&'a mut Value),
    /// A JSON object (a call's arguments).
    Object(&'a mut Map<String, Value>),
}

impl Part<'_> {
    /// The same part, lent again (to the next inspector).
    pub fn reborrow(&mut self) -> Part<'_> {
        match self {
            Part::Text(text) => Part::Text(text),
            Part::Value(value) => Part::Value(value),
            Part::Object(object) => Part::Object(object),
        }
    }
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

    /// Read (and maybe rewrite) one part of a call's input.
    fn input(&self, part: Part<'_>) -> Result<(), CallError>;

    /// Read (and maybe rewrite) one part of a call's result, or of one
    /// chunk of a streamed result.
    fn output(&self, part: Part<'_>) -> Result<(), CallError>;
}
