//! One integration-test binary (keeps link time down): the real gateway on
//! 127.0.0.1:0 with real rmcp upstreams and a real rmcp client.

#![allow(
    clippy::unwrap_used,
    reason = "a test should panic at the first surprise"
)]

#[macro_use]
mod common;

#[path = "integration/aggregation.rs"]
mod aggregation;
#[path = "integration/approvals.rs"]
mod approvals;
#[path = "integration/approver_page.rs"]
mod approver_page;
#[path = "integration/audit.rs"]
mod audit;
#[path = "integration/bad_input.rs"]
mod bad_input;
#[path = "integration/connections.rs"]
mod connections;
#[path = "integration/egress.rs"]
mod egress;
#[path = "integration/first_hour.rs"]
mod first_hour;
#[path = "integration/floors.rs"]
mod floors;
#[path = "integration/forwarded_is_decided.rs"]
mod forwarded_is_decided;
#[path = "integration/guardrails.rs"]
mod guardrails;
#[path = "integration/hostile_idp.rs"]
mod hostile_idp;
#[path = "integration/identity.rs"]
mod identity;
#[path = "integration/integrity.rs"]
mod integrity;
#[path = "integration/lane.rs"]
mod lane;
#[path = "integration/lifecycle.rs"]
mod lifecycle;
#[path = "integration/llm.rs"]
mod llm;
#[path = "integration/mcp_payload.rs"]
mod mcp_payload;
#[path = "integration/passthrough.rs"]
mod passthrough;
#[path = "integration/pipeline_hooks.rs"]
mod pipeline_hooks;
#[path = "integration/postgres.rs"]
mod postgres;
#[path = "integration/progress_order.rs"]
mod progress_order;
#[path = "integration/providers.rs"]
mod providers;
#[path = "integration/rbac.rs"]
mod rbac;
#[path = "integration/shipped_files.rs"]
mod shipped_files;
