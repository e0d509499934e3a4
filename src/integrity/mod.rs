//! Tool integrity: what toolgate checks of the tools themselves, before
//! any call. Three attacks, three parts:
//!
//! - **rug pulls** ([`pins`]): a server changes what a tool says after it
//!   was approved. Each definition is pinned by its canonical hash (the
//!   same hash approvals bind to), in the store; a changed definition
//!   quarantines the tool until a reviewer approves it
//!   (`toolgate tools review`, `/admin/v1/tools`, the approver page).
//! - **tool poisoning and shadowing** ([`lint`]): instructions for the
//!   model hidden in a definition. Linted at every catalog build.
//! - **toxic flows** ([`flows`]): harmless tools that together carry
//!   private data out. Each session's flow labels reach the policies.
//!
//! The catalog (`crate::mcp::catalog`) asks [`Integrity::vet`] which of an
//! upstream's tools to expose; the pipeline asks [`flows::Flows`] what a
//! call's session has touched. This module sees tool definitions as JSON,
//! never as a protocol's types.

pub mod flows;
pub mod lint;
pub mod pins;

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::audit::Audit;
use crate::config::{LintMode, PinMode, ServerConfig};
pub use flows::Flows;
pub use lint::{LintFinding, Linter, Neighbours, Severity};
pub use pins::{Reason, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("tool definitions store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("tool definitions: {0}")]
    Json(#[from] serde_json::Error),
    #[error("audit trail: {0}")]
    Audit(String),
    #[error(
        "no definition of `{tool}` on server `{server}`{} on record; `toolgate tools review list` shows those waiting",
        .hash.as_deref().map(|h| format!(" with hash {h}")).unwrap_or_default()
    )]
    NotFound {
        server: String,
        tool: String,
        hash: Option<String>,
    },
    #[error("hash prefix `{0}` matches more than one definition; give more of it")]
    Ambiguous(String),
    #[error("{0}")]
    AlreadyDecided(String),
    #[error(
        "replicas kept racing to pin the tools of `{0}`; it is checked again at the next listing"
    )]
    Contended(String),
}

/// One tool an upstream offers, as the catalog hands it over.
pub struct ToolDefinition<'a> {
    /// The upstream's name for it.
    pub name: &'a str,
    /// The definition (MCP `Tool` JSON, as the upstream declared it).
    pub definition: &'a Value,
    /// Its canonical JSON and that text's SHA-256.
    pub canonical: &'a str,
    pub hash: &'a str,
}

/// What vetting decided for one tool.
#[derive(Debug, Clone)]
pub struct Vetted {
    pub verdict: Verdict,
    pub lint: Vec<LintFinding>,
}

/// The integrity checks' state: the lint, and what was last exposed (kept
/// exposed while the store cannot be read, so a database outage does not
/// take every tool away, while nothing new is let in).
pub struct Integrity {
    pub linter: Linter,
    /// Woken when a reviewer decides in this process (the catalog is
    /// rebuilt at once; other replicas learn by polling [`pins::epoch`]).
    pub changed: tokio::sync::Notify,
    exposed: Mutex<HashMap<(String, String), String>>,
}

impl Integrity {
    pub fn new(linter: Linter) -> Self {
        Integrity {
            linter,
            changed: tokio::sync::Notify::new(),
            exposed: Mutex::new(HashMap::new()),
        }
    }

    /// Lint and pin-check every tool `server` offers (in order). Without a
    /// store answer, a tool keeps the verdict of its last exposed
    /// definition and anything else is held back (fail closed).
    pub async fn vet(
        &self,
        audit: &Audit,
        server: &ServerConfig,
        tools: &[ToolDefinition<'_>],
        neighbours: &Neighbours,
    ) -> (Vec<Vetted>, Option<IntegrityError>) {
        let integrity = &server.integrity;
        let lints: Vec<Vec<LintFinding>> = tools
            .iter()
            .map(|t| match integrity.lint {
                LintMode::Off => Vec::new(),
                _ => self.linter.lint(t.definition, neighbours),
            })
            .collect();
        let blocks = |lint: &[LintFinding]| {
            integrity.lint == LintMode::Quarantine
                && lint.iter().any(|f| f.severity == Severity::Quarantine)
        };
        let needs_store =
            integrity.pin != PinMode::Off || lints.iter().any(|l| blocks(l.as_slice()));
        if !needs_store {
            let vetted = lints
                .into_iter()
                .map(|lint| Vetted {
                    verdict: Verdict::Exposed,
                    lint,
                })
                .collect();
            return (vetted, None);
        }
        let offered: Vec<pins::Offered<'_>> = tools
            .iter()
            .zip(&lints)
            .map(|(t, lint)| pins::Offered {
                tool: t.name,
                hash: t.hash,
                definition: t.canonical,
                lint,
                lint_blocks: blocks(lint),
            })
            .collect();
        let checked = pins::check(audit, &server.name, integrity.pin, &offered).await;
        let mut exposed = self.exposed.lock().unwrap_or_else(|e| e.into_inner());
        let (verdicts, error) = match checked {
            Ok(verdicts) => (verdicts, None),
            Err(e) => {
                let kept = tools
                    .iter()
                    .map(|t| {
                        let key = (server.name.clone(), t.name.to_string());
                        if exposed.get(&key).is_some_and(|h| h == t.hash) {
                            Verdict::Exposed
                        } else {
                            Verdict::Quarantined(Reason::Unchecked)
                        }
                    })
                    .collect();
                (kept, Some(e))
            }
        };
        for (t, v) in tools.iter().zip(&verdicts) {
            let key = (server.name.clone(), t.name.to_string());
            if *v == Verdict::Exposed {
                exposed.insert(key, t.hash.to_string());
            } else {
                exposed.remove(&key);
            }
        }
        let vetted = verdicts
            .into_iter()
            .zip(lints)
            .map(|(verdict, lint)| Vetted { verdict, lint })
            .collect();
        (vetted, error)
    }
}
