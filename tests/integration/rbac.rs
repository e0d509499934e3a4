//! Tool-level RBAC through the real gateway: the repository's default
//! policies (`policies/*.cedar`) over a trusted notes server, an untrusted
//! echo server and a team-owned `github` server; callers are API keys with
//! groups, and Okta and Entra access tokens from a real OpenID provider.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::bad_input::{post, rpc};
use crate::common::*;
use crate::identity::keys_cli;

/// The repository's default policy files, plus `extra` ones.
pub(crate) fn default_policies(extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.extend(extra.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    files
}

/// An MCP session opened with an API key, speaking raw JSON-RPC.
pub(crate) struct Session {
    url: String,
    key: String,
    sid: String,
    /// Send with an `Origin`, which keeps calls off the fast lane (rmcp's path).
    via_rmcp: bool,
}

impl Session {
    pub(crate) async fn open(url: &str, key: &str, via_rmcp: bool) -> Session {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        let r = post(url).bearer_auth(key).json(&init).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let s = Session {
            url: url.to_string(),
            key: key.to_string(),
            sid,
            via_rmcp,
        };
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        s
    }

    async fn send(&self, body: Value) -> reqwest::Response {
        let mut request = post(&self.url)
            .bearer_auth(&self.key)
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-11-25");
        if self.via_rmcp {
            request = request.header("origin", "http://localhost:1");
        }
        request.json(&body).send().await.unwrap()
    }

    /// The whole response body (JSON or SSE) to one request.
    pub(crate) async fn body(&self, method: &str, params: Value) -> String {
        self.send(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
            .await
            .text()
            .await
            .unwrap()
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        rpc(self
            .send(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
            .await)
        .await
    }

    async fn names(&self, method: &str, field: &str, key: &str) -> Vec<String> {
        let v = self.rpc(method, json!({})).await;
        let mut names: Vec<String> = v["result"][field]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|t| t[key].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    pub(crate) async fn tools(&self) -> Vec<String> {
        self.names("tools/list", "tools", "name").await
    }

    /// `Ok(text)` for a result, `Err(message)` for a tool error or a
    /// JSON-RPC error (prefixed `rpc:`).
    pub(crate) async fn call(&self, tool: &str, args: Value) -> Result<String, String> {
        let v = self
            .rpc("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        if let Some(e) = v.get("error") {
            return Err(format!(
                "rpc: {}",
                e["message"].as_str().unwrap_or_default()
            ));
        }
        let text = v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if v["result"]["isError"] == true {
            Err(text)
        } else {
            Ok(text)
        }
    }
}

struct Setup {
    gw: Gateway,
    ct: CancellationToken,
}

async fn setup(extra_policies: &[(&'static str, &'static str)]) -> Setup {
    setup_with(extra_policies, "").await
}

/// [`setup`] with extra config lines (identity providers).
async fn setup_with(extra_policies: &[(&'static str, &'static str)], config: &str) -> Setup {
    let ct = CancellationToken::new();
    let echo = http_upstream(Echo::new, ct.clone()).await;
    let github = http_upstream(Echo::new, ct.clone()).await;
    let servers = [
        (
            "notes",
            stdio_reference_toml("notes", "notes", "[policy]\ntrusted = true"),
        ),
        ("echo", http_server_toml("echo", &echo, "")),
        (
            "github",
            http_server_toml(
                "github",
                &github,
                "[policy]\ntrusted = true\ntags = [\"scm\"]",
            ),
        ),
    ];
    let files = default_policies(extra_policies);
    let files = Gateway::policy_refs(&files);
    let gw = Gateway::start_governed(&servers, config, false, &files).await;
    gw.wait_ready(&["notes", "echo", "github"]).await;
    // Ready once every identity provider's keys are in.
    gw.wait_readyz().await;
    Setup { gw, ct }
}

pub(crate) fn key(gw: &Gateway, name: &str, groups: &[&str]) -> String {
    let mut args = vec!["create", "--name", name];
    for g in groups {
        args.extend(["--group", g]);
    }
    keys_cli(gw, &args).trim().to_string()
}

/// A break-glass caller sees destructive tools, the untrusted server's too,
/// and may use them; deleting a note also asks the user
/// (`confirm-note-deletion`), which this client cannot be asked.
async fn break_glass_destroys(b: &Session) {
    let tools = b.tools().await;
    assert!(tools.contains(&"echo__crash".to_string()), "{tools:?}");
    let refused = b
        .call("notes__delete_note", json!({"title": "t"}))
        .await
        .unwrap_err();
    assert!(
        refused.contains("needs the user's confirmation (gate `confirm-note-deletion`)"),
        "allowed by policy, held by the gate: {refused}"
    );
}

/// A platform caller uses github under acme/, and is refused elsewhere with
/// the policy's name and reason.
async fn github_within_the_allowlist(p: &Session) {
    assert!(p.tools().await.contains(&"github__echo".to_string()));
    assert_eq!(
        p.call(
            "github__echo",
            json!({"message": "hi", "repository": "acme/x"})
        )
        .await,
        Ok("hi".into())
    );
    let denied = p
        .call(
            "github__echo",
            json!({"message": "hi", "repository": "evil/x"}),
        )
        .await
        .unwrap_err();
    assert!(
        denied.contains("github-repository-allowlist")
            && denied.contains("only repositories under acme/"),
        "{denied}"
    );
}

#[tokio::test]
async fn the_default_policies_decide_lists_and_calls() {
    let s = setup(&[]).await;
    let url = &s.gw.url;
    let reader = key(&s.gw, "reader", &[]);
    let eng = key(&s.gw, "eng", &["eng"]);
    let platform = key(&s.gw, "platform", &["platform"]);
    let breakglass = key(&s.gw, "breakglass", &["break-glass"]);

    for via_rmcp in [false, true] {
        // Everyone signed in: read-only tools of trusted servers; nothing of
        // the untrusted echo server (worst-case annotations: destructive);
        // nothing of the platform team's github server.
        let r = Session::open(url, &reader, via_rmcp).await;
        assert_eq!(r.tools().await, ["notes__list_notes", "notes__read_note"]);
        assert!(r.call("notes__list_notes", json!({})).await.is_ok());
        // Hidden is the same as unknown: no existence leak.
        let hidden = r
            .call("notes__add_note", json!({"title": "t", "body": "b"}))
            .await;
        let unknown = r.call("notes__no_such_tool", json!({})).await;
        assert_eq!(
            hidden.unwrap_err().replace("add_note", "X"),
            unknown.unwrap_err().replace("no_such_tool", "X")
        );
        assert!(
            r.call("github__echo", json!({"message": "m"}))
                .await
                .is_err()
        );

        // eng: non-destructive writes too, but never destructive tools.
        let e = Session::open(url, &eng, via_rmcp).await;
        assert_eq!(
            e.tools().await,
            ["notes__add_note", "notes__list_notes", "notes__read_note"]
        );
        assert_eq!(
            e.call("notes__add_note", json!({"title": "t", "body": "b"}))
                .await,
            Ok("saved note://t".into())
        );
        let refused = e.call("notes__delete_note", json!({"title": "t"})).await;
        assert!(refused.unwrap_err().contains("rpc: Unknown tool"));

        // break-glass: destructive tools (forbid's `unless`, plus a permit),
        // including the untrusted server's.
        let b = Session::open(url, &breakglass, via_rmcp).await;
        let tools = b.tools().await;
        assert!(
            tools.contains(&"notes__delete_note".to_string()),
            "{tools:?}"
        );
        break_glass_destroys(&b).await;

        // The platform team sees its server; an argument outside the
        // allowlist is refused with the policy and its reason, visibly.
        let p = Session::open(url, &platform, via_rmcp).await;
        github_within_the_allowlist(&p).await;
        // A value of the wrong type cannot slip past the forbid: the
        // policy fails to evaluate, which denies.
        let confused = p
            .call("github__echo", json!({"message": "hi", "repository": 42}))
            .await
            .unwrap_err();
        assert!(confused.contains("could not be evaluated"), "{confused}");
    }
    s.ct.cancel();
}

/// The default policies for people and agents signed in at Okta and Entra
/// ID (User principals, groups and app roles from their tokens).
#[tokio::test]
async fn the_default_policies_decide_for_okta_and_entra_tokens() {
    use crate::common::idp::RealIdp;
    let Some(idp) = RealIdp::start().await else {
        return;
    };
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let okta = "/okta/oauth2/default";
    let entra = format!("/entra/{TENANT}/v2.0");
    let config = format!(
        "[[auth.issuers]]\nname = \"okta\"\nprovider = \"okta\"\nissuer = \"{url}{okta}\"\n\
         audiences = [\"api://default\"]\n\
         [[auth.issuers]]\nname = \"entra\"\nprovider = \"entra\"\ntenants = [\"{TENANT}\"]\n\
         authority = \"{url}/entra\"\nsts = \"{url}/sts\"\naudiences = [\"api://toolgate\"]\n\
         [auth.issuers.group_map]\n\"0f5a-eng\" = \"eng\"\n",
        url = idp.url
    );
    let s = setup_with(&[], &config).await;
    let url = &s.gw.url;
    let person = |uid: &str, groups: &[&str]| json!({"uid": uid, "groups": groups});
    let reader = idp.token(okta, person("00u-reader", &[])).await;
    let eng = idp.token(okta, person("00u-eng", &["eng"])).await;
    let approver = idp
        .token(okta, person("00u-approver", &["approvers"]))
        .await;
    let platform = idp.token(okta, person("00u-platform", &["platform"])).await;
    let breakglass = idp.token(okta, person("00u-bg", &["break-glass"])).await;
    // An Entra agent with the Tools.Write app role, and a person whose
    // group id maps to eng.
    let entra_writer = idp
        .token(&entra, json!({"oid": "22222222-0000-0000-0000-000000000001", "roles": ["Tools.Write"], "scp": null}))
        .await;
    let entra_eng = idp
        .token(
            &entra,
            json!({"oid": "22222222-0000-0000-0000-000000000002", "groups": ["0f5a-eng"]}),
        )
        .await;

    let reads = ["notes__list_notes", "notes__read_note"];
    let writes = ["notes__add_note", "notes__list_notes", "notes__read_note"];
    for via_rmcp in [false, true] {
        for (who, token, want) in [
            ("okta reader", &reader, &reads[..]),
            ("okta eng", &eng, &writes[..]),
            ("okta approver", &approver, &writes[..]),
            ("entra app role Tools.Write", &entra_writer, &writes[..]),
            ("entra group mapped to eng", &entra_eng, &writes[..]),
        ] {
            let session = Session::open(url, token, via_rmcp).await;
            // The untrusted echo server's read-only tool counts as
            // destructive, so none of them sees it; github is the
            // platform team's.
            assert_eq!(session.tools().await, want, "{who}");
            let added = session
                .call("notes__add_note", json!({"title": "t", "body": "b"}))
                .await;
            assert_eq!(added.is_ok(), want.len() == 3, "{who}: {added:?}");
            // Destructive: hidden, the same answer as an unknown tool.
            let refused = session
                .call("notes__delete_note", json!({"title": "t"}))
                .await
                .unwrap_err();
            assert!(refused.contains("rpc: Unknown tool"), "{who}: {refused}");
        }

        // break-glass destroys (the forbid's `unless`), on any server.
        let b = Session::open(url, &breakglass, via_rmcp).await;
        break_glass_destroys(&b).await;

        // The platform team's server, with its repository allowlist: the
        // refusal names the policy and its reason; forbid wins over the
        // team's permit.
        let p = Session::open(url, &platform, via_rmcp).await;
        github_within_the_allowlist(&p).await;
        // eng does not even see github (default deny for everyone else).
        let e = Session::open(url, &eng, via_rmcp).await;
        assert!(
            e.call("github__echo", json!({"message": "hi"}))
                .await
                .unwrap_err()
                .contains("rpc: Unknown tool")
        );
    }
    s.ct.cancel();
}

#[tokio::test]
async fn resources_and_prompts_are_governed_the_same_way() {
    let s = setup(&[(
        "prompts",
        "@id(\"summaries-for-eng\")\n@reason(\"summaries are for eng\")\n\
         forbid (principal, action == Action::\"get_prompt\", resource == Prompt::\"notes__summarize_notes\")\n\
         unless { principal in Group::\"eng\" };\n",
    )])
    .await;
    let url = &s.gw.url;
    let reader = key(&s.gw, "reader", &[]);
    let eng = key(&s.gw, "eng", &["eng"]);
    let platform = key(&s.gw, "platform", &["platform"]);

    let r = Session::open(url, &reader, true).await;
    assert!(r.names("prompts/list", "prompts", "name").await.is_empty());
    let v = r
        .rpc("prompts/get", json!({"name": "notes__summarize_notes"}))
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown prompt"),
        "{v}"
    );
    // The github server's resources are the platform team's too.
    let resources = r.names("resources/list", "resources", "uri").await;
    assert!(
        !resources.iter().any(|u| u.starts_with("github+")),
        "{resources:?}"
    );
    let v = r
        .rpc("resources/read", json!({"uri": "github+echo://counter"}))
        .await;
    assert!(v.get("error").is_some(), "{v}");

    let e = Session::open(url, &eng, true).await;
    assert_eq!(
        e.names("prompts/list", "prompts", "name").await,
        ["notes__summarize_notes"]
    );
    let v = e
        .rpc("prompts/get", json!({"name": "notes__summarize_notes"}))
        .await;
    assert!(v.get("result").is_some(), "{v}");

    let p = Session::open(url, &platform, true).await;
    let resources = p.names("resources/list", "resources", "uri").await;
    assert!(
        resources.contains(&"github+echo://counter".to_string()),
        "{resources:?}"
    );
    let v = p
        .rpc("resources/read", json!({"uri": "github+echo://counter"}))
        .await;
    assert!(v.get("result").is_some(), "{v}");
    s.ct.cancel();
}

#[test]
fn invalid_policies_stop_serve_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write_policies(
        dir.path(),
        &[(
            "broken",
            "@id(\"typo\")\npermit (principal, action == Action::\"call_tool\", resource)\nwhen { context.args.nope == 1 };\n",
        )],
    );
    std::fs::write(
        dir.path().join("toolgate.toml"),
        "listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    for cmd in ["check", "serve"] {
        let out = std::process::Command::new(TOOLGATE)
            .arg("--config")
            .arg(dir.path().join("toolgate.toml"))
            .arg(cmd)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("broken.cedar:3:8") && err.contains("policy `typo`"),
            "{cmd}: {err}"
        );
    }
}

async fn visible(client: &Client) -> usize {
    client.list_all_tools().await.unwrap().len()
}

#[tokio::test]
async fn reloads_under_load_keep_every_call_and_announce_visibility_changes() {
    let ct = CancellationToken::new();
    let echo = http_upstream(Echo::new, ct.clone()).await;
    let reads = "@id(\"reads\")\npermit (principal, action == Action::\"call_tool\", resource)\n\
                 when { context.annotations.read_only };\n";
    let gw = Gateway::start_governed(
        &[(
            "echo",
            http_server_toml("echo", &echo, "[policy]\ntrusted = true"),
        )],
        "",
        true,
        &[("reads", reads)],
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let (watcher, heard) = connect(&gw.url).await;
    let before = visible(&watcher).await;
    assert_eq!(before, 1, "only the read-only echo__echo");
    // Another caller, whose list the change below leaves alone.
    let (bystander, bystander_heard) = connect_with_key(&gw.url, &key(&gw, "ops", &["ops"])).await;
    assert_eq!(visible(&bystander).await, 1);

    // 50 clients calling all along.
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..50 {
        let (client, _) = connect(&gw.url).await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.is_cancelled() {
                match client
                    .call_tool(call("echo__echo", json!({"message": "m"})))
                    .await
                {
                    Ok(r) if r.is_error != Some(true) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    let policy_dir = gw.dir.path().join("policies");
    let wait_reload = || tokio::time::sleep(std::time::Duration::from_millis(2500));

    // An invalid change: refused, the old set stays in force.
    std::fs::write(
        policy_dir.join("broken.cedar"),
        "@id(\"x\")\npermit (principal,",
    )
    .unwrap();
    wait_reload().await;
    assert_eq!(
        gw.gateway().pipeline.policies.current().version,
        1,
        "still the first set"
    );
    assert_eq!(visible(&watcher).await, before);

    // A valid change that shows the dev user more: swapped in, announced.
    std::fs::remove_file(policy_dir.join("broken.cedar")).unwrap();
    // (Written aside and renamed, as editors and deploy tools do: the
    // watcher never sees half a file.)
    std::fs::write(
        policy_dir.join("dev.cedar.tmp"),
        "@id(\"dev-all\")\npermit (principal in Group::\"dev\", action, resource);\n",
    )
    .unwrap();
    let changed_before = heard
        .tools_changed
        .load(std::sync::atomic::Ordering::SeqCst);
    std::fs::rename(
        policy_dir.join("dev.cedar.tmp"),
        policy_dir.join("dev.cedar"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while visible(&watcher).await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the new policies never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(gw.gateway().pipeline.policies.current().version > 1);
    // Comparing every caller's lists under this load takes a debug build
    // seconds on a busy machine: as long as the reload itself may take.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while heard
        .tools_changed
        .load(std::sync::atomic::Ordering::SeqCst)
        <= changed_before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no tools/list_changed after a visibility change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Sent together; the bystander, whose list did not change, hears none.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        bystander_heard
            .tools_changed
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "list_changed to a client whose list did not change"
    );
    assert_eq!(visible(&bystander).await, 1);

    stop.cancel();
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "failed calls during reloads: {failed:?}");
        total += ok;
    }
    assert!(total > 50, "{total} calls");
    ct.cancel();
}

#[test]
fn policy_test_and_explain_from_the_command_line() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(TOOLGATE)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The shipped tests pass.
    let (ok, _, err) = run(&["policy", "test"]);
    assert!(ok, "{err}");
    // A failing case makes the command fail, naming it.
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        "[[case]]\nname = \"wrong on purpose\"\nprincipal = { subject = \"okta:a\" }\n\
         action = \"call_tool\"\ntool = \"notes__delete_note\"\nserver = \"notes\"\n\
         annotations = { destructive = true }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["policy", "test", failing.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("wrong on purpose") && err.contains("destructive-needs-break-glass"),
        "{err}"
    );
    // Explain names the deciding policies and their files.
    let (ok, out, err) = run(&[
        "policy",
        "explain",
        "--subject",
        "okta:bob",
        "--group",
        "platform",
        "--tool",
        "github__create_issue",
        "--args",
        "{\"repository\": \"evil/x\"}",
        "--annotations",
        "{\"read_only\": true}",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny", "{v}");
    let ids: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"github-repository-allowlist"), "{v}");
}

#[tokio::test]
async fn the_admin_explain_endpoint_is_for_admins_and_uses_the_live_catalog() {
    let s = setup(&[]).await;
    let admin = key(&s.gw, "boss", &["admin"]);
    let reader = key(&s.gw, "reader", &[]);
    let url = format!("http://{}/admin/v1/policy/explain", s.gw.addr);
    let ask = |key: &str, body: Value| {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    // No annotations given: the live catalog's (delete_note is destructive).
    let case = json!({
        "principal": {"subject": "okta:alice", "groups": ["eng"]},
        "action": "call_tool",
        "tool": "notes__delete_note",
    });
    let r = ask(&admin, case.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["decision"], "deny", "{v}");
    assert_eq!(
        v["policies"][0]["id"], "destructive-needs-break-glass",
        "{v}"
    );
    assert!(
        v["policies"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("20-destructive.cedar"),
        "{v}"
    );
    // Same answer as the CLI: the allow case.
    let mut add = case.clone();
    add["tool"] = json!("notes__add_note");
    let v: Value = ask(&admin, add).await.unwrap().json().await.unwrap();
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["policies"][0]["id"], "writes-for-eng", "{v}");
    // Not an admin: refused, saying why.
    let r = ask(&reader, case.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    // A malformed case: a clear 400.
    let r = ask(
        &admin,
        json!({"principal": {"subject": "x"}, "action": "call_tool"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("exactly one of"), "{text}");
    // No credential at all: the authenticate layer's 401.
    let r = reqwest::Client::new()
        .post(&url)
        .json(&case)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.ct.cancel();
}
