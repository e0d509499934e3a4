//! The poisoning lint: what a tool definition says to the model that it
//! should not. Every string in a definition (title, description, each
//! parameter's description, default, enum and example, output schema,
//! annotation titles) and every parameter name is read, because a model
//! reads all of them and a reviewer reads few.
//!
//! | rule | what it finds | severity |
//! |---|---|---|
//! | `hidden-text` | zero-width, bidi and Unicode-tag characters, hidden HTML, base64 that decodes to text | quarantine (warn for a lone mark) |
//! | `injection` | the guardrails' injection model, over the definition's text (of [`INJECTION_MIN_WORDS`] words or more) | quarantine ≥ [`INJECTION_QUARANTINE`], warn ≥ [`INJECTION_WARN`] |
//! | `model-instruction` | orders to the model: hide things from the user, run something before any tool, markers such as `<IMPORTANT>`, overriding instructions | quarantine |
//! | `sensitive-file` | SSH keys, cloud credentials, MCP client configs, `.env` files | quarantine |
//! | `exfiltration` | blind copies, "send everything to …" | quarantine |
//! | `shadowing` | another server's tool, or the gateway itself, named in this tool's text | quarantine |
//! | `oversized` | more text than a reviewer reads | warn over [`WARN_BYTES`], quarantine over [`QUARANTINE_BYTES`] |
//!
//! The rules are ours, written from the published tool-poisoning,
//! shadowing and rug-pull write-ups; they run on the guardrails' normalised
//! text (look-alike letters folded, invisible characters removed), so a
//! homoglyph or a zero-width space does not split a phrase.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::guardrails::hidden::{self, Hidden};
use crate::guardrails::injection::Injection;
use crate::guardrails::{Detector, Finding as Found};

/// Injection score from which a definition is quarantined.
pub const INJECTION_QUARANTINE: f32 = 0.97;
/// Injection score from which a definition is reported.
pub const INJECTION_WARN: f32 = 0.85;
/// Fewest words of text the injection model reads: on a few words its
/// score says little (the phrase rules still apply).
pub const INJECTION_MIN_WORDS: usize = 8;
/// A definition's text (all its strings) over this many bytes is reported.
pub const WARN_BYTES: usize = 8 * 1024;
/// ... and over this many, quarantined.
pub const QUARANTINE_BYTES: usize = 64 * 1024;
/// Longest excerpt a finding quotes.
const EXCERPT: usize = 120;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Logged and shown on `/readyz`; the tool stays.
    Warn,
    /// The tool is held back until a reviewer approves its definition
    /// (where the server's `lint = "quarantine"`).
    Quarantine,
}

/// One thing the lint found in a definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LintFinding {
    pub rule: &'static str,
    pub severity: Severity,
    /// Where in the definition: `description`,
    /// `inputSchema.properties.to.description`, …
    pub at: String,
    /// What it is, in words.
    pub message: String,
    /// The passage, invisible characters shown as `\u{…}` (definitions
    /// are not secrets; a reviewer needs to see the words).
    pub excerpt: String,
}

/// A finding as stored with a definition and shown to reviewers.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StoredFinding {
    pub rule: String,
    pub severity: Severity,
    pub at: String,
    pub message: String,
    #[serde(default)]
    pub excerpt: String,
}

impl From<&LintFinding> for StoredFinding {
    fn from(f: &LintFinding) -> Self {
        StoredFinding {
            rule: f.rule.to_string(),
            severity: f.severity,
            at: f.at.clone(),
            message: f.message.clone(),
            excerpt: f.excerpt.clone(),
        }
    }
}

/// What a tool's text may name without shadowing anything: everything
/// else the gateway exposes.
#[derive(Debug, Default, Clone)]
pub struct Neighbours {
    /// Other servers' tools: exposed name (`mail__send_email`) and
    /// upstream name (`send_email`) → their server.
    pub tools: HashMap<String, String>,
    /// The linted server's own tools' upstream names (naming them is fine).
    pub own: Vec<String>,
}

