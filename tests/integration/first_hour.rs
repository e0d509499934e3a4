//! A new user's first hour: why a tool is missing is discoverable
//! (`toolgate check` and `GET /admin/v1/status` say what each server
//! exposes to which group and which policy hides the rest), and
//! `toolgate stdio` can run as a configured identity (an API key in
//! `TOOLGATE_API_KEY`) instead of `local:$USER` without groups.

use std::path::Path;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::common::*;
use crate::identity::keys_in;
use crate::rbac::{default_policies, key};

/// A config folder with the repository's policies (plus `extra`) and
/// these servers (file name, TOML).
fn config_dir(
    servers: &[(&str, String)],
    extra: &[(&'static str, &'static str)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policies = default_policies(extra);
    write_policies(dir.path(), &Gateway::policy_refs(&policies));
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    for (name, text) in servers {
        std::fs::write(dir.path().join(format!("servers/{name}.toml")), text).unwrap();
    }
    std::fs::write(
        dir.path().join("toolgate.toml"),
        "listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    dir
}

/// `toolgate check` in `dir`: its exit code and what it printed.
fn check(dir: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(dir.join("toolgate.toml"))
        .arg("check")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The line of `text` that starts (after its indent) with `start`.
fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"))
}

#[test]
fn check_says_what_an_untrusted_server_exposes_to_each_group_and_why_not_more() {
    // The README's way: a server file without `[policy] trusted`.
    let dir = config_dir(
        &[
            ("notes", stdio_reference_toml("notes", "notes", "")),
            (
                "clock",
                stdio_reference_toml("clock", "clock", "[policy]\ntrusted = true"),
            ),
            (
                "gone",
                "name = \"gone\"\ntransport = \"stdio\"\ncommand = \"/nonexistent/toolgate-test-upstream\"\n"
                    .to_string(),
            ),
        ],
        &[],
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(0), "{out}");
    // Every group the policies name, and callers in none.
    let notes = line(&out, "- notes:");
    assert_eq!(
        notes,
        "  - notes: 4 tools; Tools.Write: 0, admin: 0, approvers: 0, break-glass: 4, dev: 0, eng: 0, platform: 0, (no group): 0",
        "{out}"
    );
    // The deciding policy, and for groups alike one line.
    assert!(
        out.contains(
            "4 hidden from Tools.Write, admin, approvers, dev, eng, platform, (no group) by `destructive-needs-break-glass`"
        ),
        "{out}"
    );
    // What to do about it, naming the file.
    let hint = format!(
        "(untrusted annotations count as destructive: set `[policy] trusted = true` in {} if you trust its annotations)",
        dir.path().join("servers").join("notes.toml").display()
    );
    assert!(
        out.lines().any(|l| l.trim() == hint),
        "expected {hint:?} in:\n{out}"
    );
    // A trusted server: its read-only tools reach everyone, no hint.
    let clock = line(&out, "- clock:");
    assert!(
        clock.starts_with("  - clock: 4 tools;")
            && clock.contains("admin: 4")
            && clock.contains("(no group): 4"),
        "{out}"
    );
    assert_eq!(
        out.matches("trusted = true").count(),
        1,
        "one hint only: {out}"
    );
    // A server that cannot start: said so, with why, and nothing guessed.
    assert!(
        out.contains("- gone: down, so its tools are unknown"),
        "{out}"
    );
    assert!(
        line(&out, "why:").contains("cannot start `/nonexistent/toolgate-test-upstream`"),
        "{out}"
    );
    // Where to ask about one tool.
    assert!(out.contains("toolgate policy explain --tool NAME"), "{out}");
}

#[test]
fn check_gives_no_trust_hint_where_trusting_would_not_show_a_tool() {
    // Trusted: what stays hidden is for the policies, not the annotations.
    let dir = config_dir(
        &[
            (
                "notes",
                stdio_reference_toml("notes", "notes", "[policy]\ntrusted = true"),
            ),
            ("closed", stdio_reference_toml("closed", "clock", "")),
        ],
        &[(
            "closed",
            "@id(\"closed-server\")\nforbid (principal, action, resource in Server::\"closed\");\n",
        )],
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(0), "{out}");
    let notes = line(&out, "- notes:");
    assert!(
        notes.contains("admin: 3") && notes.contains("eng: 3") && notes.contains("(no group): 2"),
        "{out}"
    );
    assert!(
        out.contains(
            "1 hidden from dev, platform, (no group) by no policy permitting them (default deny)"
        ),
        "{out}"
    );
    // Untrusted, but closed to all by a forbid: trusting changes nothing.
    let closed = line(&out, "- closed:");
    assert!(closed.contains("break-glass: 0"), "{out}");
    assert!(
        out.contains("by `closed-server`") || out.contains("`closed-server`, "),
        "{out}"
    );
    assert!(!out.contains("trusted = true"), "no hint here: {out}");
}

#[tokio::test]
async fn admin_status_says_what_each_server_exposes_to_admins_only() {
    let policies = default_policies(&[]);
    let mut gw = Gateway::start_governed(
        &[("notes", stdio_reference_toml("notes", "notes", ""))],
        "",
        false,
        &Gateway::policy_refs(&policies),
    )
    .await;
    gw.wait_ready(&["notes"]).await;
    let status = |key: String| admin_status(gw.addr, key);
    let (code, body) = status(key(&gw, "ops", &["admin"])).await;
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let notes = &body["exposure"]["servers"][0];
    assert_eq!(notes["server"], "notes", "{body}");
    assert_eq!(notes["trusted"], false, "{body}");
    assert_eq!(notes["tools"], 4, "{body}");
    let group = |name: &str| {
        notes["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == name)
            .unwrap_or_else(|| panic!("no {name} in {notes}"))
            .clone()
    };
    assert_eq!(
        group("admin"),
        json!({"group": "admin", "visible": 0, "hidden": [
            {"policies": ["destructive-needs-break-glass"], "tools": 4, "visible_if_trusted": 3}
        ]}),
        "{body}"
    );
    assert_eq!(group("break-glass")["visible"], 4, "{body}");
    assert_eq!(group("(no group)")["visible"], 0, "{body}");
    assert!(
        notes["hint"]
            .as_str()
            .unwrap()
            .contains("set `[policy] trusted = true` in"),
        "{body}"
    );
    // The same first-start admin experience, through the MCP front end.
    let (code, _) = status(key(&gw, "dev", &["eng"])).await;
    assert_eq!(code, 403, "only admins see it");
    let readyz = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!readyz.contains("exposure"), "{readyz}");
    gw.shutdown().await;
}

/// `toolgate stdio` in `dir` with `TOOLGATE_API_KEY` set to `key` (or
/// unset), as a real MCP client over its stdin/stdout.
async fn stdio_client(
    dir: &Path,
    key: Option<&str>,
) -> rmcp::service::RunningService<rmcp::RoleClient, TestClient> {
    let mut cmd = tokio::process::Command::new(TOOLGATE);
    cmd.arg("--config")
        .arg(dir.join("toolgate.toml"))
        .arg("stdio");
    match key {
        Some(key) => cmd.env("TOOLGATE_API_KEY", key),
        None => cmd.env_remove("TOOLGATE_API_KEY"),
    };
    TestClient::default()
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap()
}

/// The tool names listed, once the notes server's tools are in.
async fn listed(
    client: &rmcp::service::RunningService<rmcp::RoleClient, TestClient>,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = client
            .list_all_tools()
            .await
            .map(|t| t.iter().map(|t| t.name.to_string()).collect())
            .unwrap_or_default();
        if names.iter().any(|n| n == "notes__list_notes") || tokio::time::Instant::now() > deadline
        {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stdio_runs_as_the_api_key_in_its_environment_with_that_keys_groups() {
    let dir = config_dir(
        &[(
            "notes",
            stdio_reference_toml("notes", "notes", "[policy]\ntrusted = true"),
        )],
        &[],
    );
    // Without a key: local:$USER, no groups, read-only tools only.
    let local = stdio_client(dir.path(), None).await;
    let names = listed(&local).await;
    assert!(
        names.contains(&"notes__list_notes".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"notes__add_note".to_string()), "{names:?}");
    let refused = local
        .call_tool(call("notes__add_note", json!({"title": "t", "body": "b"})))
        .await;
    assert!(refused.is_err() || refused.unwrap().is_error == Some(true));
    local.cancel().await.unwrap();

    // With an `eng` key: a tool that needs the group is listed and callable.
    let eng = keys_in(
        dir.path(),
        &["create", "--name", "laptop", "--group", "eng"],
    );
    let marker = format!("TOOLGATE_API_KEY={eng}");
    let client = stdio_client(dir.path(), Some(&eng)).await;
    let names = listed(&client).await;
    assert!(names.contains(&"notes__add_note".to_string()), "{names:?}");
    assert!(
        !names.contains(&"notes__delete_note".to_string()),
        "eng may not destroy: {names:?}"
    );
    let r = client
        .call_tool(call("notes__add_note", json!({"title": "t", "body": "b"})))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    // The key is the gateway's: no upstream process inherits it.
    let holders = processes_with_env(&marker);
    assert_eq!(
        holders.len(),
        1,
        "only toolgate stdio holds the key: {holders:?}"
    );
    // Its use is recorded against the key.
    client.cancel().await.unwrap();
    let recorded = eventually(Duration::from_secs(5), || async {
        let list: Value = serde_json::from_str(&keys_in(dir.path(), &["list", "--json"])).unwrap();
        list[0]["last_used_at"].is_i64()
    })
    .await;
    assert!(recorded, "the key's last use is recorded");
}

#[tokio::test]
async fn stdio_refuses_to_start_with_a_key_the_store_does_not_accept() {
    let dir = config_dir(
        &[("clock", stdio_reference_toml("clock", "clock", ""))],
        &[],
    );
    let revoked = keys_in(dir.path(), &["create", "--name", "old", "--group", "admin"]);
    keys_in(dir.path(), &["revoke", "old"]);
    let expired_soon = keys_in(
        dir.path(),
        &["create", "--name", "short", "--expires", "1s"],
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let forged = {
        // A well-formed key of a known id with a wrong secret.
        let good = keys_in(dir.path(), &["create", "--name", "real"]);
        let (head, last) = good.split_at(good.len() - 1);
        format!("{head}{}", if last == "a" { "b" } else { "a" })
    };
    for (key, why) in [
        (revoked.as_str(), "API key `old` is revoked"),
        (expired_soon.as_str(), "API key `short` expired"),
        (forged.as_str(), "unknown API key"),
        ("not-a-key", "not a toolgate API key"),
        ("  ", "TOOLGATE_API_KEY is set but empty"),
    ] {
        let out = tokio::process::Command::new(TOOLGATE)
            .arg("--config")
            .arg(dir.path().join("toolgate.toml"))
            .arg("stdio")
            .env("TOOLGATE_API_KEY", key)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(out.stdout.is_empty(), "nothing served: {why}");
    }
}

#[tokio::test]
async fn stdio_session_ends_once_its_key_is_revoked() {
    let dir = config_dir(
        &[(
            "notes",
            stdio_reference_toml("notes", "notes", "[policy]\ntrusted = true"),
        )],
        &[],
    );
    std::fs::write(
        dir.path().join("toolgate.toml"),
        "listen = \"127.0.0.1:0\"\n[auth]\napi_key_cache_ttl = \"1s\"\n",
    )
    .unwrap();
    let eng = keys_in(
        dir.path(),
        &["create", "--name", "laptop", "--group", "eng"],
    );
    let client = stdio_client(dir.path(), Some(&eng)).await;
    let names = listed(&client).await;
    assert!(names.contains(&"notes__add_note".to_string()), "{names:?}");
    keys_in(dir.path(), &["revoke", "laptop"]);
    // Within the cache TTL (and the check's one-second floor), the session
    // ends: the client sees its transport close.
    let ended = tokio::time::timeout(Duration::from_secs(10), client.waiting()).await;
    assert!(ended.is_ok(), "the stdio session outlived its revoked key");
}
