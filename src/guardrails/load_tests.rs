use super::*;

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
