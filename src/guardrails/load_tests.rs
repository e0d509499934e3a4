use std::sync::Arc;

use super::*;
use crate::audit::redact::Redactor;

const GOOD: &str = r#"
[[rule]]
name = "no-secrets-out"
direction = "input"
find = ["secrets"]
action = "block"
"#;

#[test]
fn no_file_no_guardrails() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(load(dir.path()).expect("fine").is_none());
}

#[test]
fn user_rules_join_the_shipped_ones_and_their_mistakes_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(POLICY_FILE), GOOD).expect("write");
    std::fs::create_dir(dir.path().join(RULES_DIR)).expect("mkdir");
    let ours = r#"
[[rule]]
id = "acme-internal-token"
description = "ACME's own service tokens"
regex = '''acme_tok_[a-z0-9]{24}'''
keywords = ["acme_tok_"]
examples = ["acme_tok_0123456789abcdefghijklmn"]
counter_examples = ["acme_tok_short"]
"#;
    std::fs::write(dir.path().join(RULES_DIR).join("acme.toml"), ours).expect("write");
    let set = load(dir.path()).expect("valid").expect("some");
    let kinds: Vec<String> = set
        .scan("use acme_tok_0123456789abcdefghijklmn and 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")
        .iter()
        .map(|f| f.kind.to_string())
        .collect();
    assert!(
        kinds.contains(&"acme-internal-token".to_string()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"huggingface-token".to_string()),
        "{kinds:?}"
    );

    std::fs::write(
        dir.path().join(RULES_DIR).join("bad.toml"),
        "[[rule]]\nid = \"bad\"\nregex = '''(unclosed'''\nkeywords = [\"x\"]\nexamples = [\"x\"]\n",
    )
    .expect("write");
    std::fs::write(dir.path().join(POLICY_FILE), "[[rule]]\nname = \"x\"\n").expect("write");
    let Err(errors) = load(dir.path()) else {
        panic!("invalid files loaded")
    };
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().any(|e| e.contains("bad.toml:")),
        "the rule file's error: {shown:#?}"
    );
    assert!(
        shown.iter().any(|e| e.contains("guardrails.toml:1:")),
        "the policy's error: {shown:#?}"
    );
}

#[test]
fn a_changed_set_is_swapped_and_a_broken_one_refused_keeping_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(POLICY_FILE), GOOD).expect("write");
    let guardrails = Guardrails::new(load(dir.path()).expect("valid").expect("some"));
    let mut refused = None;
    assert!(matches!(
        reload_if_changed(&guardrails, dir.path(), &mut refused),
        Reload::Unchanged
    ));

    std::fs::write(
        dir.path().join(POLICY_FILE),
        "[[rule]]\nname = \"broken\"\n",
    )
    .expect("write");
    match reload_if_changed(&guardrails, dir.path(), &mut refused) {
        Reload::Refused(errors) => assert!(errors[0].to_string().contains("guardrails.toml:")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        guardrails.current().policy().rules[0].name,
        "no-secrets-out"
    );
    // Not tried again until the files change again.
    assert!(matches!(
        reload_if_changed(&guardrails, dir.path(), &mut refused),
        Reload::Unchanged
    ));

    std::fs::write(
        dir.path().join(POLICY_FILE),
        GOOD.replace("no-secrets-out", "renamed"),
    )
    .expect("write");
    assert!(matches!(
        reload_if_changed(&guardrails, dir.path(), &mut refused),
        Reload::Swapped
    ));
    assert_eq!(guardrails.current().policy().rules[0].name, "renamed");
}

/// A fake Hugging Face token: a format only the secret rules know (the
/// audit's Redactor has no word for it).
const HF: &str = "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";

/// A user's rule file.
const ACME: &str = r#"
[[rule]]
id = "acme-internal-token"
description = "ACME's own service tokens"
regex = '''acme_tok_[a-z0-9]{24}'''
keywords = ["acme_tok_"]
examples = ["acme_tok_0123456789abcdefghijklmn"]
counter_examples = ["acme_tok_short"]
"#;

