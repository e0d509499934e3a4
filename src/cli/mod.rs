//! The `toolgate` command line: the clap definitions and the helpers every
//! subcommand shares. It sits on the top floor, in the binary crate only
//! (`main.rs` declares it; the library never compiles it), so `anyhow` is
//! allowed here. One file per subcommand holds its body and, where it has
//! subcommands of its own, their definitions.

pub mod audit;
pub mod check;
pub mod guardrails;
pub mod keys;
pub mod policy;
pub mod reference;
pub mod serve;
pub mod tools;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use toolgate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "toolgate",
    version,
    about = "MCP-first tool-governance gateway for AI agents"
)]
pub struct Cli {
    /// toolgate.toml to use (default: ./toolgate.toml if present, else built-in defaults).
    #[arg(long, global = true, env = "TOOLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the gateway over streamable HTTP at http://LISTEN/mcp.
    Serve {
        /// Override `listen` from the config (e.g. 127.0.0.1:9000).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Development only: every loopback caller without a credential is
        /// let in as the dev user (your OS user, group `dev`). Refused on a
        /// non-loopback address.
        #[arg(long)]
        dev_insecure: bool,
    },
    /// Serve one local MCP client over stdin/stdout, as local:$USER
    /// without groups, or as the API key in the environment variable
    /// TOOLGATE_API_KEY (its identity and groups).
    Stdio,
    /// Validate the configuration and every server file; exit 1 on any error.
    Check,
    /// Create, list and revoke API keys (stored hashed in the data store).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Check and explain the Cedar policies in `policies/`.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Try the guardrails of the policies directory on JSON, or measure
    /// their detection on labelled texts.
    Guardrails {
        #[command(subcommand)]
        command: guardrails::GuardrailsCommand,
    },
    /// Vet upstream servers' tool definitions (`lint`) and decide on those
    /// the gateway holds back (`review`: changed, new or poisoned).
    Tools {
        #[command(subcommand)]
        command: tools::ToolsCommand,
    },
    /// Verify and export the audit trail.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Run one of the reference upstream servers shipped with toolgate.
    Reference {
        name: toolgate::reference::Name,
        /// Serve streamable HTTP at http://ADDR/mcp instead of stdio (the
        /// LLM provider: http://ADDR/v1, required).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// llm only: wait this long before each answer's first byte (e.g. 60ms).
        #[arg(long, value_parser = toolgate::config::parse_duration)]
        latency: Option<std::time::Duration>,
        /// llm only: wait this long between streamed chunks.
        #[arg(long, value_parser = toolgate::config::parse_duration)]
        pace: Option<std::time::Duration>,
        /// llm only: the share of requests (0 to 1) answered with an error
        /// (--fail-status).
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// llm only: the status of those errors (500, 429, 503, …).
        #[arg(long, default_value_t = 500)]
        fail_status: u16,
        /// llm only: a Retry-After header (seconds) on those errors.
        #[arg(long)]
        retry_after: Option<u32>,
        /// llm only: filler words added to every answer.
        #[arg(long, default_value_t = 0)]
        words: usize,
    },
}

fn self_exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "toolgate".into())
}

/// Called by the commands that log, once they know the format: `serve` and
/// `stdio` take it from the configuration they load.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    // Logs go to stderr: stdout belongs to the MCP protocol under `stdio`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The configuration at `--config` (or where `Config::locate` finds it);
/// on errors, prints every one and gives the exit code to leave with.
pub fn load(config: Option<&Path>) -> Result<Config, ExitCode> {
    let path = Config::locate(config);
    Config::load(path.as_deref(), &self_exe()).map_err(|errors| {
        eprint!("{errors}");
        ExitCode::FAILURE
    })
}

/// A table-test run's failures and summary (`policy test`, `guardrails
/// test`), on stderr; failure when any case failed.
fn print_test_report(what: &str, report: &toolgate::util::cases::Report, files: usize) -> ExitCode {
    for (file, name, why) in &report.failed {
        eprintln!("FAIL {}: {name}: {why}", file.display());
    }
    eprintln!(
        "{what} tests: {} passed, {} failed ({files} file(s))",
        report.passed,
        report.failed.len(),
    );
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Command output (stdout is ours outside `stdio`).
fn println_stdout(line: &str) {
    use std::io::Write as _;
    // A reader that went away (`| head`) ends the output, not in a panic.
    if let Err(e) = writeln!(std::io::stdout(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write to stdout: {e}");
        std::process::exit(1);
    }
}
