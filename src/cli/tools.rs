//! `toolgate tools lint|review`: vet upstream servers' tool definitions
//! before adding them (`lint`), and decide on definitions the gateway
//! holds back (`review`: pinned definitions that changed, new tools of a
//! reviewing server, tools the lint quarantined). Reviews go to the data
//! store; a running gateway picks them up within seconds.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use toolgate::integrity::lint::StoredFinding;
use toolgate::integrity::pins::{self, Definition};
use toolgate::integrity::{Linter, Severity};

use super::{load, println_stdout};

#[derive(Subcommand)]
pub enum ToolsCommand {
    /// Connect to the servers in servers/, lint every tool definition they
    /// offer and print the findings; exit 1 on any finding of quarantine
    /// severity (or a server that cannot be listed).
    Lint {
        /// Only this server (the others' tool names still count, for
        /// shadowing).
        #[arg(long)]
        server: Option<String>,
        /// Lint the tool definitions in this file instead (a `tools/list`
        /// result, `{"tools": [...]}`, or an array of tools), e.g. one saved
        /// from a server before it is added.
        #[arg(long, conflicts_with = "server")]
        file: Option<std::path::PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Tool definitions waiting for a reviewer: list, compare, approve,
    /// reject.
    Review {
        #[command(subcommand)]
        command: ReviewCommand,
    },
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// List the definitions waiting for review (with --all, also the
    /// rejected and pinned ones).
    List {
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        all: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what changed: the pinned definition against the one waiting
    /// (or --hash), as a unified diff, with the lint's findings.
    Diff {
        server: String,
        /// The tool's name on its server (not the namespaced one).
        tool: String,
        /// The definition's hash, or a prefix of it (default: the newest
        /// waiting).
        #[arg(long)]
        hash: Option<String>,
    },
    /// Pin a definition: the tool is exposed with it.
    Approve {
        server: String,
        tool: String,
        #[arg(long)]
        hash: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Refuse a definition: the tool stays quarantined while its server
    /// offers it.
    Reject {
        server: String,
        tool: String,
        #[arg(long)]
        hash: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
}

pub async fn run(config: Option<&Path>, command: &ToolsCommand) -> anyhow::Result<ExitCode> {
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match command {
        ToolsCommand::Lint { server, file, json } => {
            lint(&config, server.as_deref(), file.as_deref(), *json).await
        }
        ToolsCommand::Review { command } => review(&config, command).await,
    }
}

async fn lint(
    config: &toolgate::config::Config,
    only: Option<&str>,
    file: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(name) = only
        && !config.servers.iter().any(|s| s.name == name)
    {
        eprintln!("no server `{name}` in {}", config.servers_dir.display());
        return Ok(ExitCode::FAILURE);
    }
    let injection =
        toolgate::guardrails::injection::Model::shipped().map_err(anyhow::Error::msg)?;
    let linter = Linter::new(Some(toolgate::guardrails::injection::Injection::new(
        injection,
    )));
    let linted = match file {
        Some(file) => vec![lint_file(&linter, file)?],
        None => {
            let probed = toolgate::mcp::exposure::probe(config).await;
            toolgate::mcp::vet::lint_servers(&linter, &probed, only)
        }
    };
    let mut failed = false;
    for server in &linted {
        failed |= server.down.is_some()
            || server
                .tools
                .iter()
                .any(|(_, found)| found.iter().any(|f| f.severity == Severity::Quarantine));
    }
    if json {
        println_stdout(&serde_json::to_string_pretty(&linted)?);
    } else {
        for server in &linted {
            print_server(server);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The tools in `file` (`{"tools": [...]}` or `[...]`), linted as one
/// server named after the file.
fn lint_file(linter: &Linter, file: &Path) -> anyhow::Result<toolgate::mcp::vet::ServerLint> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", file.display()))?;
    let tools = match value.get("tools").unwrap_or(&value) {
        serde_json::Value::Array(tools) => tools.clone(),
        _ => anyhow::bail!(
            "{}: expected a tools/list result ({{\"tools\": [...]}}) or an array of tools",
            file.display()
        ),
    };
    let mut linted = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let name = tool["name"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{}: tools[{i}] has no \"name\"", file.display()))?;
        let found = linter.lint(tool, &toolgate::integrity::Neighbours::default());
        linted.push((name.to_string(), found));
    }
    Ok(toolgate::mcp::vet::ServerLint {
        server: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        down: None,
        tools: linted,
    })
}

fn print_server(server: &toolgate::mcp::vet::ServerLint) {
    if let Some(why) = &server.down {
        println_stdout(&format!("{}: DOWN, not linted: {why}", server.server));
        return;
    }
    let count = |severity| {
        server
            .tools
            .iter()
            .flat_map(|(_, f)| f)
            .filter(|f| f.severity == severity)
            .count()
    };
    println_stdout(&format!(
        "{}: {} tools, {} quarantine, {} warn",
        server.server,
        server.tools.len(),
        count(Severity::Quarantine),
        count(Severity::Warn)
    ));
    for (tool, found) in &server.tools {
        for f in found {
            println_stdout(&finding_line(tool, &f.into()));
        }
    }
}

fn finding_line(tool: &str, f: &StoredFinding) -> String {
    let severity = match f.severity {
        Severity::Quarantine => "QUARANTINE",
        Severity::Warn => "warn",
    };
    let at = if f.at.is_empty() {
        String::new()
    } else {
        format!(" at {}", f.at)
    };
    let excerpt = if f.excerpt.is_empty() {
        String::new()
    } else {
        format!(": \"{}\"", f.excerpt)
    };
    format!(
        "  {tool}: {severity} {}{at}: {}{excerpt}",
        f.rule, f.message
    )
}

async fn review(
    config: &toolgate::config::Config,
    command: &ReviewCommand,
) -> anyhow::Result<ExitCode> {
    let store = toolgate::storage::Store::open_configured(&config.storage).await?;
    let who = toolgate::audit::Who::operator();
    let redactor = toolgate::audit::redact::Redactor::default();
    match command {
        ReviewCommand::List { server, all, json } => {
            let list = pins::list(store.pool(), server.as_deref(), *all).await?;
            if *json {
                println_stdout(&serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!("no tool definitions waiting for review");
            } else {
                println_stdout("server\ttool\thash\tstate\treason\tlint\tchanged_ms");
                for d in &list {
                    println_stdout(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        d.server,
                        d.tool,
                        pins::short(&d.hash),
                        d.state,
                        d.reason,
                        lint_summary(d),
                        d.changed_ms
                    ));
                }
            }
        }
        ReviewCommand::Diff { server, tool, hash } => {
            let review = pins::review(store.pool(), server, tool, hash.as_deref()).await?;
            let o = &review.offered;
            println_stdout(&format!(
                "{server}/{tool} {} ({}, {}); pinned: {}",
                pins::short(&o.hash),
                o.state,
                o.reason,
                review
                    .pinned
                    .as_ref()
                    .map(|p| format!(
                        "{} by {}",
                        pins::short(&p.hash),
                        p.decided_by.as_deref().unwrap_or("-")
                    ))
                    .unwrap_or_else(|| "nothing".into())
            ));
            for f in &o.lint {
                println_stdout(&finding_line(tool, f));
            }
            println_stdout(&review.diff);
        }
        ReviewCommand::Approve {
            server,
            tool,
            hash,
            comment,
        }
        | ReviewCommand::Reject {
            server,
            tool,
            hash,
            comment,
        } => {
            let ruling = match command {
                ReviewCommand::Approve { .. } => pins::Ruling::Approve,
                _ => pins::Ruling::Reject,
            };
            let on = pins::RulingOn {
                server,
                tool,
                hash: hash.as_deref(),
                by: &who,
                comment: comment.as_deref(),
            };
            let d = pins::rule(&store, &redactor, on, ruling).await?;
            let short = pins::short(&d.hash);
            match ruling {
                pins::Ruling::Approve => eprintln!(
                    "pinned {server}/{tool} {short}; running gateways expose it within seconds"
                ),
                pins::Ruling::Reject => eprintln!(
                    "rejected {server}/{tool} {short}; the tool stays quarantined while its server offers it"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lint_summary(d: &Definition) -> String {
    let rules: Vec<&str> = d.lint.iter().map(|f| f.rule.as_str()).collect();
    if rules.is_empty() {
        "-".into()
    } else {
        rules.join(",")
    }
}
