//! What each upstream server exposes to which group under the policies in
//! force, and why the rest is hidden: `toolgate check` prints it and
//! `GET /admin/v1/status` returns it. It asks the same question a tool
//! list does (visibility, see `mcp::views`) for one representative caller
//! per group, and names the policies that decided each hidden tool.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, Listing, annotations};
use super::hub::Hub;
use super::upstream::{Health, Upstream};
use crate::authorize::{Policies, ServerFacts};
use crate::call::{Annotations, Query, Target};
use crate::call::{Caller, Credential};
use crate::config::ServerConfig;

/// The name shown for a caller in no group.
pub const NO_GROUP: &str = "(no group)";

/// Who the answers are for: an API key holding the group (what
/// `toolgate keys create --group` makes, and the key `serve` prints on its
/// first start), calling from the loopback address.
pub const ASKED_FOR: &str = "an API key in each group the policies name";

/// Why tools are hidden: the deciding policies, and those that could not
/// be evaluated.
type Why = (Vec<String>, Vec<String>);

/// One server's tools as the groups see them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerExposure {
    pub server: String,
    /// The server's file (`servers/<name>.toml`).
    pub file: String,
    /// Its `[policy] trusted`: whether its tool annotations are believed.
    pub trusted: bool,
    /// How many tools it offers through the gateway; `None` while it is
    /// down (nothing is known about its tools).
    pub tools: Option<usize>,
    /// Per group the policies name, then [`NO_GROUP`].
    pub groups: Vec<GroupExposure>,
    /// What to change for an untrusted server whose hidden tools would be
    /// visible if its annotations were believed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What one group sees of one server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupExposure {
    pub group: String,
    pub visible: usize,
    /// The hidden tools, by the policies that hid them.
    pub hidden: Vec<Hidden>,
}

/// Tools hidden from a group by the same determining policies.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hidden {
    /// The `forbid` policies that refused them; empty when no policy
    /// permits them (default deny).
    pub policies: Vec<String>,
    /// Policies that could not be evaluated (each one denies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub tools: usize,
    /// Of those, how many the group would see if the server were trusted.
    pub visible_if_trusted: usize,
}

/// Each configured server's exposure; `is_up` says whether a server's
/// listing is known (a down server's tools are not in `catalog`).
pub fn summarize(
    policies: &Policies,
    catalog: &Catalog,
    servers: &[ServerConfig],
    is_up: impl Fn(&str) -> bool,
) -> Vec<ServerExposure> {
    let mut groups: Vec<Option<String>> = policies.groups().into_iter().map(Some).collect();
    groups.push(None);
    let callers: Vec<(String, Caller)> = groups
        .iter()
        .map(|group| {
            let caller = Caller {
                groups: group.iter().cloned().collect(),
                address: Some(IpAddr::from([127, 0, 0, 1])),
                ..Caller::new("apikey:exposure".into(), Credential::ApiKey)
            };
            (group.clone().unwrap_or_else(|| NO_GROUP.into()), caller)
        })
        .collect();
    servers
        .iter()
        .map(|server| {
            let tools: Vec<(&str, Annotations)> = catalog
                .tools
                .iter()
                .filter_map(|tool| {
                    let entry = catalog.tool(&tool.name)?;
                    (*entry.route.server == *server.name).then(|| {
                        (
                            tool.name.as_ref(),
                            annotations(&entry.upstream),
                        )
                    })
                })
                .collect();
            let trusted_facts = ServerFacts {
                trusted: true,
                ..server.facts.clone()
            };
            let groups: Vec<GroupExposure> = callers
                .iter()
                .map(|(group, caller)| exposure(policies, caller, group, &server.facts, &trusted_facts, &tools))
                .collect();
            let would_change = !server.facts.trusted
                && groups
                    .iter()
                    .flat_map(|g| &g.hidden)
                    .any(|h| h.visible_if_trusted > 0);
            let file = server.file.display().to_string();
            ServerExposure {
                hint: would_change.then(|| {
                    format!(
                        "untrusted annotations count as destructive: set `[policy] trusted = true` in {file} if you trust its annotations"
                    )
                }),
                server: server.name.clone(),
                file,
                trusted: server.facts.trusted,
                tools: is_up(&server.name).then_some(tools.len()),
                groups,
            }
        })
        .collect()
}

fn exposure(
    policies: &Policies,
    caller: &Caller,
    group: &str,
    facts: &ServerFacts,
    trusted_facts: &ServerFacts,
    tools: &[(&str, Annotations)],
) -> GroupExposure {
    let visible_to = |name: &str, server: &ServerFacts, annotations: Annotations| {
        policies.decide(&Query {
            caller,
            target: Target::Tool {
                name,
                server,
                annotations,
                labels: crate::config::Labels::NONE,
            },
            // Visibility, as a tool list decides it.
            args: None,
            request_id: "exposure",
            findings: &[],
            touched: crate::config::Labels::NONE,
        })
    };
    let mut visible = 0;
    let mut hidden: BTreeMap<Why, (usize, usize)> = BTreeMap::new();
    for (name, annotations) in tools {
        let decision = visible_to(name, facts, *annotations);
        if decision.allowed {
            visible += 1;
            continue;
        }
        let if_trusted = !facts.trusted && visible_to(name, trusted_facts, *annotations).allowed;
        let counts = hidden
            .entry((decision.policies, decision.errors))
            .or_default();
        counts.0 += 1;
        counts.1 += usize::from(if_trusted);
    }
    GroupExposure {
        group: group.to_string(),
        visible,
        hidden: hidden
            .into_iter()
            .map(|((policies, errors), (tools, visible_if_trusted))| Hidden {
                policies,
                errors,
                tools,
                visible_if_trusted,
            })
            .collect(),
    }
}

