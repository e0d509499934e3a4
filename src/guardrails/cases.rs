//! Table-driven tests of a guardrails set: `policies/tests/guardrails/*.toml`,
//! run by `toolgate guardrails test` (and `tests/run.sh`). Each case is a
//! payload going one way to one server and tool, and what the set must do
//! with it, so a change to `guardrails.toml` or to a rule file is checked
//! against what a security team meant, as `toolgate policy test` does for
//! the Cedar policies:
//!
//! ```toml
//! [[case]]
//! name = "a GitHub token does not go to an untrusted server"
//! direction = "input"          # or "output" (a result)
//! server = "github"            # omitted: a call with no server facts
//! trusted = false
//! tool = "github__create_issue"
//! payload = { body = "token ghp_…" }   # arguments, or a result's text
//! expect = "block"             # "pass", "record", "redact", "approve", "block"
//! rules = ["no-secrets-to-untrusted-servers"]   # optional: among the deciders
//! types = ["secrets:github-pat-classic"]        # optional: among the findings
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::Set;
use super::policy::Direction;
use crate::call::{Inspected, Part, Report as Found};
use crate::config::ServerFacts;

/// Where the cases live, in the policies directory.
pub const TESTS_DIR: &str = "tests/guardrails";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    name: String,
    #[serde(default = "input")]
    direction: Way,
    server: Option<String>,
    #[serde(default)]
    trusted: bool,
    #[serde(default)]
    tool: String,
    payload: toml::Value,
    expect: Outcome,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    types: Vec<String>,
}

fn input() -> Way {
    Way::Input
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Way {
    Input,
    Output,
}

/// What a set did with a payload, weakest first.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing found.
    Pass,
    /// Found, passed on unchanged.
    Record,
    /// Found and masked in what goes on.
    Redact,
    /// Held for an approver group.
    Approve,
    /// Refused.
    Block,
}

/// What a run of the cases came to.
pub use crate::util::cases::Report;

impl crate::util::cases::Named for Case {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The case files: `files`, or every `*.toml` in `policies/tests/guardrails/`.
pub fn test_files(policies_dir: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    crate::util::cases::files(&policies_dir.join(TESTS_DIR), files)
}

/// Run every case of every file against `set`.
pub fn run_tests(set: &Set, files: &[PathBuf]) -> Report {
    crate::util::cases::run(files, |case: &Case| case.check(set))
}

impl Case {
    fn check(&self, set: &Set) -> Result<(), String> {
        let mut payload = serde_json::to_value(&self.payload)
            .map_err(|e| format!("payload: not representable as JSON: {e}"))?;
        let call = Inspected {
            kind: "tool",
            name: self.tool.clone(),
            server: self.server.as_ref().map(|name| ServerFacts {
                name: name.clone(),
                trusted: self.trusted,
                ..Default::default()
            }),
        };
        let direction = match self.direction {
            Way::Input => Direction::Input,
            Way::Output => Direction::Output,
        };
        let (outcome, found) = judge(set, &call, direction, &mut payload);
        let deciders: BTreeSet<&str> = found.findings.iter().map(|n| n.rule.as_str()).collect();
        let types: BTreeSet<String> = found
            .findings
            .iter()
            .map(|n| format!("{}:{}", n.detector, n.kind))
            .collect();
        let seen = || {
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            format!(
                "found [{}] by rules [{}]",
                types.join(", "),
                deciders.iter().copied().collect::<Vec<_>>().join(", ")
            )
        };
        if outcome != self.expect {
            return Err(format!(
                "expected {:?}, got {outcome:?}: {}",
                self.expect,
                seen()
            ));
        }
        if let Some(rule) = self.rules.iter().find(|r| !deciders.contains(r.as_str())) {
            return Err(format!("rule `{rule}` did not decide: {}", seen()));
        }
        if let Some(kind) = self.types.iter().find(|t| !types.contains(*t)) {
            return Err(format!("no `{kind}` finding: {}", seen()));
        }
        Ok(())
    }
}

/// What `set` does with `payload` going `direction` on `call`: the
/// pipeline's inspect stage for one part, then the whole-text judges.
/// `payload` is left as the set would pass it on.
pub fn judge(
    set: &Set,
    call: &Inspected,
    direction: Direction,
    payload: &mut Value,
) -> (Outcome, Found) {
    let mut found = Found::default();
    let part = match payload {
        Value::Object(object) => Part::Object(object),
        Value::String(text) => Part::Text(text),
        other => Part::Value(other),
    };
    let verdict = set
        .inspect(direction, call, 0, part, &mut found)
        .and_then(|()| set.finish(direction, call, &mut found));
    let outcome = if verdict.is_err() {
        Outcome::Block
    } else if !found.holds.is_empty() {
        Outcome::Approve
    } else if found.findings.iter().any(|n| n.action == "redact") {
        Outcome::Redact
    } else if found.findings.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Record
    };
    (outcome, found)
}

#[cfg(test)]
#[path = "cases_tests.rs"]
mod tests;
