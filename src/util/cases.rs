//! Table tests kept as TOML files of `[[case]]` tables (`toolgate policy
//! test`, `toolgate guardrails test`): finding the files, reading them,
//! naming each case, running it, and what came of it. What a case holds
//! and how it is judged is the caller's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// What a run of the cases came to.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    /// (file, case name, why) for each failure or unreadable case or file.
    pub failed: Vec<(PathBuf, String, String)>,
}

/// A case's name as its file gives it (empty: named by its position).
pub trait Named {
    fn name(&self) -> &str;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "C: DeserializeOwned")]
struct CaseFile<C> {
    #[serde(default = "Vec::new")]
    case: Vec<C>,
}

/// The files to run: `named`, or every `*.toml` directly in `dir`, sorted.
pub fn files(dir: &Path, named: &[PathBuf]) -> Vec<PathBuf> {
    if !named.is_empty() {
        return named.to_vec();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Run `check` on every case of every file. An unreadable file, a file
/// with no case and two cases of one name are failures too.
pub fn run<C: DeserializeOwned + Named>(
    files: &[PathBuf],
    mut check: impl FnMut(&C) -> Result<(), String>,
) -> Report {
    let mut report = Report::default();
    for file in files {
        let parsed = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| toml::from_str::<CaseFile<C>>(&text).map_err(|e| e.to_string()));
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(why) => {
                report.failed.push((file.clone(), String::new(), why));
                continue;
            }
        };
        if parsed.case.is_empty() {
            let why = "no [[case]] in this file".to_string();
            report.failed.push((file.clone(), String::new(), why));
        }
        let mut names = BTreeSet::new();
        for (i, case) in parsed.case.iter().enumerate() {
            let name = match case.name() {
                "" => format!("case {}", i + 1),
                name => name.to_string(),
            };
            if !names.insert(name.clone()) {
                let why = "two cases have this name".to_string();
                report.failed.push((file.clone(), name, why));
                continue;
            }
            match check(case) {
                Ok(()) => report.passed += 1,
                Err(why) => report.failed.push((file.clone(), name, why)),
            }
        }
    }
    report
}
