//! `toolgate serve` and `toolgate stdio`: run the gateway, over streamable
//! HTTP or for one local client over stdin/stdout. The gateway itself is
//! assembled in `toolgate::app`; this file reads the flags and the
//! environment, starts it and waits for the end.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use super::{init_logging, load};

/// `toolgate serve`: until a shutdown signal.
pub async fn http(
    config: Option<&Path>,
    listen: Option<SocketAddr>,
    dev_insecure: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_logging(config.log_format);
    if let Some(addr) = listen {
        config.listen = addr;
    }
    config.auth.dev_insecure |= dev_insecure;
    if config.auth.dev_insecure {
        tracing::warn!(
            "DEV MODE (--dev-insecure): every local caller without a credential is let in as dev:{}; never use this beyond your own machine",
            std::env::var("USER").unwrap_or_else(|_| "local".into())
        );
    }
    let server = toolgate::app::HttpServer::start(config).await?;
    if let Some(key) = &server.first_admin_key {
        eprintln!(
            "\n  toolgate: first start, so an admin API key was created. It is shown only now:\n\n    {key}\n\n  Send it as `Authorization: Bearer <key>`. Manage keys with `toolgate keys create|list|revoke`;\n  or configure an identity provider ([[auth.issuers]]) for your users.\n"
        );
    }
    toolgate::util::signal::shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `toolgate stdio`: until the client closes stdin; leaves the process
/// itself rather than returning.
pub async fn stdio(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_logging(config.log_format);
    let name = toolgate::authenticate::api_keys::STDIO_KEY_ENV;
    let api_key = match std::env::var(name) {
        Ok(key) if key.trim().is_empty() => {
            eprintln!(
                "{name} is set but empty: set it to an API key (`toolgate keys create`), or unset it to run as local:$USER"
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(key) => Some(toolgate::config::Secret::new(key.trim())),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("{name} is not valid UTF-8: set it to an API key");
            return Ok(ExitCode::FAILURE);
        }
    };
    let code = match toolgate::app::serve_stdio(config, api_key).await {
        Ok(()) => 0,
        Err(e) => {
            // Through anyhow, so `{:#}` prints the whole chain of causes.
            eprintln!("toolgate: {:#}", anyhow::Error::new(e));
            1
        }
    };
    // Drained and recorded by now. A read of stdin still pending is
    // a blocking thread the runtime would wait for on its way out
    // (until the client closes stdin): leave without it.
    std::process::exit(code);
}
