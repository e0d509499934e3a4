//! Sending one request to an upstream over its rmcp link: progress routed
//! back, the caller's cancellation passed on, the per-call timeout applied.

use std::sync::Arc;

use rmcp::model::RequestMetaObject;
use rmcp::model::{ClientRequest, ServerResult};
use rmcp::service::PeerRequestOptions;
use tokio_util::sync::CancellationToken;

use super::Upstream;
use crate::mcp::hub::{Downstream, Hub};

/// Forward one request to an upstream, with progress routed back, the
/// caller's cancellation passed on, and the per-call timeout applied.
pub async fn send(
    upstream: &Upstream,
    hub: &Arc<Hub>,
    request: ClientRequest,
    downstream: Option<Downstream>,
    cancel: &CancellationToken,
) -> Result<ServerResult, crate::call::CallError> {
    use crate::call::CallError;
    let server = || upstream.config.name.clone();
    let modern = downstream.as_ref().is_some_and(|d| d.modern);
    let (peer, route) = upstream
        .link(modern)
        .map_err(|reason| CallError::UpstreamUnavailable {
            server: server(),
            reason,
        })?;
    let timeout = upstream.config.call_timeout;
    // On the 2026-07-28 link the upstream judges the caller's capabilities,
    // not the gateway's (a 2025-11-25 session only knows the gateway's).
    let mut options = PeerRequestOptions::no_options();
    let on_modern_link = route != upstream.name;
    if on_modern_link && let Some(caps) = downstream.as_ref().and_then(|d| d.capabilities.clone()) {
        let mut meta = RequestMetaObject::new();
        meta.set_client_capabilities(caps);
        options = options.with_meta(meta);
    }
    let handle = peer
        .send_request_with_option(request, options)
        .await
        .map_err(|e| CallError::UpstreamUnavailable {
            server: server(),
            reason: upstream.scrub(&e.to_string()),
        })?;
    let id = handle.id.clone();
    let _registration =
        downstream.map(|d| hub.register(&route, id.clone(), handle.progress_token.clone(), d));
    let cancel_upstream = |reason: &str| {
        let peer = peer.clone();
        let param = rmcp::model::CancelledNotificationParam::new(
            Some(id.clone()),
            Some(reason.to_string()),
        );
        async move {
            let _ = peer.notify_cancelled(param).await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout(timeout, handle.await_response()) => match r {
            Ok(Ok(result)) => {
                // Let a progress notification that arrived just before the
                // result be forwarded first, so the caller sees them in order.
                tokio::task::yield_now().await;
                Ok(result)
            }
            Ok(Err(rmcp::ServiceError::McpError(error))) => Err(CallError::UpstreamRejected(Box::new(crate::call::Rejection {
                server: server(),
                code: i64::from(error.code.0),
                message: error.message.into_owned(),
                data: error.data,
            }))),
            Ok(Err(e)) => Err(CallError::UpstreamFailed { server: server(), reason: upstream.scrub(&e.to_string()) }),
            Err(_) => {
                cancel_upstream("toolgate: call timeout").await;
                Err(CallError::UpstreamTimeout { server: server(), after: timeout })
            }
        },
        _ = cancel.cancelled() => {
            cancel_upstream("cancelled by the client").await;
            Err(CallError::Cancelled)
        }
    }
}
