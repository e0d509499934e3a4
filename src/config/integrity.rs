//! `[integrity]` in a `servers/*.toml` file: how that server's tool
//! definitions are pinned (rug pulls) and linted (poisoned descriptions),
//! and which flow labels its tools carry (toxic flows). The checks
//! themselves are `crate::integrity`'s.
//!
//! ```toml
//! [integrity]
//! pin = "first-use"    # or "review" (every new tool waits for a reviewer), "off"
//! lint = "quarantine"  # or "warn" (findings in the log and /readyz only), "off"
//!
//! [integrity.labels]   # exact names or `*` globs (upstream names); the longest match wins
//! "read_*" = ["private_data"]
//! "send_email" = ["public_sink"]
//! "get_time" = []      # carries no label, whatever its annotations say
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::raw::Report;
use super::servers::glob_match;

/// When a tool's definition is pinned, and what a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinMode {
    /// The first definition seen is pinned; a later change quarantines the
    /// tool until a reviewer approves the new one.
    #[default]
    FirstUse,
    /// Every definition, a new tool's included, waits for a reviewer.
    Review,
    /// Definitions are not pinned (the lint still applies).
    Off,
}

/// What a lint finding of quarantine severity does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LintMode {
    /// The tool is quarantined until a reviewer approves its definition.
    #[default]
    Quarantine,
    /// Findings are logged and shown on `/readyz`; the tool stays exposed.
    Warn,
    /// Definitions are not linted.
    Off,
}

impl PinMode {
    pub fn name(self) -> &'static str {
        match self {
            PinMode::FirstUse => "first-use",
            PinMode::Review => "review",
            PinMode::Off => "off",
        }
    }
}

impl LintMode {
    pub fn name(self) -> &'static str {
        match self {
            LintMode::Quarantine => "quarantine",
            LintMode::Warn => "warn",
            LintMode::Off => "off",
        }
    }
}

/// A tool's flow labels (a small set): what it can do to a session's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Labels(u8);

impl Labels {
    pub const NONE: Labels = Labels(0);
    /// Reads data that belongs to the organisation.
    pub const PRIVATE_DATA: Labels = Labels(1);
    /// Returns content outsiders can write (web pages, email, issues).
    pub const UNTRUSTED_CONTENT: Labels = Labels(2);
    /// Can send data outside (open-world writes, messages, HTTP).
    pub const PUBLIC_SINK: Labels = Labels(4);

    /// Every label, with its name (as policies and config files spell it).
    pub const ALL: [(Labels, &'static str); 3] = [
        (Labels::PRIVATE_DATA, "private_data"),
        (Labels::UNTRUSTED_CONTENT, "untrusted_content"),
        (Labels::PUBLIC_SINK, "public_sink"),
    ];

    pub fn parse(name: &str) -> Option<Labels> {
        Labels::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(label, _)| *label)
    }

    pub fn contains(self, other: Labels) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Labels) -> Labels {
        Labels(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The labels' names, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Labels::ALL
            .into_iter()
            .filter(move |(label, _)| self.contains(*label))
            .map(|(_, name)| name)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.names().collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// A server's `[integrity]` table, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityConfig {
    pub pin: PinMode,
    pub lint: LintMode,
    /// Label overrides: (pattern, labels), longest pattern first.
    pub labels: Vec<(String, Labels)>,
}

impl IntegrityConfig {
    /// The labels an override gives `tool` (an upstream name): the longest
    /// matching pattern's, `None` when no pattern matches.
    pub fn labels_for(&self, tool: &str) -> Option<Labels> {
        self.labels
            .iter()
            .find(|(pattern, _)| glob_match(pattern, tool))
            .map(|(_, labels)| *labels)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawIntegrity {
    pin: Option<String>,
    lint: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Vec<String>>,
}

pub(super) fn validate(raw: RawIntegrity, report: &mut Report<'_>) -> IntegrityConfig {
    let pin = match raw.pin.as_deref() {
        None | Some("first-use") => PinMode::FirstUse,
        Some("review") => PinMode::Review,
        Some("off") => PinMode::Off,
        Some(other) => {
            report.error(
                "integrity.pin",
                format!("`{other}`: use \"first-use\" (the default), \"review\" or \"off\""),
            );
            PinMode::FirstUse
        }
    };
    let lint = match raw.lint.as_deref() {
        None | Some("quarantine") => LintMode::Quarantine,
        Some("warn") => LintMode::Warn,
        Some("off") => LintMode::Off,
        Some(other) => {
            report.error(
                "integrity.lint",
                format!("`{other}`: use \"quarantine\" (the default), \"warn\" or \"off\""),
            );
            LintMode::Quarantine
        }
    };
    let mut labels = Vec::with_capacity(raw.labels.len());
    for (pattern, names) in raw.labels {
        let key = format!("integrity.labels.\"{pattern}\"");
        if pattern.is_empty() {
            report.error(&key, "empty pattern: use a tool's name or a `*` glob");
            continue;
        }
        let mut set = Labels::NONE;
        for name in &names {
            match Labels::parse(name) {
                Some(label) => set = set.union(label),
                None => report.error(
                    &key,
                    format!(
                        "unknown label `{name}`: use \"private_data\", \"untrusted_content\" or \"public_sink\""
                    ),
                ),
            }
        }
        labels.push((pattern, set));
    }
    // Longest first, so an exact name or a narrower glob wins.
    labels.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    IntegrityConfig { pin, lint, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sets_and_names() {
        let l = Labels::PRIVATE_DATA.union(Labels::PUBLIC_SINK);
        assert!(l.contains(Labels::PUBLIC_SINK) && !l.contains(Labels::UNTRUSTED_CONTENT));
        assert_eq!(l.to_string(), "[private_data, public_sink]");
        assert_eq!(
            Labels::parse("untrusted_content"),
            Some(Labels::UNTRUSTED_CONTENT)
        );
        assert_eq!(Labels::parse("private"), None);
    }

    #[test]
    fn the_longest_pattern_wins() {
        let mut errors = Vec::new();
        let file = std::path::PathBuf::from("servers/x.toml");
        let mut report = Report {
            file: &file,
            errors: &mut errors,
        };
        let raw = RawIntegrity {
            pin: Some("review".into()),
            lint: None,
            labels: [
                ("*".to_string(), vec!["public_sink".to_string()]),
                ("read_*".to_string(), vec!["private_data".to_string()]),
                ("read_public".to_string(), vec![]),
            ]
            .into(),
        };
        let c = validate(raw, &mut report);
        assert!(errors.is_empty());
        assert_eq!(c.pin, PinMode::Review);
        assert_eq!(c.labels_for("read_public"), Some(Labels::NONE));
        assert_eq!(c.labels_for("read_secret"), Some(Labels::PRIVATE_DATA));
        assert_eq!(c.labels_for("send"), Some(Labels::PUBLIC_SINK));
    }
}
