//! What one caller sees: the catalog's lists filtered by the policies
//! (`call_tool` decides whether a tool is listed, `read_resource` a resource
//! or template, `get_prompt` a prompt), each decided with `listing = true`
//! and no arguments.

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::app::Gateway;
use crate::authorize::{Annotations, Policies, Query, Target};
use crate::mcp::catalog::Catalog;
use crate::pipeline::Caller;

fn visible(policies: &Policies, caller: &Caller, target: Target<'_>) -> bool {
    policies
        .decide(&Query {
            caller,
            target,
            args: None,
            request_id: "list",
        })
        .allowed
}

/// The tools `caller` may see.
pub fn tools(gw: &Gateway, caller: &Caller) -> Vec<Tool> {
    let catalog = gw.catalog();
    let policies = gw.policies.current();
    catalog
        .tools
        .iter()
        .filter(|tool| {
            let Some(entry) = catalog.tool(&tool.name) else {
                return false;
            };
            let Some(upstream) = gw.upstream(&entry.route.server) else {
                return false;
            };
            visible(
                &policies,
                caller,
                Target::Tool {
                    name: &tool.name,
                    server: &upstream.config.facts,
                    annotations: Annotations::from_tool(&entry.upstream),
                },
            )
        })
        .cloned()
        .collect()
}

fn resource_visible(
    gw: &Gateway,
    catalog: &Catalog,
    policies: &Policies,
    caller: &Caller,
    uri: &str,
) -> bool {
    let Some(route) = catalog.resource(uri) else {
        return false;
    };
    let Some(upstream) = gw.upstream(&route.server) else {
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
pub fn resources(gw: &Gateway, caller: &Caller) -> Vec<Resource> {
    let catalog = gw.catalog();
    let policies = gw.policies.current();
    catalog
        .resources
        .iter()
        .filter(|r| resource_visible(gw, &catalog, &policies, caller, &r.uri))
        .cloned()
        .collect()
}

/// The resource templates `caller` may see (decided on the template).
pub fn resource_templates(gw: &Gateway, caller: &Caller) -> Vec<ResourceTemplate> {
    let catalog = gw.catalog();
    let policies = gw.policies.current();
    catalog
        .resource_templates
        .iter()
        .filter(|t| resource_visible(gw, &catalog, &policies, caller, &t.uri_template))
        .cloned()
        .collect()
}

/// The prompts `caller` may see.
pub fn prompts(gw: &Gateway, caller: &Caller) -> Vec<Prompt> {
    let catalog = gw.catalog();
    let policies = gw.policies.current();
    catalog
        .prompts
        .iter()
        .filter(|p| {
            let Some(route) = catalog.prompt(&p.name) else {
                return false;
            };
            let Some(upstream) = gw.upstream(&route.server) else {
                return false;
            };
            visible(
                &policies,
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
