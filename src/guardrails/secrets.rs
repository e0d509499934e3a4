//! The *secrets* detector: credential formats written as rules in TOML
//! files (the shipped set is `policies/guardrails/secrets.toml`; a user
//! adds or replaces rules with their own files in the same format), and
//! the compiled detector that runs them over a call's text.
//!
//! A rule file holds one `[[rule]]` table per credential format:
//!
//! ```toml
//! [[rule]]
//! id = "github-pat-classic"     # the finding's type; unique; [a-z0-9-]+
//! description = "GitHub personal access token (classic)"
//! regex = '''\bghp_[A-Za-z0-9]{36}\b'''   # Rust `regex` syntax
//! keywords = ["ghp_"]           # prefilter, case-insensitive
//! secret_group = 0              # the capture group that is the secret
//! min_entropy = 3.5             # optional, Shannon bits per char
//! checksum = "jwt"              # optional named validation
//! generic = false               # a catch-all that yields to specific rules
//! examples = ["ghp_..."]        # each yields exactly this rule's finding
//! counter_examples = ["ghp_x"]  # each yields no finding of this rule
//! ```
//!
//! How a scan runs: one Aho-Corasick automaton over every rule's keywords
//! (ASCII case-insensitive) reads the text once and marks the candidate
//! rules; only those run their regex. A keyword need not be the token's
//! prefix: a context word (`discord`, `okta`) makes a rule run only on a
//! text that mentions it. Each match's secret group then passes the
//! placeholder denylist (`changeme`, `${…}`, `<your-key>`, …), the rule's
//! entropy floor and its named check. Where matches of different rules
//! overlap, the most specific survives: a specific rule over a `generic`
//! one, then the rule with the longest keyword, then the longer span,
//! then the rule written first.
//!
//! Examples are part of a rule: [`Secrets::new`] runs every example and
//! counter-example, so a user's rule that misses its own example is an
//! error at its line when loaded, not a silent gap.
//!
//! Cost: the `regex` crate and Aho-Corasick are linear in the text, and
//! each candidate rule reads the text once, so a scan is
//! O(text × candidate rules). The caller caps the bytes handed to one
//! scan (the guardrails stage's per-call byte cap); inside, findings per
//! scan are capped at [`MAX_FINDINGS`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_automata::meta::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::{Detector, Finding};

mod parse;

pub use parse::parse_rules;

/// The shipped rule file's name, as shown in errors.
const SHIPPED_NAME: &str = "policies/guardrails/secrets.toml";

/// At most this many findings from one scan: a payload made of nothing
/// but tokens is reported, not enumerated without end.
pub const MAX_FINDINGS: usize = 1024;
/// The finding type of a text with more candidate secrets than a scan
/// looks at: the whole text.
pub const OVERFLOW: &str = "too-many-secrets";

/// At most this many matches (of all rules) are weighed against each
/// other in one scan; overlap resolution is quadratic in the kept ones,
/// so both stay bounded.
const MAX_CANDIDATES: usize = MAX_FINDINGS * 4;

/// Bytes before a match that a check may read (a key's prefix).
const KEY_CONTEXT_BYTES: usize = 32;

/// Longest keyword, example or description accepted in a rule file.
const MAX_FIELD_BYTES: usize = 4096;

/// Substrings (ASCII case-insensitive) that mark a matched value as a
/// placeholder or an indirection rather than a secret.
const PLACEHOLDERS: &[&str] = &[
    "example",
    "placeholder",
    "changeme",
    "change_me",
    "change-me",
    "changeit",
    "redacted",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yourpass",
    "dummy",
    "xxxx",
    "****",
    "....",
    "0000000000",
    "<",
    ">",
    "${",
    "{{",
    "$(",
    "%(",
    "process.env",
    "os.environ",
    "getenv",
    "env(",
    "secrets.",
    "vault:",
];

/// Values that are a placeholder when they are the whole secret, once
/// trailing digits and punctuation are dropped (`password1`, `admin!`).
const WEAK_VALUES: &[&str] = &[
    "",
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "admin",
    "root",
    "test",
    "testing",
    "guest",
    "user",
    "username",
    "demo",
    "default",
    "letmein",
    "qwerty",
    "token",
    "apikey",
    "api_key",
    "key",
    "postgres",
    "mysql",
    "redis",
    "none",
    "null",
    "nil",
    "undefined",
    "empty",
    "hunter",
    "foobar",
    "abc",
    "abcdef",
    "x",
    "xx",
    "xxx",
    "opensesame",
];