impl Neighbours {
    /// The neighbours of `server` among `(server, exposed, upstream)`
    /// triples.
    pub fn of<'a>(
        server: &str,
        all: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Self {
        let mut n = Neighbours::default();
        for (s, exposed, upstream) in all {
            if s == server {
                n.own.push(upstream.to_string());
            } else {
                n.tools.insert(exposed.to_string(), s.to_string());
                // A plain word ("search", "list") names nothing in
                // particular; `send_email` or `readFile` does.
                if distinctive(upstream) {
                    n.tools.insert(upstream.to_string(), s.to_string());
                }
            }
        }
        n.tools.retain(|name, _| !n.own.iter().any(|o| o == name));
        n
    }
}

fn distinctive(name: &str) -> bool {
    name.len() >= 6
        && (name.contains('_')
            || name.contains('-')
            || name.chars().skip(1).any(|c| c.is_ascii_uppercase()))
}

/// The lint: its rules and, when the guardrails have one, the injection
/// model.
pub struct Linter {
    injection: Option<Injection>,
    hidden: Hidden,
}

struct Rule {
    id: &'static str,
    message: &'static str,
    re: Regex,
}

/// The phrase rules, over lower-cased normalised text.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |id, message, re: &str| Rule {
        id,
        message,
        re: Regex::new(re).unwrap_or_else(|e| unreachable!("lint rule {id}: {e}")),
    };
    vec![
        rule(
            "model-instruction",
            "tells the model to keep something from the user",
            r"\b(?:do not|don't|dont|never|must not|should not)\s+(?:\w+\s+){0,3}?(?:tell|inform|mention|reveal|show|alert|notify|disclose)\w*\b[^.\n]{0,60}\b(?:user|human|person|them)\b|\bwithout\s+(?:telling|informing|notifying|alerting|asking)\s+(?:the\s+)?(?:user|human)\b|\bthe\s+user\s+(?:must|should|need)\s+(?:not|never)\s+(?:know|see|notice|be\s+told)\b|\b(?:secretly|covertly|discreetly)\b|\bwithout\s+the\s+user'?s?\s+knowledge\b",
        ),
        rule(
            "model-instruction",
            "orders the model to do something before or instead of other tools",
            r"\bbefore\s+(?:using|calling|invoking|running|executing)\s+(?:any|every|each|all|another|other|the\s+other)\s+(?:\w+\s+)?(?:tools?|functions?)\b|\b(?:always|must)\s+(?:first\s+)?(?:call|use|invoke|run)\s+this\s+tool\s+(?:first|before)\b|\binstead\s+of\s+(?:any|every|all|the)\s+other\s+tools?\b|\bwhenever\s+(?:the\s+)?(?:user|you)\s+(?:calls?|uses?)\s+(?:any|another|the)\s+\w*\s*tool\b",
        ),
        rule(
            "model-instruction",
            "carries markup or phrases aimed at the model's instructions",
            r"</?\s*(?:important|system|instructions?|hidden|secret|admin|assistant)\s*>|\bignore\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier|other)\s+(?:instructions|rules|prompts?|guidelines)\b|\byou\s+are\s+now\b|\bnew\s+instructions\s*:|\bthis\s+is\s+(?:very\s+|extremely\s+)?important\s*[:!]|\b(?:very|extremely)\s+important\s*[:!]",
        ),
        rule(
            "sensitive-file",
            "refers to a file that holds credentials or agent configuration",
            r"~/\.ssh\b|\.ssh/|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|\bmcp\.json\b|\bclaude_desktop_config\b|\.cursor/|\.aws/credentials\b|\.config/gcloud\b|\.kube/config\b|\.netrc\b|\.npmrc\b|\.pypirc\b|\.git-credentials\b|/etc/(?:passwd|shadow)\b|(?:^|[\s'`\x22/])\.env\b|\bprivate\s+keys?\b|\bkeychain\b|\bwallet\.dat\b",
        ),
        rule(
            "exfiltration",
            "asks for data to be copied somewhere else",
            r"\bbcc\b|\bblind\s+(?:carbon\s+)?copy\b|\b(?:send|forward|copy|upload|post|email)\s+(?:a\s+copy\s+of\s+|all\s+|every\s+|the\s+(?:full\s+|entire\s+)?)?(?:\w+\s+){0,3}(?:to\s+)(?:the\s+)?(?:attacker|address|email|url|endpoint|server)\b[^.\n]{0,20}@|\b(?:pass|put|include|append|add)\s+(?:its|their|the)\s+(?:full\s+|entire\s+)?(?:contents?|text|data|output)\s+(?:as|in|into|to)\s+(?:the\s+)?['`\x22]?\w+['`\x22]?\s+(?:parameter|argument|field)\b",
        ),
    ]
});

