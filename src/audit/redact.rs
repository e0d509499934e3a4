//! What of a call's arguments and texts may be kept: a copy with secrets
//! masked and its size bounded. Every argument copy and every text that
//! the audit trail stores or sends (records, error texts, reasons, call
//! subjects, approval requests shown to approvers and users, webhook feeds
//! built from records) goes through this one [`Redactor`]: one path, two
//! kinds of masking, whose spans are merged before anything is replaced.
//!
//! Credential *formats* are the detectors' ([`Mask`]): the guardrails'
//! secret rules (`policies/guardrails/secrets.toml`: AWS, GitHub, GitLab,
//! Slack, Stripe, OpenAI, Anthropic, Google and toolgate keys, JWTs, PEM
//! blocks and some 180 more), and when guardrails are on, their personal
//! data and hidden-character detectors too. The gateway hands the
//! [`Redactor`] its masker at start, secret rules always (with or without
//! `guardrails.toml`); `audit` stands below `guardrails` and cannot name
//! them, hence the trait. A masker reloaded in place (the guardrails are)
//! masks with the rules in force.
//!
//! *Context* is the Redactor's own, in any string and in object keys,
//! whatever the detectors know:
//! - the value of any field whose name says it holds a secret (`password`,
//!   `token`, `secret`, `api_key`, `authorization`, `cookie`, …, and the
//!   names configured in `audit.secret_fields`), at any depth; so is the
//!   `value` of a `{"name": "DB_PASSWORD", "value": …}` pair and the
//!   element after a `--password` flag in an argument list;
//! - values assigned to secret names: `GITHUB_TOKEN=…`, `--api-key=…`,
//!   `--password …`, `password: …`, `"password":"…"`, `?access_token=…`
//!   and, in a URL query only, `?key=…`, `&sig=…`, `&code=…`;
//! - header lines `Authorization: …`, `Cookie: …` (the scheme word, such
//!   as `Bearer`, stays readable);
//! - the password of a URL's userinfo (`scheme://user:PASSWORD@host`), or
//!   a userinfo that is one credential-like word (`https://TOKEN@host`);
//! - the word after `Bearer` / `Basic`;
//! - a string holding `PRIVATE KEY-----`, whole (the detectors want a
//!   complete block; a cut one is still a key).
//!
//! Why a hand-written scanner and not the `url` crate: the URLs here sit in
//! free text, may be cut, quoted or malformed, and the job is to find spans
//! to hide, failing towards hiding more; a URL parser answers a different
//! question (what one well-formed URL means).

use std::ops::Range;
use std::sync::Arc;

use serde_json::{Map, Value};

/// Largest redacted copy kept, as JSON; a larger one is replaced by a
/// summary (its top-level keys, masked, and size).
pub const MAX_COPY_BYTES: usize = 8 * 1024;
/// Longest string kept in a copy; longer ones are cut (after masking, so
/// a secret across the cut is never half shown).
pub const MAX_STRING_CHARS: usize = 1024;

/// Parts of names that say a value is a secret, in the form names are
/// compared in ([`normal_name`]: lowercase, without `-`, `_`, `.` or
/// spaces, so `API_KEY`, `api-key` and `apiKey` are one name).
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "authheader",
    "cookie",
    "credential",
    "privatekey",
    "sessionid",
    "accesskey",
    "signingkey",
    "encryptionkey",
    "bearer",
];

/// Names that hold a secret as a URL query parameter (`?key=…`); anywhere
/// else they are too common to mask (`{"key": "user:42"}`).
const QUERY_SECRET_NAMES: &[&str] = &[
    "key",
    "sig",
    "signature",
    "code",
    "pass",
    "pwd",
    "auth",
    "x-amz-signature",
    "x-goog-signature",
];

/// Header names whose value is the rest of the line.
const HEADER_NAMES: &[&str] = &["authorization", "proxyauthorization", "cookie", "setcookie"];

/// Authorization schemes whose next word is a credential.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "negotiate"];

/// What finds credentials by their format in a text: the guardrails'
/// detectors, handed to the [`Redactor`] at start.
pub trait Mask: Send + Sync {
    /// Append to `found` what to hide in `text`: byte ranges into `text`
    /// (a range that cuts a character hides all of it) and their types.
    fn find(&self, text: &str, found: &mut Vec<Found>);

