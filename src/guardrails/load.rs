//! Loading the guardrails from the policies directory, and reloading them:
//! `guardrails.toml` (what to do with findings, [`super::policy`]) and
//! `guardrails/*.toml` (secret rules, added to the shipped ones; a rule
//! with a shipped rule's id replaces it), and `guardrails/injection.model`
//! (the injection model's weights; the shipped ones when absent). Everything is validated
//! together, every error at once with its file and line. Without
//! `guardrails.toml` there are no guardrails (and no cost to calls); the
//! audit trail still masks what it keeps with the secret rules
//! ([`secrets_only`]).
//!
//! A reload reads the files again when their digest changed; a set with
//! errors is refused whole and the set in force is kept, as for the
//! Cedar policies.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Detector;
use super::hidden::Hidden;
use super::injection::{self, Injection, Model};
use super::inspector::{Guardrails, Set};
use super::pii::Pii;
use super::policy::{self, Known, PolicyError};
use super::secrets::{self, Secrets};

/// What to do with findings.
pub const POLICY_FILE: &str = "guardrails.toml";
/// Where secret rules are added.
pub const RULES_DIR: &str = "guardrails";
/// The injection model's weights, in [`RULES_DIR`].
pub const MODEL_FILE: &str = "injection.model";
/// Most bytes read from one guardrails file.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most rule files read from `guardrails/`.
const MAX_RULE_FILES: usize = 256;
/// Most bytes read from all guardrails files together (they are read
/// again at every reload check).
const MAX_TOTAL_BYTES: usize = 16 << 20;

/// The detector families a rule may name.
struct Detectors;

impl Known for Detectors {
    fn detector(&self, detector: &str) -> bool {
        ["secrets", "pii", "hidden", injection::NAME].contains(&detector)
    }
}