/// `toolgate check`: connect to every upstream once, wait until each has
/// answered or failed (at most its connect timeout, plus a second), and
/// say what each exposes to which group under `policies`. Stops the
/// upstreams it started before returning; a down upstream is reported
/// with its reason.
pub async fn probe_exposure(
    config: &crate::config::Config,
    policies: &Policies,
) -> Vec<(ServerExposure, Option<String>)> {
    let probed = probe(config).await;
    let catalog = Catalog::build(
        probed
            .iter()
            .map(|(server, listing)| (server, listing.as_ref().ok().map(|l| l.as_ref()))),
        // Pins live in the running gateway's store: this summary shows
        // what policies expose; `toolgate tools lint` vets definitions.
        &super::catalog::Held::default(),
    );
    let summary = summarize(policies, &catalog, &config.servers, |name| {
        probed.iter().any(|(s, l)| s.name == name && l.is_ok())
    });
    summary
        .into_iter()
        .zip(probed.iter().map(|(_, l)| l.as_ref().err().cloned()))
        .collect()
}

/// Connect to every upstream of `config` once, wait until each has
/// answered or failed (at most the longest connect timeout, plus a
/// second), and return each one's listing or why it is down, in config
/// order. Stops the upstreams it started before returning.
pub async fn probe(
    config: &crate::config::Config,
) -> Vec<(crate::config::ServerConfig, Result<Arc<Listing>, String>)> {
    let upstreams: Vec<_> = config
        .servers
        .iter()
        .map(|s| Upstream::new(s.clone(), config.host_resolver.clone()))
        .collect();
    let hub = Arc::new(Hub::new(config.http.max_sessions));
    let stop = CancellationToken::new();
    // Nobody listens for listing changes here: each listing is taken once
    // below. Bounded; the receiver is drained while waiting.
    let (events_tx, mut events_rx) = mpsc::channel(64);
    for u in &upstreams {
        tokio::spawn(
            u.clone()
                .supervise(hub.clone(), events_tx.clone(), stop.clone()),
        );
    }
    drop(events_tx);
    let longest = config
        .servers
        .iter()
        .map(|s| s.connect_timeout)
        .max()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + longest + std::time::Duration::from_secs(1);
    // Settled: listed, or failed at least once.
    let settled =
        |u: &Upstream| u.listing().is_some() || matches!(u.health().0, Health::Down { .. });
    while tokio::time::Instant::now() < deadline && !upstreams.iter().all(|u| settled(u)) {
        tokio::select! {
            _ = events_rx.recv() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    }
    let probed = upstreams
        .iter()
        .map(|u| {
            let listing = match (u.listing(), u.health().0) {
                (Some(listing), _) => Ok(listing),
                (None, Health::Down { reason, .. }) => Err(reason),
                (None, _) => Err(format!("no answer within {longest:?}")),
            };
            (u.config.clone(), listing)
        })
        .collect();
    stop.cancel();
    // Child processes end with their links.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::time::Instant::now() < until && upstreams.iter().any(|u| u.peer().is_ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    probed
}

impl fmt::Display for ServerExposure {
    /// `notes: 4 tools; admin: 0, eng: 0, (no group): 0`, then one line
    /// per reason tools are hidden (groups alike merged), then the hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(tools) = self.tools else {
            return write!(f, "{}: down, so its tools are unknown", self.server);
        };
        let counts: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{}: {}", g.group, g.visible))
            .collect();
        write!(
            f,
            "{}: {tools} tool{}; {}",
            self.server,
            if tools == 1 { "" } else { "s" },
            counts.join(", ")
        )?;
        // Groups that lose the same tools to the same policies, on one line.
        let mut lines: BTreeMap<(usize, Why), Vec<&str>> = BTreeMap::new();
        for g in &self.groups {
            for h in &g.hidden {
                lines
                    .entry((h.tools, (h.policies.clone(), h.errors.clone())))
                    .or_default()
                    .push(&g.group);
            }
        }
        for ((count, (policies, errors)), groups) in lines {
            let by = match (policies.as_slice(), errors.is_empty()) {
                (_, false) => format!(
                    "a policy that could not be evaluated ({})",
                    errors.join("; ")
                ),
                ([], true) => "no policy permitting them (default deny)".to_string(),
                (ids, true) => ids
                    .iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            write!(f, "\n    {count} hidden from {} by {by}", groups.join(", "))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    ({hint})")?;
        }
        Ok(())
    }
}
