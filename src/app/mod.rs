//! The running gateway, the top floor: the [`Gateway`] assembled from the
//! floors below (the spine, the MCP front end, the admin API), the route
//! table ([`router()`]), the two ways to serve it (streamable HTTP behind the
//! front door in [`listen`], or stdio: [`HttpServer`], [`serve_stdio`]) and
//! the background tasks that keep it current.
//!
//! Shutdown order: stop taking new calls → let in-flight calls finish (up to
//! `shutdown_grace`) → close client sessions → stop upstreams (stdio children
//! get SIGTERM, then SIGKILL).

pub mod listen;
mod router;
mod serve;
mod tasks;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::authenticate;
use crate::config::Config;
use crate::guardrails::Guardrails;
use crate::mcp::state::McpState;
use crate::pipeline::{InFlight, Pipeline};
use crate::storage::Store;

pub use router::router;
pub use serve::{HttpServer, StartError, serve_stdio};

/// Shared state of one gateway process.
pub struct Gateway {
    pub config: Arc<Config>,
    /// The spine every call runs through.
    pub pipeline: Arc<Pipeline>,
    /// The MCP front end: upstreams, catalog, sessions.
    pub mcp: Arc<McpState>,
    /// The LLM front end: model routes, providers.
    pub llm: Arc<crate::llm::LlmState>,
    /// Stops upstream supervisors (and so child processes).
    pub shutdown: CancellationToken,
    /// Trusted OIDC issuers and their keys.
    pub issuers: Arc<[Arc<authenticate::oidc::Issuer>]>,
    /// The guardrails in force (`policies/guardrails.toml`), when there
    /// are any: also the pipeline's first inspector.
    pub guardrails: Option<Arc<Guardrails>>,
    /// Without guardrails, the secret rules alone that mask what the audit
    /// trail keeps (reloaded with the rule files).
    pub audit_mask: Option<Arc<Guardrails>>,
}

impl Gateway {
    /// Build the gateway and start one supervisor per upstream; fails only
    /// when an HTTP client cannot be built (never a fallback client).
    /// The guardrails, then `inspectors`, read (and may rewrite) every
    /// call's payload, in that order.
    pub fn start(
        config: Config,
        policies: crate::authorize::Policies,
        mut audit: crate::audit::Audit,
        guardrails: Option<Guardrails>,
        inspectors: Vec<Arc<dyn crate::call::Inspect>>,
    ) -> Result<Arc<Self>, StartError> {
        let guardrails = guardrails.map(Arc::new);
        // What the audit trail keeps is masked by the guardrails in force
        // (reloaded in place), or without them by the secret rules alone:
        // never by no detector at all.
        let (masker, audit_mask): (Arc<dyn crate::audit::redact::Mask>, _) = match &guardrails {
            Some(guardrails) => (guardrails.clone(), None),
            None => {
                let mask = Arc::new(Guardrails::new(
                    crate::guardrails::load::secrets_only(&config.policies_dir)
                        .map_err(StartError::Guardrails)?,
                ));
                (mask.clone(), Some(mask))
            }
        };
        audit.set_mask(masker);
        let inspectors = guardrails
            .iter()
            .map(|g| g.clone() as Arc<dyn crate::call::Inspect>)
            .chain(inspectors)
            .collect();
        let issuers = config
            .auth
            .issuers
            .iter()
            .cloned()
            .map(authenticate::oidc::Issuer::new)
            .collect::<Result<_, _>>()
            .map_err(|e| StartError::HttpClient(e.to_string()))?;
        let pipeline = Arc::new(Pipeline {
            policies: crate::authorize::Engine::new(policies, config.policies_dir.clone()),
            audit,
            approvals: config.approvals.clone(),
            admission: Arc::new(InFlight::new(config.max_in_flight_calls)),
            // Filled from config by the guardrails (none yet).
            inspectors,
            flows: crate::integrity::Flows::with_capacity(
                (4 * config.http.max_sessions).max(crate::integrity::flows::MAX_FLOWS),
            ),
            stream_window: config.llm.stream_window,
        });
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        // The lint reads definitions with the guardrails' injection model,
        // or the shipped one when guardrails are off.
        let injection = match guardrails
            .as_ref()
            .and_then(|g| g.current().injection().cloned())
        {
            Some(injection) => Some(injection),
            None => crate::guardrails::injection::Model::shipped()
                .map(crate::guardrails::injection::Injection::new)
                .map_err(|e| StartError::InjectionModel(e.to_string()))
                .map(Some)?,
        };
        let integrity = Arc::new(crate::integrity::Integrity::new(
            crate::integrity::Linter::new(injection),
        ));
        let mcp = McpState::start(config.clone(), pipeline.clone(), integrity, &shutdown);
        let llm =
            crate::llm::LlmState::new(&config, pipeline.clone()).map_err(StartError::HttpClient)?;
        let gw = Arc::new(Gateway {
            config,
            pipeline,
            mcp,
            llm,
            shutdown,
            issuers,
            guardrails,
            audit_mask,
        });
        tokio::spawn(tasks::policy_task(Arc::downgrade(&gw)));
        Ok(gw)
    }

    /// The gateway's state in detail (see [`crate::admin::readiness`]).
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        crate::admin::readiness(&self.mcp, &self.llm, &self.issuers)
    }

    /// What the admin API and the approver page read.
    pub fn admin(&self) -> crate::admin::Admin {
        crate::admin::Admin {
            pipeline: self.pipeline.clone(),
            mcp: self.mcp.clone(),
            llm: self.llm.clone(),
            issuers: self.issuers.clone(),
        }
    }

    /// Stop taking calls, wait for in-flight ones up to the grace period,
    /// then stop upstreams.
    pub async fn drain(&self) {
        let grace = self.config.shutdown_grace;
        let left = self.pipeline.admission.close_and_wait(grace).await;
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                grace_s = grace.as_secs_f64(),
                "shutdown grace period over; abandoning calls"
            );
        }
        // Every queued audit record is written (and a checkpoint signed)
        // before the process goes.
        self.pipeline.audit.close().await;
        self.shutdown.cancel();
    }
}

/// The audit trail over `store`, with its checkpoint key.
pub fn start_audit(config: &Config, store: &Store) -> Result<crate::audit::Audit, StartError> {
    let key =
        crate::audit::SigningKey::load(config.audit.signing_key.as_ref(), &config.storage.data_dir)
            .map_err(|e| StartError::Audit(e.to_string()))?;
    let audit = crate::audit::Audit::start(store.clone(), config.audit.clone(), key)
        .map_err(|e| StartError::HttpClient(e.to_string()))?;
    if let Some(w) = &config.approvals.webhook {
        audit.forward(
            w.forward.clone(),
            crate::approvals::webhook_feed(w.slack, w.ui_url.clone()),
        );
    }
    Ok(audit)
}