/// The guardrails in `dir`, or `None` when it has no `guardrails.toml`.
pub fn load(dir: &Path) -> Result<Option<Set>, Vec<PolicyError>> {
    let files = read(dir)?;
    let Some((policy_path, policy_text)) = files.policy else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let policy = match policy::parse(&display(&policy_path), &policy_text, &Detectors) {
        Ok(policy) => Some(policy),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let secrets = secret_rules(&files.rules, &mut errors)?;
    let model = match &files.model {
        Some((path, bytes)) => Model::from_bytes(bytes)
            .map(std::sync::Arc::new)
            .map_err(|e| (display(path), e)),
        None => Model::shipped().map_err(|e| {
            (
                "(shipped) policies/guardrails/injection.model".to_string(),
                e,
            )
        }),
    };
    let model = match model {
        Ok(model) => Some(model),
        Err((file, message)) => {
            errors.push(PolicyError {
                file,
                line: 0,
                message,
            });
            None
        }
    };
    match (policy, secrets, model) {
        (Some(policy), Some(secrets), Some(model)) if errors.is_empty() => {
            let detectors: Vec<Box<dyn Detector>> = vec![
                Box::new(secrets),
                Box::new(Pii::default()),
                Box::new(Hidden::default()),
            ];
            let mut set = Set::new(detectors, Some(Injection::new(model)), policy);
            set.digest = files.digest;
            Ok(Some(set))
        }
        _ => Err(errors),
    }
}

/// The secret rules alone (the shipped ones, plus `guardrails/*.toml`)
/// under a policy with no rules: what masks the audit trail's copies and
/// texts when there is no `guardrails.toml`. No call is inspected, but no
/// credential of a known format is kept either. A rule file with errors
/// is refused as [`load`] refuses it: a rule meant to hide a credential
/// must not be dropped in silence.
pub fn secrets_only(dir: &Path) -> Result<Set, Vec<PolicyError>> {
    let files = read(dir)?;
    let mut errors = Vec::new();
    match secret_rules(&files.rules, &mut errors)? {
        Some(secrets) if errors.is_empty() => {
            let mut set = Set::new(vec![Box::new(secrets)], None, policy::Policy::default());
            set.digest = files.digest;
            Ok(set)
        }
        _ => Err(errors),
    }
}

/// The shipped secret rules with those of the rule files `files` merged
/// in (`None`, and `errors` told why, when they do not compile).
fn secret_rules(
    files: &[(PathBuf, String)],
    errors: &mut Vec<PolicyError>,
) -> Result<Option<Secrets>, Vec<PolicyError>> {
    // A copy of the shipped file (the repository's layout) adds nothing:
    // the shipped rules are compiled once per process and shared.
    let files: Vec<_> = files
        .iter()
        .filter(|(_, text)| text != secrets::shipped())
        .collect();
    if files.is_empty() {
        return Ok(Some(Secrets::shipped()));
    }
    let mut rules = secrets::parse_rules(
        "(shipped) policies/guardrails/secrets.toml",
        secrets::shipped(),
    )
    .map_err(errors_of)?;
    for (path, text) in files {
        match secrets::parse_rules(&display(path), text) {
            Ok(extra) => rules = secrets::merge(rules, extra),
            Err(e) => errors.extend(errors_of(e)),
        }
    }
    Ok(match Secrets::new(rules) {
        Ok(secrets) => Some(secrets),
        Err(e) => {
            errors.extend(errors_of(e));
            None
        }
    })
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Swapped,
    /// The new files have errors: the set in force stays.
    Refused(Vec<PolicyError>),
}

/// Load `dir` again into `guardrails` if its guardrails files changed
/// since the set in force (or since the last refused attempt, `refused`).
pub fn reload_if_changed(
    guardrails: &Guardrails,
    dir: &Path,
    refused: &mut Option<[u8; 32]>,
) -> Reload {
    reload_with(guardrails, dir, refused, |dir| match load(dir) {
        Ok(Some(set)) => Ok(set),
        Ok(None) => Err(vec![PolicyError {
            file: display(&dir.join(POLICY_FILE)),
            line: 0,
            message: "guardrails.toml is gone: the guardrails in force stay until a restart \
                      (put it back, or restart to run without guardrails)"
                .into(),
        }]),
        Err(errors) => Err(errors),
    })
}

/// Without guardrails: reload the secret rules that mask the audit trail
/// (see [`secrets_only`]) the same way.
pub fn reload_secrets_only_if_changed(
    mask: &Guardrails,
    dir: &Path,
    refused: &mut Option<[u8; 32]>,
) -> Reload {
    reload_with(mask, dir, refused, secrets_only)
}

/// Build a set from `dir` with `build` and swap it into `into` when the
/// files' digest differs from the set in force and from the last refused
/// one; a set with errors is refused whole and the one in force stays.
fn reload_with(
    into: &Guardrails,
    dir: &Path,
    refused: &mut Option<[u8; 32]>,
    build: impl FnOnce(&Path) -> Result<Set, Vec<PolicyError>>,
) -> Reload {
    let digest = match read(dir) {
        Ok(files) => files.digest,
        Err(errors) => return Reload::Refused(errors),
    };
    if digest == into.current().digest || Some(digest) == *refused {
        return Reload::Unchanged;
    }
    match build(dir) {
        Ok(set) => {
            *refused = None;
            into.replace(set);
            Reload::Swapped
        }
        Err(errors) => {
            *refused = Some(digest);
            Reload::Refused(errors)
        }
    }
}

/// The guardrails files of a policies directory, and their digest.
struct Files {
    policy: Option<(PathBuf, String)>,
    rules: Vec<(PathBuf, String)>,
    model: Option<(PathBuf, Vec<u8>)>,
    digest: [u8; 32],
}

fn read(dir: &Path) -> Result<Files, Vec<PolicyError>> {
    let policy_path = dir.join(POLICY_FILE);
    let policy = match read_bounded(&policy_path) {
        Ok(text) => Some((policy_path, text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(vec![unreadable(&policy_path, &e)]),
    };
    let mut rules = Vec::new();
    let rules_dir = dir.join(RULES_DIR);
    match std::fs::read_dir(&rules_dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            paths.sort();
            if paths.len() > MAX_RULE_FILES {
                return Err(vec![PolicyError {
                    file: display(&rules_dir),
                    line: 0,
                    message: format!(
                        "{} rule files: at most {MAX_RULE_FILES}; merge some",
                        paths.len()
                    ),
                }]);
            }
            let mut total = policy.as_ref().map_or(0, |(_, text)| text.len());
            for path in paths {
                let text = read_bounded(&path).map_err(|e| vec![unreadable(&path, &e)])?;
                total += text.len();
                if total > MAX_TOTAL_BYTES {
                    return Err(vec![PolicyError {
                        file: display(&path),
                        line: 0,
                        message: format!(
                            "the guardrails files pass {MAX_TOTAL_BYTES} bytes together: keep the rules smaller"
                        ),
                    }]);
                }
                rules.push((path, text));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(vec![unreadable(&rules_dir, &e)]),
    }
    let model_path = rules_dir.join(MODEL_FILE);
    let model = match std::fs::metadata(&model_path) {
        Ok(meta) if meta.len() > injection::MAX_MODEL_BYTES as u64 => {
            return Err(vec![PolicyError {
                file: display(&model_path),
                line: 0,
                message: format!(
                    "{} bytes: an injection model may have at most {}",
                    meta.len(),
                    injection::MAX_MODEL_BYTES
                ),
            }]);
        }
        Ok(_) => match std::fs::read(&model_path) {
            Ok(bytes) => Some((model_path, bytes)),
            Err(e) => return Err(vec![unreadable(&model_path, &e)]),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(vec![unreadable(&model_path, &e)]),
    };
    let mut hash = Sha256::new();
    for (path, text) in policy.iter().chain(&rules) {
        hash.update(path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    if let Some((path, bytes)) = &model {
        hash.update(path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(bytes);
    }
    Ok(Files {
        policy,
        rules,
        model,
        digest: hash.finalize().into(),
    })
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{len} bytes: a guardrails file may have at most {MAX_FILE_BYTES}"
        )));
    }
    std::fs::read_to_string(path)
}

fn unreadable(path: &Path, e: &std::io::Error) -> PolicyError {
    PolicyError {
        file: display(path),
        line: 0,
        message: format!("cannot read: {e}"),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Secret rule errors as policy errors (file, line, message).
fn errors_of(errors: Vec<secrets::RuleError>) -> Vec<PolicyError> {
    errors
        .into_iter()
        .map(|e| PolicyError {
            file: e.file.clone(),
            line: e.line,
            message: e.message.clone(),
        })
        .collect()
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