static GATEWAY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\btoolgate\b").unwrap_or_else(|e| unreachable!("{e}")));
static IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z][A-Za-z0-9_-]{3,}").unwrap_or_else(|e| unreachable!("{e}"))
});

impl Linter {
    /// A lint with the injection model of the guardrails, if any.
    pub fn new(injection: Option<Injection>) -> Self {
        Linter {
            injection,
            hidden: Hidden::default(),
        }
    }

    /// Everything the lint finds in one tool definition (MCP `Tool` JSON),
    /// worst first.
    pub fn lint(&self, definition: &Value, neighbours: &Neighbours) -> Vec<LintFinding> {
        let mut texts: Vec<(String, &str)> = Vec::new();
        collect(definition, &mut String::new(), &mut texts);
        let mut found = Vec::new();
        let mut total = 0;
        for (at, text) in &texts {
            total += text.len();
            self.lint_text(at, text, neighbours, &mut found);
        }
        // One text, as the model reads the definition.
        let all: Vec<&str> = texts.iter().map(|(_, t)| *t).collect();
        let all = all.join("\n");
        if let Some(injection) = &self.injection
            && all.split_whitespace().count() >= INJECTION_MIN_WORDS
        {
            let best = injection.best(&all);
            let score = best.score;
            let severity = if score >= INJECTION_QUARANTINE {
                Some(Severity::Quarantine)
            } else if score >= INJECTION_WARN {
                Some(Severity::Warn)
            } else {
                None
            };
            if let Some(severity) = severity {
                found.push(LintFinding {
                    rule: "injection",
                    severity,
                    at: where_in(&texts, best.span.start),
                    message: format!("reads as a prompt injection (score {score:.2})"),
                    excerpt: excerpt(&all, best.span),
                });
            }
        }
        if total > WARN_BYTES {
            found.push(LintFinding {
                rule: "oversized",
                severity: if total > QUARANTINE_BYTES {
                    Severity::Quarantine
                } else {
                    Severity::Warn
                },
                at: String::new(),
                message: format!(
                    "{total} bytes of text, more than a reviewer reads (warn over {WARN_BYTES}, quarantine over {QUARANTINE_BYTES})"
                ),
                excerpt: String::new(),
            });
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.severity));
        merge_repeats(found)
    }

    fn lint_text(
        &self,
        at: &str,
        text: &str,
        neighbours: &Neighbours,
        found: &mut Vec<LintFinding>,
    ) {
        let mut hidden: Vec<Found> = Vec::new();
        self.hidden.scan(text, &mut hidden);
        for h in hidden {
            if h.kind.as_ref() == "variation-selector" {
                continue;
            }
            found.push(LintFinding {
                rule: "hidden-text",
                severity: if h.score >= 0.6 {
                    Severity::Quarantine
                } else {
                    Severity::Warn
                },
                at: at.to_string(),
                message: format!("hidden text ({})", h.kind),
                excerpt: excerpt(text, h.span),
            });
        }
        let normalised = hidden::normalise(text);
        let lower = normalised.as_str().to_lowercase();
        // Unicode-tag text decodes to instructions the model reads.
        let mut passages = vec![lower];
        for (_, decoded) in hidden::decode_unicode_tags(text) {
            passages.push(decoded.to_lowercase());
        }
        for passage in &passages {
            for rule in RULES.iter() {
                if let Some(m) = rule.re.find(passage) {
                    found.push(LintFinding {
                        rule: rule.id,
                        severity: Severity::Quarantine,
                        at: at.to_string(),
                        message: rule.message.to_string(),
                        excerpt: excerpt(passage, m.range()),
                    });
                }
            }
            if let Some(m) = GATEWAY.find(passage) {
                found.push(LintFinding {
                    rule: "shadowing",
                    severity: Severity::Quarantine,
                    at: at.to_string(),
                    message: "names the gateway itself".into(),
                    excerpt: excerpt(passage, m.range()),
                });
            }
        }
        if neighbours.tools.is_empty() {
            return;
        }
        let text = normalised.as_str();
        for m in IDENTIFIER.find_iter(text) {
            if let Some(server) = neighbours.tools.get(m.as_str()) {
                found.push(LintFinding {
                    rule: "shadowing",
                    severity: Severity::Quarantine,
                    at: at.to_string(),
                    message: format!("names `{}`, a tool of server `{server}`", m.as_str()),
                    excerpt: excerpt(text, m.range()),
                });
                break;
            }
        }
    }
}

