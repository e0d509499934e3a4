//! The MCP front end's state: the upstreams, the catalog built from their
//! listings, the hub that routes messages back to callers, the fast lane,
//! and the spine every call runs through. It is the [`CallKind::Env`] of
//! every MCP kind of call.
//!
//! [`CallKind::Env`]: crate::call::CallKind::Env

#![expect(
    deprecated,
    reason = "logging is deprecated by SEP-2577 but is how 2025-11-25 clients and servers talk"
)]

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rmcp::model::SetLevelRequestParams;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, Listing};
use super::hub::{Hub, ListChanged};
use super::ingress::lane::FastLane;
use super::upstream::{self, Health, Upstream};
use super::views::ListCache;
use crate::authenticate::sessions::SessionOwners;
use crate::config::Config;
use crate::integrity::Integrity;
use crate::pipeline::Pipeline;

/// Everything an MCP call needs besides the spine's own state.
pub struct McpState {
    /// The spine: policies, audit trail, approvals, admission.
    pub pipeline: Arc<Pipeline>,
    pub config: Arc<Config>,
    pub(super) upstreams: Vec<Arc<Upstream>>,
    by_name: HashMap<Arc<str>, Arc<Upstream>>,
    catalog: ArcSwap<Catalog>,
    pub hub: Arc<Hub>,
    /// `tools/call` forwarded without rmcp's machinery (see its module).
    pub fast_lane: FastLane,
    /// Who opened each MCP session (only they may use it).
    pub session_owners: SessionOwners,
    /// Per-caller tool lists (see [`super::views`]).
    pub list_views: ListCache,
    /// Pinned definitions and the poisoning lint: which offered tools the
    /// catalog exposes.
    pub integrity: Arc<Integrity>,
    /// Built once: `get_info` runs several times per request.
    instructions: String,
}

fn instructions(servers: &[crate::config::ServerConfig]) -> String {
    let mut s = String::from(
        "toolgate: one MCP server in front of these upstreams (tools are named {server}__{tool}):",
    );
    for server in servers {
        s.push_str(&format!("\n- {}", server.name));
        if let Some(d) = &server.description {
            s.push_str(&format!(": {d}"));
        }
    }
    s
}

impl McpState {
    /// The state, with one supervisor per upstream started (stopped by
    /// `shutdown`).
    pub fn start(
        config: Arc<Config>,
        pipeline: Arc<Pipeline>,
        integrity: Arc<Integrity>,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let upstreams: Vec<_> = config
            .servers
            .iter()
            .map(|s| Upstream::new(s.clone(), config.host_resolver.clone()))
            .collect();
        let max_sessions = config.http.max_sessions;
        let by_name = upstreams
            .iter()
            .map(|u| (u.name.clone(), u.clone()))
            .collect();
        let state = Arc::new(McpState {
            pipeline,
            instructions: instructions(&config.servers),
            config,
            upstreams,
            by_name,
            catalog: ArcSwap::from_pointee(Catalog::default()),
            hub: Arc::new(Hub::new(max_sessions)),
            fast_lane: FastLane::new(Arc::new(LocalSessionManager::default())),
            session_owners: SessionOwners::new(2 * max_sessions),
            list_views: Default::default(),
            integrity,
        });
        // Bounded: a supervisor waits if the catalog task falls behind.
        let (events_tx, events_rx) = mpsc::channel(64);
        tokio::spawn(catalog_task(Arc::downgrade(&state), events_rx));
        for upstream in &state.upstreams {
            tokio::spawn(upstream.clone().supervise(
                state.hub.clone(),
                events_tx.clone(),
                shutdown.clone(),
            ));
        }
        state
    }

    pub fn catalog(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.catalog.load()
    }

