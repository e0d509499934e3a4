//! The `toolgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

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
        command: KeysCommand,
    },
    /// Check and explain the Cedar policies in `policies/`.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Verify and export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run one of the reference upstream servers shipped with toolgate.
    Reference {
        name: toolgate::reference::Name,
        /// Serve streamable HTTP at http://ADDR/mcp instead of stdio.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
}

#[derive(Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process from the command line"
)]
enum PolicyCommand {
    /// Run table-driven policy tests (default: policies/tests/*.toml);
    /// exit 1 on any mismatch.
    Test { files: Vec<PathBuf> },
    /// Decide one question and say which policies decided it.
    Explain {
        /// The caller's subject (e.g. okta:00u1, apikey:…).
        #[arg(long)]
        subject: String,
        /// The caller is an API key (an `Agent`), not a user.
        #[arg(long)]
        agent: bool,
        /// A group or role of the caller (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// access_token (user default), api_key, session, dev_insecure, local_process.
        #[arg(long)]
        credential: Option<String>,
        /// An exposed tool name (`notes__add_note`); its server is found by prefix.
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        prompt: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// The server (default: from the tool/prompt prefix).
        #[arg(long)]
        server: Option<String>,
        /// The call's arguments, a JSON object.
        #[arg(long)]
        args: Option<String>,
        /// The tool's annotations as it declares them, JSON (e.g.
        /// '{"read_only": true}'); default: the worst case.
        #[arg(long)]
        annotations: Option<String>,
        /// Decide visibility in a list instead of a call.
        #[arg(long)]
        listing: bool,
        #[arg(long)]
        client_ip: Option<std::net::IpAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, the signed checkpoints and (with
    /// --checkpoints) an exported checkpoint file; name the first bad
    /// record; exit 1 on any problem.
    Verify {
        /// An exported checkpoint file (JSON lines) kept outside the
        /// database: proves records cut off the end. Default: the
        /// configured `audit.checkpoint_file`, if it exists.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The checkpoint signer's public key (hex). Default: derived from
        /// the configured signing key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Delete records older than a duration, behind a signed checkpoint at
    /// the last one deleted (what remains still verifies); the deletion is
    /// recorded.
    Prune {
        /// Records older than this go (e.g. 90d).
        #[arg(long)]
        older_than: String,
    },
    /// Print records as JSON lines, oldest first.
    Export {
        /// From this time (RFC 3339, Unix seconds, or a duration ago: 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Until this time, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Output format (only `jsonl`).
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// A unique name for the key (e.g. the agent or bot using it).
        #[arg(long)]
        name: String,
        /// A group the key's caller is in (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// How long the key stays valid: 30d, 12h, 90m (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List every key (never the keys themselves).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or name.
    Revoke { key: String },
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
                let at = match &s.transport {
                    // Shown without credentials (userinfo, query values).
                    toolgate::config::Transport::Http { url, .. } => format!(" {url}"),
                    toolgate::config::Transport::Stdio { .. } => String::new(),
                };
                eprintln!("  - {} [{}{at}] {prefix}", s.name, s.transport.kind());
            }
            let policies = match toolgate::authorize::Policies::load(&config.policies_dir, 1) {
                Ok(policies) => policies,
                Err(errors) => {
                    eprint!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            eprintln!(
                "policies OK ({}): {} polic{} validated against the schema",
                config.policies_dir.display(),
                policies.len(),
                if policies.len() == 1 { "y" } else { "ies" }
            );
            // What a new user most often asks next: why a tool is missing.
            eprintln!(
                "tools each server exposes, as seen by {} (`toolgate policy explain --tool NAME` says why for one tool):",
                toolgate::mcp::exposure::ASKED_FOR
            );
            for (exposure, down) in
                toolgate::mcp::exposure::probe_exposure(&config, &policies).await
            {
                eprintln!("  - {exposure}");
                if let Some(reason) = down {
                    eprintln!("    why: {reason}");
                }
            }
        }
        Command::Serve {
            listen,
            dev_insecure,
        } => {
            let mut config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            init_logging(config.log_format);
            if let Some(addr) = listen {
                config.listen = *addr;
            }
            config.auth.dev_insecure |= *dev_insecure;
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
        }
        Command::Policy { command } => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            return policy(&config, command);
        }
        Command::Keys { command } => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            return keys(&config, command).await;
        }
        Command::Audit { command } => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            return audit(&config, command).await;
        }
        Command::Stdio => {
            let config = match load(&cli) {
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
                    eprintln!("toolgate: {e:#}");
                    1
                }
            };
            // Drained and recorded by now. A read of stdin still pending is
            // a blocking thread the runtime would wait for on its way out
            // (until the client closes stdin): leave without it.
            std::process::exit(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn policy(config: &Config, command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    use toolgate::authorize::Policies;
    use toolgate::authorize::cases::{self, AnnotationsSpec, Case, Principal};
    let policies = match Policies::load(&config.policies_dir, 1) {
        Ok(p) => p,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match command {
        PolicyCommand::Test { files } => {
            let files = cases::test_files(&config.policies_dir, files);
            if files.is_empty() {
                eprintln!(
                    "no policy tests: put *.toml files in {}/tests or name them",
                    config.policies_dir.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            let report = cases::run_tests(&policies, &config.servers, &files);
            for (file, name, why) in &report.failed {
                eprintln!("FAIL {}: {name}: {why}", file.display());
            }
            eprintln!(
                "policy tests: {} passed, {} failed ({} file(s))",
                report.passed,
                report.failed.len(),
                files.len()
            );
            Ok(if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Explain {
            subject,
            agent,
            groups,
            credential,
            tool,
            resource,
            prompt,
            model,
            server,
            args,
            annotations,
            listing,
            client_ip,
            json,
        } => {
            let parse =
                |what: &str, text: &Option<String>| -> anyhow::Result<Option<serde_json::Value>> {
                    text.as_deref()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--{what}: not JSON: {e}"))
                };
            let args = match parse("args", args)? {
                None => None,
                Some(serde_json::Value::Object(map)) => Some(map),
                Some(_) => {
                    anyhow::bail!("--args: a JSON object, e.g. '{{\"repository\": \"acme/x\"}}'")
                }
            };
            let annotations: Option<AnnotationsSpec> = parse("annotations", annotations)?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--annotations: {e}"))?;
            // The server of a namespaced tool or prompt, by its prefix.
            let by_prefix = |name: &str| {
                config
                    .servers
                    .iter()
                    .find(|s| !s.prefix.is_empty() && name.starts_with(&format!("{}__", s.prefix)))
                    .or_else(|| {
                        config
                            .servers
                            .iter()
                            .find(|s| name.starts_with(&format!("{}+", s.prefix)))
                    })
                    .map(|s| s.name.clone())
                    // Not configured: the prefix names the server.
                    .or_else(|| name.split_once("__").map(|(p, _)| p.to_string()))
            };
            let server = server.clone().or_else(|| {
                tool.as_deref()
                    .or(prompt.as_deref())
                    .or(resource.as_deref())
                    .and_then(by_prefix)
            });
            let action = if tool.is_some() {
                "call_tool"
            } else if resource.is_some() {
                "read_resource"
            } else if prompt.is_some() {
                "get_prompt"
            } else {
                "chat"
            };
            let unknown_server = server
                .as_ref()
                .filter(|name| !config.servers.iter().any(|s| &&s.name == name));
            if let Some(name) = unknown_server {
                eprintln!(
                    "note: server `{name}` is not in {}: deciding as for an untrusted server without tags or env",
                    config.servers_dir.display()
                );
            }
            let case = Case {
                server_facts: unknown_server.map(|_| Default::default()),
                principal: Principal {
                    kind: Some(if *agent { "agent" } else { "user" }.into()),
                    subject: subject.clone(),
                    groups: groups.clone(),
                    credential: credential.clone(),
                },
                action: action.into(),
                tool: tool.clone(),
                resource: resource.clone(),
                prompt: prompt.clone(),
                model: model.clone(),
                server,
                annotations,
                args,
                listing: *listing,
                client_ip: *client_ip,
                ..Case::default()
            };
            let decision = case
                .decide(&policies, &config.servers)
                .map_err(|e| anyhow::anyhow!(e))?;
            let explained = toolgate::authorize::cases::explanation(&decision, &policies);
            if *json {
                println_stdout(&explained.to_string());
            } else {
                println_stdout(&decision.to_string());
                let listed = ["policies", "gates"]
                    .iter()
                    .filter_map(|k| explained[*k].as_array())
                    .flatten();
                for f in listed {
                    println_stdout(&format!(
                        "  {} ({})",
                        f["id"].as_str().unwrap_or_default(),
                        f["file"].as_str().unwrap_or("?")
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Command output (stdout is ours outside `stdio`).
#[expect(clippy::print_stdout, reason = "the command's answer")]
fn println_stdout(line: &str) {
    println!("{line}");
}

async fn audit(config: &Config, command: &AuditCommand) -> anyhow::Result<ExitCode> {
    use toolgate::audit::{SigningKey, query, verify};
    let store = toolgate::storage::Store::open(
        config.storage.database_url.as_ref().map(|s| s.expose()),
        &config.storage.data_dir,
    )
    .await?;
    match command {
        AuditCommand::Verify {
            checkpoints,
            public_key,
        } => {
            let public_key = match public_key {
                Some(key) => key.trim().to_lowercase(),
                None => {
                    let key_file = config.storage.data_dir.join("audit.key");
                    if config.audit.signing_key.is_none() && !key_file.exists() {
                        anyhow::bail!(
                            "no audit signing key: neither [audit] signing_key nor {} is there; give the signer's public key with --public-key",
                            key_file.display()
                        );
                    }
                    SigningKey::load(config.audit.signing_key.as_ref(), &config.storage.data_dir)
                        .map_err(anyhow::Error::msg)?
                        .public_hex()
                }
            };
            let exported = checkpoints.clone().or_else(|| {
                let file = &config.audit.checkpoint_file;
                file.exists().then(|| file.clone())
            });
            let v = verify::verify(store.pool(), &public_key, exported.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            let range = match (v.first_seq, v.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..={b}"),
                _ => "no records".into(),
            };
            println_stdout(&format!(
                "{} records ({range}), {} stored checkpoints, {} exported checkpoints{}",
                v.records,
                v.checkpoints,
                v.exported,
                exported
                    .as_ref()
                    .map(|f| format!(" ({})", f.display()))
                    .unwrap_or_default()
            ));
            if let Some((from, to)) = v.unsigned {
                let after = match v.last_signed {
                    Some(seq) => format!("after the last signed checkpoint (seq {seq})"),
                    None => "no checkpoint has been signed yet".into(),
                };
                println_stdout(&format!(
                    "note: records {from}..={to} are not yet covered by a signed checkpoint ({after}): they chain, but whoever can write the store could have rewritten or cut them unnoticed; the next checkpoint (every checkpoint_interval, and at shutdown) covers them"
                ));
            }
            if v.ok() {
                println_stdout("audit trail verified: no problems");
                return Ok(ExitCode::SUCCESS);
            }
            for p in &v.problems {
                println_stdout(&format!("problem: {}", p.message));
            }
            if v.more > 0 {
                println_stdout(&format!("… and {} more problems", v.more));
            }
            if let Some(first) = v.first_bad() {
                println_stdout(&format!("first bad seq: {first}"));
            }
            Ok(ExitCode::FAILURE)
        }
        AuditCommand::Prune { older_than } => {
            let before = query::parse_time(older_than, toolgate::audit::now_ms())
                .map_err(anyhow::Error::msg)?;
            let key = SigningKey::load(config.audit.signing_key.as_ref(), &config.storage.data_dir)
                .map_err(anyhow::Error::msg)?;
            // What a configured receiver has not taken yet is kept.
            let mut hold = Vec::new();
            if config.audit.forward.is_some() {
                hold.push(toolgate::audit::forward::Feed::all_records().cursor);
            }
            if config.approvals.webhook.is_some() {
                hold.push(toolgate::approvals::WEBHOOK_CURSOR);
            }
            match toolgate::audit::retention::prune(
                &store,
                &key,
                &config.audit.checkpoint_file,
                before,
                &hold,
                toolgate::audit::Who::operator(),
            )
            .await
            .map_err(anyhow::Error::msg)?
            {
                Some(p) => {
                    println_stdout(&format!(
                        "pruned {} records through seq {} behind a signed checkpoint (appended to {})",
                        p.records,
                        p.through_seq,
                        config.audit.checkpoint_file.display()
                    ));
                    if p.held_back > 0 {
                        println_stdout(&format!(
                            "kept {} older records a forwarding receiver has not taken yet",
                            p.held_back
                        ));
                    }
                }
                None => println_stdout("nothing to prune (nothing that old, or not yet forwarded)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            since,
            until,
            format,
        } => {
            if format != "jsonl" {
                anyhow::bail!("--format {format}: only jsonl is supported");
            }
            let now = toolgate::audit::now_ms();
            let time = |t: &Option<String>| {
                t.as_deref()
                    .map(|t| query::parse_time(t, now))
                    .transpose()
                    .map_err(anyhow::Error::msg)
            };
            let filter = query::Filter {
                since_ms: time(since)?,
                until_ms: time(until)?,
                ..Default::default()
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let count = query::export(store.pool(), &filter, &mut out)
                .await
                .map_err(anyhow::Error::msg)?;
            std::io::Write::flush(&mut out)?;
            eprintln!("exported {count} records");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys(config: &Config, command: &KeysCommand) -> anyhow::Result<ExitCode> {
    use toolgate::authenticate::api_keys::{self, ApiKeys};
    let store = toolgate::storage::Store::open(
        config.storage.database_url.as_ref().map(|s| s.expose()),
        &config.storage.data_dir,
    )
    .await?;
    let keys = ApiKeys::new(store, config.auth.api_key_cache_ttl);
    let when = |t: Option<i64>| t.map_or("-".to_string(), |t| t.to_string());
    match command {
        KeysCommand::Create {
            name,
            groups,
            expires,
        } => {
            let valid_for = expires
                .as_deref()
                .map(api_keys::parse_validity)
                .transpose()?;
            let (record, key) = keys
                .create(name, groups, valid_for, toolgate::audit::Who::operator())
                .await?;
            eprintln!(
                "created API key `{}` (id {}, groups [{}], expires {}). Store it now: it is not shown again.",
                record.name,
                record.id,
                record.groups.join(", "),
                when(record.expires_at)
            );
            // The key alone on stdout, for scripts.
            #[expect(clippy::print_stdout, reason = "the CLI prints the new key")]
            {
                println!("{key}");
            }
        }
        KeysCommand::List { json } => {
            let list = keys.list().await?;
            #[expect(clippy::print_stdout, reason = "the CLI prints the list")]
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("id\tname\tgroups\tcreated\texpires\trevoked\tlast_used");
                for k in list {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        k.id,
                        k.name,
                        k.groups.join(","),
                        k.created_at,
                        when(k.expires_at),
                        when(k.revoked_at),
                        when(k.last_used_at)
                    );
                }
            }
        }
        KeysCommand::Revoke { key } => {
            let record = keys.revoke(key, toolgate::audit::Who::operator()).await?;
            eprintln!(
                "revoked API key `{}` (id {}); gateways stop accepting it within auth.api_key_cache_ttl",
                record.name, record.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