    /// `text` with what [`Mask::find`] finds replaced by
    /// `[REDACTED:type]` (overlapping finds hide as one, named by the
    /// first).
    fn mask(&self, text: &mut String) {
        let mut found = Vec::new();
        self.find(text, &mut found);
        if !found.is_empty() {
            let spans = found.into_iter().map(Span::from).collect();
            *text = replace(text, spans);
        }
    }
}

/// A byte range of a text to hide, and its type (`github-pat-classic`,
/// `email`), as a [`Mask`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub span: Range<usize>,
    pub kind: Arc<str>,
}

/// A byte range of a text to hide, and what it is.
struct Span {
    start: usize,
    end: usize,
    kind: Kind,
}

/// A span's type: the Redactor's own words, or a detector's.
enum Kind {
    Context(&'static str),
    Found(Arc<str>),
}

impl Span {
    fn context(start: usize, end: usize, kind: &'static str) -> Span {
        Span {
            start,
            end,
            kind: Kind::Context(kind),
        }
    }
}

impl From<Found> for Span {
    fn from(found: Found) -> Span {
        Span {
            start: found.span.start,
            end: found.span.end,
            kind: Kind::Found(found.kind),
        }
    }
}

impl Kind {
    fn as_str(&self) -> &str {
        match self {
            Kind::Context(kind) => kind,
            Kind::Found(kind) => kind,
        }
    }
}

/// Masks secrets in argument copies and texts (see the module docs).
#[derive(Clone)]
pub struct Redactor {
    names: Vec<String>,
    /// Credential formats; none until the gateway hands them over.
    detectors: Option<Arc<dyn Mask>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("names", &self.names)
            .field("detectors", &self.detectors.is_some())
            .finish()
    }
}

impl Default for Redactor {
    /// The built-in secret names only.
    fn default() -> Redactor {
        Redactor::new(&[])
    }
}

impl Redactor {
    /// The built-in secret field names plus `extra` (case-insensitive).
    pub fn new(extra: &[String]) -> Redactor {
        Redactor {
            names: SECRET_NAMES
                .iter()
                .map(|n| n.to_string())
                .chain(extra.iter().map(|n| normal_name(n)))
                .filter(|n| !n.is_empty())
                .collect(),
            detectors: None,
        }
    }

    /// Mask credential formats with `detectors` too, from now on (in every
    /// copy and text, object keys included).
    pub fn set_mask(&mut self, detectors: Arc<dyn Mask>) {
        self.detectors = Some(detectors);
    }

    /// Whether a field, variable, flag or header called `name` holds a
    /// secret. `token` followed by `s` is a count (`max_tokens`), not one.
    fn secret_name(&self, name: &str) -> bool {
        let name = normal_name(name);
        self.names.iter().any(|n| {
            name.match_indices(n.as_str())
                .any(|(i, _)| !(n == "token" && name[i + n.len()..].starts_with('s')))
        })
    }

    /// Whether `word` is a command-line flag naming a secret
    /// (`--password`, `-api-key`), its value being the next word.
    fn secret_flag(&self, word: &str) -> bool {
        let name = word.trim_start_matches('-');
        word.starts_with('-')
            && !name.is_empty()
            && name.bytes().all(is_name_byte)
            && self.secret_name(name)
    }

    /// A copy of `args` fit to store: secrets masked, strings cut, and the
    /// whole replaced by a summary past [`MAX_COPY_BYTES`].
    pub fn copy(&self, args: &Map<String, Value>) -> Value {
        let copy = self.object(args);
        let size = serde_json::to_string(&copy).map_or(usize::MAX, |s| s.len());
        if size <= MAX_COPY_BYTES {
            return copy;
        }
        let keys: Vec<String> = args.keys().take(64).map(|k| self.text(k)).collect();
        serde_json::json!({
            "[toolgate]": format!("arguments of {size} bytes (redacted) exceed the {MAX_COPY_BYTES}-byte copy limit; see args_hash"),
            "keys": keys,
        })
    }

