//! Upstream MCP servers: one supervised rmcp client connection each.
//!
//! A supervisor task per upstream connects (stdio child process or streamable
//! HTTP), lists everything (all pages), publishes the listing, and then waits:
//! for the connection to end (a crashed child, a dead server), for a
//! `list_changed` from the upstream (re-list), or for shutdown. A lost
//! connection is retried with exponential backoff (0.5 s doubling to 30 s);
//! meanwhile the upstream's tools are absent and `/readyz` says why. An
//! unreachable upstream never stops the gateway.
//!
//! [`UpstreamClient`] is the client handler on each connection: it routes
//! what the upstream sends back (progress, sampling, elicitation, roots, log
//! messages) through the [`Hub`] to the downstream call it belongs to.

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but are how 2025-11-25 clients and servers talk"
)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientRequest, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, Implementation, ListRootsRequest, ListRootsResult,
    LoggingMessageNotificationParam, ResourceUpdatedNotificationParam, ServerRequest, ServerResult,
};
use rmcp::model::{GetExtensions, ProtocolVersion, RequestMetaObject, SubscriptionFilter};
use rmcp::service::{ClientCacheConfig, ClientLifecycleMode, ClientServiceExt};
use rmcp::service::{
    InboundStreamOrigin, NotificationContext, OriginatingRequestId, Peer, PeerRequestOptions,
    RequestContext, RoleClient, RunningService,
};
use rmcp::transport::IntoTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ErrorData};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catalog::Listing;
use super::hub::{Downstream, Hub};
use super::in_order::InOrder;
use crate::config::{ServerConfig, Transport};
use crate::util::sync::LockExt;

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Upstream stderr lines longer than this are cut before logging.
const MAX_STDERR_LINE: usize = 4096;

/// What `/readyz` reports for an upstream.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    Connecting {
        attempt: u32,
    },
    Ready {
        tools: usize,
        resources: usize,
        prompts: usize,
    },
    Down {
        reason: String,
        attempt: u32,
        retry_in_ms: u64,
    },
}

/// One upstream: its config, its live connection (if any) and its listing.
pub struct Upstream {
    pub config: ServerConfig,
    pub name: Arc<str>,
    /// Hub routing key of the modern link (its request ids and progress
    /// tokens are numbered separately from the legacy link's).
    modern_route: Arc<str>,
    state: Mutex<State>,
    /// The fast lane's link, for an upstream reached over plain HTTP.
    lane: Option<super::lane::LaneLink>,
    /// How this upstream's host name is resolved (then checked).
    resolver: crate::config::HostResolver,
}

struct State {
    peer: Option<Peer<RoleClient>>,
    /// A second, 2026-07-28 link to an HTTP upstream that supports it.
    modern: Option<Peer<RoleClient>>,
    listing: Option<Arc<Listing>>,
    health: Health,
    since: SystemTime,
}

/// What the supervisor tells the gateway.
#[derive(Debug)]
pub enum Event {
    /// The upstream's listing changed (connected, re-listed, or went down).
    ListingChanged { server: Arc<str> },
}

impl Upstream {
    pub fn new(config: ServerConfig, resolver: crate::config::HostResolver) -> Arc<Self> {
        Arc::new(Self {
            name: Arc::from(config.name.as_str()),
            modern_route: Arc::from(format!("{}#2026-07-28", config.name)),
            lane: match &config.transport {
                crate::config::Transport::Http { url, headers } if url.is_plain_http() => {
                    let resolver = super::egress::CheckedResolver::new(
                        &config.name,
                        resolver.clone(),
                        url.allow_link_local,
                    );
                    super::lane::LaneLink::new(&config.name, url, headers, resolver)
                        .map_err(|why| tracing::warn!(server = %config.name, %why, "no fast lane for this upstream; its calls go through rmcp"))
                        .ok()
                }
                _ => None,
            },
            resolver,
            config,
            state: Mutex::new(State {
                peer: None,
                modern: None,
                listing: None,
                health: Health::Connecting { attempt: 1 },
                since: SystemTime::now(),
            }),
        })
    }

