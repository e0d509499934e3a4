//! What toolgate does with what its detectors find: the reviewable file
//! `policies/guardrails.toml`, validated at start, on reload and by
//! `toolgate check`, every error at once with its file and line.
//!
//! ```toml
//! [scan]
//! max_bytes = 1048576       # per call and direction; beyond it, `over_limit`
//! over_limit = "block"      # "block" (fail closed) or "record"
//!
//! [[rule]]
//! name = "no-secrets-out"   # in tool errors and audit records
//! direction = "input"       # "input" (arguments, prompts), "output" (results), "both"
//! servers = ["*"]           # server name globs (default: all)
//! tools = ["*"]             # exposed name globs (default: all)
//! trusted = false           # only servers (not) marked trusted (default: either)
//! calls = ["mcp"]           # "mcp" (tools, resources, prompts), "llm" (model calls; default: both)
//! find = ["secrets"]        # "detector" or "detector:type" globs
//! min_score = 0.0           # findings scored below are ignored by this rule
//! action = "block"          # "block", "redact", "approve", "record"
//! approver_group = "security"   # with "approve"
//! ```
//!
//! For each finding the first rule that matches it (in file order) says
//! what to do, so specific rules go first; a finding no rule matches is
//! recorded. A call's action is the strictest of its findings':
//! block, then approve, then redact, then record.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;

use crate::config::glob_match;

/// Which way a payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// What the caller sends: arguments, prompts.
    Input,
    /// What comes back: results, completions.
    Output,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// What to do with a finding, weakest first (the order is the strictness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Pass it on, and record the finding.
    Record,
    /// Replace the match with `[REDACTED:type]` and pass the rest on.
    Redact,
    /// Hold the call until an approver group lets it through.
    Approve,
    /// Refuse the call (input: never forwarded; output: never returned).
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Record => "record",
            Action::Redact => "redact",
            Action::Approve => "approve",
            Action::Block => "block",
        }
    }
}

/// Where a rule applies, and what it does.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub directions: Vec<Direction>,
    pub servers: Vec<String>,
    pub tools: Vec<String>,
    pub trusted: Option<bool>,
    /// Only MCP calls (`Some(false)`) or only LLM calls (`Some(true)`).
    pub llm: Option<bool>,
    pub find: Vec<String>,
    pub min_score: f32,
    pub action: Action,
    pub approver_group: Option<String>,
    /// Where it is written, for messages.
    pub line: usize,
}

/// What a call is about, as rules match it.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub server: Option<&'a str>,
    pub tool: &'a str,
    pub trusted: bool,
    /// An LLM call (its `tool` is the model name; it has no server).
    pub llm: bool,
}

impl Rule {
    /// Whether the rule covers calls to `scope` in `direction` at all.
    pub fn covers(&self, scope: &Scope<'_>, direction: Direction) -> bool {
        self.directions.contains(&direction)
            && self.trusted.is_none_or(|t| t == scope.trusted)
            && self.llm.is_none_or(|l| l == scope.llm)
            && (self.servers.is_empty()
                || scope
                    .server
                    .is_some_and(|s| self.servers.iter().any(|g| glob_match(g, s))))
            && (self.tools.is_empty() || self.tools.iter().any(|g| glob_match(g, scope.tool)))
    }

    /// Whether the rule takes a finding of `detector`:`kind` scored `score`.
    pub fn takes(&self, detector: &str, kind: &str, score: f32) -> bool {
        score >= self.min_score
            && self.find.iter().any(|g| match g.split_once(':') {
                Some((d, k)) => glob_match(d, detector) && glob_match(k, kind),
                None => glob_match(g, detector),
            })
    }

    /// Whether the rule may take any finding of `detector`.
    pub fn finds(&self, detector: &str) -> bool {
        self.find
            .iter()
            .any(|g| glob_match(g.split_once(':').map_or(g.as_str(), |(d, _)| d), detector))
    }
}

/// The scan limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most bytes scanned per call and direction.
    pub max_bytes: usize,
    /// What a payload over `max_bytes` gets: `Block` (fail closed) or
    /// `Record` (the unscanned rest passes, and the record says so).
    pub over_limit: Action,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            over_limit: Action::Block,
        }
    }
}

/// 1 MiB per call and direction.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// The most `max_bytes` may be set to (the scan must stay bounded in time).
pub const MAX_MAX_BYTES: usize = 64 << 20;

/// A parsed `guardrails.toml`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub limits: Limits,
    pub rules: Vec<Rule>,
}

impl Policy {
    /// What to do with a finding in a call to `scope`: the first rule
    /// that covers the call and takes the finding, or `None` (recorded).
    pub fn rule_for(
        &self,
        scope: &Scope<'_>,
        direction: Direction,
        detector: &str,
        kind: &str,
        score: f32,
    ) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.covers(scope, direction) && r.takes(detector, kind, score))
    }

    /// Whether any rule covers calls to `scope` in `direction`: a call
    /// none covers is not scanned at all.
    pub fn covers(&self, scope: &Scope<'_>, direction: Direction) -> bool {
        self.rules.iter().any(|r| r.covers(scope, direction))
    }

    /// Whether any rule for a call to `scope` going `direction` may take
    /// findings of `detector` (a detector no rule wants is not run).
    pub fn wants(&self, scope: &Scope<'_>, direction: Direction, detector: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.covers(scope, direction) && r.finds(detector))
    }
}

/// One problem in a guardrails file.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// The detectors and finding types a rule may name.
pub trait Known {
    /// Whether `detector` exists.
    fn detector(&self, detector: &str) -> bool;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    scan: Option<toml::Spanned<RawScan>>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    max_bytes: Option<usize>,
    over_limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    direction: Option<String>,
    #[serde(default)]
    servers: Vec<String>,
    #[serde(default)]
    tools: Vec<String>,
    trusted: Option<bool>,
    calls: Option<Vec<String>>,
    #[serde(default)]
    find: Vec<String>,
    min_score: Option<f32>,
    action: Option<String>,
    approver_group: Option<String>,
}

