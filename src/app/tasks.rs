//! The gateway's background tasks: reloading policies when their files
//! change (and telling clients whose lists changed), and writing API keys'
//! last-use times. Started by [`super::Gateway::start`] and
//! [`super::HttpServer::start`]; each ends with the gateway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::authenticate::ApiKeys;
use crate::mcp::hub::ListChanged;

/// How often `policies/` is checked for changes.
const POLICY_CHECK: Duration = Duration::from_secs(1);

/// Most distinct connected callers whose lists are compared after a policy
/// reload; past it, every client is told to list again.
const MAX_COMPARED_CALLERS: usize = 1000;

/// How often API keys' last-use times are written.
const LAST_USED_FLUSH: Duration = Duration::from_secs(30);

/// Reload policies when their files change (until the gateway stops); a
/// swap may change what clients see, so each client whose lists differ
/// under the new set is told to list again.
pub(super) async fn policy_task(gw: std::sync::Weak<Gateway>) {
    let mut refused = None;
    let mut guardrails_refused = None;
    loop {
        tokio::time::sleep(POLICY_CHECK).await;
        let Some(gw) = gw.upgrade() else { return };
        if gw.shutdown.is_cancelled() {
            return;
        }
        if let Some(guardrails) = &gw.guardrails {
            reload_guardrails(&gw, guardrails, false, &mut guardrails_refused).await;
        } else if let Some(mask) = &gw.audit_mask {
            reload_guardrails(&gw, mask, true, &mut guardrails_refused).await;
        }
        let old = gw.pipeline.policies.current();
        let mut record = crate::audit::Record::new(crate::audit::Kind::PolicyReload);
        match gw.pipeline.policies.reload_if_changed(&mut refused) {
            crate::authorize::Reload::Unchanged => continue,
            crate::authorize::Reload::Swapped => {
                let new = gw.pipeline.policies.current();
                record.outcome = Some("ok");
                record.detail = Some(serde_json::json!({
                    "version": new.version,
                    "policies": new.len(),
                    "digest": crate::util::digest::hex(&new.digest),
                }));
                gw.pipeline.audit.submit(record).await;
                announce_policy_change(&gw, old).await;
            }
            crate::authorize::Reload::Refused(errors) => {
                record.outcome = Some("refused");
                record.detail = Some(serde_json::json!({
                    "version_in_force": old.version,
                    "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                }));
                gw.pipeline.audit.submit(record).await;
            }
        }
    }
}

/// Tell each connected client whose lists differ between the `old` policies
/// and the ones now in force (comparing is a list per caller and set:
/// done off the async workers).
async fn announce_policy_change(gw: &Arc<Gateway>, old: Arc<crate::authorize::Policies>) {
    let everything = ListChanged {
        tools: true,
        resources: true,
        prompts: true,
    };
    let callers = gw.mcp.hub.callers();
    if callers.len() > MAX_COMPARED_CALLERS {
        gw.mcp.hub.broadcast_list_changed(everything);
        return;
    }
    let compare = gw.clone();
    let changed = tokio::task::spawn_blocking(move || {
        let new = compare.pipeline.policies.current();
        callers
            .into_iter()
            .map(|c| {
                let changed = crate::mcp::views::changed(&compare.mcp, &old, &new, &c);
                (c, changed)
            })
            .collect::<HashMap<_, _>>()
    })
    .await
    .unwrap_or_default();
    // A session opened meanwhile is told everything, to be safe.
    gw.mcp
        .hub
        .notify_list_changed(|c| changed.get(c).copied().unwrap_or(everything));
}

/// Write API keys' last-use times now and then, and once more at shutdown.
pub(super) async fn flush_last_used(keys: Arc<ApiKeys>, stop: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(LAST_USED_FLUSH) => false,
            _ = stop.cancelled() => true,
        };
        if let Err(e) = keys.flush_last_used().await {
            tracing::warn!(error = %e, "could not record API keys' last use");
        }
        if stopping {
            return;
        }
    }
}

/// Reload the guardrails if their files changed, or without guardrails
/// (`mask_only`) the secret rules that mask the audit trail; a set with
/// errors is refused whole (the one in force stays), and either way the
/// audit trail says so.
async fn reload_guardrails(
    gw: &Gateway,
    guardrails: &crate::guardrails::Guardrails,
    mask_only: bool,
    refused: &mut Option<[u8; 32]>,
) {
    use crate::guardrails::load::{self, Reload};
    let dir = &gw.config.policies_dir;
    let (key, what, outcome) = if mask_only {
        let outcome = load::reload_secrets_only_if_changed(guardrails, dir, refused);
        ("audit_mask", "audit masking rules", outcome)
    } else {
        let outcome = load::reload_if_changed(guardrails, dir, refused);
        ("guardrails", "guardrails", outcome)
    };
    let mut record = crate::audit::Record::new(crate::audit::Kind::PolicyReload);
    match outcome {
        Reload::Unchanged => return,
        Reload::Swapped => {
            if mask_only && dir.join(load::POLICY_FILE).is_file() {
                tracing::warn!(
                    dir = %dir.display(),
                    "guardrails.toml appeared: calls are inspected only after a restart"
                );
            }
            let set = guardrails.current();
            let rules = set.policy().rules.len();
            tracing::info!(rules, dir = %dir.display(), "{what} reloaded");
            let mut detail = serde_json::json!({ "digest": crate::util::digest::hex(&set.digest) });
            if !mask_only {
                detail["rules"] = rules.into();
            }
            record.outcome = Some("ok");
            record.detail = Some(serde_json::json!({ key: detail }));
        }
        Reload::Refused(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::error!(?errors, "{what} not reloaded: the ones in force stay");
            record.outcome = Some("refused");
            record.detail = Some(serde_json::json!({ key: { "errors": errors } }));
        }
    }
    gw.pipeline.audit.submit(record).await;
}
