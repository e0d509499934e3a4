//! What of a call's arguments may be kept: a copy with secrets masked and
//! its size bounded.
//!
//! Masked (until the guardrails stage brings real detectors):
//! - the value of any field whose name says it holds a secret (`password`,
//!   `token`, `secret`, `api_key`, `authorization`, `cookie`, …, and the
//!   names configured in `audit.secret_fields`), at any depth;
//! - secret-shaped words in any string: AWS access key ids, GitHub, GitLab,
//!   Slack, Stripe, OpenAI/Anthropic and Google API keys, JWTs, `Bearer`
//!   credentials, and private key blocks.

use serde_json::{Map, Value};

/// Largest redacted copy kept, as JSON; a larger one is replaced by a
/// summary (its top-level keys and size).
pub const MAX_COPY_BYTES: usize = 8 * 1024;
/// Longest string kept in a copy; longer ones are cut.
pub const MAX_STRING_CHARS: usize = 1024;

const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "auth_header",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "client_secret",
    "session_id",
    "access_key",
];

/// Word prefixes of well-known credential formats, with the shortest
/// plausible length of the whole word.
const SECRET_PREFIXES: &[(&str, usize, &str)] = &[
    ("AKIA", 20, "aws-access-key"),
    ("ASIA", 20, "aws-access-key"),
    ("ghp_", 36, "github-token"),
    ("gho_", 36, "github-token"),
    ("ghu_", 36, "github-token"),
    ("ghs_", 36, "github-token"),
    ("ghr_", 36, "github-token"),
    ("github_pat_", 40, "github-token"),
    ("glpat-", 26, "gitlab-token"),
    ("xoxb-", 20, "slack-token"),
    ("xoxp-", 20, "slack-token"),
    ("xoxa-", 20, "slack-token"),
    ("xoxs-", 20, "slack-token"),
    ("sk_live_", 24, "stripe-key"),
    ("rk_live_", 24, "stripe-key"),
    ("sk-ant-", 40, "anthropic-key"),
    ("sk-", 40, "openai-key"),
    ("AIza", 39, "google-api-key"),
    ("tgk_", 20, "toolgate-key"),
];

/// Masks secrets in argument copies (see the module docs).
#[derive(Debug, Clone)]
pub struct Redactor {
    names: Vec<String>,
}

impl Redactor {
    /// The built-in secret field names plus `extra` (case-insensitive).
    pub fn new(extra: &[String]) -> Redactor {
        Redactor {
            names: SECRET_NAMES
                .iter()
                .map(|n| n.to_string())
                .chain(extra.iter().map(|n| n.to_ascii_lowercase()))
                .collect(),
        }
    }

    fn secret_name(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.names.iter().any(|n| key.contains(n.as_str()))
    }

    /// A copy of `args` fit to store: secrets masked, strings cut, and the
    /// whole replaced by a summary past [`MAX_COPY_BYTES`].
    pub fn copy(&self, args: &Map<String, Value>) -> Value {
        let copy = self.object(args);
        let size = serde_json::to_string(&copy).map_or(usize::MAX, |s| s.len());
        if size <= MAX_COPY_BYTES {
            return copy;
        }
        let mut keys: Vec<&String> = args.keys().collect();
        keys.truncate(64);
        serde_json::json!({
            "[toolgate]": format!("arguments of {size} bytes (redacted) exceed the {MAX_COPY_BYTES}-byte copy limit; see args_hash"),
            "keys": keys,
        })
    }

    fn object(&self, map: &Map<String, Value>) -> Value {
        Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if self.secret_name(k) && !v.is_null() {
                        Value::String("[REDACTED:secret-field]".into())
                    } else {
                        self.value(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        )
    }

    fn value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => self.object(map),
            other => other.clone(),
        }
    }

    /// `text` with secret-shaped words masked, cut at [`MAX_STRING_CHARS`].
    pub fn text(&self, text: &str) -> String {
        let masked = mask(text);
        if masked.chars().count() > MAX_STRING_CHARS {
            let cut: String = masked.chars().take(MAX_STRING_CHARS).collect();
            format!("{cut}…[cut]")
        } else {
            masked
        }
    }
}

/// Secret-shaped words of `text` replaced by `[REDACTED:kind]`.
fn mask(text: &str) -> String {
    if text.contains("PRIVATE KEY-----") {
        return "[REDACTED:private-key]".into();
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || "_-.+/=".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut bearer = false;
    while !rest.is_empty() {
        let start = rest.find(is_word).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        match secret_kind(word, bearer) {
            Some(kind) => {
                out.push_str("[REDACTED:");
                out.push_str(kind);
                out.push(']');
            }
            None => out.push_str(word),
        }
        bearer = word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic");
        rest = &rest[end..];
    }
    out
}

fn secret_kind(word: &str, after_bearer: bool) -> Option<&'static str> {
    if word.is_empty() {
        return None;
    }
    if after_bearer && word.len() >= 16 {
        return Some("credential");
    }
    for (prefix, min, kind) in SECRET_PREFIXES {
        if word.starts_with(prefix) && word.len() >= *min {
            return Some(kind);
        }
    }
    // A JWT: three base64url segments, the first two JSON objects.
    let parts: Vec<&str> = word.split('.').collect();
    if parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts[1].starts_with("eyJ")
        && parts[2].len() >= 16
    {
        return Some("jwt");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(v: Value) -> Value {
        Redactor::new(&["ssn".into()]).copy(v.as_object().expect("object"))
    }

    #[test]
    fn secret_fields_and_secret_shaped_values_are_masked() {
        let out = redact(json!({
            "title": "deploy",
            "password": "hunter2",
            "nested": {"API_KEY": "x", "Ssn": "123-45-6789", "list": ["ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"]},
            "body": "use AKIAIOSFODNN7EXAMPLE and Bearer abcdefghijklmnopqrstuvwxyz please",
            "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl",
            "key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----",
            "count": 3,
            "absent": null
        }));
        let text = out.to_string();
        for secret in [
            "hunter2",
            "123-45-6789",
            "ghp_0123",
            "AKIAIOSFODNN7EXAMPLE",
            "abcdefghijklmnopqrstuvwxyz",
            "eyJzdWIi",
            "MIIE",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(out["title"], "deploy");
        assert_eq!(out["count"], 3);
        assert_eq!(out["absent"], Value::Null);
        assert_eq!(out["password"], "[REDACTED:secret-field]");
        assert_eq!(
            out["body"],
            "use [REDACTED:aws-access-key] and Bearer [REDACTED:credential] please"
        );
        assert_eq!(out["nested"]["list"][0], "[REDACTED:github-token]");
        assert_eq!(out["jwt"], "[REDACTED:jwt]");
        assert_eq!(out["key"], "[REDACTED:private-key]");
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
    fn ordinary_words_stay() {
        let text = "the sk-8 skateboard costs 42 and eyJ is not a token";
        assert_eq!(Redactor::new(&[]).text(text), text);
    }
}
