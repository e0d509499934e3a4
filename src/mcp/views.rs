//! What one caller sees: the catalog's lists filtered by the policies
//! (`call_tool` decides whether a tool is listed, `read_resource` a resource
//! or template, `get_prompt` a prompt), each decided with `listing = true`
//! and no arguments.
//!
//! A caller's tool list is cached ([`ListCache`]) per (policy version,
//! catalog generation, caller with all its attributes and address) for at
//! most [`VIEW_TTL`] (a policy on `context.time` may change a list without
//! anything else changing), at most [`MAX_VIEWS`] lists. Calls are always
//! decided afresh.

use std::time::{Duration, Instant};

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::authorize::Policies;
use crate::call::Caller;
use crate::call::{Query, Target};
use crate::mcp::catalog::Catalog;
use crate::mcp::hub::ListChanged;
use crate::mcp::state::McpState;

fn visible(policies: &Policies, caller: &Caller, target: Target<'_>) -> bool {
    policies
        .decide(&Query {
            caller,
            target,
            args: None,
            request_id: "list",
            findings: &[],
            touched: crate::config::Labels::NONE,
        })
        .allowed
}

/// How long a cached list view is used.
pub const VIEW_TTL: Duration = Duration::from_secs(10);
/// Most cached list views; at the bound the least used go (`quick_cache`),
/// so many one-off callers do not push out the lists agents keep asking for.
pub const MAX_VIEWS: usize = 10_000;

type ViewKey = (u64, u64, Caller);

/// Per-caller tool lists (see the module docs).
pub struct ListCache {
    views: quick_cache::sync::Cache<ViewKey, (Vec<Tool>, Instant)>,
}

impl Default for ListCache {
    fn default() -> Self {
        Self {
            views: quick_cache::sync::Cache::new(MAX_VIEWS),
        }
    }
}