    pub fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.by_name.get(name).cloned()
    }

    /// Rebuild the catalog from every upstream's current listing, each
    /// tool vetted first (pins, lint); returns what changed for clients.
    async fn rebuild_catalog(&self) -> ListChanged {
        let listings: Vec<Option<Arc<Listing>>> =
            self.upstreams.iter().map(|u| u.listing()).collect();
        let held = super::vet::vet(self, &listings).await;
        let mut catalog = Catalog::build(
            self.upstreams
                .iter()
                .zip(&listings)
                .map(|(u, l)| (&u.config, l.as_deref())),
            &held,
        );
        catalog.listings = listings;
        for p in &catalog.problems {
            tracing::warn!(server = %p.server, "{}", p.message);
        }
        let old = self.catalog.swap(Arc::new(catalog));
        let new = self.catalog.load();
        ListChanged {
            tools: old.tools != new.tools,
            resources: old.resources != new.resources
                || old.resource_templates != new.resource_templates,
            prompts: old.prompts != new.prompts,
        }
    }

    /// Shown to clients at `initialize`.
    pub fn instructions(&self) -> &str {
        &self.instructions
    }

    /// Whether any connected upstream offers the tasks extension.
    pub fn upstreams_support_tasks(&self) -> bool {
        self.upstreams.iter().any(|u| {
            u.link(true)
                .ok()
                .and_then(|(peer, _)| peer.peer_info())
                .is_some_and(|info| info.capabilities.supports_tasks())
        })
    }

    pub async fn set_upstream_log_level(&self, request: SetLevelRequestParams) {
        for u in &self.upstreams {
            let Ok(peer) = u.peer() else { continue };
            if peer
                .peer_info()
                .is_some_and(|i| i.capabilities.logging.is_some())
            {
                let _ = peer.set_level(request.clone()).await;
            }
        }
    }

    /// Each upstream's state, and whether every one has been tried at
    /// least once. A down upstream does not make the gateway unready (its
    /// tools are simply absent); the entries say which upstreams are up and
    /// why not, and where they are (URLs without credentials).
    pub fn upstream_health(&self) -> (bool, Vec<serde_json::Value>) {
        let mut ready = true;
        let catalog = self.catalog();
        let upstreams = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                // Not ready while the catalog lags an upstream's listing
                // (its tools are being vetted).
                let built_from = catalog.listings.get(i).cloned().flatten();
                let listing = u.listing();
                let current = match (&built_from, &listing) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if !current && listing.is_some() {
                    ready = false;
                }
                let (health, since) = u.health();
                if matches!(health, Health::Connecting { attempt: 1 }) {
                    ready = false;
                }
                let since = since
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut entry = serde_json::json!({
                    "name": &*u.name,
                    "transport": u.config.transport.kind(),
                    "since_unix": since,
                    "health": health,
                });
                if let crate::config::Transport::Http { url, .. } = &u.config.transport {
                    entry["url"] = url.to_string().into();
                }
                entry
            })
            .collect();
        (ready, upstreams)
    }

    /// What each server exposes to which group under the policies in
    /// force, and why the rest is hidden (`GET /admin/v1/status`).
    pub fn exposure(&self) -> Vec<super::exposure::ServerExposure> {
        let catalog = self.catalog();
        super::exposure::summarize(
            &self.pipeline.policies.current(),
            &catalog,
            &self.config.servers,
            |name| self.upstream(name).is_some_and(|u| u.listing().is_some()),
        )
    }
}

impl McpState {
    /// Record who opened `session` (an MCP session over HTTP); when the record is full, forget the
    /// sessions rmcp has ended first.
    pub async fn remember_session_owner(&self, session: &str, subject: &str, elicits: bool) {
        if self.session_owners.len() >= self.config.http.max_sessions {
            let live = self.fast_lane.sessions();
            let live = live.sessions.read().await;
            self.session_owners.prune(|s| live.contains_key(s));
        }
        self.session_owners.opened(session, subject, elicits);
    }

    pub async fn wait_upstreams_stopped(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.upstreams.iter().all(|u| u.peer().is_err()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// How often a replica looks for tool reviews decided elsewhere (another
/// replica, `toolgate tools review` at the command line).
pub const PIN_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Rebuild the catalog when an upstream's listing changes, when a reviewer
/// decides on a tool definition here, or when the store says one was
/// decided elsewhere; tell clients whose lists changed.
async fn catalog_task(
    state: std::sync::Weak<McpState>,
    mut events: mpsc::Receiver<upstream::Event>,
) {
    let mut poll = tokio::time::interval(PIN_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut epoch = None;
    loop {
        let integrity = match state.upgrade() {
            Some(state) => state.integrity.clone(),
            None => return,
        };
        let why = tokio::select! {
            event = events.recv() => match event {
                Some(upstream::Event::ListingChanged { server }) => {
                    // Coalesce a burst (many upstreams coming up at start)
                    // into one rebuild.
                    while events.try_recv().is_ok() {}
                    format!("listing of {server}")
                }
                None => return,
            },
            () = integrity.changed.notified() => "a tool review".to_string(),
            _ = poll.tick() => {
                let Some(state) = state.upgrade() else { return };
                let now = crate::integrity::pins::epoch(state.pipeline.audit.store().pool()).await.ok();
                if now.is_none() || now == epoch {
                    continue;
                }
                let first = epoch.is_none();
                epoch = now;
                if first {
                    continue;
                }
                "a tool review elsewhere".to_string()
            }
        };
        let Some(state) = state.upgrade() else { return };
        let changed = state.rebuild_catalog().await;
        if let Ok(now) = crate::integrity::pins::epoch(state.pipeline.audit.store().pool()).await {
            epoch = Some(now);
        }
        tracing::debug!(%why, ?changed, "catalog rebuilt");
        state.hub.broadcast_list_changed(changed);
    }
}
