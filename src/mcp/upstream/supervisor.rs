//! The supervisor: one task per upstream that connects (stdio child or
//! streamable HTTP, plus the 2026-07-28 link where the upstream has one),
//! lists everything, publishes the listing, and reconnects with backoff
//! when the connection ends.

#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but are how 2025-11-25 clients and servers talk"
)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ProtocolVersion, SubscriptionFilter};
use rmcp::service::{ClientCacheConfig, ClientLifecycleMode, ClientServiceExt};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::IntoTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Event, Health, Upstream, UpstreamClient};
use crate::config::Transport;
use crate::mcp::catalog::Listing;
use crate::mcp::hub::Hub;
use crate::mcp::in_order::InOrder;

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Upstream stderr lines longer than this are cut before logging.
const MAX_STDERR_LINE: usize = 4096;

impl Upstream {
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
                let client = crate::egress::upstream_client(&self.config, self.resolver.clone())
                    .map_err(|e| e.to_string())?;
                // The fast lane shares this link's session (see `link`).
                let client = match &self.lane {
                    Some(lane) => lane.spy(client),
                    None => super::SessionSpy::detached(client),
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