/// Key names whose values look random but are not credentials
/// (pagination cursors, CSRF nonces, model token counts).
const BENIGN_KEYS: &[&str] = &[
    "page_token",
    "pagetoken",
    "page-token",
    "next_token",
    "nexttoken",
    "continuation",
    "cursor",
    "csrf",
    "xsrf",
    "max_token",
    "maxtoken",
    "token_type",
    "tokentype",
    "token_count",
    "tokenizer",
    "sync_token",
    "secret_name",
    "secretname",
    "secret_ref",
    "secretref",
];

/// The shipped rule file's text.
pub fn shipped() -> &'static str {
    include_str!("../../policies/guardrails/secrets.toml")
}

/// A problem in a rule file: where (file and line) and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleError {
    pub file: String,
    /// 1-based; 0 when the problem has no place in a file.
    pub line: usize,
    /// What is wrong, then how to fix it.
    pub message: String,
}

/// A named validation a match must pass beyond its regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Three base64url parts whose first decodes to a JSON object with a
    /// string `alg` and whose second decodes to a JSON object.
    Jwt,
    /// GitHub/npm-style tokens: the last 6 characters are the base62 CRC32
    /// of the 30 characters between the `xxx_` prefix and them.
    Base62Crc32,
    /// A value assigned to a password/token-like key: not an identifier
    /// (letters and `_-.:` only), a path, a URL or a number, and the key
    /// is not a pagination cursor or a CSRF nonce.
    AssignmentValue,
    /// Base64 that decodes to `user:password` with a password.
    BasicAuth,
}

impl Check {
    const NAMES: &[(&str, Check)] = &[
        ("jwt", Check::Jwt),
        ("base62-crc32", Check::Base62Crc32),
        ("assignment-value", Check::AssignmentValue),
        ("basic-auth", Check::BasicAuth),
    ];

    fn parse(name: &str) -> Option<Check> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }

    /// `secret` is the secret group, `whole` the whole match and a few
    /// bytes before it.
    fn passes(self, secret: &str, whole: &str) -> bool {
        match self {
            Check::Jwt => jwt_is_valid(secret),
            Check::Base62Crc32 => base62_crc32_is_valid(secret),
            Check::AssignmentValue => {
                assignment_value_is_secret_like(secret) && !names_benign_key(whole)
            }
            Check::BasicAuth => basic_auth_has_password(secret),
        }
    }
}

/// One credential format, parsed and with its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The finding's type (`github-pat-classic`).
    pub id: Arc<str>,
    pub description: String,
    pub regex: Regex,
    /// Lowercased; the rule runs only when one occurs in the text. Empty
    /// only with [`Rule::no_keywords_because`].
    pub keywords: Vec<String>,
    pub no_keywords_because: Option<String>,
    /// The capture group that is the secret (0: the whole match).
    pub secret_group: usize,
    pub min_entropy: Option<f64>,
    pub check: Option<Check>,
    /// A catch-all (`password=…`): loses to any specific rule it overlaps.
    pub generic: bool,
    pub examples: Vec<String>,
    pub counter_examples: Vec<String>,
    /// Where the rule was written, for errors about it.
    pub file: String,
    pub line: usize,
}

impl Rule {
    fn error(&self, message: String) -> RuleError {
        RuleError {
            file: self.file.clone(),
            line: self.line,
            message,
        }
    }

    /// How specific a match of this rule is, higher wins an overlap: a
    /// specific rule beats a generic one, then the longer keyword (a
    /// prefix such as `sk-ant-api03-` says more than `sk-`).
    fn specificity(&self) -> (bool, usize) {
        let longest = self.keywords.iter().map(String::len).max().unwrap_or(0);
        (!self.generic, longest)
    }
}

/// A user's rules over the shipped ones: a rule whose id exists replaces
/// it in place; new ids are appended in their order.
pub fn merge(base: Vec<Rule>, extra: Vec<Rule>) -> Vec<Rule> {
    let mut out = base;
    for rule in extra {
        match out.iter_mut().find(|r| r.id == rule.id) {
            Some(slot) => *slot = rule,
            None => out.push(rule),
        }
    }
    out
}

