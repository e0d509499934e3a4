//! The guardrails as the pipeline's inspect stages see them
//! ([`Guardrails`], a [`crate::call::Inspect`]): every string of a call's
//! payload goes through the detectors, and each finding through the
//! policy ([`super::policy`]), which says what to do with it.
//!
//! - A call no rule covers (its server, tool and direction) is not
//!   scanned at all.
//! - `record`: noted in the call's audit records (type, where, how many),
//!   never the matched text.
//! - `redact`: the match is replaced with `[REDACTED:type]` in the payload
//!   that goes on (the arguments forwarded, the result returned).
//! - `approve`: the call waits for the rule's approver group, like a
//!   policy's approval gate; approvers see the finding types.
//! - `block`: the call is refused with a tool error that names the rule
//!   and the finding types; an input never reaches the upstream, an
//!   output never reaches the caller.
//!
//! At most `scan.max_bytes` are scanned per call and direction; beyond
//! that, `scan.over_limit` blocks the call (the default: what cannot be
//! read does not pass) or lets the rest pass unread, noted in the record.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;

use super::injection::{self, Injection};
use super::policy::{Action, Direction, Policy, Scope};
use super::{Detector, Finding};
use crate::audit::redact::{Found, Mask};
use crate::call::{CallError, Hold, Inspect, Inspected, Noted, Part, Report, Target};

/// Deepest a JSON payload is walked (serde_json refuses deeper input).
const MAX_DEPTH: usize = 128;

/// The guardrails in force, as one inspector: a [`Set`] swapped whole
/// when its files change (see [`super::load`]); each part is inspected
/// under the set in force when it is read.
pub struct Guardrails {
    set: ArcSwap<Set>,
}

impl Guardrails {
    pub fn new(set: Set) -> Self {
        Guardrails {
            set: ArcSwap::from_pointee(set),
        }
    }

    /// The set in force.
    pub fn current(&self) -> Arc<Set> {
        self.set.load_full()
    }

    /// Put `set` in force (calls already inspected keep what they got).
    pub fn replace(&self, set: Set) {
        self.set.store(Arc::new(set));
    }
}

/// The detectors and the policy, loaded together.
pub struct Set {
    /// Detectors that find spans in each string.
    detectors: Vec<Box<dyn Detector>>,
    /// The detector that judges a direction's text whole.
    injection: Option<Injection>,
    policy: Policy,
    /// SHA-256 over the files it was loaded from (for reloads).
    pub digest: [u8; 32],
}

impl Set {
    pub fn new(
        detectors: Vec<Box<dyn Detector>>,
        injection: Option<Injection>,
        policy: Policy,
    ) -> Self {
        Set {
            detectors,
            injection,
            policy,
            digest: [0; 32],
        }
    }

    /// Every finding in `text`, spans into `text`: the detectors read it
    /// normalised (invisible characters out, look-alikes folded), so a
    /// zero-width space or fullwidth letters do not dodge a rule. Not the
    /// injection model, which reads a call's text whole ([`Set::finish`]).
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        super::hidden::scan_normalised(&self.detectors, text, &mut found);
        found
    }

    /// The injection detector, when loaded.
    pub fn injection(&self) -> Option<&Injection> {
        self.injection.as_ref()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Inspect one part of a call going `direction`: what the pipeline's
    /// inspect stages do, and `toolgate guardrails scan`.
    pub fn inspect(
        &self,
        direction: Direction,
        call: &Inspected,
        at: usize,
        part: Part<'_>,
        report: &mut Report,
    ) -> Result<(), CallError> {
        let scope = scope(call);
        if !self.policy.covers(&scope, direction) {
            return Ok(());
        }
        // A model call's input is the caller's own prompt, but for what it
        // quotes (tool results, retrieved documents): only that is judged
        // for injection. Everything else is (a tool's result, a completion).
        let judged =
            matches!(part, Part::Quoted(_)) || !(scope.llm && direction == Direction::Input);
        let gather = judged
            && self.injection.is_some()
            && self.policy.wants(&scope, direction, injection::NAME);
        let mut pass = Pass {
            guardrails: self,
            scope,
            direction,
            report,
            strictest: None,
            gather,
        };
        match part {
            Part::Text(text) => pass.text(text, &format!("part {at}"))?,
            Part::Value(value) | Part::Quoted(value) => {
                pass.value(value, &format!("part {at}"), 0)?
            }
            Part::Object(object) => {
                for (key, value) in object.iter_mut() {
                    pass.value(value, &format!("$.{key}"), 1)?;
                }
            }
        }
        pass.finish()
    }

    /// Every part of a call going `direction` was inspected: judge the
    /// text gathered from them whole (the injection model), then forget it.
    pub fn finish(
        &self,
        direction: Direction,
        call: &Inspected,
        report: &mut Report,
    ) -> Result<(), CallError> {
        let gathered = std::mem::take(&mut report.gathered);
        let Some(injection) = &self.injection else {
            return Ok(());
        };
        if gathered.text.is_empty() {
            return Ok(());
        }
        let Some(finding) = injection.scan(&gathered.text) else {
            return Ok(());
        };
        let mut pass = Pass {
            guardrails: self,
            scope: scope(call),
            direction,
            report,
            strictest: None,
            gather: false,
        };
        let at = gathered.place(finding.span.start).to_string();
        // A score marks a passage, not text to mask: a rule that would
        // redact it (through a glob) blocks instead.
        if pass.decide(finding, &at).is_some() {
            pass.strictest = Some((
                Action::Block,
                "guardrails".to_string(),
                vec!["prompt-injection".into()],
            ));
        }
        pass.finish()
    }
}

