//! Reference upstreams that ship with toolgate, so `toolgate serve` has real
//! MCP servers to aggregate on a machine with nothing but the Rust toolchain.
//! They run as separate processes (`toolgate reference NAME`), over stdio or
//! streamable HTTP, exactly like third-party upstreams.
//!
//! - `notes`: a small notebook (tools, resources, a prompt); `delete_note` is
//!   annotated destructive.
//! - `clock`: current time and date arithmetic in UTC.
//! - `echo`: an echo tool plus test helpers (slow calls with progress,
//!   sampling and elicitation round trips, a crash, tool list changes);
//!   the benchmark upstream.
//! - `conformance`: the fixture the official MCP conformance suite expects.
//! - `llm`: not an MCP server but an LLM provider speaking the OpenAI API
//!   (HTTP only), for the LLM gateway's demos, tests and benchmarks.

pub mod clock;
pub mod conformance;
pub mod echo;
pub mod llm;
pub mod notes;

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

/// Which reference server to run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Name {
    Notes,
    Clock,
    Echo,
    Conformance,
    /// An OpenAI-compatible LLM provider (HTTP only).
    Llm,
}

/// Why a reference server stopped with an error; each shows its cause as
/// it is (the CLI prints the chain).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The client's `initialize` over stdio failed.
    #[error(transparent)]
    Initialize(Box<rmcp::service::ServerInitializeError>),
    /// The stdio session's task ended abnormally.
    #[error(transparent)]
    Session(#[from] tokio::task::JoinError),
    /// Binding or serving the HTTP address failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The LLM provider serves HTTP only.
    #[error("`toolgate reference llm` serves HTTP only: give --http ADDR (e.g. 127.0.0.1:8400)")]
    HttpOnly,
}

/// Serve `name` over stdio, or over streamable HTTP at `http://ADDR/mcp`
/// (the LLM provider: at `http://ADDR/v1`, behaving as `knobs` say).
pub async fn run(
    name: Name,
    http: Option<SocketAddr>,
    knobs: llm::Knobs,
) -> Result<(), ReferenceError> {
    match name {
        Name::Llm => match http {
            Some(addr) => Ok(llm::serve(addr, knobs).await?),
            None => Err(ReferenceError::HttpOnly),
        },
        Name::Notes => serve(notes::Notes::new, http).await,
        Name::Clock => serve(clock::Clock::new, http).await,
        Name::Echo => serve(echo::Echo::new, http).await,
        Name::Conformance => serve(conformance::ConformanceServer::new, http).await,
    }
}

async fn serve<S, F>(make: F, http: Option<SocketAddr>) -> Result<(), ReferenceError>
where
    S: rmcp::ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    match http {
        None => {
            let running = make()
                .serve(rmcp::transport::stdio())
                .await
                .map_err(|e| ReferenceError::Initialize(Box::new(e)))?;
            running.waiting().await?;
        }
        Some(addr) => {
            let make = Arc::new(make);
            let service = StreamableHttpService::new(
                move || Ok(make()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default(),
            );
            let router = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(crate::util::signal::shutdown_signal())
                .await?;
        }
    }
    Ok(())
}
