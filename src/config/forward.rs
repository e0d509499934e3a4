//! A `[….forward]`-shaped table: where and how records or events are
//! POSTed, in batches (`[audit.forward]`, `[approvals.webhook]`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{Report, duration_or};
use super::{Secret, http_url, secret};

/// Where and how to forward (`[audit.forward]`).
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub url: String,
    /// Sent as the `Authorization` header, if set.
    pub authorization: Option<Secret>,
    /// Records per request.
    pub batch: usize,
    /// How often to look for new records when caught up.
    pub interval: Duration,
    /// Longest wait between retries of a failed request.
    pub max_backoff: Duration,
}

/// Most records per request.
pub const MAX_FORWARD_BATCH: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawForward {
    pub(super) url: Option<String>,
    pub(super) authorization: Option<String>,
    pub(super) batch: Option<usize>,
    pub(super) interval: Option<String>,
    pub(super) max_backoff: Option<String>,
}

/// A `[….forward]`-shaped table (`[audit.forward]`, `[approvals.webhook]`)
/// at `key`.
pub(super) fn load_forward(
    f: RawForward,
    key: &str,
    base: &Path,
    report: &mut Report<'_>,
) -> ForwardConfig {
    let url = f.url.unwrap_or_default();
    if let Err(why) = http_url(&url) {
        report.error(
            &format!("{key}.url"),
            format!(
                "{why}: the receiver's http(s):// URL, e.g. \"https://siem.example.com/ingest\""
            ),
        );
    }
    let batch = f.batch.unwrap_or(100);
    if !(1..=MAX_FORWARD_BATCH).contains(&batch) {
        report.error(
            &format!("{key}.batch"),
            format!("{batch}: use 1 to {MAX_FORWARD_BATCH} records per request"),
        );
    }
    let interval = duration_or(
        report,
        &format!("{key}.interval"),
        f.interval.as_deref(),
        Duration::from_secs(1),
    );
    if interval < Duration::from_millis(100) {
        report.error(&format!("{key}.interval"), "must be at least 100ms");
    }
    let max_backoff = duration_or(
        report,
        &format!("{key}.max_backoff"),
        f.max_backoff.as_deref(),
        Duration::from_secs(60),
    );
    let authorization = f.authorization.map(|text| {
        Secret::new(secret::resolve(&text, base, &[]).unwrap_or_else(|e| {
            report.error(&format!("{key}.authorization"), e.to_string());
            String::new()
        }))
    });
    ForwardConfig {
        url,
        authorization,
        batch,
        interval,
        max_backoff,
    }
}
