//! Approval gates through the real gateway: `@approval` policies hold the
//! allowed calls they match until a member of the gate's group approves
//! them through the REST API; a held call never reaches its upstream
//! without that.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::storage::Store;

use crate::audit::{Backend, Witness, serve, verify_cli};
use crate::common::*;
use crate::rbac::{Session, default_policies, key};

/// Gates on the witness's `note` tool: messages about prod (approved by
/// `security`), and messages about the db (which nobody decides in time).
const GATES: &str = r#"@id("prod-notes")
@approval("security")
@reason("notes about prod are reviewed")
permit (principal, action == Action::"call_tool", resource == Tool::"witness__note")
when { context.args has message && context.args.message like "*prod*" };

@id("money-notes")
@approval("finance")
permit (principal, action == Action::"call_tool", resource == Tool::"witness__note")
when { context.args has message && context.args.message like "*money*" };

@id("confirm-notes")
@confirm("Send this note?")
permit (principal, action == Action::"call_tool", resource == Tool::"witness__note")
when { context.args has message && context.args.message like "*confirm*" };

@id("confirm-or-security")
@confirm
@approval("security")
permit (principal, action == Action::"call_tool", resource == Tool::"witness__note")
when { context.args has message && context.args.message like "*either*" };

@id("db-notes")
@approval("security")
@timeout("2s")
permit (principal, action == Action::"call_tool", resource == Tool::"witness__note")
when { context.args has message && context.args.message like "*db*" };
"#;