    /// The fast lane's link, while the upstream is connected.
    pub fn lane(&self) -> Option<&super::lane::LaneLink> {
        self.state().peer.as_ref()?;
        self.lane.as_ref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// The live connection, or why there is none.
    pub fn peer(&self) -> Result<Peer<RoleClient>, String> {
        let state = self.state();
        match (&state.peer, &state.health) {
            (Some(peer), _) => Ok(peer.clone()),
            (None, Health::Down { reason, .. }) => Err(reason.clone()),
            (None, _) => Err("still connecting".into()),
        }
    }

    /// The link for a caller of one era, and its hub routing key. Modern
    /// (2026-07-28) callers use the modern link when there is one; everyone
    /// else uses the main (2025-11-25 session) link.
    pub fn link(&self, modern: bool) -> Result<(Peer<RoleClient>, Arc<str>), String> {
        if modern && let Some(peer) = self.state().modern.clone() {
            return Ok((peer, self.modern_route.clone()));
        }
        self.peer().map(|p| (p, self.name.clone()))
    }

    pub fn listing(&self) -> Option<Arc<Listing>> {
        self.state().listing.clone()
    }

    pub fn health(&self) -> (Health, SystemTime) {
        let state = self.state();
        (state.health.clone(), state.since)
    }

    /// `text` (an error from the HTTP stack or the upstream) without this
    /// upstream's credentials: its URL shown safely, secrets masked.
    pub fn scrub(&self, text: &str) -> String {
        match &self.config.transport {
            Transport::Http { url, .. } => url.scrub(text),
            Transport::Stdio { .. } => text.to_string(),
        }
    }

    fn set(&self, health: Health, peer: Option<Peer<RoleClient>>, listing: Option<Arc<Listing>>) {
        let mut state = self.state();
        state.health = health;
        if peer.is_none() {
            state.modern = None;
        }
        state.peer = peer;
        state.listing = listing;
        state.since = SystemTime::now();
    }

    /// Keep this upstream connected until `shutdown`.
    pub async fn supervise(
        self: Arc<Self>,
        hub: Arc<Hub>,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
    ) {
        let mut attempt: u32 = 0;
        let mut backoff = BACKOFF_START;
        loop {
            attempt += 1;
            self.set(Health::Connecting { attempt }, None, None);
            let (refresh_tx, mut refresh_rx) = mpsc::channel::<()>(1);
            if let Some(lane) = &self.lane {
                lane.set_refresh(refresh_tx.clone());
            }
            let handler = UpstreamClient {
                server: self.name.clone(),
                hub: hub.clone(),
                refresh: refresh_tx.clone(),
                upstream: Arc::downgrade(&self),
            };
            let connected = tokio::select! {
                r = tokio::time::timeout(self.config.connect_timeout, self.connect(handler, legacy_lifecycle())) => r,
                _ = shutdown.cancelled() => return,
            };
            let reason = match connected {
                Err(_) => format!(
                    "connect timed out after {}s",
                    self.config.connect_timeout.as_secs_f64()
                ),
                Ok(Err(e)) => e,
                Ok(Ok(running)) => {
                    let up_since = tokio::time::Instant::now();
                    let modern = self.connect_modern(&hub, refresh_tx).await;
                    let reason = self
                        .serve_connection(
                            running,
                            modern,
                            &hub,
                            &events,
                            &mut refresh_rx,
                            &shutdown,
                        )
                        .await;
                    if shutdown.is_cancelled() {
                        self.set(
                            Health::Down {
                                reason: "shut down".into(),
                                attempt,
                                retry_in_ms: 0,
                            },
                            None,
                            None,
                        );
                        return;
                    }
                    if up_since.elapsed() >= STABLE_AFTER {
                        attempt = 1;
                        backoff = BACKOFF_START;
                    }
                    reason
                }
            };
            // Error texts of the HTTP stack print URLs in full.
            let reason = self.scrub(&reason);
            tracing::warn!(server = %self.name, %reason, retry_in_ms = backoff.as_millis() as u64, "upstream unavailable");
            self.set(
                Health::Down {
                    reason,
                    attempt,
                    retry_in_ms: backoff.as_millis() as u64,
                },
                None,
                None,
            );
            let _ = events
                .send(Event::ListingChanged {
                    server: self.name.clone(),
                })
                .await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// List, publish, then wait for the connection to end. Returns why it ended.
    /// Open the modern link to an HTTP upstream, if it speaks 2026-07-28.
    /// Its `list_changed` notifications come over a `subscriptions/listen`
    /// stream and ask the supervisor to re-list, like the main link's.
    async fn connect_modern(
        &self,
        hub: &Arc<Hub>,
        refresh: mpsc::Sender<()>,
    ) -> Option<RunningService<RoleClient, UpstreamClient>> {
        if !matches!(self.config.transport, Transport::Http { .. }) {
            return None;
        }
        let handler = UpstreamClient {
            server: self.modern_route.clone(),
            hub: hub.clone(),
            refresh: refresh.clone(),
            upstream: std::sync::Weak::new(),
        };
        match tokio::time::timeout(
            self.config.connect_timeout,
            self.connect(handler, modern_lifecycle()),
        )
        .await
        {
            Ok(Ok(running)) => {
                let peer = running.peer().clone();
                let server = self.name.clone();
                // Ends when the link closes (the subscription stream ends).
                tokio::spawn(async move {
                    let filter = SubscriptionFilter::builder()
                        .tools_list_changed()
                        .prompts_list_changed()
                        .resources_list_changed()
                        .build();
                    let mut subscription = match peer.listen(filter).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%server, error = %e, "upstream offers no subscriptions/listen");
                            return;
                        }
                    };
                    while let Ok(Some(_)) = subscription.next().await {
                        let _ = refresh.try_send(());
                    }
                });
                Some(running)
            }
            Ok(Err(e)) => {
                tracing::info!(server = %self.name, reason = %self.scrub(&e), "no 2026-07-28 link; modern callers use the 2025-11-25 session");
                None
            }
            Err(_) => None,
        }
    }

