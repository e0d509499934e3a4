//! `toolgate policy test|explain`: run the table-driven policy tests, or
//! decide one question and say which policies decided it. The deciding is
//! `toolgate::authorize::cases`; this file turns flags into a `Case` and
//! prints the answer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{load, println_stdout};

#[derive(Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process from the command line"
)]
pub enum PolicyCommand {
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

pub fn run(config: Option<&Path>, command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    use toolgate::authorize::Policies;
    use toolgate::authorize::cases::{self, AnnotationsSpec, Case, Principal};
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
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
            Ok(super::print_test_report("policy", &report, files.len()))
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
