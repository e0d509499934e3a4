//! The raw layer: `toolgate.toml` as serde reads it (each section's own
//! `Raw*` types sit with its validation), and what every section's
//! validation shares: [`Report`] collects errors per file, [`parse_file`]
//! reports every unknown key, [`duration_or`] reads a duration with a
//! default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::approvals::RawApprovals;
use super::audit::RawAudit;
use super::{ConfigError, auth, parse_duration};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) servers_dir: Option<PathBuf>,
    pub(super) policies_dir: Option<PathBuf>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) max_in_flight_calls: Option<usize>,
    #[serde(default)]
    pub(super) http: RawHttp,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) database_url: Option<String>,
    #[serde(default)]
    pub(super) auth: auth::RawAuth,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) approvals: RawApprovals,
    #[serde(default)]
    pub(super) llm: super::llm::RawLlm,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHttp {
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) public_url: Option<String>,
    #[serde(default)]
    pub(super) allowed_origins: Vec<String>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) max_sessions: Option<usize>,
    pub(super) fast_lane: Option<bool>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max_connections: Option<usize>,
}

/// Collects errors for one file.
pub(super) struct Report<'a> {
    pub(super) file: &'a Path,
    pub(super) errors: &'a mut Vec<ConfigError>,
}

impl Report<'_> {
    pub(super) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// Parse a TOML file into `T`, reporting syntax errors (with line and column)
/// and *every* unknown key instead of stopping at the first.
pub(super) fn parse_file<T: DeserializeOwned + Default>(text: &str, report: &mut Report<'_>) -> T {
    let mut unknown = Vec::new();
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            report.error("", format!("invalid TOML: {}", one_line(&e.to_string())));
            return T::default();
        }
    };
    let parsed: Result<T, _> =
        serde_ignored::deserialize(de, |path| unknown.push(path.to_string()));
    for key in unknown {
        report.error(
            &key,
            "unknown key (check the spelling; see README \"Configuration\")",
        );
    }
    match parsed {
        Ok(v) => v,
        Err(e) => {
            report.error("", one_line(&e.to_string()));
            T::default()
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn duration_or(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<&str>,
    default: Duration,
) -> Duration {
    match raw.map(parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            report.error(key, e);
            default
        }
    }
}

/// [`duration_or`] for a timeout, which cannot be zero.
pub(super) fn positive_duration_or(
    report: &mut Report<'_>,
    key: &str,
    raw: Option<&str>,
    default: Duration,
) -> Duration {
    let d = duration_or(report, key, raw, default);
    if d.is_zero() {
        report.error(key, "must be more than 0 (e.g. \"10s\")");
        return default;
    }
    d
}
