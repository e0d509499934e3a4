//! `toolgate check`: validate the configuration, the server files and the
//! policies, then show which tools each server exposes and why one is
//! missing. Everything goes to stderr; exit 1 on any error.

use std::path::Path;
use std::process::ExitCode;

use super::load;

pub async fn run(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load(config) {
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
    let llm = &config.llm;
    eprintln!(
        "LLM: {} provider(s), {} model name(s) (what callers send as \"model\" at /v1):",
        llm.providers.len(),
        llm.models.len()
    );
    for route in llm.models.values() {
        // Provider URLs are shown without credentials.
        eprintln!("  - {route}");
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
    match toolgate::guardrails::load::load(&config.policies_dir) {
        // The secret rules mask the audit trail all the same: their files
        // must load for the gateway to start.
        Ok(None) => match toolgate::guardrails::load::secrets_only(&config.policies_dir) {
            Ok(_) => eprintln!(
                "guardrails: none (no {} in the policies directory); the audit trail is masked by the secret rules",
                toolgate::guardrails::load::POLICY_FILE
            ),
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                return Ok(ExitCode::FAILURE);
            }
        },
        Ok(Some(set)) => eprintln!(
            "guardrails OK: {} rule{} in {}",
            set.policy().rules.len(),
            if set.policy().rules.len() == 1 {
                ""
            } else {
                "s"
            },
            toolgate::guardrails::load::POLICY_FILE
        ),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    // What a new user most often asks next: why a tool is missing.
    eprintln!(
        "tools each server exposes, as seen by {} (`toolgate policy explain --tool NAME` says why for one tool):",
        toolgate::mcp::exposure::ASKED_FOR
    );
    for (exposure, down) in toolgate::mcp::exposure::probe_exposure(&config, &policies).await {
        eprintln!("  - {exposure}");
        if let Some(reason) = down {
            eprintln!("    why: {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
