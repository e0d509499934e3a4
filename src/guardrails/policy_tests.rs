use super::*;

struct Detectors;

impl Known for Detectors {
    fn detector(&self, detector: &str) -> bool {
        ["secrets", "pii", "hidden", "injection"].contains(&detector)
    }
}

const FILE: &str = r#"
[scan]
max_bytes = 4096
over_limit = "record"

[[rule]]
name = "cards-to-payments-are-fine"
direction = "input"
servers = ["payments"]
find = ["pii:card"]
action = "record"

[[rule]]
name = "secrets-to-models-masked"
direction = "input"
calls = ["llm"]
find = ["secrets"]
action = "redact"

[[rule]]
name = "no-secrets-to-untrusted"
direction = "input"
calls = ["mcp"]
trusted = false
find = ["secrets"]
action = "block"

[[rule]]
name = "redact-results"
direction = "output"
find = ["secrets", "pii:card", "pii:iban"]
action = "redact"

[[rule]]
name = "injection-held"
direction = "output"
tools = ["web__*"]
find = ["injection"]
min_score = 0.8
action = "approve"
approver_group = "security"
"#;

fn policy() -> Policy {
    parse("guardrails.toml", FILE, &Detectors).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn the_first_rule_that_covers_a_call_and_takes_a_finding_decides() {
    let policy = policy();
    assert_eq!(
        policy.limits,
        Limits {
            max_bytes: 4096,
            over_limit: Action::Record
        }
    );
    let untrusted = Scope {
        server: Some("notes"),
        tool: "notes__send",
        trusted: false,
        llm: false,
    };
    let payments = Scope {
        server: Some("payments"),
        tool: "payments__charge",
        trusted: false,
        llm: false,
    };
    let web = Scope {
        server: Some("web"),
        tool: "web__fetch",
        trusted: true,
        llm: false,
    };
    let rule = |scope, direction, detector, kind, score| {
        policy
            .rule_for(&scope, direction, detector, kind, score)
            .map(|r| (r.name.as_str(), r.action))
    };
    use Direction::{Input, Output};
    assert_eq!(
        rule(untrusted, Input, "secrets", "github-pat", 1.0),
        Some(("no-secrets-to-untrusted", Action::Block))
    );
    // A trusted server is not covered by the `trusted = false` rule.
    assert_eq!(rule(web, Input, "secrets", "github-pat", 1.0), None);
    // The specific rule first: a card to payments is only recorded.
    assert_eq!(
        rule(payments, Input, "pii", "card", 1.0),
        Some(("cards-to-payments-are-fine", Action::Record))
    );
    assert_eq!(rule(untrusted, Input, "pii", "card", 1.0), None);
    assert_eq!(
        rule(untrusted, Output, "pii", "iban", 1.0),
        Some(("redact-results", Action::Redact))
    );
    assert_eq!(rule(untrusted, Output, "pii", "email", 1.0), None);
    // Scores below a rule's minimum are not its business.
    assert_eq!(
        rule(web, Output, "injection", "injection", 0.9),
        Some(("injection-held", Action::Approve))
    );
    assert_eq!(rule(web, Output, "injection", "injection", 0.5), None);
    assert_eq!(rule(untrusted, Output, "injection", "injection", 0.9), None);

    // A model call is not a server's: the LLM rule, never the MCP one.
    let model = Scope {
        server: None,
        tool: "fast",
        trusted: false,
        llm: true,
    };
    assert_eq!(
        rule(model, Input, "secrets", "github-pat", 1.0),
        Some(("secrets-to-models-masked", Action::Redact))
    );
    assert!(policy.covers(&untrusted, Input));
    assert!(
        !policy.covers(&web, Input),
        "no input rule covers a trusted server"
    );
    assert!(Action::Block > Action::Approve && Action::Approve > Action::Redact);
}

#[test]
fn every_mistake_is_reported_at_once_with_its_line() {
    let text = r#"[scan]
max_bytes = 0
over_limit = "maybe"

[[rule]]
name = "a"
direction = "sideways"
find = ["secrets"]
action = "block"

[[rule]]
name = "b"
direction = "input"
find = ["secretz", "pii:card"]
action = "approve"

[[rule]]
name = "c"
direction = "input"
calls = ["a2a"]
find = ["secrets"]
action = "record"

[[rule]]
name = "b"
direction = "output"
find = []
action = "record"
approver_group = "security"
min_score = 2
"#;
    let errors = parse("policies/guardrails.toml", text, &Detectors).expect_err("invalid");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let has = |line: usize, part: &str| {
        assert!(
            shown.iter().any(
                |e| e.starts_with(&format!("policies/guardrails.toml:{line}:")) && e.contains(part)
            ),
            "no `{part}` at line {line} in {shown:#?}"
        );
    };
    has(1, "max_bytes = 0");
    has(1, "over_limit = \"maybe\"");
    has(5, "direction = \"sideways\"");
    has(11, "no detector `secretz`");
    has(11, "needs an `approver_group`");
    has(17, "calls = [\"a2a\"]");
    has(24, "already defined at line 11");
    has(24, "needs `find`");
    has(24, "only for action \"approve\"");
    has(24, "min_score = 2");
    assert_eq!(errors.len(), 10, "{shown:#?}");
}

#[test]
fn toml_and_field_mistakes_name_their_line() {
    let errors = parse(
        "g.toml",
        "[[rule]]\nname = \"x\"\nactoin = \"block\"\n",
        &Detectors,
    )
    .expect_err("unknown field");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().starts_with("g.toml:"),
        "{}",
        errors[0]
    );
    assert!(errors[0].message.contains("actoin"), "{}", errors[0]);
    let errors = parse("g.toml", "[[rule]\n", &Detectors).expect_err("bad toml");
    assert_eq!(errors[0].line, 1, "{}", errors[0]);
}

#[test]
fn an_empty_file_has_no_rules_and_the_default_limits() {
    let policy = parse("g.toml", "", &Detectors).expect("empty is fine");
    assert!(policy.rules.is_empty());
    assert_eq!(policy.limits, Limits::default());
    let scope = Scope {
        server: None,
        tool: "x",
        trusted: false,
        llm: false,
    };
    assert!(!policy.covers(&scope, Direction::Input));
}

#[test]
fn injection_findings_cannot_be_redacted() {
    let errors = parse(
        "guardrails.toml",
        "[[rule]]\nname = \"x\"\ndirection = \"output\"\nfind = [\"injection\"]\naction = \"redact\"\n",
        &Detectors,
    )
    .expect_err("refused");
    assert!(
        errors[0]
            .message
            .contains("cannot apply to injection findings"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[0].line, 1);
}
