//! toolgate: an MCP-first tool-governance gateway for AI agents.
//!
//! Start at [`pipeline`], the spine every call runs through; [`mcp`] is the
//! MCP front end and the upstream side; [`app`] wires them into a server.

pub mod admin;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod call;
pub mod config;
pub mod listen;
pub mod mcp;
pub mod pipeline;
pub mod reference;
pub mod storage;
pub mod util;
