//! MCP on both sides: the virtual server agents talk to ([`server`]), the
//! upstream connections ([`upstream`]), the catalog that maps one onto the
//! other ([`catalog`]), the call kinds the pipeline runs ([`calls`]), and the
//! routing of what upstreams send back ([`hub`]), and the strict reading
//! of every message that comes in ([`ingress`]).

pub mod calls;
pub mod catalog;
pub mod egress;
pub mod exposure;
pub mod hub;
pub mod in_order;
pub mod ingress;
pub mod jsonrpc;
pub mod state;
pub mod upstream;
pub mod views;
