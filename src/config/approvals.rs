//! `[approvals]` in `toolgate.toml`: whether held calls wait, and the
//! webhook that announces requests and decisions.

use std::path::Path;

use serde::Deserialize;

use super::forward::{ForwardConfig, RawForward, load_forward};
use super::http_url;
use super::raw::Report;

/// How calls that approval gates hold behave (`[approvals]`).
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// The call stays open until its request is decided (true), or returns
    /// at once saying a request is pending, and the identical call made
    /// again goes through once it is approved (false).
    pub wait: bool,
    /// New requests and decisions are POSTed here (`[approvals.webhook]`).
    pub webhook: Option<ApprovalsWebhook>,
}

/// `[approvals.webhook]`: where and in which shape requests and decisions
/// are announced.
#[derive(Debug, Clone)]
pub struct ApprovalsWebhook {
    pub forward: ForwardConfig,
    /// Slack's incoming-webhook shape (`{"text": …}`) instead of the
    /// generic `{"events": […]}`.
    pub slack: bool,
    /// The gateway's address as approvers reach it, for links to
    /// `/ui/approvals/{id}`.
    pub ui_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawApprovals {
    wait: Option<bool>,
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWebhook {
    url: Option<String>,
    authorization: Option<String>,
    batch: Option<usize>,
    interval: Option<String>,
    max_backoff: Option<String>,
    format: Option<String>,
    ui_url: Option<String>,
}

pub(super) fn load_approvals(
    raw: RawApprovals,
    base: &Path,
    report: &mut Report<'_>,
) -> ApprovalsConfig {
    let webhook = raw.webhook.map(|w| {
        let slack = match w.format.as_deref() {
            None | Some("json") => false,
            Some("slack") => true,
            Some(other) => {
                report.error(
                    "approvals.webhook.format",
                    format!("`{other}`: use \"json\" (the generic payload) or \"slack\" (an incoming webhook)"),
                );
                false
            }
        };
        if let Some(ui) = &w.ui_url
            && let Err(why) = http_url(ui)
        {
            report.error(
                "approvals.webhook.ui_url",
                format!("{why}: the gateway's address as approvers open it, e.g. \"https://toolgate.example.com\""),
            );
        }
        let forward = RawForward {
            url: w.url,
            authorization: w.authorization,
            batch: w.batch,
            interval: w.interval,
            max_backoff: w.max_backoff,
        };
        ApprovalsWebhook {
            forward: load_forward(forward, "approvals.webhook", base, report),
            slack,
            ui_url: w.ui_url.map(|u| u.trim_end_matches('/').to_string()),
        }
    });
    ApprovalsConfig {
        wait: raw.wait.unwrap_or(true),
        webhook,
    }
}
