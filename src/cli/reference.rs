//! `toolgate reference NAME`: run one of the reference upstream servers
//! (`toolgate::reference`) for demos and tests. It reads no configuration.

use std::net::SocketAddr;
use std::process::ExitCode;

use toolgate::config::LogFormat;

use super::init_logging;

pub async fn run(
    name: toolgate::reference::Name,
    http: Option<SocketAddr>,
    knobs: toolgate::reference::llm::Knobs,
) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text);
    let llm_only = knobs.latency > std::time::Duration::ZERO
        || knobs.pace > std::time::Duration::ZERO
        || knobs.fail_rate != 0.0
        || knobs.fail_status != 500
        || knobs.retry_after.is_some()
        || knobs.words != 0;
    if llm_only && !matches!(name, toolgate::reference::Name::Llm) {
        anyhow::bail!(
            "--latency, --pace, --fail-rate, --fail-status, --retry-after and --words are for `toolgate reference llm` only"
        );
    }
    if !(0.0..=1.0).contains(&knobs.fail_rate) {
        anyhow::bail!("--fail-rate: {} is not between 0 and 1", knobs.fail_rate);
    }
    if !(400..=599).contains(&knobs.fail_status) {
        anyhow::bail!(
            "--fail-status: {} is not an error status (400 to 599)",
            knobs.fail_status
        );
    }
    toolgate::reference::run(name, http, knobs).await?;
    Ok(ExitCode::SUCCESS)
}