    fn object(&self, map: &Map<String, Value>) -> Value {
        // `{"name": "DB_PASSWORD", "value": "…"}`: a pair naming a secret.
        let names_secret = ["name", "key"].iter().any(|k| {
            map.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|n| self.secret_name(n))
        });
        let mut out = Map::new();
        for (k, v) in map {
            let secret = self.secret_name(k) || (names_secret && k == "value");
            let v = if secret && !v.is_null() {
                Value::String("[REDACTED:secret-field]".into())
            } else {
                self.value(v)
            };
            // A secret used as a key is masked like one in a value; two
            // keys that mask alike stay two entries.
            let masked = self.text(k);
            let mut key = masked.clone();
            let mut n = 1;
            while out.contains_key(&key) {
                n += 1;
                key = format!("{masked} #{n}");
            }
            out.insert(key, v);
        }
        Value::Object(out)
    }

    fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => {
                // An argument list: `["--password", "hunter2"]`.
                let mut after_flag = false;
                let items = items
                    .iter()
                    .map(|item| {
                        let v = match item {
                            Value::String(_) if after_flag => {
                                Value::String("[REDACTED:secret]".into())
                            }
                            other => self.value(other),
                        };
                        after_flag = item.as_str().is_some_and(|s| self.secret_flag(s));
                        v
                    })
                    .collect();
                Value::Array(items)
            }
            Value::Object(map) => self.object(map),
            other => other.clone(),
        }
    }

    /// `text` with secrets masked, cut at [`MAX_STRING_CHARS`]. The whole
    /// text is scanned before the cut (its size is bounded by the request
    /// body limit), so no secret is cut in half and half shown.
    pub fn text(&self, text: &str) -> String {
        let masked = self.mask(text);
        match masked.char_indices().nth(MAX_STRING_CHARS) {
            Some((cut, _)) => format!("{}…[cut]", &masked[..cut]),
            None => masked,
        }
    }

    /// Secrets of `text` replaced by `[REDACTED:kind]`, nothing cut (for
    /// texts bounded elsewhere).
    pub fn mask(&self, text: &str) -> String {
        if text.contains("PRIVATE KEY-----") {
            return "[REDACTED:private-key]".into();
        }
        let mut found: Vec<Span> = Vec::new();
        if let Some(detectors) = &self.detectors {
            let mut by_format = Vec::new();
            detectors.find(text, &mut by_format);
            found.extend(by_format.into_iter().map(Span::from));
        }
        // Short names and words (most keys, tool names) with no assignment
        // or flag have no context to read.
        if text.len() >= 20 || text.bytes().any(|c| matches!(c, b'=' | b':' | b'-')) {
            url_userinfo(text, &mut found);
            self.assignments(text, &mut found);
            self.flags(text, &mut found);
            auth_schemes(text, &mut found);
        }
        if found.is_empty() {
            return text.to_string();
        }
        replace(text, found)
    }

    /// Values assigned to secret names: `NAME=value`, `name: value`,
    /// `"name":"value"`, `--name=value`, `?key=value`, header lines.
    fn assignments(&self, text: &str, found: &mut Vec<Span>) {
        let b = text.as_bytes();
        for sep in (0..b.len()).filter(|&i| b[i] == b'=' || b[i] == b':') {
            // The name before it, past spaces and a (possibly escaped)
            // closing quote: `password = `, `"password": `, `\"password\":`.
            let mut j = sep;
            while j > 0 && b[j - 1] == b' ' {
                j -= 1;
            }
            if j > 0 && matches!(b[j - 1], b'"' | b'\'') {
                j -= 1;
                if j > 0 && b[j - 1] == b'\\' {
                    j -= 1;
                }
            }
            let name_end = j;
            while j > 0 && is_name_byte(b[j - 1]) {
                j -= 1;
            }
            if j == name_end {
                continue;
            }
            let name = &text[j..name_end];
            let in_query = j > 0 && matches!(b[j - 1], b'?' | b'&' | b';');
            let secret = self.secret_name(name)
                || (in_query
                    && QUERY_SECRET_NAMES
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n)));
            // `scheme://` is a URL, not an assignment.
            if !secret || (b[sep] == b':' && b[sep + 1..].starts_with(b"//")) {
                continue;
            }
            let whole_line = HEADER_NAMES.contains(&normal_name(name).as_str());
            if let Some((start, end)) = value_span(text, sep + 1, whole_line) {
                found.push(Span::context(start, end, "secret"));
            }
        }
    }

    /// The word after a flag naming a secret: `--password hunter2`.
    fn flags(&self, text: &str, found: &mut Vec<Span>) {
        if !text.contains('-') {
            return;
        }
        let mut words = words(text).peekable();
        while let Some((start, end)) = words.next() {
            if !self.secret_flag(&text[start..end]) {
                continue;
            }
            if let Some(&(next, _)) = words.peek()
                && !text[next..].starts_with('-')
                && let Some((s, e)) = value_span(text, next, false)
            {
                found.push(Span::context(s, e, "secret"));
            }
        }
    }
}