/// A Redactor masking with `detectors`.
fn redactor(detectors: Arc<dyn crate::audit::redact::Mask>) -> Redactor {
    let mut redactor = Redactor::default();
    redactor.set_mask(detectors);
    redactor
}

#[test]
fn a_redactor_with_the_guardrails_masks_what_only_their_detectors_know() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(POLICY_FILE), GOOD).expect("write");
    let guardrails = Arc::new(Guardrails::new(
        load(dir.path()).expect("valid").expect("some"),
    ));
    let redactor = redactor(guardrails.clone());
    let args = serde_json::json!({
        "body": format!("deploy with {HF} tonight"),
        HF: "a key",
        "nested": {"list": [HF], "to": "write to bob@example.com"},
        "title": "kept"
    });
    let copy = redactor.copy(args.as_object().expect("object"));
    let shown = copy.to_string();
    assert!(!shown.contains(HF), "{shown}");
    assert_eq!(
        copy["body"],
        "deploy with [REDACTED:huggingface-token] tonight"
    );
    assert_eq!(copy["[REDACTED:huggingface-token]"], "a key", "{shown}");
    assert_eq!(copy["nested"]["list"][0], "[REDACTED:huggingface-token]");
    // With guardrails on, their other detectors mask too.
    assert_eq!(copy["nested"]["to"], "write to [REDACTED:email]");
    assert_eq!(copy["title"], "kept");
    // Texts (reasons, errors, subjects) go through the same detectors,
    // and the Redactor's own context rules (`token=`).
    assert_eq!(
        redactor.text(&format!("upstream said: bad key {HF}; token=opaque")),
        "upstream said: bad key [REDACTED:huggingface-token]; token=[REDACTED:secret]"
    );
    assert_eq!(
        redactor.mask(&format!("GITHUB_TOKEN={HF}")),
        "GITHUB_TOKEN=[REDACTED:huggingface-token]",
        "one span found twice hides once, named by the detector"
    );

    // A reload reaches the Redactor: it holds the guardrails, not a set.
    std::fs::create_dir(dir.path().join(RULES_DIR)).expect("mkdir");
    std::fs::write(dir.path().join(RULES_DIR).join("acme.toml"), ACME).expect("write");
    assert!(matches!(
        reload_if_changed(&guardrails, dir.path(), &mut None),
        Reload::Swapped
    ));
    assert_eq!(
        redactor.text("use acme_tok_0123456789abcdefghijklmn"),
        "use [REDACTED:acme-internal-token]"
    );
}

#[test]
fn without_guardrails_toml_the_secret_rules_still_mask() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(load(dir.path()).expect("fine").is_none(), "no guardrails");
    let redactor = redactor(Arc::new(Guardrails::new(
        secrets_only(dir.path()).expect("the shipped rules"),
    )));
    let args =
        serde_json::json!({"body": format!("deploy with {HF}"), HF: 1, "to": "bob@example.com"});
    let copy = redactor.copy(args.as_object().expect("object"));
    assert_eq!(
        copy,
        serde_json::json!({
            "body": "deploy with [REDACTED:huggingface-token]",
            "[REDACTED:huggingface-token]": 1,
            // The secret rules alone: personal data is the guardrails' call.
            "to": "bob@example.com"
        })
    );
    assert_eq!(
        redactor.text(&format!("failed: {HF}")),
        "failed: [REDACTED:huggingface-token]"
    );

    // A user's rule file counts without guardrails.toml too; a broken
    // one is refused, not skipped.
    std::fs::create_dir(dir.path().join(RULES_DIR)).expect("mkdir");
    std::fs::write(dir.path().join(RULES_DIR).join("acme.toml"), ACME).expect("write");
    let redactor = self::redactor(Arc::new(Guardrails::new(
        secrets_only(dir.path()).expect("valid"),
    )));
    assert_eq!(
        redactor.text(&format!("acme_tok_0123456789abcdefghijklmn {HF}")),
        "[REDACTED:acme-internal-token] [REDACTED:huggingface-token]"
    );
    std::fs::write(
        dir.path().join(RULES_DIR).join("bad.toml"),
        "[[rule]]\nid = \"bad\"\nregex = '''(unclosed'''\nkeywords = [\"x\"]\nexamples = [\"x\"]\n",
    )
    .expect("write");
    let Err(errors) = secrets_only(dir.path()) else {
        panic!("a broken rule file was accepted")
    };
    assert!(
        errors.iter().any(|e| e.to_string().contains("bad.toml:")),
        "{errors:?}"
    );
}