    async fn serve_connection(
        &self,
        running: RunningService<RoleClient, UpstreamClient>,
        modern: Option<RunningService<RoleClient, UpstreamClient>>,
        hub: &Hub,
        events: &mpsc::Sender<Event>,
        refresh: &mut mpsc::Receiver<()>,
        shutdown: &CancellationToken,
    ) -> String {
        let peer = running.peer().clone();
        let modern_peer = modern.as_ref().map(|m| m.peer().clone());
        // Dropping the modern link's service on return closes it.
        let _modern = modern;
        let stop = running.cancellation_token();
        // A new connection has no subscriptions: renew the ones clients hold.
        for uri in hub.subscribed_uris(&self.name) {
            let renewed = peer
                .subscribe(rmcp::model::SubscribeRequestParams::new(uri.clone()))
                .await;
            if let Err(e) = renewed {
                tracing::warn!(server = %self.name, %uri, error = %e, "could not renew a resource subscription");
            }
        }
        let waiting = running.waiting();
        tokio::pin!(waiting);
        // List at once, then again after every `list_changed`.
        loop {
            {
                match tokio::time::timeout(self.config.connect_timeout, list_everything(&peer))
                    .await
                {
                    Ok(Ok(listing)) => {
                        let health = Health::Ready {
                            tools: listing.tools.len(),
                            resources: listing.resources.len() + listing.resource_templates.len(),
                            prompts: listing.prompts.len(),
                        };
                        tracing::info!(server = %self.name, ?health, "upstream ready");
                        self.set(health, Some(peer.clone()), Some(Arc::new(listing)));
                        if let Some(modern) = &modern_peer {
                            // The transport learns each tool's `x-mcp-header`
                            // parameters from a listing, to send them as headers.
                            let _ = modern.list_all_tools().await;
                        }
                        self.state().modern = modern_peer.clone();
                        let _ = events
                            .send(Event::ListingChanged {
                                server: self.name.clone(),
                            })
                            .await;
                    }
                    Ok(Err(e)) => {
                        stop.cancel();
                        let _ = waiting.await;
                        return format!("listing failed: {e}");
                    }
                    Err(_) => {
                        stop.cancel();
                        let _ = waiting.await;
                        return "listing timed out".into();
                    }
                }
            }
            tokio::select! {
                quit = &mut waiting => {
                    return match quit {
                        Ok(reason) => format!("connection closed ({reason:?})"),
                        Err(e) => format!("connection task failed: {e}"),
                    };
                }
                Some(()) = refresh.recv() => {}
                _ = shutdown.cancelled() => {
                    stop.cancel();
                    let _ = waiting.await;
                    return "shut down".into();
                }
            }
        }
    }

