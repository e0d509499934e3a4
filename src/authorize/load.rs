//! Loading `policies/` (stage 3, authorize): reading the schema and
//! policy files, validating every policy against the schema, reading the
//! approval gates' annotations, and reporting every problem with its file,
//! line and column. [`Policies::load`] is the way in; [`Engine`](super::Engine)
//! calls it again on reload.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::{Gate, Policies};

/// One problem in `policies/`, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at one place in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl PolicyError {
    /// A problem with a whole file or directory, not one place in it.
    fn whole(file: &Path, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Every problem found while loading.
#[derive(Debug, Clone)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// The schema and policy files of a policy directory, sorted by name,
/// each with its text (or why it could not be read). Why stays a string:
/// it goes into the [`PolicyErrors`] report a person reads.
type PolicyFiles = Vec<(PathBuf, Result<String, String>)>;

fn read_files(dir: &Path) -> std::io::Result<PolicyFiles> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("cedar" | "cedarschema")
            )
        })
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read: {e}"));
            (path, text)
        })
        .collect())
}

/// SHA-256 over the names and texts of the files.
fn digest(files: &PolicyFiles) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (path, text) in files {
        hash.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hash.update([0]);
        hash.update(text.as_deref().unwrap_or_default());
        hash.update([0]);
    }
    hash.finalize().into()
}

/// SHA-256 over the names and contents of the schema and policy files in
/// `dir`: what reload compares to notice a change.
pub fn dir_digest(dir: &Path) -> [u8; 32] {
    digest(&read_files(dir).unwrap_or_default())
}

impl Policies {
    /// Load and validate the schema and policies in `dir`.
    pub fn load(dir: &Path, version: u64) -> Result<Policies, PolicyErrors> {
        // Read once: the same texts are parsed and give the digest.
        let files = read_files(dir).map_err(|e| {
            PolicyErrors(vec![PolicyError::whole(
                dir,
                format!("cannot read the policy directory: {e}; toolgate denies everything without policies (see policies/ in the repository)"),
            )])
        })?;
        let digest = digest(&files);
        let mut errors = Vec::new();
        let has = |ext: &str| {
            files
                .iter()
                .filter(|(p, _)| p.extension().is_some_and(|e| e == ext))
                .collect::<Vec<_>>()
        };
        let (schema_files, policy_files) = (has("cedarschema"), has("cedar"));
        let schema = match schema_files.as_slice() {
            [(path, text)] => load_schema(path, text, &mut errors),
            [] => {
                errors.push(PolicyError::whole(
                    dir,
                    "no Cedar schema (*.cedarschema): policies are validated against it".into(),
                ));
                None
            }
            [(first, _), ..] => {
                errors.push(PolicyError::whole(
                    first,
                    format!(
                        "{} schema files: keep exactly one *.cedarschema",
                        schema_files.len()
                    ),
                ));
                None
            }
        };
        if policy_files.is_empty() {
            errors.push(PolicyError::whole(
                dir,
                "no *.cedar policy files: everything would be denied".into(),
            ));
        }
        let mut set = PolicySet::new();
        let mut origin = HashMap::new();
        let mut gate_info = HashMap::new();
        for (file, text) in policy_files {
            load_policies(
                file,
                text,
                schema.as_ref(),
                &mut set,
                &mut origin,
                &mut gate_info,
                &mut errors,
            );
        }
        match schema {
            Some(_) if errors.is_empty() => {
                // Gates are decided apart from the policies that allow and
                // refuse.
                let (mut decisions, mut gates) = (PolicySet::new(), PolicySet::new());
                for policy in set.policies() {
                    let into = if gate_info.contains_key(AsRef::<str>::as_ref(policy.id())) {
                        &mut gates
                    } else {
                        &mut decisions
                    };
                    if let Err(e) = into.add(policy.clone()) {
                        errors.push(PolicyError::whole(dir, e.to_string()));
                    }
                }
                if !errors.is_empty() {
                    return Err(PolicyErrors(errors));
                }
                let gates = (!gate_info.is_empty()).then(|| {
                    Box::new(Policies::assemble(
                        gates,
                        HashMap::new(),
                        None,
                        HashMap::new(),
                        version,
                        digest,
                    ))
                });
                Ok(Policies::assemble(
                    decisions, origin, gates, gate_info, version, digest,
                ))
            }
            _ => Err(PolicyErrors(errors)),
        }
    }
}

