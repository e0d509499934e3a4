//! The catalog: what the virtual server offers, built from every upstream's
//! listing, under namespaced names.
//!
//! Tools and prompts: `{prefix}__{name}` (prefix defaults to the server name;
//! server names never contain `__`, so the first `__` splits unambiguously).
//! Resource URIs and URI templates: `{prefix}+{uri}` (a valid URI scheme
//! prefix, e.g. `notes+note://today`). An empty prefix keeps upstream names.
//!
//! Exposed tool names must be valid OpenAI function names
//! (`^[a-zA-Z0-9_-]{1,64}$`). A tool whose namespaced name would break that
//! (too long, or characters such as `.` or `/`) is not exposed, and the reason
//! is reported as a [`Problem`] in the log and on `/readyz`; shorten the
//! server's `prefix` to make room. Two upstreams that would expose the same
//! name: the server first by name keeps it, the other's entry is rejected with
//! a problem naming both. Nothing is renamed and nothing is dropped silently.
//!
//! A catalog is immutable; a change builds a new one that replaces it whole.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::call::Annotations;
use crate::config::{Labels, ServerConfig};

/// What one upstream offered at its last listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub tools: Vec<Tool>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
}

/// Where an exposed name leads.
#[derive(Debug, Clone)]
pub struct Route {
    pub server: Arc<str>,
    /// The name (or URI) the upstream knows it by.
    pub upstream_name: String,
}

/// A tool the catalog exposes: the route and the upstream's definition.
#[derive(Debug, Clone)]
pub struct ToolEntry {
    pub route: Route,
    /// The upstream's own definition (unrenamed), for later stages (policy
    /// context, definition hashing).
    pub upstream: Tool,
    /// The definition as clients see it (namespaced name).
    pub visible: Tool,
    /// SHA-256 of the upstream's definition (canonical JSON), for audit
    /// records, approvals bound to a definition and its pin.
    pub definition_hash: Arc<str>,
    /// Its flow labels (toxic flows): its server's `[integrity.labels]`,
    /// else from the annotations of a trusted server.
    pub labels: Labels,
}

/// Tools the integrity checks hold back (`crate::integrity`), by server
/// and upstream name, with why; and what they found that is worth a
/// problem.
#[derive(Debug, Default)]
pub struct Held {
    pub tools: HashMap<(String, String), String>,
    pub problems: Vec<Problem>,
    /// The definition hash of each (server, upstream tool) vetting read,
    /// so the catalog does not hash the definitions again.
    pub hashes: HashMap<(String, String), Arc<str>>,
}

/// Something the catalog could not expose, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub server: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Catalog {
    /// Distinct for every built catalog (caches of per-caller views key on it).
    pub generation: u64,
    pub tools: Vec<Tool>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    tool_index: HashMap<String, ToolEntry>,
    prompt_index: HashMap<String, Route>,
    resource_index: HashMap<String, Route>,
    /// prefix → server, for URIs made from templates.
    prefixes: HashMap<String, Arc<str>>,
    /// Servers with an empty prefix, in name order.
    unprefixed: Vec<Arc<str>>,
    pub problems: Vec<Problem>,
    /// The listings it was built from, per upstream in config order (set
    /// by whoever builds it from live upstreams): readiness waits until the
    /// catalog reflects every upstream's latest listing.
    pub listings: Vec<Option<Arc<Listing>>>,
}

/// The longest exposed tool name OpenAI (and most LLM APIs) accept.
pub const MAX_TOOL_NAME: usize = 64;

pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn namespaced(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}__{name}")
    }
}

fn namespaced_uri(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        uri.to_string()
    } else {
        format!("{prefix}+{uri}")
    }
}