/// `name` as secret names are compared: lowercase, without `-`, `_`,
/// `.` or spaces.
fn normal_name(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a variable, flag, field or header name is made of.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// What a credential word (after `Bearer`) is made of, besides `.+/=~`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// The length of the run of `bytes` that `keep` accepts.
fn run(bytes: &[u8], keep: impl Fn(u8) -> bool) -> usize {
    bytes.iter().position(|&b| !keep(b)).unwrap_or(bytes.len())
}

/// Byte ranges of the whitespace-separated words of `text`.
fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        i += run(&b[i..], |c| c.is_ascii_whitespace());
        if i >= b.len() {
            return None;
        }
        let start = i;
        i += run(&b[i..], |c| !c.is_ascii_whitespace());
        Some((start, i))
    })
}

/// The value starting at `from` (after spaces): a quoted string (to its
/// closing quote, escaped or not), or a word up to the next delimiter;
/// with `whole_line`, the rest of the line past an authorization scheme
/// word. `None` for nothing, `null`, or a structure (`{`, `[`), whose own
/// fields are checked by name.
fn value_span(text: &str, from: usize, whole_line: bool) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut i = from + run(&b[from..], |c| c == b' ' || c == b'\t');
    i += run(&b[i..], |c| c == b'\\');
    let first = *b.get(i)?;
    let (mut start, end) = if matches!(first, b'"' | b'\'' | b'`') {
        let start = i + 1;
        let escaped = i > from && b[i - 1] == b'\\';
        let mut k = start;
        while k < b.len() {
            if escaped && b[k] == b'\\' && b.get(k + 1) == Some(&first) {
                break;
            }
            if !escaped && b[k] == b'\\' {
                k += 2;
                continue;
            }
            if !escaped && b[k] == first {
                break;
            }
            if b[k] == b'\n' {
                break;
            }
            k += 1;
        }
        (start, k.min(b.len()))
    } else if matches!(first, b'{' | b'[' | b'=') {
        return None;
    } else if whole_line {
        (i, i + run(&b[i..], |c| !matches!(c, b'\n' | b'\r' | b'"')))
    } else {
        let stop = |c: u8| {
            c.is_ascii_whitespace()
                || matches!(
                    c,
                    b'&' | b';'
                        | b','
                        | b'"'
                        | b'\''
                        | b'`'
                        | b')'
                        | b']'
                        | b'}'
                        | b'<'
                        | b'>'
                        | b'|'
                )
        };
        (i, i + run(&b[i..], |c| !stop(c)))
    };
    if whole_line {
        // `Authorization: Bearer …`: the scheme stays readable.
        let word = run(&b[start..end], |c| c.is_ascii_alphabetic());
        if b.get(start + word) == Some(&b' ')
            && AUTH_SCHEMES
                .iter()
                .any(|s| text[start..start + word].eq_ignore_ascii_case(s))
        {
            start += word + 1;
        }
    }
    let value = &text[start..end];
    (!value.trim().is_empty() && value != "null").then_some((start, end))
}

/// `text` with `found` replaced by `[REDACTED:kind]`: overlapping or
/// touching spans hide as one, named by the first (the longest of those
/// starting first; of equal ones, the first found: a detector's); a span
/// is widened to whole characters.
fn replace(text: &str, mut found: Vec<Span>) -> String {
    for span in &mut found {
        span.end = span.end.min(text.len());
        while !text.is_char_boundary(span.end) {
            span.end += 1;
        }
        span.start = span.start.min(span.end);
        while !text.is_char_boundary(span.start) {
            span.start -= 1;
        }
    }
    found.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut spans = found.into_iter().peekable();
    while let Some(Span {
        start,
        mut end,
        kind,
    }) = spans.next()
    {
        while let Some(next) = spans.peek() {
            if next.start > end {
                break;
            }
            end = end.max(next.end);
            spans.next();
        }
        let start = start.max(at);
        out.push_str(&text[at..start]);
        if end > start {
            out.push_str("[REDACTED:");
            out.push_str(kind.as_str());
            out.push(']');
        }
        at = at.max(end);
    }
    out.push_str(&text[at..]);
    out
}

