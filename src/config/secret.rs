//! Secrets by reference: `${env:NAME}` and `${file:PATH}` inside string values.
//!
//! References are resolved *after* TOML parsing, so a resolved value can never
//! inject structure into the config. Resolved values live in [`Secret`], whose
//! `Debug` and `Display` never print the value.

use std::fmt;
use std::path::Path;

/// A string that may hold a credential. Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (a header, a child env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a reference could not be resolved. Never carries the secret value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    #[error("cannot read secret file `{path}`: {reason}")]
    File { path: String, reason: String },
    #[error(
        "unknown reference `${{{0}}}`: use `${{env:NAME}}` or `${{file:PATH}}` (write `$${{` for a literal `${{`)"
    )]
    Unknown(String),
    #[error("unterminated reference: a `${{` without a closing `}}`")]
    Unterminated,
}

/// Extra references the caller allows besides `env:` and `file:` (for example
/// `${self}`, the path of the running toolgate binary, in a server command).
pub type ExtraRefs<'a> = &'a [(&'a str, &'a str)];

/// Replace every `${env:NAME}` / `${file:PATH}` in `raw`. `$${` is a literal `${`.
/// Relative file paths are resolved against `base_dir` (the config file's folder).
pub fn resolve(raw: &str, base_dir: &Path, extra: ExtraRefs<'_>) -> Result<String, ReferenceError> {
    resolve_recording(raw, base_dir, extra, &mut Vec::new())
}

/// [`resolve`], also pushing each value a reference stood for onto
/// `values` (so what came from a secret can be masked where the whole
/// string is shown, e.g. an upstream URL).
pub fn resolve_recording(
    raw: &str,
    base_dir: &Path,
    extra: ExtraRefs<'_>,
    values: &mut Vec<String>,
) -> Result<String, ReferenceError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or(ReferenceError::Unterminated)?;
        let reference = &after[..end];
        let value = lookup(reference, base_dir, extra)?;
        out.push_str(&value);
        values.push(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(
    reference: &str,
    base_dir: &Path,
    extra: ExtraRefs<'_>,
) -> Result<String, ReferenceError> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| ReferenceError::MissingEnv(name.to_string()));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let full = base_dir.join(path);
        return std::fs::read_to_string(&full)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| ReferenceError::File {
                path: full.display().to_string(),
                reason: e.to_string(),
            });
    }
    extra
        .iter()
        .find(|(name, _)| *name == reference)
        .map(|(_, value)| (*value).to_string())
        .ok_or_else(|| ReferenceError::Unknown(reference.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_env_file_and_literals() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tok"), "s3cret\n").expect("write");
        // SAFETY-free: set_var is safe in edition 2024 only inside unsafe; use a var that exists.
        let home = std::env::var("PATH").expect("PATH");
        let got =
            resolve("a ${env:PATH} b ${file:tok} $${env:X}", dir.path(), &[]).expect("resolve");
        assert_eq!(got, format!("a {home} b s3cret ${{env:X}}"));
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = Path::new(".");
        assert_eq!(
            resolve("${env:TOOLGATE_SURELY_UNSET_VAR}", dir, &[]),
            Err(ReferenceError::MissingEnv(
                "TOOLGATE_SURELY_UNSET_VAR".into()
            ))
        );
        assert_eq!(
            resolve("${nope}", dir, &[]),
            Err(ReferenceError::Unknown("nope".into()))
        );
        assert_eq!(
            resolve("${env:X", dir, &[]),
            Err(ReferenceError::Unterminated)
        );
        assert_eq!(
            resolve("${self}", dir, &[("self", "/bin/tg")]).as_deref(),
            Ok("/bin/tg")
        );
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
