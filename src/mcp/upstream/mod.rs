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

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rmcp::service::{Peer, RoleClient};

use crate::config::{ServerConfig, Transport};
use crate::mcp::catalog::Listing;
use crate::util::sync::LockExt;

mod client;
pub mod link;
mod send;
mod sse;
mod supervisor;

pub use client::{UpstreamClient, relay_to};
pub use link::{LaneLink, SessionSpy};
pub use send::send;

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
    lane: Option<link::LaneLink>,
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
                    let resolver = crate::egress::CheckedResolver::new(
                        &crate::egress::server_place(&config.name),
                        resolver.clone(),
                        url.allow_link_local,
                    );
                    link::LaneLink::new(&config.name, url, headers, resolver)
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
    pub fn lane(&self) -> Option<&link::LaneLink> {
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
}