pub(crate) struct Setup {
    pub(crate) gw: Gateway,
    pub(crate) ct: CancellationToken,
    pub(crate) seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A gateway over the witness with [`GATES`], on `backend`, with `extra`
/// toolgate.toml lines.
pub(crate) async fn setup(backend: &Backend, extra: &str) -> Setup {
    let ct = CancellationToken::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let witness = {
        let seen = seen.clone();
        http_upstream(move || Witness { seen: seen.clone() }, ct.clone()).await
    };
    let servers = [(
        "witness",
        http_server_toml("witness", &witness, "[policy]\ntrusted = true"),
    )];
    let files = default_policies(&[("gates", GATES)]);
    let files = Gateway::policy_refs(&files);
    let config = format!("{extra}\n{}", backend.config(""));
    let gw = Gateway::start_governed(&servers, &config, false, &files).await;
    gw.wait_ready(&["witness"]).await;
    Setup { gw, ct, seen }
}

/// A tool call in the background (it waits for its approval).
pub(crate) fn call_in_background(
    gw: &Gateway,
    key: &str,
    message: &str,
) -> tokio::task::JoinHandle<Result<String, String>> {
    let (url, key, message) = (gw.url.clone(), key.to_string(), message.to_string());
    tokio::spawn(async move {
        Session::open(&url, &key, false)
            .await
            .call("witness__note", json!({ "message": message }))
            .await
    })
}

/// `GET /admin/v1/approvals?{query}` as `key`: (status, body).
async fn list(gw: &Gateway, key: &str, query: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/admin/v1/approvals?{query}", gw.addr))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The pending requests `key` sees, once there are `n`.
pub(crate) async fn pending(gw: &Gateway, key: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = list(gw, key, "state=pending").await;
        assert_eq!(status, 200);
        let rows = body["approvals"].as_array().unwrap().clone();
        if rows.len() >= n {
            return rows;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decide request `id` as `key`, which must be allowed to.
pub(crate) async fn decided(gw: &Gateway, key: &str, id: &str, verdict: &str, comment: &str) {
    let (status, body) = decide(gw, key, id, verdict, comment).await;
    assert_eq!(status, 200, "{body}");
}

/// POST …/approvals/{id}/{verdict}: (status, body).
async fn decide(gw: &Gateway, key: &str, id: &str, verdict: &str, comment: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/v1/approvals/{id}/{verdict}",
            gw.addr
        ))
        .bearer_auth(key)
        .json(&json!({ "comment": comment }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

on_both_stores!(
    an_approved_call_goes_through_once_and_a_denied_one_never,
    an_approved_call_goes_through_once_and_a_denied_one_never_on_sqlite,
    an_approved_call_goes_through_once_and_a_denied_one_never_on_postgres,
    "approvals"
);

async fn an_approved_call_goes_through_once_and_a_denied_one_never(backend: Backend) {
    let Setup { gw, ct, seen } = setup(&backend, "").await;
    // The requester is in `security` too: still not their own approver.
    let eng = key(&gw, "eng", &["eng", "security"]);
    let approver = key(&gw, "alice", &["security"]);
    let outsider = key(&gw, "ops", &["ops"]);

    let s = Session::open(&gw.url, &eng, false).await;
    assert_eq!(
        s.call("witness__note", json!({"message": "hello"})).await,
        Ok("hello".into()),
        "a call no gate matches goes straight through"
    );

    let call = call_in_background(&gw, &eng, "restart prod");
    let rows = pending(&gw, &approver, 1).await;
    let request = &rows[0];
    assert_eq!(request["tool"], "witness__note");
    assert_eq!(request["args"], json!({"message": "restart prod"}));
    assert_eq!(request["gate"], "prod-notes");
    assert_eq!(request["approver_group"], "security");
    assert_eq!(request["reason"], "notes about prod are reviewed");
    let id = request["id"].as_str().unwrap();
    // Nothing reached the upstream while it waits.
    assert_eq!(*seen.lock().unwrap(), vec!["hello"]);

    let (status, body) = decide(&gw, &eng, id, "approve", "mine").await;
    assert_eq!(status, 403, "self-approval: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("you asked for this call")
    );
    let (status, body) = decide(&gw, &outsider, id, "approve", "").await;
    assert_eq!(status, 403, "outside the group: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("only members of `security`")
    );
    let (status, body) = decide(&gw, &approver, id, "approve", "go ahead").await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("approved")),
        "{body}"
    );
    assert_eq!(call.await.unwrap(), Ok("restart prod".into()));
    let (status, _) = decide(&gw, &approver, id, "deny", "").await;
    assert_eq!(status, 409, "decided once");

    // Changed arguments need their own approval: denied, with the comment.
    let call = call_in_background(&gw, &eng, "restart prod now");
    let rows = pending(&gw, &approver, 1).await;
    assert_eq!(rows[0]["args"], json!({"message": "restart prod now"}));
    let id = rows[0]["id"].as_str().unwrap();
    decided(&gw, &approver, id, "deny", "not during the freeze").await;
    let refused = call.await.unwrap().unwrap_err();
    assert!(
        refused.contains("denied by apikey:") && refused.contains("not during the freeze"),
        "{refused}"
    );

    // The same call again is not a replay of the approval: a new request.
    let call = call_in_background(&gw, &eng, "restart prod");
    let rows = pending(&gw, &approver, 1).await;
    assert_ne!(rows[0]["id"], json!(request["id"]));
    decided(
        &gw,
        &approver,
        rows[0]["id"].as_str().unwrap(),
        "deny",
        "once was enough",
    )
    .await;
    assert!(call.await.unwrap().unwrap_err().contains("once was enough"));

    // Undecided within the gate's timeout: refused, never forwarded.
    let refused = s
        .call("witness__note", json!({"message": "drop the db"}))
        .await
        .unwrap_err();
    assert!(
        refused.contains("no member of `security` decided within 2s"),
        "{refused}"
    );
    assert_eq!(*seen.lock().unwrap(), vec!["hello", "restart prod"]);
    let (_, expired) = list(&gw, &approver, "state=expired").await;
    assert_eq!(expired["approvals"][0]["gate"], "db-notes", "{expired}");
    assert!(pending(&gw, &approver, 0).await.is_empty());

    // Every request and decision is in the audit trail.
    let store = Store::open(backend.url(), &gw.dir.path().join("data"))
        .await
        .unwrap();
    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, COUNT(*) FROM audit_records WHERE kind LIKE 'approval%' GROUP BY kind ORDER BY kind",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("approval_decided".into(), 3),
            ("approval_requested".into(), 4)
        ]
    );
    // Appended by requests and decisions alongside the calls' records,
    // the chain is still one gapless, verifiable sequence.
    let (ok, out) = verify_cli(&gw.dir.path().join("toolgate.toml"));
    assert!(ok, "{out}");
    ct.cancel();
}

/// Two replicas on one PostgreSQL: the agent's call waits on one (this
/// process), the approver decides on the other (a `toolgate serve` child
/// process), and the waiting call goes through.
#[tokio::test]
async fn a_decision_on_one_replica_releases_a_call_waiting_on_another() {
    let Some(backend) = Backend::postgres("replicas").await else {
        return;
    };
    let Setup { gw, ct, seen } = setup(&backend, "").await;
    let eng = key(&gw, "eng", &["eng"]);
    let approver = key(&gw, "alice", &["security"]);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // The other replica: the same servers, policies and database.
    let config = gw.dir.path().join("replica.toml");
    std::fs::write(
        &config,
        format!("listen = \"{addr}\"\n{}", backend.config("")),
    )
    .unwrap();
    let mut replica = serve(&config, &addr).await;

    let call = call_in_background(&gw, &eng, "restart prod");
    let rows = pending(&gw, &approver, 1).await;
    let id = rows[0]["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/admin/v1/approvals/{id}/approve"))
        .bearer_auth(&approver)
        .json(&json!({"comment": "from the other replica"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the waiting call was released")
        .unwrap();
    assert_eq!(done, Ok("restart prod".into()));
    assert_eq!(*seen.lock().unwrap(), vec!["restart prod"]);
    replica.kill().unwrap();
    replica.wait().unwrap();
    ct.cancel();
}

/// A caller that asks for progress hears, while its call waits, what it
/// waits for, on both ingress paths.
#[tokio::test]
async fn a_waiting_call_reports_progress() {
    let Setup { gw, ct, .. } = setup(&Backend::Sqlite, "").await;
    let eng = key(&gw, "eng", &["eng"]);
    let approver = key(&gw, "alice", &["security"]);
    for via_rmcp in [false, true] {
        let (url, key) = (gw.url.clone(), eng.clone());
        let watched = tokio::spawn(async move {
            Session::open(&url, &key, via_rmcp)
                .await
                .body(
                    "tools/call",
                    json!({"name": "witness__note", "arguments": {"message": "prod check"},
                           "_meta": {"progressToken": "watch-1"}}),
                )
                .await
        });
        let rows = pending(&gw, &approver, 1).await;
        let id = rows[0]["id"].as_str().unwrap();
        decided(&gw, &approver, id, "approve", "ok").await;
        let body = watched.await.unwrap();
        let messages: Vec<Value> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect();
        let progress = messages
            .iter()
            .find(|m| m["method"] == "notifications/progress")
            .unwrap_or_else(|| panic!("no progress (via rmcp: {via_rmcp}): {body}"));
        assert_eq!(progress["params"]["progressToken"], "watch-1");
        assert!(
            progress["params"]["message"]
                .as_str()
                .unwrap()
                .starts_with("waiting for approval by `security` (gate `prod-notes`"),
            "{progress}"
        );
        let result = messages.last().unwrap();
        assert_eq!(
            result["result"]["content"][0]["text"], "prod check",
            "{body}"
        );
    }
    ct.cancel();
}

/// `[approvals] wait = false`: a held call returns at once saying its
/// request is pending; the identical call made again goes through once it
/// is approved, and hears of a denial once.
#[tokio::test]
async fn without_waiting_the_same_call_again_goes_through_once_approved() {
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, "[approvals]\nwait = false").await;
    let eng = key(&gw, "eng", &["eng"]);
    let approver = key(&gw, "alice", &["security"]);
    let s = Session::open(&gw.url, &eng, false).await;
    let note = |m: &'static str| s.call("witness__note", json!({ "message": m }));

    let first = note("restart prod").await.unwrap_err();
    assert!(
        first.contains("is pending") && first.contains("make the same call again"),
        "{first}"
    );
    let again = note("restart prod").await.unwrap_err();
    let rows = pending(&gw, &approver, 1).await;
    assert_eq!(
        rows.len(),
        1,
        "asking again makes no second request: {rows:?}"
    );
    let id = rows[0]["id"].as_str().unwrap();
    assert!(
        first.contains(id) && again.contains(id),
        "{first} / {again}"
    );
    assert!(seen.lock().unwrap().is_empty());

    decided(&gw, &approver, id, "approve", "ok").await;
    assert_eq!(note("restart prod").await, Ok("restart prod".into()));
    // Used: the next identical call needs a new approval.
    assert!(
        note("restart prod")
            .await
            .unwrap_err()
            .contains("is pending")
    );
    let rows = pending(&gw, &approver, 1).await;
    let id = rows[0]["id"].as_str().unwrap();
    decided(&gw, &approver, id, "deny", "no more restarts").await;
    let denied = note("restart prod").await.unwrap_err();
    assert!(
        denied.contains("denied by") && denied.contains("no more restarts"),
        "{denied}"
    );
    assert!(
        note("restart prod")
            .await
            .unwrap_err()
            .contains("is pending"),
        "told once, then a new request"
    );
    assert_eq!(*seen.lock().unwrap(), vec!["restart prod"]);
    ct.cancel();
}

/// `[approvals.webhook]`: each request and decision reaches a local
/// receiver, in order, with a link to the approver page, despite the
/// receiver failing at first.
#[tokio::test]
async fn requests_and_decisions_reach_a_webhook_despite_its_failures() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let requests = Arc::new(AtomicUsize::new(0));
    let app = {
        let (events, requests) = (events.clone(), requests.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::Json<Value>| {
                let (events, requests) = (events.clone(), requests.clone());
                async move {
                    if requests.fetch_add(1, Ordering::SeqCst) < 2 {
                        return StatusCode::BAD_GATEWAY;
                    }
                    let mut events = events.lock().unwrap();
                    for e in body["events"].as_array().unwrap() {
                        // At least once: a retried batch may repeat.
                        if !events.iter().any(|s: &Value| s["seq"] == e["seq"]) {
                            events.push(e.clone());
                        }
                    }
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = format!(
        "[approvals.webhook]\nurl = \"{receiver}\"\ninterval = \"100ms\"\nmax_backoff = \"200ms\"\n\
         ui_url = \"https://toolgate.example.com/\"\n"
    );
    let Setup { gw, ct, .. } = setup(&Backend::Sqlite, &config).await;
    let eng = key(&gw, "eng", &["eng"]);
    let approver = key(&gw, "alice", &["security"]);
    let call = call_in_background(&gw, &eng, "restart prod");
    let rows = pending(&gw, &approver, 1).await;
    let id = rows[0]["id"].as_str().unwrap().to_string();
    decided(&gw, &approver, &id, "approve", "fine").await;
    assert_eq!(call.await.unwrap(), Ok("restart prod".into()));

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = events.lock().unwrap().clone();
        if got.len() >= 2 {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        requests.load(Ordering::SeqCst) >= 3,
        "retried after failures"
    );
    let link = format!("https://toolgate.example.com/ui/approvals/{id}");
    assert_eq!(got[0]["event"], "approval_requested");
    assert_eq!(got[0]["approval"], json!(id));
    assert_eq!(got[0]["tool"], "witness__note");
    assert_eq!(got[0]["gate"], "prod-notes");
    assert_eq!(got[0]["approver_group"], "security");
    assert_eq!(got[0]["link"], json!(link));
    assert_eq!(got[1]["event"], "approval_decided");
    assert_eq!(got[1]["decision"], "approve");
    assert_eq!(got[1]["state"], "approved");
    assert_eq!(got[1]["comment"], "fine");
    assert!(got[1]["approver"].as_str().unwrap().starts_with("apikey:"));
    ct.cancel();
}

/// A call two gates hold: both requests are made at once; a denial under
/// one does not spend the approval under the other, which the same call
/// made again uses.
#[tokio::test]
async fn a_call_two_gates_hold_needs_both_and_spends_nothing_when_refused() {
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, "").await;
    let eng = key(&gw, "eng", &["eng"]);
    let security = key(&gw, "alice", &["security"]);
    let finance = key(&gw, "fred", &["finance"]);
    let call = call_in_background(&gw, &eng, "prod money");
    let sec = pending(&gw, &security, 1).await;
    let fin = pending(&gw, &finance, 1).await;
    assert_eq!(
        (sec[0]["gate"].as_str(), fin[0]["gate"].as_str()),
        (Some("prod-notes"), Some("money-notes"))
    );
    let sec_id = sec[0]["id"].as_str().unwrap().to_string();
    decided(&gw, &security, &sec_id, "approve", "").await;
    let fin_id = fin[0]["id"].as_str().unwrap();
    decided(&gw, &finance, fin_id, "deny", "not this quarter").await;
    assert!(
        call.await
            .unwrap()
            .unwrap_err()
            .contains("not this quarter")
    );
    assert!(seen.lock().unwrap().is_empty());

    // Again: security's approval still holds; only finance is asked.
    let call = call_in_background(&gw, &eng, "prod money");
    let fin = pending(&gw, &finance, 1).await;
    assert!(pending(&gw, &security, 0).await.is_empty());
    decided(&gw, &finance, fin[0]["id"].as_str().unwrap(), "approve", "").await;
    assert_eq!(call.await.unwrap(), Ok("prod money".into()));
    // Both approvals are spent.
    let call = call_in_background(&gw, &eng, "prod money");
    let sec = pending(&gw, &security, 1).await;
    assert_ne!(sec[0]["id"], json!(sec_id));
    decided(
        &gw,
        &security,
        sec[0]["id"].as_str().unwrap(),
        "deny",
        "enough",
    )
    .await;
    assert!(call.await.unwrap().unwrap_err().contains("enough"));
    assert_eq!(*seen.lock().unwrap(), vec!["prod money"]);
    // Finance's request of that call has no call left: withdrawn, so
    // finance is not left to decide it.
    let (_, body) = list(&gw, &finance, "state=withdrawn").await;
    let withdrawn = body["approvals"].as_array().unwrap();
    assert_eq!(withdrawn.len(), 1, "{body}");
    assert_eq!(
        withdrawn[0]["comment"],
        "the call was refused under gate `prod-notes`"
    );
    assert!(pending(&gw, &finance, 0).await.is_empty());
    ct.cancel();
}

#[tokio::test]
async fn a_page_of_requests_holds_the_callers_groups_and_pages_on() {
    let Setup { gw, ct, .. } = setup(&Backend::Sqlite, "[approvals]\nwait = false").await;
    let eng = key(&gw, "eng", &["eng"]);
    let security = key(&gw, "alice", &["security"]);
    let finance = key(&gw, "fred", &["finance"]);
    let s = Session::open(&gw.url, &eng, false).await;
    // Finance's request first, then three newer ones for security.
    for message in ["money", "prod 1", "prod 2", "prod 3"] {
        let refused = s
            .call("witness__note", json!({ "message": message }))
            .await
            .unwrap_err();
        assert!(refused.contains("is pending"), "{refused}");
        // Distinct creation times: the order below is by time.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let messages = |body: &Value| -> Vec<String> {
        body["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["args"]["message"].as_str().unwrap().to_string())
            .collect()
    };
    // The group filter is in the query: finance's one request fills its
    // page of one although security's are newer.
    let (status, body) = list(&gw, &finance, "limit=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(messages(&body), ["money"]);
    // Security pages through its three, newest first.
    let (_, body) = list(&gw, &security, "state=pending&limit=2").await;
    assert_eq!(messages(&body), ["prod 3", "prod 2"]);
    let next = body["next"].as_str().unwrap().to_string();
    let (_, body) = list(
        &gw,
        &security,
        &format!("state=pending&limit=2&before={next}"),
    )
    .await;
    assert_eq!(messages(&body), ["prod 1"]);
    assert_eq!(body["next"], Value::Null);
    // Filters, and what is wrong with a bad one.
    let (_, body) = list(&gw, &security, "tool=witness__note&since=1h").await;
    assert_eq!(messages(&body).len(), 3);
    let (_, body) = list(&gw, &security, "tool=other").await;
    assert_eq!(messages(&body).len(), 0);
    for (query, why) in [
        ("before=12-zz", "is not a `next` this API gave"),
        ("state=maybe", "state `maybe`: use pending"),
        ("colour=red", "unknown parameter `colour`"),
        ("limit=0", "limit: a number from 1 to 1000"),
    ] {
        let (status, body) = list(&gw, &security, query).await;
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    ct.cancel();
}

/// A `@confirm` gate asks the user through MCP elicitation, on the fast
/// lane and on the rmcp path; a client that cannot be asked is refused,
/// or its call goes to the gate's group when it has one.
#[tokio::test]
async fn a_confirm_gate_asks_the_user_through_elicitation() {
    for extra in ["", "[http]\nfast_lane = false"] {
        let Setup { gw, ct, seen } = setup(&Backend::Sqlite, extra).await;
        let eng = key(&gw, "eng", &["eng"]);
        let security = key(&gw, "alice", &["security"]);
        let (client, heard) = connect_with_key(&gw.url, &eng).await;
        let note = |message: &str| call("witness__note", json!({ "message": message }));

        let r = client.call_tool(note("confirm: ship it")).await.unwrap();
        assert_eq!(text(&r), "confirm: ship it", "{extra}: {r:?}");
        let asked = heard.elicited.lock().unwrap().clone();
        assert_eq!(asked.len(), 1, "{asked:?}");
        for shown in ["Send this note?", "Tool: witness__note", "confirm: ship it"] {
            assert!(asked[0].contains(shown), "{shown} in {}", asked[0]);
        }
        let r = client
            .call_tool(note("confirm: DECLINE this"))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert!(
            text(&r).contains("the user declined it (gate `confirm-notes`)"),
            "{}",
            text(&r)
        );
        // Both: the user is asked, and nobody in `security` is.
        let r = client.call_tool(note("either way")).await.unwrap();
        assert_eq!(text(&r), "either way");
        assert!(pending(&gw, &security, 0).await.is_empty());
        assert_eq!(
            heard.elicitations.load(std::sync::atomic::Ordering::SeqCst),
            3
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["confirm: ship it", "either way"]
        );

        // A client without elicitation cannot be asked: refused, or the
        // gate's group decides instead.
        let raw = Session::open(&gw.url, &eng, !extra.is_empty()).await;
        let refused = raw
            .call("witness__note", json!({"message": "confirm quietly"}))
            .await
            .unwrap_err();
        assert!(
            refused.contains("needs the user's confirmation (gate `confirm-notes`), but the client did not declare the elicitation capability"),
            "{refused}"
        );
        let call = call_in_background(&gw, &eng, "either, quietly");
        let id = pending(&gw, &security, 1).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        decided(&gw, &security, &id, "approve", "").await;
        assert_eq!(call.await.unwrap(), Ok("either, quietly".into()));

        // The call's records say who confirmed what.
        let store = Backend::Sqlite.store(&gw).await;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT body FROM audit_records WHERE kind = 'decided' ORDER BY seq")
                .fetch_all(store.pool())
                .await
                .unwrap();
        let confirmed: Vec<Value> = rows
            .iter()
            .map(|(r,)| serde_json::from_str::<Value>(r).unwrap())
            .filter(|r| {
                r["detail"]["confirmed"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
            })
            .map(|r| r["detail"]["confirmed"].clone())
            .collect();
        assert_eq!(
            confirmed,
            vec![json!(["confirm-notes"]), json!(["confirm-or-security"])],
            "{extra}"
        );
        client.cancel().await.unwrap();
        ct.cancel();
    }
}

/// A 2026-07-28 caller is asked in the call's answer (an
/// `InputRequiredResult`) and makes the call again with the user's answer.
#[tokio::test]
async fn a_confirm_gate_asks_a_stateless_caller_in_its_answer() {
    use crate::bad_input::{post, rpc};
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, "").await;
    let eng = key(&gw, "eng", &["eng"]);
    let call = |message: &str, capabilities: Value, input: Option<(Value, Value)>| {
        let mut params = json!({
            "name": "witness__note",
            "arguments": {"message": message},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            },
        });
        if let Some((responses, state)) = input {
            params["inputResponses"] = responses;
            params["requestState"] = state;
        }
        let request = post(&gw.url)
            .bearer_auth(&eng)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "witness__note")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}));
        async move { rpc(request.send().await.unwrap()).await["result"].clone() }
    };
    let elicits = json!({"elicitation": {}});
    let key = "toolgate_confirm:confirm-notes";

    let asked = call("confirm modern", elicits.clone(), None).await;
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let question = &asked["inputRequests"][key];
    assert_eq!(question["method"], "elicitation/create", "{asked}");
    let message = question["params"]["message"].as_str().unwrap();
    assert!(message.contains("Send this note?") && message.contains("confirm modern"));
    let state = asked["requestState"].clone();
    assert!(
        seen.lock().unwrap().is_empty(),
        "not forwarded while asking"
    );

    let yes = json!({key: {"action": "accept", "content": {"allow": true}}});
    let done = call(
        "confirm modern",
        elicits.clone(),
        Some((yes.clone(), state.clone())),
    )
    .await;
    assert_eq!(done["content"][0]["text"], "confirm modern", "{done}");
    assert_eq!(*seen.lock().unwrap(), vec!["confirm modern"]);

    // The answer belongs to that call: other arguments are asked again.
    let other = call("confirm other", elicits.clone(), Some((yes, state.clone()))).await;
    assert_eq!(other["resultType"], "input_required", "{other}");
    // A decline refuses; a client that cannot be asked is refused.
    let no = json!({key: {"action": "decline"}});
    let refused = call("confirm modern", elicits.clone(), Some((no, state))).await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(
        refused["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("the user declined it"),
        "{refused}"
    );
    let refused = call("confirm modern", json!({}), None).await;
    assert!(
        refused["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("did not declare the elicitation capability"),
        "{refused}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    ct.cancel();
}

/// A held call carrying secrets in every glued form: the request an
/// approver reads (the API's list, the approver page), the approvals table and
/// the audit records hold none of them, yet stay readable.
#[tokio::test]
async fn an_approver_never_sees_the_secrets_of_a_held_call() {
    use crate::audit::{none_of, secret_laden_args};
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, "").await;
    let eng = key(&gw, "eng", &["eng"]);
    let approver = key(&gw, "alice", &["security"]);
    let (args, secrets) =
        secret_laden_args(json!({"message": "restart prod", "password": "canary-pw-field"}));
    let mut secrets = secrets;
    secrets.push("canary-pw-field");
    let call = {
        let (url, eng) = (gw.url.clone(), eng.clone());
        tokio::spawn(async move {
            Session::open(&url, &eng, true)
                .await
                .call("witness__note", args)
                .await
        })
    };
    let rows = pending(&gw, &approver, 1).await;
    none_of(&secrets, &rows[0].to_string(), "the approvals list");
    assert_eq!(rows[0]["args"]["message"], "restart prod");
    assert_eq!(rows[0]["args"]["password"], "[REDACTED:secret-field]");
    assert!(
        rows[0]["args"]["body"]
            .as_str()
            .unwrap()
            .contains("AWS_ACCESS_KEY_ID=[REDACTED:"),
        "{}",
        rows[0]
    );
    let id = rows[0]["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(format!("http://{}/ui/approvals/{id}", gw.addr))
        .bearer_auth(&approver)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("restart prod"), "{page}");
    none_of(&secrets, &page, "the approver page");
    // An approver's comment is kept through the same masker.
    decided(
        &gw,
        &approver,
        id,
        "approve",
        "ok; rotate GITHUB_TOKEN=canary-comment-1 after",
    )
    .await;
    secrets.push("canary-comment-1");
    assert_eq!(call.await.unwrap(), Ok("restart prod".into()));
    // The upstream got the arguments as sent: masking is for what is kept.
    assert_eq!(*seen.lock().unwrap(), vec!["restart prod"]);
    let store = Store::open(None, &gw.dir.path().join("data"))
        .await
        .unwrap();
    let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM audit_records")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for (body,) in &bodies {
        none_of(&secrets, body, "an audit record");
    }
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT args, comment FROM approvals")
            .fetch_all(store.pool())
            .await
            .unwrap();
    none_of(&secrets, &format!("{stored:?}"), "the approvals table");
    assert!(format!("{stored:?}").contains("rotate GITHUB_TOKEN=[REDACTED:secret] after"));
    let votes: Vec<(Option<String>,)> = sqlx::query_as("SELECT comment FROM approval_votes")
        .fetch_all(store.pool())
        .await
        .unwrap();
    none_of(&secrets, &format!("{votes:?}"), "the approval votes");
    ct.cancel();
}

/// Two calls whose masked copies look the same to the approver (they
/// differ only in a masked password): an approval given for one is never
/// spent on the other, which makes a request of its own; the approved
/// arguments then go through, once.
#[tokio::test]
async fn an_approval_is_spent_only_on_the_arguments_it_was_given_for() {
    let Setup { gw, ct, seen } = setup(&Backend::Sqlite, "[approvals]\nwait = false").await;
    let eng = key(&gw, "eng", &["eng"]);
    let approver = key(&gw, "alice", &["security"]);
    let s = Session::open(&gw.url, &eng, false).await;
    let note = |password: &'static str| {
        s.call(
            "witness__note",
            json!({"message": "restart prod", "password": password}),
        )
    };
    assert!(note("pw-one").await.unwrap_err().contains("is pending"));
    let rows = pending(&gw, &approver, 1).await;
    let first = rows[0]["id"].as_str().unwrap().to_string();
    decided(&gw, &approver, &first, "approve", "ok").await;

    // Same look, other password: not forwarded, a request of its own.
    let other = note("pw-two").await.unwrap_err();
    assert!(
        other.contains("is pending") && !other.contains(&first),
        "{other}"
    );
    let rows = pending(&gw, &approver, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_ne!(rows[0]["id"], json!(first));
    assert_eq!(
        rows[0]["args"],
        json!({"message": "restart prod", "password": "[REDACTED:secret-field]"})
    );
    // Other arguments in every way (an extra field, another type) too.
    assert!(
        s.call(
            "witness__note",
            json!({"message": "restart prod", "password": "pw-one", "force": true})
        )
        .await
        .unwrap_err()
        .contains("is pending")
    );
    assert!(
        s.call(
            "witness__note",
            json!({"message": "restart prod", "password": ["pw-one"]})
        )
        .await
        .unwrap_err()
        .contains("is pending")
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing forwarded yet");
    // The approved arguments go through, once.
    assert_eq!(note("pw-one").await, Ok("restart prod".into()));
    assert!(note("pw-one").await.unwrap_err().contains("is pending"));
    assert_eq!(*seen.lock().unwrap(), vec!["restart prod"]);
    // Bound by the keyed hash, as the audit shows it.
    let store = Store::open(None, &gw.dir.path().join("data"))
        .await
        .unwrap();
    let hashes: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT args_hash FROM approvals")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(hashes.len(), 4, "{hashes:?}");
    assert!(
        hashes
            .iter()
            .all(|(h,)| h.starts_with(toolgate::audit::ARGS_HASH_PREFIX)),
        "{hashes:?}"
    );
    ct.cancel();
}
