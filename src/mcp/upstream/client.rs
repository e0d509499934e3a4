//! The client handler on each upstream connection ([`UpstreamClient`]):
//! what an upstream sends back (progress, sampling, elicitation, roots, log
//! messages, resource updates, `list_changed`) is routed through the
//! [`Hub`] to the downstream call it belongs to.

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but are how 2025-11-25 clients and servers talk"
)]

use std::sync::Arc;

use rmcp::model::GetExtensions;
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequest, ElicitRequestParams, ElicitResult, Implementation,
    ListRootsRequest, ListRootsResult, LoggingMessageNotificationParam,
    ResourceUpdatedNotificationParam, ServerRequest,
};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, Peer, PeerRequestOptions,
    RequestContext, RoleClient,
};
use rmcp::{ClientHandler, ErrorData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Upstream;
use crate::mcp::hub::{Downstream, Hub};

/// The client handler on one upstream connection.
pub struct UpstreamClient {
    pub(super) server: Arc<str>,
    pub(super) hub: Arc<Hub>,
    /// Asks the supervisor to re-list; capacity 1, so bursts coalesce.
    pub(super) refresh: mpsc::Sender<()>,
    /// For requests the fast lane relayed on this link's session.
    pub(super) upstream: std::sync::Weak<Upstream>,
}

impl UpstreamClient {
    /// Send a server-to-client request on to the downstream caller it belongs to.
    async fn relay(
        &self,
        request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ServerResultOrClient, ErrorData> {
        let origin = match context.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
            _ => None,
        };
        let target = self
            .hub
            .request_target(&self.server, origin.as_ref())
            .await
            .map_err(|why| {
                tracing::warn!(server = %self.server, %why, "server-to-client request refused");
                ErrorData::invalid_request(
                    format!("toolgate cannot deliver this request: {why}"),
                    None,
                )
            })?;
        let progress_back = context
            .meta
            .get_progress_token()
            .map(|token| (context.peer.clone(), token));
        relay_to(&self.hub, &target, request, progress_back, &context.ct).await
    }

    fn request_refresh(&self) {
        // Full means a re-list is already pending, which will see this change.
        let _ = self.refresh.try_send(());
    }
}

type ServerResultOrClient = rmcp::model::ClientResult;

/// Send a server-to-client request to the caller behind `target` and wait
/// for its answer (or for `cancel`).
/// `progress_back` is the upstream link and the upstream's progress token,
/// when it asked for progress on this request: the caller's progress
/// notifications are routed there.
pub async fn relay_to(
    hub: &Arc<Hub>,
    target: &Downstream,
    mut request: ServerRequest,
    progress_back: Option<(Peer<RoleClient>, rmcp::model::ProgressToken)>,
    cancel: &CancellationToken,
) -> Result<ServerResultOrClient, ErrorData> {
    // Ride the caller's own response stream (SEP-2260), not the standalone one.
    request
        .extensions_mut()
        .insert(OriginatingRequestId(target.request_id.clone()));
    // Send from a fresh task: inside this handler rmcp would replace our
    // marker with the id of the upstream's request (a task-local).
    let sender = target.peer.clone();
    let handle = tokio::spawn(async move {
        sender
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
    })
    .await
    .map_err(|e| ErrorData::internal_error(format!("relay task failed: {e}"), None))?
    .map_err(|e| ErrorData::internal_error(format!("downstream client unavailable: {e}"), None))?;
    let downstream_id = handle.id.clone();
    let _progress_route = progress_back.map(|(upstream, token)| {
        hub.register_reverse_progress(
            target.session,
            handle.progress_token.clone(),
            upstream,
            token,
        )
    });
    let peer = target.peer.clone();
    tokio::select! {
        r = handle.await_response() => r.map_err(service_to_error),
        _ = cancel.cancelled() => {
            let _ = peer.notify_cancelled(rmcp::model::CancelledNotificationParam::new(Some(downstream_id), Some("cancelled".into()))).await;
            Err(ErrorData::internal_error("cancelled", None))
        }
    }
}

fn service_to_error(e: rmcp::ServiceError) -> ErrorData {
    match e {
        rmcp::ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("downstream client: {other}"), None),
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder()
                .enable_roots()
                .enable_roots_list_changed()
                .enable_sampling()
                .enable_elicitation()
                .build(),
            Implementation::new("toolgate", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        match self
            .relay(
                ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params)),
                &context,
            )
            .await?
        {
            rmcp::model::ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(ErrorData::internal_error(
                "downstream client sent an unexpected answer to sampling",
                None,
            )),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        match self
            .relay(
                ServerRequest::ElicitRequest(ElicitRequest::new(params)),
                &context,
            )
            .await?
        {
            rmcp::model::ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "downstream client sent an unexpected answer to elicitation",
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        match self
            .relay(
                ServerRequest::ListRootsRequest(ListRootsRequest::default()),
                &context,
            )
            .await?
        {
            rmcp::model::ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "downstream client sent an unexpected answer to roots/list",
                None,
            )),
        }
    }

    // Progress never reaches the handler: [`InOrder`] takes it off the
    // link, to keep its order.

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // Log messages carry no request tag: deliver only when unambiguous,
        // counting the fast lane's calls on this session too.
        let upstream = self.upstream.upgrade();
        let lane = upstream.as_ref().and_then(|u| u.lane.as_ref());
        let lane_calls = lane.map_or(0, |l| l.calls_in_flight());
        match (self.hub.sole_target(&self.server), lane) {
            (Some(target), _) if lane_calls == 0 => {
                let _ = target.peer.notify_logging_message(params).await;
            }
            (None, Some(lane)) if !self.hub.has_calls(&self.server) => {
                let notification = rmcp::model::ServerJsonRpcMessage::notification(
                    rmcp::model::ServerNotification::LoggingMessageNotification(
                        rmcp::model::LoggingMessageNotification::new(params),
                    ),
                );
                if !lane.deliver_to_sole_caller(&notification) {
                    tracing::debug!(server = %self.server, "upstream log message with no single caller");
                }
            }
            _ => {
                tracing::debug!(server = %self.server, level = ?params.level, "upstream log message with no single caller")
            }
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        for subscriber in self.hub.resource_subscribers(&self.server, &params.uri) {
            let mut update = params.clone();
            update.uri = subscriber.exposed_uri;
            let _ = subscriber.peer.notify_resource_updated(update).await;
        }
    }

    async fn on_cancelled(
        &self,
        params: rmcp::model::CancelledNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // rmcp cancels what it relayed itself; the lane relays on the same
        // session and must hear of the rest.
        if let Some(upstream) = self.upstream.upgrade()
            && let Some(lane) = &upstream.lane
            && let Some(id) = params.request_id
        {
            lane.upstream_cancelled(&id);
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.request_refresh();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.request_refresh();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.request_refresh();
    }
}