/// The password of a URL's userinfo (`scheme://user:PASSWORD@host`), or a
/// userinfo that is one credential-like word (`https://TOKEN@host`; a
/// short user name such as `git@` stays).
fn url_userinfo(text: &str, found: &mut Vec<Span>) {
    let b = text.as_bytes();
    for (i, _) in text.match_indices("://") {
        let start = i + 3;
        // The authority runs to the path, query, fragment or end of word;
        // its last `@` ends the userinfo (an unencoded `@` in a password
        // is hidden with it).
        let len = run(&b[start..], |c| {
            !(c.is_ascii_whitespace()
                || matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`'))
        });
        let Some(at) = text[start..start + len].rfind('@') else {
            continue;
        };
        let info = &text[start..start + at];
        match info.find(':') {
            Some(colon) if colon + 1 < info.len() => {
                found.push(Span::context(
                    start + colon + 1,
                    start + at,
                    "url-credential",
                ));
            }
            Some(_) => {}
            None if credential_like(info) => {
                found.push(Span::context(start, start + at, "url-credential"))
            }
            None => {}
        }
    }
}

/// The word after `Bearer` or `Basic`, when it looks like a credential.
fn auth_schemes(text: &str, found: &mut Vec<Span>) {
    let b = text.as_bytes();
    if !b
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"eare") || w.eq_ignore_ascii_case(b"asic"))
    {
        return;
    }
    let lower = text.to_ascii_lowercase();
    for scheme in ["bearer ", "basic "] {
        for (i, _) in lower.match_indices(scheme) {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let mut start = i + scheme.len();
            start += run(&text.as_bytes()[start..], |c| c == b' ');
            let len = run(&text.as_bytes()[start..], |c| {
                is_token_byte(c) || matches!(c, b'.' | b'+' | b'/' | b'=' | b'~')
            });
            if credential_like(&text[start..start + len]) {
                found.push(Span::context(start, start + len, "credential"));
            }
        }
    }
}

/// Long, or mixing letters and digits: a credential rather than a word.
fn credential_like(word: &str) -> bool {
    word.len() >= 16
        || (word.len() >= 8
            && word.bytes().any(|c| c.is_ascii_digit())
            && word.bytes().any(|c| c.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Redactor as the gateway starts it without guardrails: the
    /// shipped secret rules find credential formats (test code may
    /// reach up a floor).
    fn redactor(extra: &[String]) -> Redactor {
        use crate::guardrails::{Guardrails, Set, policy::Policy, secrets::Secrets};
        let mut redactor = Redactor::new(extra);
        redactor.set_mask(Arc::new(Guardrails::new(Set::new(
            vec![Box::new(Secrets::shipped())],
            None,
            Policy::default(),
        ))));
        redactor
    }

    fn redact(v: Value) -> Value {
        redactor(&["ssn".into()]).copy(v.as_object().expect("object"))
    }

    fn text(t: &str) -> String {
        redactor(&[]).text(t)
    }

    /// `masked` hides every one of `secrets` and keeps every one of `kept`.
    #[track_caller]
    fn hides(masked: &str, secrets: &[&str], kept: &[&str]) {
        for s in secrets {
            assert!(!masked.contains(s), "{s:?} shown in {masked:?}");
        }
        for k in kept {
            assert!(masked.contains(k), "{k:?} lost from {masked:?}");
        }
    }

    // Fake credentials in their documented formats.
    const GHP: &str = "ghp_Xk2WbL7QmZr4TfN9cVd1HsJ8pYgE3uAo6tRi";
    const AKIA: &str = "AKIAQ3EGRTVZ7XW2MNBD";

    #[test]
    fn secret_fields_and_secret_shaped_values_are_masked() {
        let out = redact(json!({
            "title": "deploy",
            "password": "hunter2",
            "nested": {"API_KEY": "x", "Ssn": "123-45-6789", "list": [GHP]},
            "body": format!("use {AKIA} and Bearer abcdefghijklmnopqrstuvwxyz please"),
            "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
            "key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----",
            "count": 3,
            "absent": null
        }));
        let text = out.to_string();
        hides(
            &text,
            &[
                "hunter2",
                "123-45-6789",
                "ghp_Xk2W",
                AKIA,
                "abcdefghijklmnopqrstuvwxyz",
                "eyJzdWIi",
                "MIIE",
            ],
            &[],
        );
        assert_eq!(out["title"], "deploy");
        assert_eq!(out["count"], 3);
        assert_eq!(out["absent"], Value::Null);
        assert_eq!(out["password"], "[REDACTED:secret-field]");
        assert_eq!(
            out["body"],
            "use [REDACTED:aws-access-key-id] and Bearer [REDACTED:credential] please"
        );
        assert_eq!(out["nested"]["list"][0], "[REDACTED:github-pat-classic]");
        assert_eq!(out["jwt"], "[REDACTED:jwt]");
        assert_eq!(out["key"], "[REDACTED:private-key]");
    }

    #[test]
    fn environment_assignments_hide_their_values() {
        for (line, secret, kept) in [
            (
                format!("AWS_ACCESS_KEY_ID={AKIA} aws s3 ls"),
                AKIA,
                "aws s3 ls",
            ),
            (
                "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY; make"
                    .into(),
                "wJalrXUtnFEMI",
                "; make",
            ),
            (
                format!("GITHUB_TOKEN={GHP} gh pr list"),
                "ghp_Xk2W",
                "gh pr list",
            ),
            (
                "PGPASSWORD=s3cr3t psql -h db".into(),
                "s3cr3t",
                "psql -h db",
            ),
            ("env SLACK_BOT_TOKEN='x y z' run".into(), "x y z", "run"),
            (
                "client_secret = \"hunter2\"".into(),
                "hunter2",
                "client_secret",
            ),
            (
                "db:\n  password: hunter2\n  user: bob".into(),
                "hunter2",
                "user: bob",
            ),
            ("MY_API_KEY=abc123 ./start".into(), "abc123", "./start"),
            // Short texts skip most scanning, not assignments.
            ("token=xyz".into(), "xyz", "token="),
        ] {
            let masked = text(&line);
            hides(&masked, &[secret], &[kept]);
            assert!(masked.contains("[REDACTED:"), "{masked}");
        }
    }

    #[test]
    fn command_line_flags_hide_their_values() {
        for (line, secret) in [
            (format!("gh auth login --with-token={GHP}"), "ghp_Xk2W"),
            (format!("gh auth login --with-token {GHP}"), "ghp_Xk2W"),
            ("mysql --password hunter2 -u root".to_string(), "hunter2"),
            ("mysql --password=hunter2 -u root".into(), "hunter2"),
            (
                "tool -api-key opaque-value-1 --verbose".into(),
                "opaque-value-1",
            ),
            ("vault login --token \"s.abc def\"".into(), "s.abc def"),
            ("curl -u bob --pass-phrase=openme x".into(), "openme"),
        ] {
            hides(&text(&line), &[secret], &["[REDACTED:"]);
        }
        // An argument list: the element after the flag.
        let out = redact(json!({"argv": ["mysql", "--password", "hunter2", "-u", "root"]}));
        assert_eq!(
            out["argv"],
            json!(["mysql", "--password", "[REDACTED:secret]", "-u", "root"])
        );
    }

    #[test]
    fn urls_hide_userinfo_and_query_credentials() {
        for (url, secret, kept) in [
            (
                format!("git clone https://{GHP}@github.com/o/r.git"),
                "ghp_Xk2W",
                "github.com/o/r.git",
            ),
            (
                "https://user:pass@host.example/x".into(),
                "pass@",
                "https://user:",
            ),
            (
                "postgres://admin:s3cr3t@db:5432/app".into(),
                "s3cr3t",
                "db:5432/app",
            ),
            (
                "redis://:hunter2@cache:6379".into(),
                "hunter2",
                "cache:6379",
            ),
            (
                "https://x-access-token:opaque99@github.com/o/r".into(),
                "opaque99",
                "x-access-token",
            ),
            ("https://u:p@ss@host/".into(), "p@ss", "host/"),
            (
                "https://0123456789abcdef0123456789abcdef01234567@github.com/".into(),
                "0123456789abcdef",
                "github.com",
            ),
            (
                "https://api.example/v1?key=sk_live_0123456789abcdefghijklmn".into(),
                "sk_live_0123",
                "api.example/v1?key=",
            ),
            (
                "https://maps.example/api?key=AbCdEf123456&q=paris".into(),
                "AbCdEf123456",
                "q=paris",
            ),
            (
                "https://h/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz".into(),
                "SplxlOBe",
                "state=xyz",
            ),
            (
                "https://h/x?access_token=abc.def&page=2".into(),
                "abc.def",
                "page=2",
            ),
            (
                "https://b.s3.example/o?X-Amz-Signature=deadbeef01&X-Amz-Expires=60".into(),
                "deadbeef01",
                "X-Amz-Expires=60",
            ),
        ] {
            hides(&text(&url), &[secret], &[kept]);
        }
        // Short user names are no credentials.
        let kept = "ssh://git@github.com/o/r and https://alice@example.org/";
        assert_eq!(text(kept), kept);
    }

    #[test]
    fn headers_and_json_inside_strings_hide_their_values() {
        for (line, secret, kept) in [
            (
                "curl -H 'Authorization: Bearer opaque123' https://h".to_string(),
                "opaque123",
                "Bearer",
            ),
            (
                "Authorization: Basic dXNlcjpwYXNz\nAccept: */*".into(),
                "dXNlcjpwYXNz",
                "Accept: */*",
            ),
            ("authorization: token abc\n".into(), "abc", "token"),
            (
                "Cookie: session=abc123; theme=dark\nHost: h".into(),
                "abc123",
                "Host: h",
            ),
            ("X-Api-Key: k-12345\n".into(), "k-12345", "X-Api-Key"),
            (
                r#"{"user":"bob","password":"p4ss word"}"#.into(),
                "p4ss word",
                r#""user":"bob""#,
            ),
            (
                r#"{"user": "bob", "password" : "p4ss"}"#.into(),
                "p4ss",
                "bob",
            ),
            (
                r#"{\"password\":\"p4ss\",\"user\":\"bob\"}"#.into(),
                "p4ss",
                r#"\"user\":\"bob\""#,
            ),
            (
                r#"{"auth": {"token": "t0k3n-value"}}"#.into(),
                "t0k3n-value",
                "auth",
            ),
            (
                r#"{"headers":"Authorization: Bearer opaque123"}"#.into(),
                "opaque123",
                "headers",
            ),
        ] {
            hides(&text(&line), &[secret], &[kept]);
        }
    }

    #[test]
    fn secrets_used_as_object_keys_are_masked() {
        let out = redact(json!({
            GHP: true,
            "tokens": {AKIA: "ok", "AKIAABCDEFGHIJKLMNOP": "two keys stay two entries"},
            "password=hunter2": 1,
            "Bearer abcdefghijklmnopqrstuvwxyz": "x",
            "plain": {"title": "kept"}
        }));
        let text = out.to_string();
        hides(
            &text,
            &[
                GHP,
                AKIA,
                "AKIAABCDEFGHIJKLMNOP",
                "hunter2",
                "abcdefghijklmnopqrstuvwxyz",
            ],
            &[
                "[REDACTED:github-pat-classic]",
                "#2",
                "password=[REDACTED:secret]",
            ],
        );
        assert_eq!(out["plain"]["title"], "kept");
        assert_eq!(out["tokens"].as_object().map(Map::len), Some(2), "{out}");
        // The summary of a large copy lists keys masked too.
        let mut big: Map<String, Value> = (0..40)
            .map(|i| (format!("k{i}"), Value::String("b".repeat(400))))
            .collect();
        big.insert(GHP.into(), Value::Null);
        let out = redactor(&[]).copy(&big);
        assert!(out.get("[toolgate]").is_some(), "{out}");
        hides(&out.to_string(), &[GHP], &["[REDACTED:github-pat-classic]"]);
    }

    #[test]
    fn nested_values_and_name_value_pairs_are_masked() {
        let out = redact(json!({
            "spec": {"containers": [{"env": [
                {"name": "DB_PASSWORD", "value": "hunter2"},
                {"name": "LOG_LEVEL", "value": "debug"}
            ]}]},
            "steps": [[{"run": format!("GH_TOKEN={GHP} gh release create")}]],
            "config": {"Database": {"url": "mysql://root:toor@db/app"}}
        }));
        let env = &out["spec"]["containers"][0]["env"];
        assert_eq!(env[0]["value"], "[REDACTED:secret-field]");
        assert_eq!(env[1]["value"], "debug");
        hides(
            &out.to_string(),
            &["hunter2", "ghp_Xk2W", "toor"],
            &["gh release create", "db/app"],
        );
    }

    #[test]
    fn copies_are_bounded() {
        let long = "a".repeat(MAX_STRING_CHARS * 2);
        let out = redact(json!({"s": long}));
        assert!(out["s"].as_str().expect("string").ends_with("…[cut]"));
        let many: Map<String, Value> = (0..100)
            .map(|i| (format!("k{i}"), Value::String("b".repeat(500))))
            .collect();
        let out = Redactor::new(&[]).copy(&many);
        assert!(out.to_string().len() < MAX_COPY_BYTES);
        assert!(
            out["[toolgate]"]
                .as_str()
                .expect("summary")
                .contains("exceed")
        );
    }

    #[test]
    fn a_secret_across_the_cut_is_not_half_shown() {
        let at_cut = format!("{}{GHP} tail", "x ".repeat(MAX_STRING_CHARS / 2 - 5));
        let masked = text(&at_cut);
        assert!(!masked.contains("ghp_"), "{masked}");
        let value_at_cut = format!(
            "{}password={}",
            " ".repeat(MAX_STRING_CHARS - 12),
            "z".repeat(40)
        );
        assert!(!text(&value_at_cut).contains("zzz"));
    }

    #[test]
    fn ordinary_text_stays_readable() {
        for ordinary in [
            "the sk-8 skateboard costs 42 and eyJ is not a token",
            "meeting at 12:30, ratio 3:1, see https://example.com/docs?page=2&sort=asc#top",
            "write to bob@example.com; max_tokens=4096, total_tokens: 17",
            "the password policy asks for 12 characters; a token bucket refills",
            "a Bearer of bad news and basic authentication explained",
            "key: user:42, primary_key=id, sort_key=name, https://h/x?page=2",
            "if token == null || token != expected { retry(); }",
            "SELECT id FROM users WHERE name = 'bob' AND task-42 = done",
            "日本語のテキスト: password はありません",
        ] {
            assert_eq!(text(ordinary), ordinary);
        }
        let out = redact(json!({"max_tokens": 100, "title": "a", "tags": ["-v", "x"]}));
        assert_eq!(
            out,
            json!({"max_tokens": 100, "title": "a", "tags": ["-v", "x"]})
        );
    }

    #[test]
    fn configured_names_count_everywhere() {
        let r = Redactor::new(&["Employee-Number".into()]);
        assert_eq!(
            r.text("EMPLOYEE_NUMBER=12345 and --employee-number 678"),
            "EMPLOYEE_NUMBER=[REDACTED:secret] and --employee-number [REDACTED:secret]"
        );
    }

    /// Finds `HIDE-…` words, and a range cutting the `é` of `clé`.
    struct Words;

    impl Mask for Words {
        fn find(&self, text: &str, found: &mut Vec<Found>) {
            for (start, _) in text.match_indices("HIDE-") {
                let len = run(&text.as_bytes()[start..], |c| !c.is_ascii_whitespace());
                found.push(Found {
                    span: start..start + len,
                    kind: "word".into(),
                });
            }
            if let Some(at) = text.find("clé") {
                found.push(Found {
                    span: at + 1..at + 3,
                    kind: "cut".into(),
                });
            }
        }
    }

    #[test]
    fn detectors_mask_copies_keys_and_texts_merged_with_the_context_rules() {
        let mut r = Redactor::default();
        assert_eq!(r.text("a HIDE-1 b"), "a HIDE-1 b", "no detectors yet");
        r.set_mask(Arc::new(Words));
        let out = r.copy(
            json!({
                "note": "use HIDE-abc now",
                "HIDE-1": ["HIDE-x"],
                "password": "HIDE-y",
                "short": "clé"
            })
            .as_object()
            .expect("object"),
        );
        assert_eq!(
            out,
            json!({
                "note": "use [REDACTED:word] now",
                "[REDACTED:word]": ["[REDACTED:word]"],
                "password": "[REDACTED:secret-field]",
                "short": "c[REDACTED:cut]"
            })
        );
        // A detector's span and a context rule's over one value: one mask,
        // named by the longer of the two (the word runs on past `;`).
        assert_eq!(
            r.text("token=HIDE-abc; HIDE-def token=x"),
            "token=[REDACTED:word] [REDACTED:word] token=[REDACTED:secret]"
        );
        let mut masked = "a HIDE-1 b".to_string();
        Words.mask(&mut masked);
        assert_eq!(masked, "a [REDACTED:word] b");
    }

    #[test]
    fn hostile_text_is_masked_in_linear_time() {
        for unit in [
            "a=",
            ":",
            "ghp_",
            "eyJ.",
            "://@",
            "--password ",
            "\\\"",
            "Bearer ",
        ] {
            let hostile = unit.repeat(200_000 / unit.len());
            let started = std::time::Instant::now();
            let _ = text(&hostile);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{unit:?}: {:?}",
                started.elapsed()
            );
        }
    }
}