    async fn connect(
        &self,
        handler: UpstreamClient,
        lifecycle: ClientLifecycleMode,
    ) -> Result<RunningService<RoleClient, UpstreamClient>, String> {
        let running = self.open(handler, lifecycle).await?;
        // rmcp caches list and read results per connection. A shared link
        // must not: one caller would get another's cached resource, and a
        // re-list after `list_changed` would see the old list.
        running
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        Ok(running)
    }

    async fn open(
        &self,
        handler: UpstreamClient,
        lifecycle: ClientLifecycleMode,
    ) -> Result<RunningService<RoleClient, UpstreamClient>, String> {
        match &self.config.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args);
                // The key `toolgate stdio` runs as is the gateway's, never
                // an upstream's (the rest of the environment is inherited).
                cmd.env_remove(crate::authenticate::api_keys::STDIO_KEY_ENV);
                for (k, v) in env {
                    cmd.env(k, v.expose());
                }
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start `{command}`: {e}"))?;
                if let Some(stderr) = stderr {
                    let server = self.name.clone();
                    tokio::spawn(async move {
                        let mut lines = tokio::io::BufReader::new(stderr).lines();
                        while let Ok(Some(mut line)) = lines.next_line().await {
                            line.truncate(line.floor_char_boundary(MAX_STDERR_LINE));
                            tracing::info!(server = %server, "upstream stderr: {line}");
                        }
                    });
                }
                let transport = InOrder::new(
                    IntoTransport::<RoleClient, _, _>::into_transport(transport),
                    handler.hub.clone(),
                    handler.server.clone(),
                );
                handler
                    .serve_with_lifecycle(transport, lifecycle.clone())
                    .await
                    .map_err(|e| format!("initialize failed: {e}"))
            }
            Transport::Http { url, headers } => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.expose())
                    .max_concurrent_requests(256);
                config.channel_buffer_capacity = 256;
                for (k, v) in headers {
                    let name = k
                        .parse()
                        .map_err(|_| format!("header name `{k}` is invalid"))?;
                    let value = v
                        .expose()
                        .parse()
                        .map_err(|_| format!("header `{k}` has an invalid value"))?;
                    config.custom_headers.insert(name, value);
                }
                let client = super::egress::upstream_client(&self.config, self.resolver.clone())
                    .map_err(|e| e.to_string())?;
                // The fast lane shares this link's session (see `lane::link`).
                let client = match &self.lane {
                    Some(lane) => lane.spy(client),
                    None => super::lane::SessionSpy::detached(client),
                };
                let transport = InOrder::new(
                    StreamableHttpClientTransport::with_client(client, config),
                    handler.hub.clone(),
                    handler.server.clone(),
                );
                handler
                    .serve_with_lifecycle(transport, lifecycle.clone())
                    .await
                    .map_err(|e| format!("cannot connect to {url}: {e}"))
            }
        }
    }
}

/// The main link: a 2025-11-25 session, which every upstream speaks and
/// which carries server-to-client requests, logging and subscriptions.
fn legacy_lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Initialize
}

/// The modern link (HTTP upstreams only): stateless 2026-07-28, so
/// `InputRequiredResult`s and per-request client capabilities pass through
/// for 2026-07-28 callers.
fn modern_lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

async fn list_everything(peer: &Peer<RoleClient>) -> Result<Listing, rmcp::ServiceError> {
    let caps = peer
        .peer_info()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let mut listing = Listing::default();
    if caps.tools.is_some() {
        listing.tools = peer.list_all_tools().await?;
    }
    if caps.resources.is_some() {
        listing.resources = peer.list_all_resources().await?;
        listing.resource_templates = peer.list_all_resource_templates().await?;
    }
    if caps.prompts.is_some() {
        listing.prompts = peer.list_all_prompts().await?;
    }
    Ok(listing)
}

/// The client handler on one upstream connection.
pub struct UpstreamClient {
    server: Arc<str>,
    hub: Arc<Hub>,
    /// Asks the supervisor to re-list; capacity 1, so bursts coalesce.
    refresh: mpsc::Sender<()>,
    /// For requests the fast lane relayed on this link's session.
    upstream: std::sync::Weak<Upstream>,
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
