//! Vetting the tools upstreams offer (`crate::integrity`): before each
//! catalog build, every tool a server's config exposes is linted and its
//! definition checked against its pin; `toolgate tools lint` runs the
//! same lint on servers not yet added. This is where MCP `Tool`s become
//! the JSON the integrity checks read.

use std::sync::Arc;

use rmcp::model::Tool;
use serde_json::Value;

use super::catalog::{Held, Listing, Problem};
use super::state::McpState;
use crate::config::{LintMode, ServerConfig};
use crate::integrity::{LintFinding, Linter, Neighbours, Severity, ToolDefinition, Verdict};

/// Lint findings of one exposed tool shown as problems (the rest are in
/// `toolgate tools lint`).
const MAX_FINDINGS_SHOWN: usize = 3;

/// One offered tool as the integrity checks read it.
pub struct Offered<'a> {
    pub tool: &'a Tool,
    pub value: Value,
    pub canonical: String,
    pub hash: String,
}

impl Offered<'_> {
    fn definition(&self) -> ToolDefinition<'_> {
        ToolDefinition {
            name: &self.tool.name,
            definition: &self.value,
            canonical: &self.canonical,
            hash: &self.hash,
        }
    }
}

/// The tools of `listing` that `server`'s config exposes, as JSON, with
/// their canonical form and its hash (the definition hash approvals and
/// audit records use).
pub fn offered<'a>(server: &ServerConfig, listing: &'a Listing) -> Vec<Offered<'a>> {
    listing
        .tools
        .iter()
        .filter(|t| server.tools.permits(&t.name))
        .map(|tool| {
            let value = serde_json::to_value(tool).unwrap_or_default();
            let canonical = crate::audit::canonical(&value);
            let hash = crate::util::digest::sha256_hex(canonical.as_bytes());
            Offered {
                tool,
                value,
                canonical,
                hash,
            }
        })
        .collect()
}

/// (server, exposed name, upstream name) of every tool the servers
/// expose: what a tool's text may not name (shadowing).
pub fn every_tool<'a>(
    servers: impl IntoIterator<Item = (&'a ServerConfig, Option<&'a Listing>)>,
) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for (server, listing) in servers {
        let Some(listing) = listing else { continue };
        for tool in listing
            .tools
            .iter()
            .filter(|t| server.tools.permits(&t.name))
        {
            let exposed = if server.prefix.is_empty() {
                tool.name.to_string()
            } else {
                format!("{}__{}", server.prefix, tool.name)
            };
            all.push((server.name.clone(), exposed, tool.name.to_string()));
        }
    }
    all
}

fn neighbours(server: &str, all: &[(String, String, String)]) -> Neighbours {
    Neighbours::of(
        server,
        all.iter()
            .map(|(s, e, n)| (s.as_str(), e.as_str(), n.as_str())),
    )
}

/// Vet every tool each upstream offers: lint it, check its pin. What is
/// held back, and the findings worth a problem on `/readyz`.
pub async fn vet(mcp: &McpState, listings: &[Option<Arc<Listing>>]) -> Held {
    let mut held = Held::default();
    let all = every_tool(
        mcp.upstreams
            .iter()
            .zip(listings)
            .map(|(u, l)| (&u.config, l.as_deref())),
    );
    for (u, listing) in mcp.upstreams.iter().zip(listings) {
        let Some(listing) = listing else { continue };
        let offered = offered(&u.config, listing);
        let definitions: Vec<ToolDefinition<'_>> =
            offered.iter().map(Offered::definition).collect();
        let (vetted, error) = mcp
            .integrity
            .vet(
                &mcp.pipeline.audit,
                &u.config,
                &definitions,
                &neighbours(&u.name, &all),
            )
            .await;
        if let Some(e) = error {
            tracing::error!(server = %u.name, error = %e, "cannot check tool pins; only definitions exposed before stay");
            held.problems.push(Problem {
                server: u.name.to_string(),
                message: format!(
                    "tool pins cannot be checked ({e}); new and changed definitions are held back"
                ),
            });
        }
        for (o, v) in offered.iter().zip(vetted) {
            let name = &o.tool.name;
            held.hashes.insert(
                (u.name.to_string(), name.to_string()),
                Arc::from(o.hash.as_str()),
            );
            if let Verdict::Quarantined(reason) = v.verdict {
                let mut why = reason.explain().to_string();
                if let Some(f) = v.lint.first() {
                    why.push_str(&format!(" ({} at `{}`: {})", f.rule, f.at, f.message));
                }
                tracing::warn!(server = %u.name, tool = %name, reason = reason.name(), "tool quarantined");
                held.tools
                    .insert((u.name.to_string(), name.to_string()), why);
                continue;
            }
            // Exposed: its findings are warnings.
            for f in v.lint.iter().take(MAX_FINDINGS_SHOWN) {
                let level = if f.severity == Severity::Quarantine
                    && u.config.integrity.lint == LintMode::Warn
                {
                    "would quarantine (lint = \"warn\")"
                } else {
                    "warning"
                };
                tracing::warn!(server = %u.name, tool = %name, rule = f.rule, at = %f.at, "lint {level}: {}", f.message);
                held.problems.push(Problem {
                    server: u.name.to_string(),
                    message: format!(
                        "tool `{name}`: lint {level}: {} at `{}`: {}",
                        f.rule, f.at, f.message
                    ),
                });
            }
        }
    }
    held
}

/// What the lint finds in one server's tools (`toolgate tools lint`).
#[derive(Debug, serde::Serialize)]
pub struct ServerLint {
    pub server: String,
    /// Why it could not be listed, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// Each tool it offers (and its config exposes), with its findings.
    pub tools: Vec<(String, Vec<LintFinding>)>,
}

/// Lint the tools of `probed` servers (each one's listing or why it is
/// down), each against all the others' names; only `only`'s when given.
pub fn lint_servers(
    linter: &Linter,
    probed: &[(ServerConfig, Result<Arc<Listing>, String>)],
    only: Option<&str>,
) -> Vec<ServerLint> {
    let all = every_tool(
        probed
            .iter()
            .map(|(s, l)| (s, l.as_ref().ok().map(|l| l.as_ref()))),
    );
    probed
        .iter()
        .filter(|(s, _)| only.is_none_or(|o| o == s.name))
        .map(|(server, listing)| match listing {
            Err(why) => ServerLint {
                server: server.name.clone(),
                down: Some(why.clone()),
                tools: Vec::new(),
            },
            Ok(listing) => {
                let neighbours = neighbours(&server.name, &all);
                let tools = offered(server, listing)
                    .iter()
                    .map(|o| (o.tool.name.to_string(), linter.lint(&o.value, &neighbours)))
                    .collect();
                ServerLint {
                    server: server.name.clone(),
                    down: None,
                    tools,
                }
            }
        })
        .collect()
}
