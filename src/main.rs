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

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("toolgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toolgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turn transparent huge pages off for this process, before the runtime
/// and the heap grow. mimalloc reserves its heap in 1 GiB arenas; where
/// the kernel's THP mode is `always` (a common default), the first touch
/// of each 2 MiB stretch of an arena faults in a whole huge page, and the
/// gateway held a quarter more memory for nothing (the LLM benchmark:
/// idle 127 → 100 MiB, 1,000 open streams 212 → 154 MiB, throughput and
/// latency unchanged). Where it cannot be set, nothing changes.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("toolgate: transparent huge pages stay on ({e})");
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
