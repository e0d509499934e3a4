//! The `toolgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use toolgate::config::{Config, LogFormat};

// The gateway allocates per message on both of its MCP sides; mimalloc is
// measurably cheaper than glibc's allocator for that (see README Benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "toolgate",
    version,
    about = "MCP-first tool-governance gateway for AI agents"
)]
struct Cli {
    /// toolgate.toml to use (default: ./toolgate.toml if present, else built-in defaults).
    #[arg(long, global = true, env = "TOOLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway over streamable HTTP at http://LISTEN/mcp.
    Serve {
        /// Override `listen` from the config (e.g. 127.0.0.1:9000).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Serve one local MCP client over stdin/stdout.
    Stdio,
    /// Validate the configuration and every server file; exit 1 on any error.
    Check,
    /// Run one of the reference upstream servers shipped with toolgate.
    Reference {
        name: toolgate::reference::Name,
        /// Serve streamable HTTP at http://ADDR/mcp instead of stdio.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
}

fn self_exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "toolgate".into())
}

fn init_logging(format: LogFormat) {
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

fn load(cli: &Cli) -> Result<Config, ExitCode> {
    let path = Config::locate(cli.config.as_deref());
    Config::load(path.as_deref(), &self_exe()).map_err(|errors| {
        eprint!("{errors}");
        ExitCode::FAILURE
    })
}

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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Reference { name, http } => {
            init_logging(LogFormat::Text);
            toolgate::reference::run(*name, *http).await?;
        }
        Command::Check => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let source = config
                .source
                .as_ref()
                .map_or("built-in defaults".into(), |p| p.display().to_string());
            eprintln!(
                "configuration OK ({source}); {} upstream server(s) in {}:",
                config.servers.len(),
                config.servers_dir.display()
            );
            for s in &config.servers {
                let prefix = if s.prefix.is_empty() {
                    "(no prefix)".to_string()
                } else {
                    format!("{}__*", s.prefix)
                };
                eprintln!("  - {} [{}] {prefix}", s.name, s.transport.kind());
            }
        }
        Command::Serve { listen } => {
            let mut config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            init_logging(config.log_format);
            if let Some(addr) = listen {
                config.listen = *addr;
            }
            let listen = config.listen;
            let server = toolgate::app::HttpServer::start(config).await.with_context(|| {
                format!("cannot listen on {listen}; pick another address with `listen` in toolgate.toml or `serve --listen ADDR`")
            })?;
            toolgate::app::shutdown_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await;
        }
        Command::Stdio => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            init_logging(config.log_format);
            toolgate::app::serve_stdio(config).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
