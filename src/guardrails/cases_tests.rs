use std::path::Path;

use super::*;
use crate::guardrails::load;

fn shipped() -> Set {
    load::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .as_path(),
    )
    .expect("the shipped guardrails are valid")
    .expect("the repository ships guardrails.toml")
}

#[test]
fn the_shipped_cases_hold_for_the_shipped_guardrails() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let files = test_files(&dir, &[]);
    assert!(!files.is_empty(), "policies/{TESTS_DIR} has case files");
    let report = run_tests(&shipped(), &files);
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(report.passed >= 15, "{report:?}");
}

#[test]
fn a_wrong_expectation_fails_and_says_what_was_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        r#"
[[case]]
name = "a token to an untrusted server passes?"
server = "scratch"
payload = { body = "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" }
expect = "pass"

[[case]]
name = "decided by a rule that does not exist"
server = "scratch"
payload = { body = "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" }
expect = "block"
rules = ["no-such-rule"]

[[case]]
name = "right"
server = "scratch"
payload = { body = "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" }
expect = "block"
types = ["secrets:huggingface-token"]
"#,
    )
    .expect("write");
    let report = run_tests(&shipped(), std::slice::from_ref(&file));
    assert_eq!(report.passed, 1, "{report:?}");
    let why: Vec<&str> = report.failed.iter().map(|(_, _, w)| w.as_str()).collect();
    assert!(why[0].starts_with("expected Pass, got Block"), "{why:?}");
    assert!(why[0].contains("secrets:huggingface-token"), "{why:?}");
    assert!(
        why[0].contains("no-secrets-to-untrusted-servers"),
        "{why:?}"
    );
    assert!(
        !why[0].contains("hf_ujz"),
        "never the matched text: {why:?}"
    );
    assert!(why[1].contains("`no-such-rule` did not decide"), "{why:?}");
}

#[test]
fn bad_case_files_say_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[case]]\nname = \"x\"\npayload = \"y\"\nexpect = \"allow\"\n",
    )
    .expect("write");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let report = run_tests(&shipped(), &[file, empty]);
    assert_eq!(report.passed, 0);
    let why: Vec<&str> = report.failed.iter().map(|(_, _, w)| w.as_str()).collect();
    assert!(why[0].contains("line 4"), "{why:?}");
    assert!(why[0].contains("allow"), "{why:?}");
    assert_eq!(why[1], "no [[case]] in this file");
}