fn load_schema(
    file: &Path,
    text: &Result<String, String>,
    errors: &mut Vec<PolicyError>,
) -> Option<Schema> {
    let text = match text {
        Ok(text) => text,
        Err(why) => {
            errors.push(PolicyError::whole(file, why.clone()));
            return None;
        }
    };
    match Schema::from_cedarschema_str(text) {
        Ok((schema, _warnings)) => {
            // The index matches a policy's actions by name (see `Index`).
            let groups: Vec<String> = schema.action_groups().map(|g| g.to_string()).collect();
            if !groups.is_empty() {
                errors.push(PolicyError::whole(
                    file,
                    format!(
                        "action groups are not supported ({}): list the actions in each policy instead, e.g. `action in [Action::\"call_tool\", Action::\"get_prompt\"]`",
                        groups.join(", ")
                    ),
                ));
                return None;
            }
            Some(schema)
        }
        Err(e) => {
            push_diagnostic(errors, file, text, &e);
            None
        }
    }
}

fn load_policies(
    file: &Path,
    text: &Result<String, String>,
    schema: Option<&Schema>,
    set: &mut PolicySet,
    origin: &mut HashMap<String, PathBuf>,
    gates: &mut HashMap<String, Gate>,
    errors: &mut Vec<PolicyError>,
) {
    let text = match text {
        Ok(text) => text.as_str(),
        Err(why) => {
            errors.push(PolicyError::whole(file, why.clone()));
            return;
        }
    };
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            push_diagnostic(errors, file, text, &e);
            return;
        }
    };
    if let Some(template) = parsed.templates().next() {
        let (line, column) = locate(text, &template.to_string());
        errors.push(PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message: "templates (?principal / ?resource) are not supported: write the policy out"
                .into(),
        });
    }
    if let Some(schema) = schema {
        let result = Validator::new(schema.clone()).validate(&parsed, ValidationMode::Strict);
        let before = errors.len();
        for e in result.validation_errors() {
            push_diagnostic(errors, file, text, e);
        }
        // Name policies by their `@id`, not the parser's `policy0`.
        for e in &mut errors[before..] {
            for p in parsed.policies() {
                if let Some(id) = p.annotation("id") {
                    e.message = e
                        .message
                        .replace(&format!("policy `{}`", p.id()), &format!("policy `{id}`"));
                }
            }
        }
    }
    for policy in parsed.policies() {
        let (line, column) = locate(text, &policy.to_string());
        let at = |message: String| PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message,
        };
        let Some(id) = policy.annotation("id").map(str::to_string) else {
            errors.push(at("every policy needs an `@id(\"…\")` annotation: it names the policy in decisions and errors".into()));
            continue;
        };
        if id.is_empty() {
            errors.push(at("`@id` is empty".into()));
            continue;
        }
        if let Some(other) = origin.get(&id) {
            errors.push(at(format!(
                "`@id(\"{id}\")` is also used in {}",
                Path::display(other)
            )));
            continue;
        }
        match gate(&id, policy) {
            Ok(Some(gate)) => {
                gates.insert(id.clone(), gate);
            }
            Ok(None) => {}
            Err(e) => {
                errors.push(at(e));
                continue;
            }
        }
        if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
            errors.push(at(e.to_string()));
            continue;
        }
        origin.insert(id, file.to_path_buf());
    }
}

/// The gate a policy is, if it has `@approval`; an error for a gate that
/// is not a `permit`, or for gate annotations that do not parse or sit on
/// a policy that is not a gate. The error stays a string: it goes into
/// the [`PolicyErrors`] report a person reads.
fn gate(id: &str, policy: &cedar_policy::Policy) -> Result<Option<Gate>, String> {
    let group = policy.annotation("approval");
    let confirm = policy.annotation("confirm");
    if group.is_none() && confirm.is_none() {
        for extra in ["timeout", "approvers"] {
            if policy.annotation(extra).is_some() {
                return Err(format!(
                    "policy `{id}`: `@{extra}` belongs to approval gates; add `@approval(\"<approver group>\")` or `@confirm(\"<question>\")`, or remove it"
                ));
            }
        }
        return Ok(None);
    }
    if policy.effect() != cedar_policy::Effect::Permit {
        return Err(format!(
            "policy `{id}`: an approval gate (`@approval`, `@confirm`) must be a `permit`: it says which allowed calls need approval"
        ));
    }
    if group.is_some_and(|g| g.trim().is_empty()) {
        return Err(format!(
            "policy `{id}`: `@approval` names the group whose members approve, e.g. @approval(\"security\")"
        ));
    }
    if group.is_none() && policy.annotation("approvers").is_some() {
        return Err(format!(
            "policy `{id}`: `@approvers` counts members of an `@approval` group; a `@confirm` gate asks only the user"
        ));
    }
    let timeout = match policy.annotation("timeout") {
        None => Gate::DEFAULT_TIMEOUT,
        Some(text) => match crate::config::parse_duration(text) {
            Ok(t) if !t.is_zero() && t <= std::time::Duration::from_secs(7 * 24 * 3600) => t,
            _ => {
                return Err(format!(
                    "policy `{id}`: @timeout(\"{text}\"): use a duration from 1s to 7d, e.g. \"15m\""
                ));
            }
        },
    };
    let approvers = match policy.annotation("approvers") {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=Gate::MAX_APPROVERS).contains(&n) => n,
            _ => {
                return Err(format!(
                    "policy `{id}`: @approvers(\"{text}\"): use a number of distinct approvers from 1 to {}",
                    Gate::MAX_APPROVERS
                ));
            }
        },
    };
    Ok(Some(Gate {
        policy: id.to_string(),
        group: group.map(|g| g.trim().to_string()),
        // `@confirm` alone asks a question of its own making.
        confirm: confirm.map(|q| match q.trim() {
            "" => "Allow this tool call?".to_string(),
            q => q.to_string(),
        }),
        timeout,
        approvers,
        reason: policy.annotation("reason").map(str::to_string),
    }))
}