/// One finding per rule, place and message: a run of zero-width spaces
/// between every word is one finding ("in 12 places"), not twelve.
fn merge_repeats(found: Vec<LintFinding>) -> Vec<LintFinding> {
    let mut merged: Vec<(LintFinding, usize)> = Vec::with_capacity(found.len());
    for f in found {
        match merged
            .iter_mut()
            .find(|(m, _)| m.rule == f.rule && m.at == f.at && m.message == f.message)
        {
            Some((_, n)) => *n += 1,
            None => merged.push((f, 1)),
        }
    }
    merged
        .into_iter()
        .map(|(mut f, n)| {
            if n > 1 {
                f.message = format!("{} (in {n} places)", f.message);
            }
            f
        })
        .collect()
}

/// Every string of a definition worth reading, and each parameter's name,
/// with where it is. Schema keywords whose values are syntax (`type`,
/// `$ref`, `format`, `pattern`, …) are skipped.
fn collect<'a>(value: &'a Value, path: &mut String, out: &mut Vec<(String, &'a str)>) {
    const SYNTAX: [&str; 8] = [
        "type", "$ref", "$schema", "$id", "format", "pattern", "name", "required",
    ];
    match value {
        Value::String(s) => out.push((path.clone(), s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                collect(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            let parameters = path.ends_with("properties");
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                if parameters {
                    out.push((format!("{path} (name)"), key));
                }
                let top_name = len == 0 && key == "name";
                let syntax = SYNTAX.contains(&key.as_str()) && !parameters;
                if !top_name && !syntax {
                    collect(item, path, out);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Which collected text the joined text's byte `offset` falls in.
fn where_in(texts: &[(String, &str)], offset: usize) -> String {
    let mut start = 0;
    for (at, text) in texts {
        let end = start + text.len() + 1;
        if offset < end {
            return at.clone();
        }
        start = end;
    }
    texts.last().map(|(at, _)| at.clone()).unwrap_or_default()
}

/// The passage around `span`, invisible and control characters escaped.
fn excerpt(text: &str, span: std::ops::Range<usize>) -> String {
    let mut start = span.start.saturating_sub(30);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (span.end + 30).min(text.len()).max(start);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let mut out = String::new();
    for c in text[start..end].chars() {
        if out.len() >= EXCERPT {
            out.push('…');
            break;
        }
        if c.is_control() && c != ' ' || is_invisible(c) {
            out.push_str(&format!("\\u{{{:X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_invisible(c: char) -> bool {
    matches!(c as u32, 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0xE0000..=0xE007F)
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
