//! `toolgate reference NAME`: run one of the reference upstream servers
//! (`toolgate::reference`) for demos and tests. It reads no configuration.

use std::net::SocketAddr;
use std::process::ExitCode;

use toolgate::config::LogFormat;

use super::init_logging;

pub async fn run(
    name: toolgate::reference::Name,
    http: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text);
    toolgate::reference::run(name, http).await?;
    Ok(ExitCode::SUCCESS)
}
