//! Guardrails: detectors that read what a call carries (arguments,
//! results; later prompts and completions) and find credentials,
//! personal data, prompt injection and hidden text. They see text, never
//! a protocol's types: the pipeline's inspect stages hand them a call's
//! payload as [`crate::call::Part`]s.
//!
//! Each detector family is a file: [`secrets`] (credential formats, as
//! rules in data files), [`pii`] (emails, phone numbers, cards, IBANs, US
//! SSNs, IP addresses, user patterns), [`hidden`] (invisible and
//! look-alike characters, normalised before anything matches, and
//! reported as findings of their own) and [`injection`] (a model of ours
//! that scores text aimed at the agent's model). [`measure`] gives the
//! numbers (TPR, FPR, AUC) they are judged by.
//!
//! What toolgate does with findings (block, redact, hold for approval,
//! record) is the reviewable file `policies/guardrails.toml` ([`policy`]),
//! tested by the cases in `policies/tests/guardrails/` ([`cases`]).
//!
//! A [`Finding`] says what was found and where, never the matched text:
//! findings go to audit records and logs.

pub mod cases;
pub mod hidden;
pub mod injection;
pub mod inspector;
pub mod load;
pub mod measure;
pub mod pii;
pub mod policy;
pub mod secrets;

pub use inspector::{Guardrails, Set};

use std::ops::Range;
use std::sync::Arc;

/// What a detector found in a text: its type and where, never the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The detector family (`secrets`, `pii`, `hidden`, `injection`).
    pub detector: &'static str,
    /// The finding's type: a secret rule's id (`github-pat`), a PII type
    /// (`email`), `zero-width`, …
    pub kind: Arc<str>,
    /// Where, as byte offsets into the text the detector was given.
    pub span: Range<usize>,
    /// How sure: 1.0 for a rule whose checks all passed; a model's score
    /// otherwise.
    pub score: f32,
}

/// A family of detectors over text.
pub trait Detector: Send + Sync {
    /// The family's name, as in [`Finding::detector`].
    fn name(&self) -> &'static str;

    /// Append what it finds in `text` to `found`, spans as byte offsets
    /// into `text`.
    fn scan(&self, text: &str, found: &mut Vec<Finding>);
}
