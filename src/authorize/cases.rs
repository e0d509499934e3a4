//! Policy questions written down: `toolgate policy test` (table-driven
//! cases in `policies/tests/*.toml`) and `toolgate policy explain` (one
//! question from the command line) share this.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Annotations, Decision, Policies, Query, ServerFacts, Target};
use crate::call::{Caller, Credential};
use crate::config::{Labels, ServerConfig};

/// One written-down question, and (for tests) its expected answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: String,
    pub principal: Principal,
    pub action: String,
    pub tool: Option<String>,
    pub resource: Option<String>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    /// An admin API area (`policy`), for `administer`.
    pub admin: Option<String>,
    pub server: Option<String>,
    pub server_facts: Option<FactsOverride>,
    pub annotations: Option<AnnotationsSpec>,
    pub args: Option<Map<String, Value>>,
    /// What the guardrails found in the arguments, as policies see it
    /// (`context.findings`): `["secrets", "secrets:github-pat-classic"]`.
    #[serde(default)]
    pub findings: Vec<String>,
    /// The tool's flow labels (`context.labels`): `["public_sink"]`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// What the session has touched so far (`context.session.touched`).
    #[serde(default)]
    pub touched: Vec<String>,
    #[serde(default)]
    pub listing: bool,
    pub client_ip: Option<IpAddr>,
    /// `"allow"` or `"deny"` (tests only).
    pub expect: Option<String>,
    /// The exact determining policies (tests only, optional).
    pub policies: Option<Vec<String>>,
    /// The exact approval gates an allowed call must pass (tests only,
    /// optional; `[]` for none).
    pub gates: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// `"user"` (default) or `"agent"` (an API key).
    pub kind: Option<String>,
    pub subject: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactsOverride {
    pub tags: Option<Vec<String>>,
    pub env: Option<String>,
    pub trusted: Option<bool>,
}

/// A tool's hints as it declares them (missing: MCP defaults).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationsSpec {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

impl AnnotationsSpec {
    fn declared(self) -> Annotations {
        let read_only = self.read_only.unwrap_or(false);
        Annotations {
            read_only,
            destructive: !read_only && self.destructive.unwrap_or(true),
            idempotent: self.idempotent.unwrap_or(false),
            open_world: self.open_world.unwrap_or(true),
        }
    }
}

// The errors of a case stay strings: they go into the test report or the
// explain answer a person reads, next to the case that caused them.
fn credential(name: &str) -> Result<Credential, String> {
    Ok(match name {
        "access_token" => Credential::AccessToken,
        "api_key" => Credential::ApiKey,
        "session" => Credential::Session,
        "dev_insecure" => Credential::DevInsecure,
        "local_process" => Credential::LocalProcess,
        other => {
            return Err(format!(
                "credential `{other}`: use access_token, api_key, session, dev_insecure or local_process"
            ));
        }
    })
}

fn parse_labels(key: &str, names: &[String]) -> Result<Labels, String> {
    names.iter().try_fold(Labels::NONE, |set, name| {
        Labels::parse(name).map(|l| set.union(l)).ok_or_else(|| {
            format!(
                "{key}: unknown label `{name}`: use private_data, untrusted_content or public_sink"
            )
        })
    })
}

