//! Tests of [`Policies`] as a whole: deciding, listing, gates, and what
//! policies read.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::call::Credential;

fn policies(text: &str) -> (tempfile::TempDir, Policies) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .expect("schema");
    std::fs::write(dir.path().join("p.cedar"), text).expect("policy");
    let p = Policies::load(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
    (dir, p)
}

#[test]
fn every_group_a_policy_names_is_found_wherever_it_is_named() {
    let (_dir, p) = policies(
        "@id(\"scope\")\npermit (principal in Group::\"eng\", action, resource);\n\
         @id(\"unless\")\nforbid (principal, action, resource)\n\
         unless { principal in Group::\"break-glass\" || principal in [Group::\"a \\\"quoted\\\" one\"] };\n\
         @id(\"spaced\")\npermit (principal in Group :: \"ops\", action, resource);\n\
         @id(\"not-a-group\")\npermit (principal, action, resource == Tool::\"Group\");\n",
    );
    assert_eq!(
        p.groups().into_iter().collect::<Vec<_>>(),
        ["a \"quoted\" one", "break-glass", "eng", "ops"]
    );
}

#[test]
fn lists_group_alike_tools_but_never_a_named_one() {
    let (_dir, p) = policies(
        "@id(\"all\")\npermit (principal, action, resource);\n\
         @id(\"not-that-one\")\nforbid (principal, action, resource == Tool::\"s__b\");\n",
    );
    assert_eq!(
        p.named,
        Some(HashSet::from(["Tool::s__b".to_string()])),
        "the named tool is known"
    );
    let server = ServerFacts {
        name: "s".into(),
        ..ServerFacts::default()
    };
    let tool = |name| Target::Tool {
        name,
        server: &server,
        annotations: Annotations::WORST,
        labels: crate::config::Labels::NONE,
    };
    let caller = Caller::new("u".into(), Credential::AccessToken);
    // a and c are one class; b is named, so decided on its own.
    let seen = p.visible(&caller, &[tool("s__a"), tool("s__b"), tool("s__c")]);
    assert_eq!(seen, vec![true, false, true]);
    // The same as deciding one by one.
    for (name, want) in [("s__a", true), ("s__b", false), ("s__c", true)] {
        let d = p.decide_uncached(&Query {
            caller: &caller,
            target: tool(name),
            args: None,
            request_id: "t",
            findings: &[],
            touched: crate::config::Labels::NONE,
        });
        assert_eq!(d.allowed, want, "{name}");
    }
}

#[test]
fn gates_hold_allowed_calls_they_match_and_read_their_own_arguments() {
    let (_dir, p) = policies(
        "@id(\"all\")\npermit (principal, action == Action::\"call_tool\", resource);\n\
         @id(\"big-refunds\")\n@approval(\"finance\")\n@timeout(\"10m\")\n@approvers(\"2\")\n\
         @reason(\"refunds over 1000 need two approvers\")\n\
         permit (principal, action == Action::\"call_tool\", resource == Tool::\"s__refund\")\n\
         when { context.args has amount && context.args.amount > 1000 };\n\
         @id(\"no-delete\")\nforbid (principal, action, resource == Tool::\"s__delete\");\n\
         @id(\"deletes-too\")\n@approval(\"security\")\n\
         permit (principal, action == Action::\"call_tool\", resource == Tool::\"s__delete\");\n",
    );
    // Gates are not among the policies that allow and refuse.
    assert_eq!(p.len(), 2);
    let server = ServerFacts {
        name: "s".into(),
        ..ServerFacts::default()
    };
    let caller = Caller::new("u".into(), Credential::AccessToken);
    let ask = |name, args: Option<&serde_json::Map<String, Value>>| {
        p.decide(&Query {
            caller: &caller,
            target: Target::Tool {
                name,
                server: &server,
                annotations: Annotations::WORST,
                labels: crate::config::Labels::NONE,
            },
            args,
            request_id: "t",
            findings: &[],
            touched: crate::config::Labels::NONE,
        })
    };
    let big = json!({"amount": 5000})
        .as_object()
        .cloned()
        .expect("an object");
    let small = json!({"amount": 10})
        .as_object()
        .cloned()
        .expect("an object");
    let d = ask("s__refund", Some(&big));
    assert!(d.allowed, "{d}");
    assert_eq!(
        d.gates,
        vec![Gate {
            policy: "big-refunds".into(),
            group: Some("finance".into()),
            confirm: None,
            timeout: std::time::Duration::from_secs(600),
            approvers: 2,
            reason: Some("refunds over 1000 need two approvers".into()),
        }]
    );
    assert!(
        d.to_string()
            .contains("needs approval by `finance` (gate `big-refunds`)"),
        "{d}"
    );
    // No policy that allows reads `amount`: the remembered decision must
    // not carry the gate over to other amounts.
    assert!(ask("s__refund", Some(&small)).gates.is_empty());
    assert_eq!(ask("s__refund", Some(&big)).gates.len(), 1);
    // Listing never asks the gates.
    assert!(ask("s__refund", None).gates.is_empty());
    // A refused call is refused, whatever gate matches it.
    let d = ask("s__delete", Some(&small));
    assert!(!d.allowed && d.gates.is_empty(), "{d}");
}

