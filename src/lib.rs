//! toolgate: an MCP-first tool-governance gateway for AI agents.
//!
//! Start at [`pipeline`], the spine every call runs through; [`call`] is
//! the vocabulary its stages share; [`mcp`] is the MCP front end and the
//! upstream side; [`llm`] the LLM front end; [`app`] wires them into a server.
//!
//! # The house plan
//!
//! Each top-level module stands on a floor. A module imports (`crate::…`)
//! only modules on lower floors, so modules on one floor never import each
//! other and no import circle can form. A new module takes the lowest
//! floor its imports allow; a stage that needs something from a higher
//! floor asks for it through a trait or a value its caller hands it, never
//! by importing upward. `tests/integration/floors.rs` holds the code to
//! this table (test code may import anything).
//!
//! | floor | modules | what they are |
//! |---|---|---|
//! | 9 | `app` | the gateway assembled: state, routes, the TCP front door, serving, background tasks |
//! | 8 | `admin` | the admin API and the approver page |
//! | 7 | `mcp`, `llm` | the MCP front end (ingress, catalog, views) and the upstream side; the LLM front end (OpenAI's API, providers, routing) |
//! | 6 | `pipeline` | the spine: the ordered stages every call runs through |
//! | 5 | `approvals`, `integrity` | stage 5: approval requests, decisions, notifications; tool integrity: pinned definitions, the poisoning lint, toxic flows |
//! | 4 | `authenticate`, `authorize`, `guardrails` | stage 1 (who is calling), stage 3 (Cedar policies), stages 4 and 8 (what a call carries) |
//! | 3 | `audit` | stages 6 and 9: the tamper-evident audit trail |
//! | 2 | `call`, `egress`, `storage` | the shared call vocabulary; how toolgate connects out (upstreams, providers); the database |
//! | 1 | `config`, `reference` | validated configuration; the reference MCP servers |
//! | 0 | `util` | dates, HTML, strict JSON, digests, locks: no domain imports |
//!
//! The command line (`src/main.rs`, `src/cli/`) is a separate crate on
//! top of all of it.

pub mod admin;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod call;
pub mod config;
pub mod egress;
pub mod guardrails;
pub mod integrity;
pub mod llm;
pub mod mcp;
pub mod pipeline;
pub mod reference;
pub mod storage;
pub mod util;