/// A cedar error as one or more located errors.
fn push_diagnostic(
    errors: &mut Vec<PolicyError>,
    file: &Path,
    text: &str,
    diagnostic: &dyn miette::Diagnostic,
) {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map(|o| line_col(text, o)).unwrap_or((0, 0));
    let related: Vec<_> = diagnostic
        .related()
        .map(|r| r.collect::<Vec<_>>())
        .unwrap_or_default();
    if related.is_empty() {
        errors.push(PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            message,
        });
    } else {
        for r in related {
            push_diagnostic(errors, file, text, r);
        }
    }
}

/// Where a policy's own text (Cedar keeps it verbatim) starts in its file.
fn locate(file_text: &str, policy_text: &str) -> (usize, usize) {
    file_text
        .find(policy_text.trim())
        .map(|at| line_col(file_text, at))
        .unwrap_or((0, 0))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_annotations_are_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
            dir.path().join("schema.cedarschema"),
        )
        .expect("schema");
        for (text, want) in [
            (
                "@id(\"g\")\n@approval(\"sec\")\nforbid (principal, action, resource);",
                "must be a `permit`",
            ),
            (
                "@id(\"g\")\n@approval(\" \")\npermit (principal, action, resource);",
                "names the group",
            ),
            (
                "@id(\"g\")\n@approval(\"sec\")\n@timeout(\"soon\")\npermit (principal, action, resource);",
                "@timeout(\"soon\")",
            ),
            (
                "@id(\"g\")\n@approval(\"sec\")\n@approvers(\"0\")\npermit (principal, action, resource);",
                "@approvers(\"0\")",
            ),
            (
                "@id(\"g\")\n@timeout(\"5m\")\npermit (principal, action, resource);",
                "belongs to approval gates",
            ),
            (
                "@id(\"g\")\n@confirm\n@approvers(\"2\")\npermit (principal, action, resource);",
                "a `@confirm` gate asks only the user",
            ),
            (
                "@id(\"g\")\n@confirm(\"sure?\")\nforbid (principal, action, resource);",
                "must be a `permit`",
            ),
        ] {
            std::fs::write(dir.path().join("p.cedar"), text).expect("policy");
            let Err(e) = Policies::load(dir.path(), 1) else {
                panic!("loaded: {text}")
            };
            let e = e.to_string();
            assert!(e.contains(want) && e.contains("p.cedar:"), "{text}: {e}");
        }
    }

    #[test]
    fn action_groups_in_the_schema_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
        )
        .expect("schema")
        .replace(
            "action call_tool",
            "action writes;\naction call_tool in [Action::\"writes\"]",
        );
        assert!(
            schema.contains("action writes;"),
            "the schema declares call_tool"
        );
        std::fs::write(dir.path().join("schema.cedarschema"), schema).expect("schema");
        std::fs::write(
            dir.path().join("p.cedar"),
            "@id(\"a\") permit (principal, action, resource);\n",
        )
        .expect("policy");
        let Err(e) = Policies::load(dir.path(), 1) else {
            panic!("loaded a schema with action groups")
        };
        assert!(
            e.to_string()
                .contains("action groups are not supported (Action::\"writes\")"),
            "{e}"
        );
    }
}