/// Parse `text` (the file `file`); every problem, each with its line.
pub fn parse(file: &str, text: &str, known: &dyn Known) -> Result<Policy, Vec<PolicyError>> {
    let error = |span: Option<Range<usize>>, message: String| PolicyError {
        file: file.to_string(),
        line: span.map_or(0, |s| line_of(text, s.start)),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        vec![error(e.span(), message)]
    })?;
    let mut errors = Vec::new();
    let mut limits = Limits::default();
    if let Some(scan) = raw.scan {
        let span = scan.span();
        let scan = scan.into_inner();
        if let Some(max) = scan.max_bytes {
            if max == 0 || max > MAX_MAX_BYTES {
                errors.push(error(
                    Some(span.clone()),
                    format!("scan.max_bytes = {max}: use 1 to {MAX_MAX_BYTES} (64 MiB)"),
                ));
            } else {
                limits.max_bytes = max;
            }
        }
        match scan.over_limit.as_deref() {
            None => {}
            Some("block") => limits.over_limit = Action::Block,
            Some("record") => limits.over_limit = Action::Record,
            Some(other) => errors.push(error(
                Some(span),
                format!("scan.over_limit = \"{other}\": use \"block\" or \"record\""),
            )),
        }
    }
    let mut names = std::collections::HashMap::new();
    let mut rules = Vec::new();
    for spanned in raw.rule {
        let span = spanned.span();
        let line = line_of(text, span.start);
        let raw = spanned.into_inner();
        let mut problem = |message: String| errors.push(error(Some(span.clone()), message));
        let Some(name) = raw.name.filter(|n| !n.trim().is_empty()) else {
            problem("a rule needs a `name` (it is shown in tool errors and audit records)".into());
            continue;
        };
        if let Some(first) = names.insert(name.clone(), line) {
            problem(format!(
                "rule `{name}` is already defined at line {first}: give each rule its own name"
            ));
        }
        let directions = match raw.direction.as_deref() {
            Some("input") => vec![Direction::Input],
            Some("output") => vec![Direction::Output],
            Some("both") => vec![Direction::Input, Direction::Output],
            Some(other) => {
                problem(format!(
                    "rule `{name}`: direction = \"{other}\": use \"input\", \"output\" or \"both\""
                ));
                continue;
            }
            None => {
                problem(format!(
                    "rule `{name}` needs a `direction`: \"input\", \"output\" or \"both\""
                ));
                continue;
            }
        };
        let action = match raw.action.as_deref() {
            Some("block") => Action::Block,
            Some("redact") => Action::Redact,
            Some("approve") => Action::Approve,
            Some("record") => Action::Record,
            Some(other) => {
                problem(format!(
                    "rule `{name}`: action = \"{other}\": use \"block\", \"redact\", \"approve\" or \"record\""
                ));
                continue;
            }
            None => {
                problem(format!(
                    "rule `{name}` needs an `action`: \"block\", \"redact\", \"approve\" or \"record\""
                ));
                continue;
            }
        };
        match (action, &raw.approver_group) {
            (Action::Approve, None) => problem(format!(
                "rule `{name}`: action \"approve\" needs an `approver_group` (who approves the held call)"
            )),
            (Action::Approve, Some(_)) | (_, None) => {}
            (_, Some(_)) => problem(format!(
                "rule `{name}`: `approver_group` is only for action \"approve\""
            )),
        }
        if raw.find.is_empty() {
            problem(format!(
                "rule `{name}` needs `find`: detectors or detector:type globs, e.g. [\"secrets\", \"pii:card\"]"
            ));
        }
        for pattern in &raw.find {
            let detector = pattern.split_once(':').map_or(pattern.as_str(), |(d, _)| d);
            if !detector.contains('*') && !known.detector(detector) {
                problem(format!(
                    "rule `{name}`: find = \"{pattern}\": there is no detector `{detector}` (secrets, pii, hidden, injection)"
                ));
            }
            if detector == "injection" && action == Action::Redact {
                problem(format!(
                    "rule `{name}`: action \"redact\" cannot apply to injection findings (a score marks a passage, not exact text to mask): use \"block\", \"approve\" or \"record\""
                ));
            }
        }
        for glob in raw.servers.iter().chain(&raw.tools) {
            if glob.is_empty() {
                problem(format!(
                    "rule `{name}`: an empty glob matches nothing; use \"*\" for all"
                ));
            }
        }
        let llm = match raw.calls.as_deref() {
            None => None,
            Some([one]) if one == "mcp" => Some(false),
            Some([one]) if one == "llm" => Some(true),
            Some(both)
                if both.len() == 2
                    && both.iter().all(|c| c == "mcp" || c == "llm")
                    && both[0] != both[1] =>
            {
                None
            }
            Some(other) => {
                problem(format!(
                    "rule `{name}`: calls = {other:?}: use [\"mcp\"] (tools, resources, prompts), [\"llm\"] (model calls) or leave it out for both"
                ));
                None
            }
        };
        let min_score = raw.min_score.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_score) {
            problem(format!(
                "rule `{name}`: min_score = {min_score}: use a score from 0 to 1"
            ));
        }
        rules.push(Rule {
            name,
            directions,
            servers: raw.servers,
            tools: raw.tools,
            trusted: raw.trusted,
            llm,
            find: raw.find,
            min_score,
            action,
            approver_group: raw.approver_group,
            line,
        });
    }
    if errors.is_empty() {
        Ok(Policy { limits, rules })
    } else {
        Err(errors)
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