/// The compiled detector: rules, their keyword automaton and the
/// placeholder denylist, built once.
#[derive(Debug, Clone)]
pub struct Secrets {
    rules: Vec<Rule>,
    /// Every rule's keywords; pattern i belongs to `keyword_rule[i]`.
    keywords: AhoCorasick,
    keyword_rule: Vec<usize>,
    /// Rules with no keywords: candidates for every text.
    always: Vec<usize>,
    placeholders: AhoCorasick,
}

impl Secrets {
    /// Compile rules (already merged) into a detector, then run every
    /// rule's examples and counter-examples through it: a rule that does
    /// not find its examples is an error at its line.
    pub fn new(rules: Vec<Rule>) -> Result<Secrets, Vec<RuleError>> {
        let secrets = Secrets::compile(rules)?;
        let errors = secrets.check_examples();
        if errors.is_empty() {
            Ok(secrets)
        } else {
            Err(errors)
        }
    }

    /// Compile rules (already merged) into a detector, examples unread.
    fn compile(rules: Vec<Rule>) -> Result<Secrets, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        for r in &rules {
            if !seen.insert(r.id.clone()) {
                errors.push(r.error(format!(
                    "duplicate rule id `{}`; merge rule sets with `merge` so one replaces the other",
                    r.id
                )));
            }
        }
        let mut patterns = Vec::new();
        let mut keyword_rule = Vec::new();
        let mut always = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.keywords.is_empty() {
                always.push(i);
            }
            for k in &r.keywords {
                patterns.push(k.as_str());
                keyword_rule.push(i);
            }
        }
        let build = |pats: &[&str]| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                // A full DFA: every call's text goes through it, and the
                // shipped 245 keywords make a table of about 750 KB (twice
                // the NFA's speed in a debug build).
                .kind(Some(AhoCorasickKind::DFA))
                .build(pats)
        };
        let keywords = build(&patterns);
        let placeholders = build(PLACEHOLDERS);
        let (keywords, placeholders) = match (keywords, placeholders) {
            (Ok(k), Ok(p)) => (k, p),
            (Err(e), _) | (_, Err(e)) => {
                errors.push(RuleError {
                    file: String::new(),
                    line: 0,
                    message: format!("keywords do not compile: {e}; use fewer or shorter keywords"),
                });
                return Err(errors);
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Secrets {
            rules,
            keywords,
            keyword_rule,
            always,
            placeholders,
        })
    }

    /// The shipped rules, compiled once per process.
    pub fn shipped() -> Secrets {
        static SHIPPED: OnceLock<Secrets> = OnceLock::new();
        SHIPPED
            .get_or_init(|| {
                let rules = parse_rules(SHIPPED_NAME, shipped());
                // A compile-time value: the shipped file is compiled in and
                // this module's tests parse it and run every example
                // (`every_example_and_counter_example`), so it cannot fail
                // here. They are not run again at each start: that filled
                // every rule's search caches, whose pages the allocator
                // kept (MiB of idle memory), for a result the build knows.
                rules
                    .and_then(Secrets::compile)
                    .expect("the shipped secrets rules are valid")
            })
            .clone()
    }

    /// The rules, in file (then merge) order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every example that does not yield exactly its rule's finding, and
    /// every counter-example that yields it.
    pub fn check_examples(&self) -> Vec<RuleError> {
        let mut errors = Vec::new();
        let mut found = Vec::new();
        // Scanned with a copy: a regex's copy shares its compiled program
        // but not its search caches, which the examples would otherwise
        // fill for every rule and keep for good (in service most rules
        // never run: the keyword prefilter passes them by).
        let probe = self.clone();
        for r in &self.rules {
            for ex in &r.examples {
                found.clear();
                probe.scan(ex, &mut found);
                let kinds: Vec<&str> = found.iter().map(|f| &*f.kind).collect();
                if kinds.is_empty() || kinds.iter().any(|k| *k != &*r.id) {
                    errors.push(r.error(format!(
                        "rule `{}`: example {ex:?} yields {kinds:?}, not only `{}`; \
                         fix the regex or the example",
                        r.id, r.id
                    )));
                }
            }
            for ex in &r.counter_examples {
                found.clear();
                probe.scan(ex, &mut found);
                if found.iter().any(|f| f.kind == r.id) {
                    errors.push(r.error(format!(
                        "rule `{}`: counter-example {ex:?} is found; \
                         tighten the regex or fix the counter-example",
                        r.id
                    )));
                }
            }
        }
        errors
    }

    /// Which rules may match `text`: those with a keyword in it, and
    /// those without keywords. One pass over the text.
    fn candidates(&self, text: &str) -> Vec<bool> {
        let mut candidate = vec![false; self.rules.len()];
        for &i in &self.always {
            candidate[i] = true;
        }
        for m in self.keywords.find_overlapping_iter(text) {
            candidate[self.keyword_rule[m.pattern().as_usize()]] = true;
        }
        candidate
    }

    fn is_placeholder(&self, secret: &str) -> bool {
        if self.placeholders.is_match(secret) {
            return true;
        }
        // `$DB_PASS`, `%PASSWORD%`: a variable, not its value.
        if secret.starts_with('$') || secret.starts_with('%') {
            return true;
        }
        let core =
            secret.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
        WEAK_VALUES.iter().any(|w| core.eq_ignore_ascii_case(w))
    }

    /// One rule's accepted matches, as (secret span) ranges, appended to
    /// `out` until it holds [`MAX_CANDIDATES`].
    fn run_rule(&self, rule: &Rule, text: &str, out: &mut Vec<Candidate>) {
        let accepts = |start: usize, end: usize, whole: std::ops::Range<usize>| {
            let secret = &text[start..end];
            if self.is_placeholder(secret) {
                return false;
            }
            if rule.min_entropy.is_some_and(|min| entropy(secret) < min) {
                return false;
            }
            // The key before a value (`next_page_token`) may lie before
            // the match, which starts at the rule's keyword.
            let mut from = whole.start.saturating_sub(KEY_CONTEXT_BYTES);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let context = &text[from..whole.end];
            rule.check.is_none_or(|c| c.passes(secret, context))
        };
        let mut push = |start: usize, end: usize| {
            out.push(Candidate {
                rule: 0,
                start,
                end,
            });
            out.len() < MAX_CANDIDATES
        };
        // A text made of one token repeated stops being read at the cap.
        if rule.secret_group == 0 {
            for m in rule.regex.find_iter(text) {
                if accepts(m.start(), m.end(), m.range()) && !push(m.start(), m.end()) {
                    break;
                }
            }
        } else {
            for caps in rule.regex.captures_iter(text) {
                if let (Some(m), Some(whole)) =
                    (caps.get_group(rule.secret_group), caps.get_match())
                    && accepts(m.start, m.end, whole.range())
                    && !push(m.start, m.end)
                {
                    break;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    rule: usize,
    start: usize,
    end: usize,
}

impl Detector for Secrets {
    fn name(&self) -> &'static str {
        "secrets"
    }

    /// Overlapping matches of different rules: the most specific wins —
    /// a specific rule over a generic one, then the rule with the longer
    /// keyword, then the longer span, then the rule written first.
    /// Matches that do not overlap are all kept.
    fn scan(&self, text: &str, found: &mut Vec<Finding>) {
        if text.is_empty() || self.rules.is_empty() {
            return;
        }
        let candidate = self.candidates(text);
        let mut matches: Vec<Candidate> = Vec::new();
        let mut overflow = false;
        for (i, rule) in self.rules.iter().enumerate() {
            if !candidate[i] {
                continue;
            }
            let from = matches.len();
            self.run_rule(rule, text, &mut matches);
            for c in &mut matches[from..] {
                c.rule = i;
            }
            if matches.len() >= MAX_CANDIDATES {
                overflow = true;
                break;
            }
        }
        if overflow {
            // Past the caps, some rules did not run: the whole text is one
            // finding, so a flood of look-alikes cannot hide a secret from
            // a redaction or a block (fail closed).
            found.push(Finding {
                detector: "secrets",
                kind: OVERFLOW.into(),
                span: 0..text.len(),
                score: 1.0,
            });
            return;
        }
        if matches.is_empty() {
            return;
        }
        // Best first, then keep each that overlaps nothing kept.
        matches.sort_by(|a, b| {
            let (ra, rb) = (&self.rules[a.rule], &self.rules[b.rule]);
            rb.specificity()
                .cmp(&ra.specificity())
                .then((b.end - b.start).cmp(&(a.end - a.start)))
                .then(a.rule.cmp(&b.rule))
                .then(a.start.cmp(&b.start))
        });
        let mut kept: Vec<Candidate> = Vec::new();
        for c in matches {
            if kept.len() >= MAX_FINDINGS {
                found.push(Finding {
                    detector: "secrets",
                    kind: OVERFLOW.into(),
                    span: 0..text.len(),
                    score: 1.0,
                });
                return;
            }
            if kept.iter().all(|k| c.end <= k.start || k.end <= c.start) {
                kept.push(c);
            }
        }
        kept.sort_by_key(|c| c.start);
        found.extend(kept.into_iter().map(|c| Finding {
            detector: "secrets",
            kind: self.rules[c.rule].id.clone(),
            span: c.start..c.end,
            score: 1.0,
        }));
    }
}

/// Shannon entropy of the bytes, in bits per byte.
pub fn entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn jwt_is_valid(token: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |part: &str| -> Option<serde_json::Map<String, serde_json::Value>> {
        // Tolerate padding some encoders add.
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    };
    let Some(header) = decode(header) else {
        return false;
    };
    header.get("alg").is_some_and(serde_json::Value::is_string) && decode(payload).is_some()
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Base62 (`0-9A-Za-z`), left-padded with `0` to `width`.
fn base62(mut n: u32, width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    while n > 0 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

fn base62_crc32_is_valid(token: &str) -> bool {
    let Some((_, rest)) = token.split_once('_') else {
        return false;
    };
    if rest.len() < 7 || !rest.is_ascii() {
        return false;
    }
    let (body, sum) = rest.split_at(rest.len() - 6);
    base62(crc32(body.as_bytes()), 6) == sum
}

fn assignment_value_is_secret_like(v: &str) -> bool {
    if v.len() < 8 {
        return false;
    }
    let has_letter = v.bytes().any(|b| b.is_ascii_alphabetic());
    // An identifier or a code path (`read_write`, `self.token.clone`,
    // `String::new`), a number, a file path or a URL names a secret; it
    // is not one.
    let identifier_like = v
        .bytes()
        .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'-' | b'.' | b':'));
    let path_like = v.starts_with('/') || v.starts_with("./") || v.contains("://");
    // A type or a reference in code (`token: &HSTRING`, `*mut T`,
    // `super::Foundation::HANDLE`).
    let code_like = v.starts_with('&') || v.starts_with('*') || v.contains("::");
    has_letter && !identifier_like && !path_like && !code_like && !is_code_name(v)
}

/// `CONSTANT_CASE`, `snake_case` or a dotted path of identifiers
/// (`settings.API_KEY_V2`): names in code and config, digits or not.
fn is_code_name(v: &str) -> bool {
    let segment_ok = |seg: &str| {
        let mut bytes = seg.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if v.contains('.') {
        return v.split('.').all(segment_ok);
    }
    if !segment_ok(v) || !v.contains('_') {
        return false;
    }
    let letters = v.bytes().filter(u8::is_ascii_alphabetic);
    let (mut upper, mut lower) = (false, false);
    for b in letters {
        upper |= b.is_ascii_uppercase();
        lower |= b.is_ascii_lowercase();
    }
    // One case only, words joined by `_`: a name. Mixed case with `_` may
    // be a random token (base64url), so it is kept.
    !(upper && lower)
}

fn names_benign_key(whole: &str) -> bool {
    // The key is at the start; values are not searched.
    let key = whole.as_bytes();
    let key = &key[..key.len().min(KEY_CONTEXT_BYTES + 48)];
    BENIGN_KEYS.iter().any(|k| {
        key.windows(k.len())
            .any(|w| w.eq_ignore_ascii_case(k.as_bytes()))
    })
}

fn basic_auth_has_password(b64: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let Ok(bytes) = STANDARD.decode(b64) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    match text.split_once(':') {
        Some((user, pass)) => {
            !user.is_empty()
                && !pass.is_empty()
                && !WEAK_VALUES.iter().any(|w| {
                    pass.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation())
                        .eq_ignore_ascii_case(w)
                })
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
