//! The `toolgate` command line: parse, dispatch to the subcommand's body
//! in `cli/`, and turn an error into a message and exit code 1.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

// The gateway allocates per message on both of its MCP sides; mimalloc is
// measurably cheaper than glibc's allocator for that (see README Benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toolgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every command but `reference` reads the configuration first; each logs
/// (`cli::init_logging`) once it knows the format the configuration asks for.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve {
            listen,
            dev_insecure,
        } => cli::serve::http(config, listen, dev_insecure).await,
        Command::Stdio => cli::serve::stdio(config).await,
        Command::Check => cli::check::run(config).await,
        Command::Keys { command } => cli::keys::run(config, &command).await,
        Command::Policy { command } => cli::policy::run(config, &command),
        Command::Guardrails { command } => cli::guardrails::run(config, &command),
        Command::Audit { command } => cli::audit::run(config, &command).await,
        Command::Tools { command } => cli::tools::run(config, &command).await,
        Command::Reference {
            name,
            http,
            latency,
            pace,
            fail_rate,
            fail_status,
            retry_after,
            words,
        } => {
            let knobs = toolgate::reference::llm::Knobs {
                latency: latency.unwrap_or_default(),
                pace: pace.unwrap_or_default(),
                fail_rate,
                fail_status,
                retry_after,
                words,
            };
            cli::reference::run(name, http, knobs).await
        }
    }
}