/// A typical argument object of about 300 bytes.
fn typical_args() -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "repo": "acme/web",
        "title": "Fix the login redirect after the session expires",
        "body": "When the session expires the user lands on /login?next=%2Fdashboard but after signing in stays on /login. Steps: sign in, wait 30 minutes, reload.",
        "labels": ["bug", "auth"],
        "assignee": "alice",
        "draft": false,
        "base": "main"
    });
    match v {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[test]
#[ignore = "a measurement: cargo test --lib redactor_cost -- --ignored --nocapture"]
fn redactor_cost() {
    let args = typical_args();
    let bytes = serde_json::to_string(&args).expect("json").len();
    let n = 2000;
    let time = |what: &str, redactor: &Redactor| {
        let started = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(redactor.copy(std::hint::black_box(&args)));
        }
        eprintln!(
            "Redactor::copy, {what}, {bytes}-byte arguments: {} ns/op",
            started.elapsed().as_nanos() / n
        );
    };
    time("no detectors", &Redactor::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redactor = Redactor::default();
    redactor.set_mask(Arc::new(Guardrails::new(
        secrets_only(dir.path()).expect("shipped"),
    )));
    time("secret rules alone", &redactor);
    std::fs::write(dir.path().join(POLICY_FILE), GOOD).expect("write");
    let mut redactor = Redactor::default();
    redactor.set_mask(Arc::new(Guardrails::new(
        load(dir.path()).expect("valid").expect("some"),
    )));
    time("guardrails (secrets, pii, hidden)", &redactor);
}

#[test]
fn without_guardrails_toml_the_masking_rules_reload_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mask = Arc::new(Guardrails::new(secrets_only(dir.path()).expect("shipped")));
    let redactor = redactor(mask.clone());
    let mut refused = None;
    assert!(matches!(
        reload_secrets_only_if_changed(&mask, dir.path(), &mut refused),
        Reload::Unchanged
    ));
    let token = "acme_tok_0123456789abcdefghijklmn";
    assert_eq!(redactor.text(token), token, "not a known format yet");

    // A rule file added while running: the same masker takes it.
    std::fs::create_dir(dir.path().join(RULES_DIR)).expect("mkdir");
    std::fs::write(dir.path().join(RULES_DIR).join("acme.toml"), ACME).expect("write");
    assert!(matches!(
        reload_secrets_only_if_changed(&mask, dir.path(), &mut refused),
        Reload::Swapped
    ));
    assert_eq!(redactor.text(token), "[REDACTED:acme-internal-token]");

    // A broken one is refused whole, once; the rules in force stay.
    std::fs::write(
        dir.path().join(RULES_DIR).join("bad.toml"),
        "[[rule]]\nid = \"bad\"\nregex = '''(unclosed'''\nkeywords = [\"x\"]\nexamples = [\"x\"]\n",
    )
    .expect("write");
    let Reload::Refused(errors) = reload_secrets_only_if_changed(&mask, dir.path(), &mut refused)
    else {
        panic!("a broken rule file was taken")
    };
    assert!(
        errors.iter().any(|e| e.to_string().contains("bad.toml:")),
        "{errors:?}"
    );
    assert!(matches!(
        reload_secrets_only_if_changed(&mask, dir.path(), &mut refused),
        Reload::Unchanged
    ));
    assert_eq!(redactor.text(token), "[REDACTED:acme-internal-token]");
}