impl Catalog {
    /// Build from each configured server and its listing (`None` while down),
    /// leaving out the tools the integrity checks hold back (`held`).
    /// `servers` must be in name order (config order) so collisions resolve
    /// the same way every time.
    pub fn build<'a>(
        servers: impl IntoIterator<Item = (&'a ServerConfig, Option<&'a Listing>)>,
        held: &Held,
    ) -> Catalog {
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut c = Catalog {
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..Catalog::default()
        };
        let mut owner: HashMap<String, Arc<str>> = HashMap::new();
        for (config, listing) in servers {
            let server: Arc<str> = Arc::from(config.name.as_str());
            if config.prefix.is_empty() {
                c.unprefixed.push(server.clone());
            } else {
                c.prefixes.insert(config.prefix.clone(), server.clone());
            }
            let Some(listing) = listing else { continue };
            let problem = |c: &mut Catalog, message: String| {
                c.problems.push(Problem {
                    server: config.name.clone(),
                    message,
                });
            };
            let mut claim = |c: &mut Catalog, kind: &str, exposed: &str| -> bool {
                let key = format!("{kind}\0{exposed}");
                match owner.get(&key) {
                    Some(first) => {
                        let msg = format!(
                            "{kind} `{exposed}` collides with the same name from server `{first}` and is not exposed; give one of them a distinct `prefix`"
                        );
                        problem(c, msg);
                        false
                    }
                    None => {
                        owner.insert(key, server.clone());
                        true
                    }
                }
            };

            for (pattern, _) in &config.integrity.labels {
                let matches = |t: &Tool| crate::config::glob_match(pattern, &t.name);
                if !listing.tools.iter().any(matches) {
                    problem(
                        &mut c,
                        format!(
                            "[integrity.labels] \"{pattern}\" in {} matches no tool this server offers; check the name",
                            config.file.display()
                        ),
                    );
                }
            }
            for tool in &listing.tools {
                if !config.tools.permits(&tool.name) {
                    continue;
                }
                if let Some(why) = held
                    .tools
                    .get(&(config.name.clone(), tool.name.to_string()))
                {
                    problem(
                        &mut c,
                        format!(
                            "tool `{}` is quarantined: {why}; see `toolgate tools review list`",
                            tool.name
                        ),
                    );
                    continue;
                }
                let exposed = namespaced(&config.prefix, &tool.name);
                if !valid_tool_name(&exposed) {
                    let why = if exposed.len() > MAX_TOOL_NAME {
                        format!(
                            "is {} characters, over the limit of {MAX_TOOL_NAME}; set a shorter `prefix` in {}",
                            exposed.len(),
                            config.file.display()
                        )
                    } else {
                        "has characters outside [A-Za-z0-9_-], which LLM function-calling APIs reject".to_string()
                    };
                    problem(
                        &mut c,
                        format!(
                            "tool `{}` is not exposed: its name `{exposed}` {why}",
                            tool.name
                        ),
                    );
                    continue;
                }
                if !claim(&mut c, "tool", &exposed) {
                    continue;
                }
                let mut visible = tool.clone();
                visible.name = exposed.clone().into();
                c.tool_index.insert(
                    exposed,
                    ToolEntry {
                        route: Route {
                            server: server.clone(),
                            upstream_name: tool.name.to_string(),
                        },
                        upstream: tool.clone(),
                        visible: visible.clone(),
                        definition_hash: held
                            .hashes
                            .get(&(config.name.clone(), tool.name.to_string()))
                            .cloned()
                            .unwrap_or_else(|| definition_hash(tool)),
                        labels: crate::integrity::flows::labels_of(
                            &config.integrity,
                            config.facts.trusted,
                            &tool.name,
                            annotations(tool),
                        ),
                    },
                );
                c.tools.push(visible);
            }
            for prompt in &listing.prompts {
                let exposed = namespaced(&config.prefix, &prompt.name);
                if !claim(&mut c, "prompt", &exposed) {
                    continue;
                }
                let mut visible = prompt.clone();
                visible.name = exposed.clone();
                c.prompt_index.insert(
                    exposed,
                    Route {
                        server: server.clone(),
                        upstream_name: prompt.name.clone(),
                    },
                );
                c.prompts.push(visible);
            }
            for resource in &listing.resources {
                let exposed = namespaced_uri(&config.prefix, &resource.uri);
                if !claim(&mut c, "resource", &exposed) {
                    continue;
                }
                let mut visible = resource.clone();
                visible.uri = exposed.clone();
                c.resource_index.insert(
                    exposed,
                    Route {
                        server: server.clone(),
                        upstream_name: resource.uri.clone(),
                    },
                );
                c.resources.push(visible);
            }
            for template in &listing.resource_templates {
                let exposed = namespaced_uri(&config.prefix, &template.uri_template);
                if !claim(&mut c, "resource template", &exposed) {
                    continue;
                }
                let mut visible = template.clone();
                visible.uri_template = exposed;
                c.resource_templates.push(visible);
            }
        }
        c.problems.extend(held.problems.iter().cloned());
        c
    }

    pub fn tool(&self, exposed: &str) -> Option<&ToolEntry> {
        self.tool_index.get(exposed)
    }

    pub fn prompt(&self, exposed: &str) -> Option<&Route> {
        self.prompt_index.get(exposed)
    }

    /// Route a resource URI: a listed resource, else `{prefix}+{uri}` from a
    /// template, else the only server with an empty prefix.
    pub fn resource(&self, exposed: &str) -> Option<Route> {
        if let Some(route) = self.resource_index.get(exposed) {
            return Some(route.clone());
        }
        if let Some((prefix, rest)) = exposed.split_once('+')
            && let Some(server) = self.prefixes.get(prefix)
        {
            return Some(Route {
                server: server.clone(),
                upstream_name: rest.to_string(),
            });
        }
        match self.unprefixed.as_slice() {
            [only] => Some(Route {
                server: only.clone(),
                upstream_name: exposed.to_string(),
            }),
            _ => None,
        }
    }
}