impl ListCache {
    /// The cached view for this caller, policy version and catalog
    /// generation, or `build` it.
    pub fn get_or_build(
        &self,
        caller: &Caller,
        policy_version: u64,
        catalog_generation: u64,
        build: impl FnOnce() -> Vec<Tool>,
    ) -> Vec<Tool> {
        let key = (policy_version, catalog_generation, caller.clone());
        if let Some((tools, at)) = self.views.get(&key)
            && at.elapsed() < VIEW_TTL
        {
            return tools;
        }
        let tools = build();
        self.views.insert(key, (tools.clone(), Instant::now()));
        tools
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tools `caller` may see.
pub fn tools(mcp: &McpState, caller: &Caller) -> Vec<Tool> {
    let catalog = mcp.catalog();
    let policies = mcp.pipeline.policies.current();
    mcp.list_views
        .get_or_build(caller, policies.version, catalog.generation, || {
            build_tools(mcp, &catalog, &policies, caller)
        })
}

fn build_tools(
    mcp: &McpState,
    catalog: &Catalog,
    policies: &Policies,
    caller: &Caller,
) -> Vec<Tool> {
    // Each tool with its upstream (whose config the policy targets borrow).
    let found: Vec<_> = catalog
        .tools
        .iter()
        .filter_map(|tool| {
            let entry = catalog.tool(&tool.name)?;
            let upstream = mcp.upstream(&entry.route.server)?;
            Some((
                tool,
                upstream,
                crate::mcp::catalog::annotations(&entry.upstream),
            ))
        })
        .collect();
    let targets: Vec<Target<'_>> = found
        .iter()
        .map(|(tool, upstream, annotations)| Target::Tool {
            name: &tool.name,
            server: &upstream.config.facts,
            annotations: *annotations,
            labels: crate::config::Labels::NONE,
        })
        .collect();
    let visible = policies.visible(caller, &targets);
    found
        .iter()
        .zip(visible)
        .filter(|(_, v)| *v)
        .map(|((tool, ..), _)| (*tool).clone())
        .collect()
}

fn resource_visible(
    mcp: &McpState,
    catalog: &Catalog,
    policies: &Policies,
    caller: &Caller,
    uri: &str,
) -> bool {
    let Some(route) = catalog.resource(uri) else {
        return false;
    };
    let Some(upstream) = mcp.upstream(&route.server) else {
        return false;
    };
    visible(
        policies,
        caller,
        Target::Resource {
            uri,
            server: &upstream.config.facts,
        },
    )
}

/// The resources `caller` may see.
pub fn resources(mcp: &McpState, caller: &Caller) -> Vec<Resource> {
    resources_under(
        mcp,
        &mcp.catalog(),
        &mcp.pipeline.policies.current(),
        caller,
    )
}

fn resources_under(
    mcp: &McpState,
    catalog: &Catalog,
    policies: &Policies,
    caller: &Caller,
) -> Vec<Resource> {
    catalog
        .resources
        .iter()
        .filter(|r| resource_visible(mcp, catalog, policies, caller, &r.uri))
        .cloned()
        .collect()
}

/// The resource templates `caller` may see (decided on the template).
pub fn resource_templates(mcp: &McpState, caller: &Caller) -> Vec<ResourceTemplate> {
    templates_under(
        mcp,
        &mcp.catalog(),
        &mcp.pipeline.policies.current(),
        caller,
    )
}

fn templates_under(
    mcp: &McpState,
    catalog: &Catalog,
    policies: &Policies,
    caller: &Caller,
) -> Vec<ResourceTemplate> {
    catalog
        .resource_templates
        .iter()
        .filter(|t| resource_visible(mcp, catalog, policies, caller, &t.uri_template))
        .cloned()
        .collect()
}

/// The prompts `caller` may see.
pub fn prompts(mcp: &McpState, caller: &Caller) -> Vec<Prompt> {
    prompts_under(
        mcp,
        &mcp.catalog(),
        &mcp.pipeline.policies.current(),
        caller,
    )
}

fn prompts_under(
    mcp: &McpState,
    catalog: &Catalog,
    policies: &Policies,
    caller: &Caller,
) -> Vec<Prompt> {
    catalog
        .prompts
        .iter()
        .filter(|p| {
            let Some(route) = catalog.prompt(&p.name) else {
                return false;
            };
            let Some(upstream) = mcp.upstream(&route.server) else {
                return false;
            };
            visible(
                policies,
                caller,
                Target::Prompt {
                    name: &p.name,
                    server: &upstream.config.facts,
                },
            )
        })
        .cloned()
        .collect()
}

/// Which of `caller`'s lists differ between two policy sets (over the
/// current catalog): what a policy reload must announce to them.
pub fn changed(mcp: &McpState, old: &Policies, new: &Policies, caller: &Caller) -> ListChanged {
    let catalog = mcp.catalog();
    let differ = |list: &dyn Fn(&Policies) -> Vec<String>| list(old) != list(new);
    ListChanged {
        tools: differ(&|p| {
            build_tools(mcp, &catalog, p, caller)
                .into_iter()
                .map(|t| t.name.into_owned())
                .collect()
        }),
        resources: differ(&|p| {
            resources_under(mcp, &catalog, p, caller)
                .into_iter()
                .map(|r| r.uri)
                .chain(
                    templates_under(mcp, &catalog, p, caller)
                        .into_iter()
                        .map(|t| t.uri_template),
                )
                .collect()
        }),
        prompts: differ(&|p| {
            prompts_under(mcp, &catalog, p, caller)
                .into_iter()
                .map(|p| p.name)
                .collect()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Credential;

    #[test]
    fn the_view_cache_is_keyed_by_everything_that_decides_and_bounded() {
        let cache = ListCache::default();
        let alice = Caller::new("okta:alice".into(), Credential::AccessToken);
        let tool = |n: &str| Tool::new(n.to_string(), "d", serde_json::Map::new());
        let built = cache.get_or_build(&alice, 1, 1, || vec![tool("a")]);
        assert_eq!(built.len(), 1);
        // Same key: the cached list, not a rebuild.
        let again = cache.get_or_build(&alice, 1, 1, || unreachable!("cached"));
        assert_eq!(again[0].name, "a");
        // Another policy version, catalog, group or address: rebuilt.
        let eng = Caller {
            groups: vec!["eng".into()],
            ..alice.clone()
        };
        let elsewhere = Caller {
            address: Some([10, 0, 0, 1].into()),
            ..alice.clone()
        };
        for (caller, version, generation) in [
            (&alice, 2, 1),
            (&alice, 1, 2),
            (&eng, 1, 1),
            (&elsewhere, 1, 1),
        ] {
            let view = cache.get_or_build(caller, version, generation, || vec![tool("b")]);
            assert_eq!(view[0].name, "b");
        }
        // Bounded, and a flood of one-off callers keeps the list in use.
        for i in 0..3 * MAX_VIEWS {
            let stranger = Caller::new(format!("okta:u{i}"), Credential::AccessToken);
            cache.get_or_build(&stranger, 1, 1, Vec::new);
            if i % 1000 == 0 {
                cache.get_or_build(&alice, 1, 1, || unreachable!("evicted at {i}"));
            }
            assert!(cache.len() <= MAX_VIEWS);
        }
        let kept = cache.get_or_build(&alice, 1, 1, || unreachable!("evicted by the flood"));
        assert_eq!(kept[0].name, "a");
    }
}
