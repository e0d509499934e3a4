//! `[audit]` in `toolgate.toml`: how the audit trail behaves (queue, wait,
//! checkpoints and their signing key, retention, forwarding). The signing
//! key's text is checked here; the key itself is made in `audit`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::forward::{ForwardConfig, RawForward, load_forward};
use super::raw::{Report, duration_or};
use super::{Secret, parse_duration, secret};

/// How the audit trail behaves (`[audit]` in `toolgate.toml`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Dev only: a call whose `decided` record cannot be written goes
    /// ahead anyway (logged as an error every time).
    pub fail_open: bool,
    /// Most records queued for the writer (and kept for a retry while the
    /// store is down).
    pub queue: usize,
    /// How long a call waits for its `decided` record to be durable before
    /// it is refused.
    pub wait: Duration,
    /// A signed checkpoint is written this often when there are new records.
    pub checkpoint_interval: Duration,
    /// Checkpoints are also appended here (outside the database).
    pub checkpoint_file: PathBuf,
    /// The Ed25519 signing key (32-byte seed, hex or base64); `None`:
    /// generated once into `data_dir/audit.key`.
    pub signing_key: Option<Secret>,
    /// Argument names whose values are always masked, besides the built-in
    /// ones (`password`, `token`, `secret`, …).
    pub secret_fields: Vec<String>,
    /// Records are also sent here (`[audit.forward]`).
    pub forward: Option<ForwardConfig>,
    /// Records older than this are pruned on a schedule (`None`: kept).
    pub retain: Option<Duration>,
}

impl AuditConfig {
    pub fn defaults(data_dir: &std::path::Path) -> AuditConfig {
        AuditConfig {
            fail_open: false,
            queue: 10_000,
            wait: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_file: data_dir.join("audit-checkpoints.jsonl"),
            signing_key: None,
            secret_fields: Vec::new(),
            forward: None,
            retain: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAudit {
    fail_open: Option<bool>,
    queue: Option<usize>,
    wait: Option<String>,
    checkpoint_interval: Option<String>,
    checkpoint_file: Option<PathBuf>,
    signing_key: Option<String>,
    #[serde(default)]
    secret_fields: Vec<String>,
    forward: Option<RawForward>,
    retain: Option<String>,
}

/// Most records the audit queue may hold.
const MAX_AUDIT_QUEUE: usize = 1_000_000;

pub(super) fn load_audit(
    raw: RawAudit,
    data_dir: &Path,
    base: &Path,
    listen: SocketAddr,
    shared_db: bool,
    report: &mut Report<'_>,
) -> AuditConfig {
    let defaults = AuditConfig::defaults(data_dir);
    let fail_open = raw.fail_open.unwrap_or(false);
    if fail_open && !listen.ip().is_loopback() {
        report.error(
            "audit.fail_open",
            format!("listen is {listen}, beyond loopback: failing open (calls forwarded without an audit record) is for local development only"),
        );
    }
    let queue = raw.queue.unwrap_or(defaults.queue);
    if !(1..=MAX_AUDIT_QUEUE).contains(&queue) {
        report.error(
            "audit.queue",
            format!("{queue}: use 1 to {MAX_AUDIT_QUEUE} records"),
        );
    }
    let wait = duration_or(report, "audit.wait", raw.wait.as_deref(), defaults.wait);
    if wait.is_zero() {
        report.error("audit.wait", "must be more than 0s");
    }
    let checkpoint_interval = duration_or(
        report,
        "audit.checkpoint_interval",
        raw.checkpoint_interval.as_deref(),
        defaults.checkpoint_interval,
    );
    if checkpoint_interval < Duration::from_secs(1) {
        report.error("audit.checkpoint_interval", "must be at least 1s");
    }
    let retain = raw.retain.as_deref().map(|text| match parse_duration(text) {
        Ok(retain) if retain < Duration::from_secs(1) => {
            report.error(
                "audit.retain",
                format!("`{text}`: keep records at least 1s (e.g. \"90d\"), or leave `retain` out to keep them all"),
            );
            retain
        }
        Ok(retain) => retain,
        Err(e) => {
            report.error("audit.retain", e);
            Duration::ZERO
        }
    });
    let signing_key = raw.signing_key.map(|text| {
        let key = secret::resolve(&text, base, &[]).unwrap_or_else(|e| {
            report.error("audit.signing_key", e.to_string());
            String::new()
        });
        if !key.is_empty()
            && let Err(e) = crate::util::digest::key_seed(&key)
        {
            report.error("audit.signing_key", e);
        }
        Secret::new(key)
    });
    if shared_db && signing_key.is_none() {
        report.error(
            "audit.signing_key",
            "with a shared database (several replicas) every replica must sign checkpoints with the same key: set signing_key, e.g. \"${env:TOOLGATE_AUDIT_KEY}\" (32 random bytes as hex: `openssl rand -hex 32`)",
        );
    }
    let forward = raw
        .forward
        .map(|f| load_forward(f, "audit.forward", base, report));
    AuditConfig {
        forward,
        fail_open,
        queue,
        wait,
        checkpoint_interval,
        checkpoint_file: raw
            .checkpoint_file
            .map(|f| base.join(f))
            .unwrap_or(defaults.checkpoint_file),
        signing_key,
        secret_fields: raw.secret_fields,
        retain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn audit_retention_is_a_duration_of_at_least_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("toolgate.toml");
        for (line, needle) in [
            (
                "retain = \"0s\"",
                "`audit.retain`: `0s`: keep records at least 1s",
            ),
            (
                "retain = \"500ms\"",
                "`audit.retain`: `500ms`: keep records at least 1s",
            ),
            ("retain = \"forever\"", "`audit.retain`: `forever`"),
        ] {
            write(dir.path(), "toolgate.toml", &format!("[audit]\n{line}\n"));
            let err = Config::load(Some(&path), "tg").expect_err(line).to_string();
            assert!(err.contains(needle), "{line}: {err}");
            assert!(err.contains("1 configuration error"), "{line}: {err}");
        }
        write(dir.path(), "toolgate.toml", "[audit]\nretain = \"90d\"\n");
        let cfg = Config::load(Some(&path), "tg").expect("valid");
        assert_eq!(cfg.audit.retain, Some(Duration::from_secs(90 * 86_400)));
        write(dir.path(), "toolgate.toml", "");
        let cfg = Config::load(Some(&path), "tg").expect("valid");
        assert_eq!(cfg.audit.retain, None);
    }

    #[test]
    fn a_signing_key_that_is_not_a_32_byte_seed_is_refused_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("toolgate.toml");
        write(
            dir.path(),
            "toolgate.toml",
            "[audit]\nsigning_key = \"abcd\"\n",
        );
        let err = Config::load(Some(&path), "tg")
            .expect_err("short key")
            .to_string();
        assert!(
            err.contains("`audit.signing_key`: an audit signing key is 32 random bytes as 64 hex digits (or base64), e.g. from `openssl rand -hex 32`"),
            "{err}"
        );
        let key = "11".repeat(32);
        write(
            dir.path(),
            "toolgate.toml",
            &format!("[audit]\nsigning_key = \"{key}\"\n"),
        );
        Config::load(Some(&path), "tg").expect("a hex seed is valid");
    }
}
