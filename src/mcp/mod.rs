//! MCP on both sides: what callers send in ([`ingress`]: `/mcp`, stdio, the
//! virtual server, the fast lane), the upstream connections ([`upstream`]),
//! the catalog that maps one onto the other ([`catalog`]), the call kinds
//! the pipeline runs ([`calls`]), and the routing of what upstreams send
//! back ([`hub`]). `README.md` here tells the whole story.

pub mod calls;
pub mod catalog;
pub mod exposure;
pub mod hub;
pub mod in_order;
pub mod ingress;
pub mod jsonrpc;
pub mod payload;
pub mod state;
pub mod upstream;
pub mod vet;
pub mod views;