/// SHA-256 of a tool definition's canonical JSON.
pub fn definition_hash(tool: &Tool) -> Arc<str> {
    let json = serde_json::to_value(tool).unwrap_or_default();
    crate::util::digest::sha256_hex(crate::audit::canonical(&json).as_bytes()).into()
}

/// A tool's behaviour hints as policies see them, from its definition
/// (missing hints: the MCP defaults, which are also the worst case).
pub fn annotations(tool: &Tool) -> Annotations {
    let Some(a) = &tool.annotations else {
        return Annotations::WORST;
    };
    let read_only = a.read_only_hint.unwrap_or(false);
    Annotations {
        read_only,
        // A read-only tool does not destroy anything.
        destructive: !read_only && a.destructive_hint.unwrap_or(true),
        idempotent: a.idempotent_hint.unwrap_or(false),
        open_world: a.open_world_hint.unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ToolFilter, Transport};
    use std::time::Duration;

    fn server(name: &str, prefix: &str) -> ServerConfig {
        ServerConfig {
            name: name.into(),
            prefix: prefix.into(),
            description: None,
            transport: Transport::Http {
                url: crate::config::UpstreamUrl::parse("http://x", &[], false).expect("valid"),
                headers: vec![],
            },
            tools: ToolFilter::default(),
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
            facts: Default::default(),
            integrity: Default::default(),
            file: format!("servers/{name}.toml").into(),
        }
    }

    fn tool(name: &str) -> Tool {
        Tool::new(name.to_string(), "d", Arc::new(serde_json::Map::new()))
    }

    fn listing(tools: &[&str]) -> Listing {
        Listing {
            tools: tools.iter().map(|t| tool(t)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn namespaces_and_routes() {
        let a = server("alpha", "alpha");
        let la = listing(&["get", "put"]);
        let c = Catalog::build([(&a, Some(&la))], &Held::default());
        let names: Vec<_> = c.tools.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, ["alpha__get", "alpha__put"]);
        let e = c.tool("alpha__get").expect("routed");
        assert_eq!(
            (&*e.route.server, e.route.upstream_name.as_str()),
            ("alpha", "get")
        );
        assert!(c.tool("get").is_none());
    }

    #[test]
    fn collisions_are_reported_never_silent() {
        let a = server("a", "");
        let b = server("b", "");
        let (la, lb) = (listing(&["same", "x"]), listing(&["same", "y"]));
        let c = Catalog::build([(&a, Some(&la)), (&b, Some(&lb))], &Held::default());
        assert_eq!(&*c.tool("same").expect("kept").route.server, "a");
        assert_eq!(c.tools.len(), 3);
        assert_eq!(c.problems.len(), 1);
        assert!(
            c.problems[0]
                .message
                .contains("collides with the same name from server `a`")
        );
        assert_eq!(c.problems[0].server, "b");
    }

    #[test]
    fn overlong_and_invalid_names_are_reported() {
        let a = server(
            "abcdefghijklmnopqrstuvwxyz012345",
            "abcdefghijklmnopqrstuvwxyz012345",
        );
        let la = listing(&[
            "a_tool_name_that_is_rather_long_indeed",
            "ok",
            "dotted.name",
        ]);
        let c = Catalog::build([(&a, Some(&la))], &Held::default());
        assert_eq!(c.tools.len(), 1);
        assert!(
            c.problems
                .iter()
                .any(|p| p.message.contains("over the limit of 64"))
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.message.contains("characters outside"))
        );
    }

    #[test]
    fn filters_apply_to_upstream_names() {
        let mut a = server("a", "a");
        a.tools = ToolFilter {
            allow: vec![],
            deny: vec!["del*".into()],
        };
        let la = listing(&["get", "delete"]);
        let c = Catalog::build([(&a, Some(&la))], &Held::default());
        assert!(c.tool("a__get").is_some() && c.tool("a__delete").is_none());
        assert!(c.problems.is_empty());
    }

    #[test]
    fn resource_routing() {
        let a = server("a", "a");
        let b = server("b", "");
        let c = Catalog::build(
            [
                (&a, Some(&Listing::default())),
                (&b, Some(&Listing::default())),
            ],
            &Held::default(),
        );
        let r = c.resource("a+test://t/1").expect("prefix route");
        assert_eq!((&*r.server, r.upstream_name.as_str()), ("a", "test://t/1"));
        let r = c.resource("test://other").expect("unprefixed");
        assert_eq!(&*r.server, "b");
    }
}