fn scope(call: &Inspected) -> Scope<'_> {
    Scope {
        server: call.server.as_ref().map(|s| s.name.as_str()),
        tool: &call.name,
        trusted: call.server.as_ref().is_some_and(|s| s.trusted),
        llm: call.kind == "model",
    }
}

/// One part of one call, being scanned.
struct Pass<'a> {
    guardrails: &'a Set,
    scope: Scope<'a>,
    direction: Direction,
    report: &'a mut Report,
    /// The strictest action so far and the rule and types behind it.
    strictest: Option<(Action, String, Vec<Arc<str>>)>,
    /// Gather the strings read for the injection model.
    gather: bool,
}

impl Pass<'_> {
    fn value(&mut self, value: &mut Value, at: &str, depth: usize) -> Result<(), CallError> {
        if depth > MAX_DEPTH {
            return Err(self.refuse(
                "guardrails",
                format!("the {} is nested too deeply to inspect", self.what()),
            ));
        }
        match value {
            Value::String(text) => self.text(text, at),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &format!("{at}[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            Value::Object(object) => {
                for (key, item) in object.iter_mut() {
                    self.value(item, &format!("{at}.{key}"), depth + 1)?;
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    fn text(&mut self, text: &mut String, at: &str) -> Result<(), CallError> {
        let limits = self.guardrails.policy.limits;
        let scanned = match self.direction {
            Direction::Input => &mut self.report.scanned_input,
            Direction::Output => &mut self.report.scanned_output,
        };
        if *scanned + text.len() > limits.max_bytes {
            return match limits.over_limit {
                Action::Block => Err(self.refuse(
                    "guardrails",
                    format!(
                        "the {} is larger than guardrails scan ({} bytes, scan.max_bytes)",
                        self.what(),
                        limits.max_bytes
                    ),
                )),
                _ => {
                    let direction = self.direction.as_str();
                    if !self.report.truncated.contains(&direction) {
                        self.report.truncated.push(direction);
                    }
                    Ok(())
                }
            };
        }
        *scanned += text.len();
        let found = self.guardrails.scan(text);
        let mut redactions = Vec::new();
        for finding in found {
            if let Some(finding) = self.decide(finding, at) {
                redactions.push(finding);
            }
        }
        redact(text, redactions);
        if self.gather {
            self.report.gathered.push(at.to_string(), text);
        }
        Ok(())
    }

    /// Apply the policy to one finding at `at`: note it, ask for a hold,
    /// keep the strictest action; the finding back when it is to be
    /// redacted.
    fn decide(&mut self, finding: Finding, at: &str) -> Option<Finding> {
        let rule = self.guardrails.policy.rule_for(
            &self.scope,
            self.direction,
            finding.detector,
            &finding.kind,
            finding.score,
        );
        let (action, rule_name) = match rule {
            Some(rule) => (rule.action, rule.name.clone()),
            None => (Action::Record, "guardrails".to_string()),
        };
        self.note(&rule_name, &finding, at, action);
        let kind = finding.kind.clone();
        if action == Action::Approve {
            let gate = format!("guardrails:{rule_name}");
            if let Some(rule) = rule
                && let Some(group) = &rule.approver_group
                && !self.report.holds.iter().any(|h| h.rule == gate)
            {
                self.report.holds.push(Hold {
                    rule: gate,
                    group: group.clone(),
                    reason: String::new(),
                });
            }
        }
        let stricter = self.strictest.as_ref().is_none_or(|(a, ..)| action > *a);
        if stricter {
            self.strictest = Some((action, rule_name, vec![kind]));
        } else if let Some((a, _, kinds)) = &mut self.strictest
            && *a == action
            && !kinds.contains(&kind)
        {
            kinds.push(kind);
        }
        (action == Action::Redact).then_some(finding)
    }

    /// Count a finding in the report (one entry per rule, type and place).
    fn note(&mut self, rule: &str, finding: &Finding, at: &str, action: Action) {
        let direction = self.direction.as_str();
        let same = self.report.findings.iter_mut().find(|n| {
            n.rule == rule
                && n.detector == finding.detector
                && n.kind == finding.kind
                && n.at == at
                && n.direction == direction
        });
        match same {
            Some(noted) => {
                noted.count += 1;
                noted.score = noted.score.max(finding.score);
            }
            None => self.report.findings.push(Noted {
                rule: rule.to_string(),
                detector: finding.detector,
                kind: finding.kind.clone(),
                direction,
                at: at.to_string(),
                count: 1,
                score: finding.score,
                action: action.as_str(),
            }),
        }
    }

    /// The part's verdict: a block refuses the call; holds get their
    /// reason (the finding types, never the text).
    fn finish(mut self) -> Result<(), CallError> {
        let Some((action, rule, kinds)) = self.strictest.take() else {
            return Ok(());
        };
        let kinds: Vec<&str> = kinds.iter().map(|k| &**k).collect();
        let what = format!("{} carries {}", self.what(), kinds.join(", "));
        for hold in &mut self.report.holds {
            if hold.reason.is_empty() {
                hold.reason = format!("guardrails: the {what}");
            }
        }
        match action {
            Action::Block => Err(self.refuse(&format!("guardrails:{rule}"), format!("the {what}"))),
            _ => Ok(()),
        }
    }

    fn what(&self) -> &'static str {
        match self.direction {
            Direction::Input => "input",
            Direction::Output => "result",
        }
    }

    fn refuse(&self, by: &str, reason: String) -> CallError {
        CallError::Refused {
            by: by.to_string(),
            reason,
        }
    }
}

/// Replace each finding's span with `[REDACTED:type]`; overlapping spans
/// are merged (the first type names the merged span).
fn redact(text: &mut String, mut findings: Vec<Finding>) {
    if findings.is_empty() {
        return;
    }
    findings.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
    let mut merged: Vec<(std::ops::Range<usize>, Arc<str>)> = Vec::new();
    for f in findings {
        let span = f.span.start.min(text.len())..f.span.end.min(text.len());
        match merged.last_mut() {
            Some((last, _)) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push((span, f.kind)),
        }
    }
    for (span, kind) in merged.into_iter().rev() {
        if text.is_char_boundary(span.start) && text.is_char_boundary(span.end) {
            text.replace_range(span, &format!("[REDACTED:{kind}]"));
        }
    }
}

impl Inspect for Guardrails {
    fn name(&self) -> &str {
        "guardrails"
    }

    /// Never in a way a front end cannot carry: a redaction rewrites
    /// strings inside JSON, which the MCP fast lane applies too (the
    /// arguments it forwards are the rewritten ones, and an answer it keeps
    /// as the upstream's JSON is shown whole and written back when
    /// changed). So guardrails keep calls on the lane.
    fn rewrites(&self, _target: &Target<'_>) -> bool {
        false
    }

    fn input(
        &self,
        call: &Inspected,
        at: usize,
        part: Part<'_>,
        report: &mut Report,
    ) -> Result<(), CallError> {
        self.set
            .load()
            .inspect(Direction::Input, call, at, part, report)
    }

    fn output(
        &self,
        call: &Inspected,
        at: usize,
        part: Part<'_>,
        report: &mut Report,
    ) -> Result<(), CallError> {
        self.set
            .load()
            .inspect(Direction::Output, call, at, part, report)
    }

    fn finish_input(&self, call: &Inspected, report: &mut Report) -> Result<(), CallError> {
        self.set.load().finish(Direction::Input, call, report)
    }

    fn finish_output(&self, call: &Inspected, report: &mut Report) -> Result<(), CallError> {
        self.set.load().finish(Direction::Output, call, report)
    }
}

/// What the audit trail keeps (argument copies, reasons, errors) is
/// masked with every detector of the set in force, whatever its rules do
/// with a call: a credential recorded, even in a call let through, is one
/// leaked.
impl Mask for Guardrails {
    fn find(&self, text: &str, found: &mut Vec<Found>) {
        let findings = self.set.load().scan(text);
        found.extend(findings.into_iter().map(|f| Found {
            span: f.span,
            kind: f.kind,
        }));
    }
}

#[cfg(test)]
#[path = "inspector_tests.rs"]
mod tests;