/// Cedar's own answer: the whole set as written, one entity store.
fn reference(p: &Policies, query: &Query<'_>) -> Decision {
    let principal = principal_entities(query.caller);
    let (resource, mut entities) = target_entities(&query.target).expect("entities");
    entities.extend(principal.entities);
    let entities = Entities::from_entities(entities, None).expect("entities");
    let request = p
        .request(query, &principal.uid, resource, true)
        .expect("request");
    Outcome::of(&p.set, &request, &entities).decision(&p.reasons)
}

#[test]
fn slices_decide_exactly_as_the_whole_set() {
    // Scopes of every kind the index handles (or does not), policies
    // that read arguments, the address or nothing, and one that fails
    // to evaluate on a string count.
    let (_dir, p) = policies(
        r#"@id("read-only") permit (principal, action == Action::"call_tool", resource) when { context.annotations.read_only };
@id("eng-writes") permit (principal in Group::"eng", action == Action::"call_tool", resource) when { !context.annotations.destructive };
@id("alice") permit (principal == User::"alice", action, resource);
@id("group-eq") permit (principal == Group::"eng", action, resource);
@id("server-eq") permit (principal, action, resource == Server::"gh");
@id("agents") permit (principal is Agent, action == Action::"call_tool", resource in Server::"gh");
@id("tool-is") forbid (principal, action, resource is Tool in Server::"prod") when { !context.annotations.read_only };
@id("one-tool") forbid (principal, action == Action::"call_tool", resource == Tool::"gh__delete");
@id("repo") forbid (principal, action == Action::"call_tool", resource in Server::"gh") when { context.args has repository && !(context.args.repository like "acme/*") };
@id("title") forbid (principal, action == Action::"call_tool", resource) when { context.args has title && context.args.title like "x*" };
@id("office") forbid (principal, action, resource in Server::"prod") unless { context.client_ip.isInRange(ip("10.0.0.0/8")) };
@id("prompts") permit (principal, action in [Action::"get_prompt", Action::"read_resource"], resource) when { principal.credential != "api_key" };
"#,
    );
    let servers = ["gh", "prod", "notes"].map(|name| ServerFacts {
        name: name.into(),
        trusted: name != "notes",
        ..ServerFacts::default()
    });
    let callers = [
        ("alice", Credential::AccessToken, vec![], "10.1.2.3"),
        (
            "bob",
            Credential::AccessToken,
            vec!["eng".to_string()],
            "192.0.2.1",
        ),
        (
            "bot",
            Credential::ApiKey,
            vec!["eng".to_string()],
            "10.0.0.9",
        ),
        ("eng", Credential::AccessToken, vec![], "10.0.0.1"),
    ]
    .map(|(subject, credential, groups, address)| Caller {
        groups,
        address: address.parse().ok(),
        ..Caller::new(subject.into(), credential)
    });
    let args = [
        json!({}),
        json!({"repository": "acme/x"}),
        json!({"repository": "evil/x", "body": "text"}),
        json!({"title": "xy"}),
        json!({"title": 11}),
    ];
    let annotations = [
        Annotations::WORST,
        Annotations {
            read_only: true,
            destructive: false,
            idempotent: true,
            open_world: false,
        },
    ];
    let mut compared = 0;
    for caller in &callers {
        for server in &servers {
            for name in ["delete", "read"] {
                let name = format!("{}__{name}", server.name);
                let mut targets: Vec<Target<'_>> = annotations
                    .iter()
                    .map(|a| Target::Tool {
                        name: &name,
                        server,
                        annotations: *a,
                        labels: crate::config::Labels::NONE,
                    })
                    .collect();
                targets.push(Target::Prompt {
                    name: &name,
                    server,
                });
                targets.push(Target::Resource { uri: &name, server });
                for target in &targets {
                    for a in args.iter().map(|a| a.as_object()).chain([None]) {
                        let query = Query {
                            caller,
                            target: target.clone(),
                            args: a,
                            request_id: "r",
                            findings: &[],
                            touched: crate::config::Labels::NONE,
                        };
                        // Twice: built, then from what was kept.
                        for _ in 0..2 {
                            assert_eq!(
                                p.decide_uncached(&query),
                                reference(&p, &query),
                                "{} {target:?} {a:?}",
                                caller.subject
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(compared, 4 * 3 * 2 * 4 * 6 * 2);
}

#[test]
fn only_the_arguments_policies_read_count() {
    let (_dir, p) = policies(
        r#"@id("all") permit (principal, action, resource);
@id("repo") forbid (principal, action == Action::"call_tool", resource) when { context.args has repository && context.args.repository == "x" };
@id("title") forbid (principal, action == Action::"call_tool", resource) when { context.args has title && context.args.title == "y" };
"#,
    );
    assert_eq!(
        p.uses.args,
        ArgsUse::Only(["repository".to_string(), "title".to_string()].into())
    );
    let server = ServerFacts {
        name: "s".into(),
        ..ServerFacts::default()
    };
    let caller = Caller::new("u".into(), Credential::AccessToken);
    let decide = |args: Value| {
        p.decide(&Query {
            caller: &caller,
            target: Target::Tool {
                name: "s__t",
                server: &server,
                annotations: Annotations::WORST,
                labels: crate::config::Labels::NONE,
            },
            args: args.as_object(),
            request_id: "r",
            findings: &[],
            touched: crate::config::Labels::NONE,
        })
    };
    // An argument nested past the limit that no policy reads is not
    // converted, so it cannot deny; one that is read does.
    let mut deep = json!(1);
    for _ in 0..=context::MAX_ARG_DEPTH {
        deep = json!([deep]);
    }
    assert!(decide(json!({"title": "t", "body": deep.clone()})).allowed);
    assert!(!decide(json!({"title": "t", "repository": deep})).allowed);
    assert!(!decide(json!({"repository": "x", "body": "a"})).allowed);
    // Calls that differ only in what no policy reads share a decision,
    // however large.
    let before = p.decisions.map.len();
    for i in 0..50 {
        assert!(decide(json!({"title": "u", "body": "b".repeat(4096 + i)})).allowed);
    }
    assert_eq!(p.decisions.map.len(), before + 1);
}

#[test]
fn context_reads_are_found() {
    let (_dir, p) = policies(
        "@id(\"whole-args\") permit (principal, action == Action::\"call_tool\", resource) when { context.args == context.args };\n",
    );
    assert_eq!(p.uses.args, ArgsUse::All);
    assert!(!p.uses.time && !p.uses.client_ip);
    let (_dir, p) = policies(
        "@id(\"t\") permit (principal, action, resource) when { context.time.hour > 8 && context.client_ip.isIpv4() };\n@id(\"h\") permit (principal, action == Action::\"call_tool\", resource) when { context has args };\n",
    );
    assert!(p.uses.time && p.uses.client_ip && !p.uses.request_id);
    assert_eq!(p.uses.args, ArgsUse::Only(Default::default()));
    assert!(!p.cacheable(), "a policy reads the clock");
}

#[test]
fn escaped_names_turn_grouping_off() {
    let (_dir, p) = policies(
        "@id(\"odd\")\nforbid (principal, action, resource == Tool::\"a\\\"b\");\n\
         @id(\"all\")\npermit (principal, action, resource);\n",
    );
    assert_eq!(p.named, None);
}

/// `context.findings`: policies combine what the guardrails found with
/// identity and tool facts; such decisions are not remembered (the same
/// call decides differently with and without findings), and policies that
/// do not read findings are not asked again.
#[test]
fn findings_reach_policies_and_are_not_cached_away() {
    let (_dir, p) = policies(
        "@id(\"all\")\npermit (principal, action == Action::\"call_tool\", resource);\n\
         @id(\"no-secrets-out\")\n@reason(\"a credential to an open-world tool\")\n\
         forbid (principal, action == Action::\"call_tool\", resource)\n\
         when { context.findings.contains(\"secrets\") && context.annotations.open_world };\n",
    );
    assert!(p.reads_findings());
    let server = ServerFacts {
        name: "s".into(),
        ..ServerFacts::default()
    };
    let caller = Caller::new("u".into(), Credential::AccessToken);
    let args = serde_json::Map::new();
    let ask = |findings: &[String]| {
        p.decide(&Query {
            caller: &caller,
            target: Target::Tool {
                name: "s__send",
                server: &server,
                annotations: Annotations::WORST,
                labels: crate::config::Labels::NONE,
            },
            args: Some(&args),
            request_id: "t",
            findings,
            touched: crate::config::Labels::NONE,
        })
    };
    assert!(ask(&[]).allowed);
    let secret = [
        "secrets".to_string(),
        "secrets:github-pat-classic".to_string(),
    ];
    let d = ask(&secret);
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["no-secrets-out".to_string()]);
    // Asked again without findings: allowed (nothing cached across them).
    assert!(ask(&[]).allowed);
    let pii = ["pii".to_string(), "pii:email".to_string()];
    assert!(ask(&pii).allowed);

    let (_dir, plain) = policies("@id(\"all\")\npermit (principal, action, resource);\n");
    assert!(!plain.reads_findings());
}