impl Case {
    /// Ask the policies; `servers` supplies servers' `[policy]` facts.
    /// Why not stays a string: it is shown with the case to a person.
    pub fn decide(
        &self,
        policies: &Policies,
        servers: &[ServerConfig],
    ) -> Result<Decision, String> {
        let agent = match self.principal.kind.as_deref() {
            None | Some("user") => false,
            Some("agent") => true,
            Some(other) => return Err(format!("principal.kind `{other}`: use user or agent")),
        };
        let cred = match &self.principal.credential {
            Some(c) => credential(c)?,
            None if agent => Credential::ApiKey,
            None => Credential::AccessToken,
        };
        if agent != (cred == Credential::ApiKey) {
            return Err(
                "an agent is an API key: kind = \"agent\" goes with credential = \"api_key\""
                    .into(),
            );
        }
        if self.principal.subject.is_empty() {
            return Err("principal.subject is empty".into());
        }
        let caller = Caller {
            groups: self.principal.groups.clone(),
            address: Some(self.client_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]))),
            ..Caller::new(self.principal.subject.clone(), cred)
        };
        let facts = self.facts(servers)?;
        let labels = parse_labels("labels", &self.labels)?;
        let touched = parse_labels("touched", &self.touched)?;
        let targets = [
            self.tool.is_some(),
            self.resource.is_some(),
            self.prompt.is_some(),
            self.model.is_some(),
            self.admin.is_some(),
        ];
        if targets.iter().filter(|t| **t).count() != 1 {
            return Err("name exactly one of tool, resource, prompt, model, admin".into());
        }
        let need_facts = || {
            facts
                .as_ref()
                .ok_or_else(|| "`server` is needed for a tool, resource or prompt".to_string())
        };
        let target = match (&self.tool, &self.resource, &self.prompt, &self.model) {
            _ if self.admin.is_some() => Target::Admin {
                name: self.admin.as_deref().unwrap_or_default(),
            },
            (Some(tool), ..) => Target::Tool {
                name: tool,
                server: need_facts()?,
                annotations: self.annotations.unwrap_or_default().declared(),
                labels,
            },
            (_, Some(uri), ..) => Target::Resource {
                uri,
                server: need_facts()?,
            },
            (_, _, Some(name), _) => Target::Prompt {
                name,
                server: need_facts()?,
            },
            (.., Some(name)) => Target::Model {
                name,
                request: None,
            },
            _ => unreachable!("exactly one target"),
        };
        let expected_action = target.action().name();
        if self.action != expected_action {
            return Err(format!(
                "action `{}` does not go with this target: a {} is `{expected_action}`",
                self.action,
                target.kind()
            ));
        }
        let empty = Map::new();
        let args = if self.listing {
            None
        } else {
            Some(self.args.as_ref().unwrap_or(&empty))
        };
        Ok(policies.decide(&Query {
            caller: &caller,
            target,
            args,
            request_id: "policy-cli",
            findings: &self.findings,
            touched,
        }))
    }

    /// The error stays a string: it is shown with the case to a person.
    fn facts(&self, servers: &[ServerConfig]) -> Result<Option<ServerFacts>, String> {
        let Some(name) = &self.server else {
            return Ok(None);
        };
        let known = servers
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.facts.clone());
        let mut facts = match (known, &self.server_facts) {
            (Some(f), _) => f,
            (None, Some(_)) => ServerFacts {
                name: name.clone(),
                ..ServerFacts::default()
            },
            (None, None) => {
                return Err(format!(
                    "server `{name}` is not in the servers folder: add server_facts = {{ trusted = …, env = …, tags = […] }}"
                ));
            }
        };
        if let Some(o) = &self.server_facts {
            if let Some(tags) = &o.tags {
                facts.tags = tags.clone();
            }
            if let Some(env) = &o.env {
                facts.env = env.clone();
            }
            if let Some(trusted) = o.trusted {
                facts.trusted = trusted;
            }
        }
        Ok(Some(facts))
    }

    /// Whether `decision` is what this case expects; why not, if not (a
    /// string: the test report shows it to a person).
    pub fn check(&self, decision: &Decision) -> Result<(), String> {
        let want_allow = match self.expect.as_deref() {
            Some("allow") => true,
            Some("deny") => false,
            other => return Err(format!("expect = {other:?}: use \"allow\" or \"deny\"")),
        };
        if decision.allowed != want_allow {
            return Err(format!(
                "expected {}, got: {decision}",
                if want_allow { "allow" } else { "deny" }
            ));
        }
        if let Some(want) = &self.policies {
            let mut want = want.clone();
            want.sort();
            let mut got = decision.policies.clone();
            got.sort();
            if want != got {
                return Err(format!(
                    "expected determining policies {want:?}, got {got:?} ({decision})"
                ));
            }
        }
        if let Some(want) = &self.gates {
            let mut want = want.clone();
            want.sort();
            let mut got: Vec<String> = decision.gates.iter().map(|g| g.policy.clone()).collect();
            got.sort();
            if want != got {
                return Err(format!(
                    "expected approval gates {want:?}, got {got:?} ({decision})"
                ));
            }
        }
        Ok(())
    }
}

/// A decision as `toolgate policy explain --json` prints it and `POST
/// /admin/v1/policy/explain` answers: the verdict, the determining
/// policies and the approval gates, each with the file it is in.
pub fn explanation(decision: &Decision, policies: &Policies) -> Value {
    let file = |id: &str| policies.origin.get(id).map(|p| p.display().to_string());
    serde_json::json!({
        "decision": if decision.allowed { "allow" } else { "deny" },
        "policies": decision
            .policies
            .iter()
            .map(|id| serde_json::json!({"id": id, "file": file(id)}))
            .collect::<Vec<_>>(),
        "reasons": decision.reasons,
        "errors": decision.errors,
        "gates": decision
            .gates
            .iter()
            .map(|g| serde_json::json!({
                "id": g.policy,
                "file": file(&g.policy),
                "approver_group": g.group,
                "confirm": g.confirm,
                "timeout_secs": g.timeout.as_secs(),
                "approvers": g.approvers,
                "reason": g.reason,
            }))
            .collect::<Vec<_>>(),
    })
}

/// What `policy test` found.
pub use crate::util::cases::Report;

impl crate::util::cases::Named for Case {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The test files to run: `files`, or every `*.toml` in `policies/tests/`.
pub fn test_files(policies_dir: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    crate::util::cases::files(&policies_dir.join("tests"), files)
}

/// Run every case of every file.
pub fn run_tests(policies: &Policies, servers: &[ServerConfig], files: &[PathBuf]) -> Report {
    crate::util::cases::run(files, |case: &Case| {
        case.decide(policies, servers).and_then(|d| case.check(&d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_defaults_are_the_worst_case() {
        let declared = AnnotationsSpec::default().declared();
        assert_eq!(declared, Annotations::WORST);
        let ro = AnnotationsSpec {
            read_only: Some(true),
            ..Default::default()
        };
        assert!(!ro.declared().destructive, "read-only is never destructive");
    }
}
