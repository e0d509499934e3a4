//! The audit trail through the real gateway (SQLite) and on the store
//! directly (SQLite and a real PostgreSQL): every decision kind recorded,
//! tampering detected naming the record, canaries never stored, failing
//! closed while the store cannot write, a gapless chain under load.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::audit::checkpoint::{self, SigningKey};
use toolgate::audit::{Kind, Record, append_now, verify::verify};
use toolgate::reference::echo::Echo;
use toolgate::storage::Store;

use crate::common::postgres::PgServer;
use crate::common::*;
use crate::rbac::{Session, default_policies, key};

const CANARY_TOKEN: &str = "ghp_CANARY1xQ7mZ3kW9pL2vN8rT4yB6dF0hJ5cG";
const CANARY_PASSWORD: &str = "hunter2-canary-7c1f";

/// Where a test gateway keeps its state.
pub(crate) enum Backend {
    Sqlite,
    /// A database on a throwaway PostgreSQL cluster.
    Postgres(Box<PgServer>, String),
}

const PG_AUDIT_KEY: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

impl Backend {
    /// PostgreSQL with a fresh database, or `None` (skip) without one.
    pub(crate) async fn postgres(name: &str) -> Option<Backend> {
        let pg = PgServer::start().await?;
        let url = pg.create_database(name).await;
        Some(Backend::Postgres(Box::new(pg), url))
    }

    /// Top-level config lines, and the `[audit]` table with `audit` in it.
    pub(crate) fn config(&self, audit: &str) -> String {
        match self {
            Backend::Sqlite => format!("[audit]\n{audit}\n"),
            Backend::Postgres(_, url) => format!(
                "database_url = \"{url}\"\n[audit]\nsigning_key = \"{PG_AUDIT_KEY}\"\n{audit}\n"
            ),
        }
    }

    pub(crate) fn url(&self) -> Option<&str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres(_, url) => Some(url),
        }
    }

    pub(crate) async fn store(&self, gw: &Gateway) -> Store {
        Store::open(self.url(), &gw.dir.path().join("data"))
            .await
            .unwrap()
    }
}

/// A governed gateway with the default policies over the notes server and
/// a `github` echo server (stopped by `github_ct`), plus `config` lines.
async fn gateway(config: &str) -> (Gateway, CancellationToken, CancellationToken) {
    let ct = CancellationToken::new();
    let github_ct = CancellationToken::new();
    let github = http_upstream(Echo::new, github_ct.clone()).await;
    let servers = [
        (
            "notes",
            stdio_reference_toml("notes", "notes", "[policy]\ntrusted = true"),
        ),
        (
            "github",
            http_server_toml(
                "github",
                &github,
                "[timeouts]\ncall = \"300ms\"\n[policy]\ntrusted = true\ntags = [\"scm\"]",
            ),
        ),
    ];
    let files = default_policies(&[]);
    let files = Gateway::policy_refs(&files);
    let gw = Gateway::start_governed(&servers, config, false, &files).await;
    gw.wait_ready(&["notes", "github"]).await;
    (gw, ct, github_ct)
}

fn db_file(gw: &Gateway) -> std::path::PathBuf {
    gw.dir.path().join("data/toolgate.db")
}

/// `toolgate audit verify` with this config: (exit ok, its output).
pub(crate) fn verify_cli(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(config)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Every record, through the admin API.
async fn records(gw: &Gateway, admin: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let r = reqwest::Client::new()
            .get(format!(
                "http://{}/admin/v1/audit?after={after}&limit=500",
                gw.addr
            ))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        all.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return all,
        }
    }
}

fn find<'a>(records: &'a [Value], kind: &str, target: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["record"]["kind"] == kind && r["record"]["target"] == target)
        .collect()
}

on_both_stores!(
    every_decision_kind_is_recorded_and_the_chain_verifies,
    every_decision_kind_is_recorded_and_the_chain_verifies_on_sqlite,
    every_decision_kind_is_recorded_and_the_chain_verifies_on_postgres,
    "kinds"
);

async fn every_decision_kind_is_recorded_and_the_chain_verifies(backend: Backend) {
    let (mut gw, ct, _github) = gateway(&backend.config("")).await;
    let admin = key(&gw, "auditor", &["admin"]);
    let eng = key(&gw, "eng", &["eng"]);
    let e = Session::open(&gw.url, &eng, false).await;

    // Allowed, with secrets in the arguments.
    let body = format!("deploy with {CANARY_TOKEN}");
    assert!(
        e.call(
            "notes__add_note",
            json!({"title": "a1", "body": body, "password": CANARY_PASSWORD})
        )
        .await
        .is_ok()
    );
    // Made at the command line while the gateway's writer is running: the
    // CLI appends to the same chain, and the writer follows.
    let platform = key(&gw, "platform", &["platform", "break-glass"]);
    let p = Session::open(&gw.url, &platform, true).await;
    // Refused for its arguments, hidden, unknown.
    assert!(
        p.call(
            "github__echo",
            json!({"message": "m", "repository": "evil/x"})
        )
        .await
        .is_err()
    );
    assert!(
        e.call("notes__delete_note", json!({"title": "a1"}))
            .await
            .is_err()
    );
    assert!(e.call("nope__nothing", json!({})).await.is_err());
    // An upstream failure: github does not answer in time.
    assert!(p.call("github__sleep", json!({"ms": 3000})).await.is_err());

    // `completed` records are queued, not waited for: the last one may
    // take a moment (the writer lets it share the next commit).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let all = loop {
        let all = records(&gw, &admin).await;
        if !find(&all, "completed", "github__sleep").is_empty() {
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Allowed: decided (durable first) then completed, linked.
    let decided = find(&all, "decided", "notes__add_note");
    assert_eq!(decided.len(), 1, "{all:#?}");
    let d = &decided[0]["record"];
    assert_eq!(d["decision"], "allow");
    assert_eq!(
        d["caller"]["subject"],
        json!(format!("apikey:{}", &eng[4..20]))
    );
    assert_eq!(d["caller"]["credential"], "api_key");
    assert_eq!(d["method"], "tools/call");
    assert!(d["session"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
    assert_eq!(d["server"], "notes");
    assert_eq!(d["policies"], json!(["writes-for-eng"]));
    assert!(
        d["args_hash"]
            .as_str()
            .unwrap()
            .starts_with(toolgate::audit::ARGS_HASH_PREFIX)
    );
    assert_eq!(d["definition_hash"].as_str().unwrap().len(), 64);
    assert_eq!(d["args"]["title"], "a1");
    assert_eq!(d["args"]["password"], "[REDACTED:secret-field]");
    assert_eq!(
        d["args"]["body"],
        "deploy with [REDACTED:github-pat-classic]"
    );
    let completed = find(&all, "completed", "notes__add_note");
    assert_eq!(completed[0]["record"]["outcome"], "ok");
    assert_eq!(completed[0]["record"]["call"], d["call"]);
    assert_eq!(completed[0]["record"]["decided_seq"], decided[0]["seq"]);
    assert!(completed[0]["seq"].as_i64() > decided[0]["seq"].as_i64());

    // Denied for its arguments: named policy, refused.
    let denied = find(&all, "decided", "github__echo");
    assert_eq!(denied[0]["record"]["decision"], "deny");
    assert_eq!(
        denied[0]["record"]["policies"],
        json!(["github-repository-allowlist"])
    );
    assert_eq!(
        find(&all, "completed", "github__echo")[0]["record"]["outcome"],
        "refused"
    );
    let failed = &find(&all, "completed", "github__sleep")[0]["record"];
    assert_eq!(failed["outcome"], "error", "{failed}");
    assert_eq!(failed["error_class"], "upstream/timeout", "{failed}");
    // Hidden and unknown are recorded for what they were.
    assert_eq!(
        find(&all, "decided", "notes__delete_note")[0]["record"]["decision"],
        "hidden"
    );
    assert_eq!(
        find(&all, "decided", "nope__nothing")[0]["record"]["decision"],
        "unknown"
    );
    // Keys (the first-start admin key, those made at the command line)
    // are in the same chain.
    assert_eq!(
        all.iter()
            .filter(|r| r["record"]["kind"] == "key_created")
            .count(),
        4
    );
    // Filters.
    let r = reqwest::Client::new()
        .get(format!(
            "http://{}/admin/v1/audit?decision=deny&tool=github__echo",
            gw.addr
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    // Not for non-admins; bad parameters are explained.
    let r = reqwest::Client::new()
        .get(format!("http://{}/admin/v1/audit", gw.addr))
        .bearer_auth(&eng)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .get(format!("http://{}/admin/v1/audit?since=yesterday", gw.addr))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("RFC 3339"));

    // Shut down: everything written, a checkpoint signed; it verifies.
    gw.shutdown().await;
    let (ok, out) = verify_cli(&gw.dir.path().join("toolgate.toml"));
    assert!(ok, "{out}");
    assert!(
        out.contains("no problems") && out.contains("1 exported"),
        "{out}"
    );
    // The canaries are nowhere in the store.
    let store = backend.store(&gw).await;
    let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM audit_records")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for (body,) in &bodies {
        assert!(
            !body.contains(CANARY_TOKEN) && !body.contains(CANARY_PASSWORD),
            "{body}"
        );
    }
    for file in ["toolgate.db", "toolgate.db-wal"] {
        let path = gw.dir.path().join("data").join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(CANARY_TOKEN), "token in {file}");
            assert!(!text.contains(CANARY_PASSWORD), "password in {file}");
        }
    }
    ct.cancel();
}

/// A fresh store with 10 records and a checkpoint exported to a file.
async fn chain(url: Option<&str>, dir: &Path) -> (Store, SigningKey, std::path::PathBuf) {
    let store = Store::open(url, dir).await.unwrap();
    let key = SigningKey::from_text(&"42".repeat(32)).unwrap();
    let records: Vec<Record> = (0..10)
        .map(|i| {
            let mut r = Record::new(Kind::Decided);
            r.target = Some(format!("tool-{i}"));
            r.decision = Some("allow");
            r
        })
        .collect();
    append_now(&store, &records).await.unwrap();
    let file = dir.join("checkpoints.jsonl");
    checkpoint::write(store.pool(), &key, &file)
        .await
        .unwrap()
        .unwrap();
    (store, key, file)
}

async fn first_bad(store: &Store, key: &SigningKey, file: Option<&Path>) -> Option<i64> {
    let v = verify(store.pool(), &key.public_hex(), file).await.unwrap();
    v.first_bad_seq()
}

async fn exec(store: &Store, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(store.pool())
        .await
        .unwrap();
}

/// Each kind of tampering is found, naming the first bad record.
async fn tampering_is_detected(url: &dyn Fn(&str) -> Option<String>) {
    let case = |name: &'static str| async move {
        let dir = tempfile::tempdir().unwrap();
        let (store, key, file) = chain(url(name).as_deref(), dir.path()).await;
        (dir, store, key, file)
    };
    // Intact, then two records past the checkpoint: still intact, but
    // said to be unsigned.
    let (_d, store, key, file) = case("intact").await;
    assert_eq!(first_bad(&store, &key, Some(&file)).await, None);
    append_now(
        &store,
        &[Record::new(Kind::Login), Record::new(Kind::Logout)],
    )
    .await
    .unwrap();
    let v = verify(store.pool(), &key.public_hex(), Some(&file))
        .await
        .unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!((v.unsigned, v.last_signed), (Some((11, 12)), Some(10)));

    // Each edit, and the first record it must be found at.
    let edits: [(&str, &[&str], i64); 5] = [
        // One body changed.
        (
            "edited",
            &["UPDATE audit_records SET body = REPLACE(body, 'tool-4', 'tool-X') WHERE seq = 5"],
            5,
        ),
        // A query column only.
        (
            "column",
            &["UPDATE audit_records SET decision = 'deny' WHERE seq = 6"],
            6,
        ),
        ("deleted", &["DELETE FROM audit_records WHERE seq = 7"], 7),
        // Records 3 and 4 swapped.
        (
            "reordered",
            &[
                "UPDATE audit_records SET seq = 100 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = 4",
                "UPDATE audit_records SET seq = 4 WHERE seq = 100",
            ],
            3,
        ),
        // A forged record at 6, the rest moved up.
        (
            "inserted",
            &[
                "UPDATE audit_records SET seq = seq + 100 WHERE seq >= 6",
                "UPDATE audit_records SET seq = seq - 99 WHERE seq >= 106",
                "INSERT INTO audit_records (seq, at_ms, kind, body, prev_hash, record_hash) \
                 SELECT 6, at_ms, kind, REPLACE(body, '\"seq\":5', '\"seq\":6'), record_hash, record_hash FROM audit_records WHERE seq = 5",
            ],
            6,
        ),
    ];
    for (name, statements, want) in edits {
        let (_d, store, key, file) = case(name).await;
        for sql in statements {
            exec(&store, sql).await;
        }
        assert_eq!(
            first_bad(&store, &key, Some(&file)).await,
            Some(want),
            "{name}"
        );
    }

    // Tail truncated, head and stored checkpoints made to match: only the
    // exported checkpoint knows.
    let (_d, store, key, file) = case("truncated").await;
    exec(&store, "DELETE FROM audit_records WHERE seq > 7").await;
    exec(
        &store,
        "UPDATE audit_head SET seq = 7, record_hash = (SELECT record_hash FROM audit_records WHERE seq = 7)",
    )
    .await;
    exec(&store, "DELETE FROM audit_checkpoints").await;
    assert_eq!(
        first_bad(&store, &key, None).await,
        None,
        "undetectable without the file"
    );
    assert_eq!(first_bad(&store, &key, Some(&file)).await, Some(8));

    // Rewritten from record 4 and re-hashed to the head: every record
    // links, only the signed checkpoint at 10 knows, and the edit is
    // placed in the range before it, not at 10.
    let (_d, store, key, file) = case("rewritten").await;
    rewrite_from(&store, 4, |body| body.replacen('{', "{\"forged\":true,", 1)).await;
    let v = verify(store.pool(), &key.public_hex(), Some(&file))
        .await
        .unwrap();
    assert_eq!(
        v.first_bad().as_deref(),
        Some("somewhere in 1..=10"),
        "{:?}",
        v.problems
    );
    assert!(v.problems[0].message.contains("edited somewhere in 1..=10"));
    assert_eq!(v.unsigned, None);

    // A checkpoint signed by another key is not believed.
    let (_d, store, _key, file) = case("forged").await;
    let other = SigningKey::from_text(&"17".repeat(32)).unwrap();
    assert!(first_bad(&store, &other, Some(&file)).await.is_some());
}

#[tokio::test]
async fn tampering_is_detected_on_sqlite() {
    tampering_is_detected(&|_| None).await;
}

#[tokio::test]
async fn tampering_is_detected_on_postgres() {
    let Some(pg) = PgServer::start().await else {
        return;
    };
    let mut urls = std::collections::HashMap::new();
    for name in [
        "intact",
        "edited",
        "column",
        "deleted",
        "reordered",
        "inserted",
        "truncated",
        "rewritten",
        "forged",
    ] {
        urls.insert(name, pg.create_database(name).await);
    }
    tampering_is_detected(&|name| urls.get(name).cloned()).await;
}

#[tokio::test]
async fn calls_fail_closed_while_sqlite_cannot_record_and_recover_after() {
    let (gw, ct, _github) = gateway(&Backend::Sqlite.config("wait = \"1s\"")).await;
    let eng = key(&gw, "eng", &["eng"]);
    let e = Session::open(&gw.url, &eng, false).await;
    assert!(
        e.call("notes__add_note", json!({"title": "before", "body": "b"}))
            .await
            .is_ok()
    );
    // Another process holds SQLite's write lock.
    let url = format!("sqlite://{}", db_file(&gw).display());
    let mut lock = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    refused_then_recovered(&e, async move {
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        drop(lock);
    })
    .await;
    ct.cancel();
}

#[tokio::test]
async fn calls_fail_closed_while_postgres_is_down_and_recover_after() {
    let Some(backend) = Backend::postgres("down").await else {
        return;
    };
    let (gw, ct, _github) = gateway(&backend.config("wait = \"1s\"")).await;
    let eng = key(&gw, "eng", &["eng"]);
    let e = Session::open(&gw.url, &eng, false).await;
    assert!(
        e.call("notes__add_note", json!({"title": "before", "body": "b"}))
            .await
            .is_ok()
    );
    // A key not yet seen, so not cached: who presents it cannot be known
    // while the store is down.
    let unseen = key(&gw, "unseen", &["eng"]);
    let Backend::Postgres(pg, _) = &backend else {
        unreachable!("a PostgreSQL backend")
    };
    pg.stop().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let resp = crate::bad_input::post(&gw.url)
        .bearer_auth(&unseen)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        503,
        "an unreadable key store is not an invalid key: {}",
        resp.text().await.unwrap()
    );
    refused_then_recovered(&e, pg.restart()).await;
    ct.cancel();
}

/// With the store unable to write: a call is refused, saying why, and is
/// not forwarded; after `recover`, calls go through again.
async fn refused_then_recovered(e: &Session, recover: impl std::future::Future<Output = ()>) {
    let refused = e
        .call("notes__add_note", json!({"title": "blocked", "body": "b"}))
        .await
        .unwrap_err();
    assert!(refused.contains("audit trail cannot record"), "{refused}");
    recover.await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match e
            .call("notes__add_note", json!({"title": "after", "body": "b"}))
            .await
        {
            Ok(_) => break,
            Err(err) => assert!(std::time::Instant::now() < deadline, "{err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = e.call("notes__list_notes", json!({})).await.unwrap();
    assert!(
        listed.contains("before") && listed.contains("after"),
        "{listed}"
    );
    assert!(
        !listed.contains("blocked"),
        "forwarded without a record: {listed}"
    );
}

on_both_stores!(
    a_thousand_concurrent_calls_make_one_gapless_verifiable_chain,
    a_thousand_concurrent_calls_make_one_gapless_verifiable_chain_on_sqlite,
    a_thousand_concurrent_calls_make_one_gapless_verifiable_chain_on_postgres,
    "thousand"
);

async fn a_thousand_concurrent_calls_make_one_gapless_verifiable_chain(backend: Backend) {
    let (mut gw, ct, _github) = gateway(&backend.config("")).await;
    let eng = key(&gw, "eng", &["eng"]);
    let mut tasks = Vec::new();
    for s in 0..50 {
        let url = gw.url.clone();
        let eng = eng.clone();
        tasks.push(tokio::spawn(async move {
            let session = Session::open(&url, &eng, s % 2 == 0).await;
            let mut ok = 0;
            for _ in 0..20 {
                if session.call("notes__list_notes", json!({})).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 1000);
    gw.shutdown().await;
    let store = backend.store(&gw).await;
    let (count, max): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_records")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(max, count, "gapless from 1");
    for kind in ["decided", "completed"] {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_records WHERE kind = $1")
            .bind(kind)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 1000, "{kind}");
    }
    let (verified, out) = verify_cli(&gw.dir.path().join("toolgate.toml"));
    assert!(verified, "{out}");
    ct.cancel();
}

/// An upstream that remembers every message its `note` tool was given:
/// what reached it, whatever became of the answer.
#[derive(Clone)]
pub(crate) struct Witness {
    pub(crate) seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl rmcp::ServerHandler for Witness {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _r: Option<rmcp::model::PaginatedRequestParams>,
        _c: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
        let schema = json!({"type": "object", "properties": {"message": {"type": "string"}}});
        let mut tool = rmcp::model::Tool::new(
            "note",
            "Remember a message.",
            std::sync::Arc::new(schema.as_object().unwrap().clone()),
        );
        tool.annotations = Some(rmcp::model::ToolAnnotations::new().destructive(false));
        Ok(rmcp::model::ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        r: rmcp::model::CallToolRequestParams,
        _c: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let message = r
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.seen.lock().unwrap().push(message.clone());
        Ok(
            rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text(message)])
                .into(),
        )
    }
}

/// `toolgate serve` as a child process on `addr`, once it is ready.
#[expect(
    clippy::zombie_processes,
    reason = "returned to the caller, which kills and waits for it"
)]
pub(crate) async fn serve(config: &Path, addr: &str) -> std::process::Child {
    let mut child = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await
            && r.status() == 200
        {
            return child;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway never became ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_stores!(
    after_sigkill_every_forwarded_call_has_its_decided_record,
    after_sigkill_every_forwarded_call_has_its_decided_record_on_sqlite,
    after_sigkill_every_forwarded_call_has_its_decided_record_on_postgres,
    "sigkill"
);

async fn after_sigkill_every_forwarded_call_has_its_decided_record(backend: Backend) {
    let ct = CancellationToken::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let witness = {
        let seen = seen.clone();
        http_upstream(move || Witness { seen: seen.clone() }, ct.clone()).await
    };
    let dir = tempfile::tempdir().unwrap();
    let files = default_policies(&[]);
    let files = Gateway::policy_refs(&files);
    write_policies(dir.path(), &files);
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("servers/witness.toml"),
        http_server_toml("witness", &witness, "[policy]\ntrusted = true"),
    )
    .unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let config = dir.path().join("toolgate.toml");
    std::fs::write(
        &config,
        format!("listen = \"{addr}\"\n{}", backend.config("")),
    )
    .unwrap();
    let keys = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(&config)
        .args(["keys", "create", "--name", "eng", "--group", "eng"])
        .output()
        .unwrap();
    assert!(keys.status.success());
    let eng = String::from_utf8(keys.stdout).unwrap().trim().to_string();

    let mut gateway = serve(&config, &addr).await;
    let url = format!("http://{addr}/mcp");
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for w in 0..16 {
        let (url, eng, stop) = (url.clone(), eng.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let session = Session::open(&url, &eng, w % 2 == 0).await;
            let mut n = 0;
            while !stop.is_cancelled() {
                let message = format!("w{w}-{n}");
                // After the kill these fail; the loop ends with `stop`.
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    session.call("witness__note", json!({ "message": message })),
                )
                .await;
                n += 1;
            }
        }));
    }
    // Kill it in full flow: once a good number of calls got through (on a
    // loaded machine that takes longer than on an idle one).
    let flowing = eventually(Duration::from_secs(30), || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() > 100 }
    })
    .await;
    assert!(
        flowing,
        "calls did not get through: {}",
        seen.lock().unwrap().len()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    let forwarded: Vec<String> = seen.lock().unwrap().clone();
    assert!(
        forwarded.len() > 50,
        "only {} calls got through",
        forwarded.len()
    );

    // Every message the upstream saw has a durable `decided` record.
    let store = Store::open(backend.url(), &dir.path().join("data"))
        .await
        .unwrap();
    let bodies: Vec<(String,)> =
        sqlx::query_as("SELECT body FROM audit_records WHERE kind = 'decided'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let decided: std::collections::HashSet<String> = bodies
        .iter()
        .filter_map(|(b,)| {
            let v: Value = serde_json::from_str(b).ok()?;
            v["args"]["message"].as_str().map(str::to_string)
        })
        .collect();
    let missing: Vec<&String> = forwarded.iter().filter(|m| !decided.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "forwarded without a decided record: {missing:?}"
    );
    drop(store);

    // The chain verifies, and a restarted gateway extends it.
    let (ok, out) = verify_cli(&config);
    assert!(ok, "{out}");
    let mut gateway = serve(&config, &addr).await;
    let session = Session::open(&url, &eng, false).await;
    assert_eq!(
        session
            .call("witness__note", json!({"message": "after"}))
            .await,
        Ok("after".into())
    );
    // SIGTERM: a graceful stop, which signs a checkpoint.
    std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    gateway.wait().unwrap();
    let (ok, out) = verify_cli(&config);
    assert!(ok && out.contains("1 exported"), "{out}");
    ct.cancel();
}

/// An `[audit.forward]` receiver on 127.0.0.1: `take` sees each request
/// and says whether to take it (200, its records' `seq`s kept in order) or
/// refuse it (503). Its URL, and the `seq`s taken.
async fn receiver(
    take: impl Fn(&axum::http::HeaderMap, &Value) -> bool + Clone + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<i64>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seqs: std::sync::Arc<std::sync::Mutex<Vec<i64>>> = Default::default();
    let kept = seqs.clone();
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let (take, kept) = (take.clone(), kept.clone());
            async move {
                if !take(&headers, &body) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let mut kept = kept.lock().unwrap();
                for r in body["records"].as_array().unwrap() {
                    kept.push(r["seq"].as_i64().unwrap());
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seqs)
}

#[tokio::test]
async fn records_reach_a_webhook_despite_its_failures_in_order_and_complete() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A receiver that fails its first three requests.
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let (receiver, seqs) = receiver(move |headers, body| {
        assert_eq!(headers["authorization"], "Bearer siem-token");
        for r in body["records"].as_array().unwrap() {
            assert!(r["record"]["kind"].is_string() && r["record_hash"].is_string());
        }
        counted.fetch_add(1, Ordering::SeqCst) >= 3
    })
    .await;

    let (gw, ct, _github) = gateway(&Backend::Sqlite.config(&format!(
        "[audit.forward]\nurl = \"{receiver}\"\nauthorization = \"Bearer siem-token\"\n\
         interval = \"100ms\"\nbatch = 4\nmax_backoff = \"200ms\"\n"
    )))
    .await;
    let eng = key(&gw, "eng", &["eng"]);
    let e = Session::open(&gw.url, &eng, false).await;
    for i in 0..5 {
        assert!(
            e.call(
                "notes__add_note",
                json!({"title": format!("n{i}"), "body": "b"})
            )
            .await
            .is_ok()
        );
    }
    // Everything written so far arrives, without gaps, in order.
    let store = Backend::Sqlite.store(&gw).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (written,): (i64,) = sqlx::query_as("SELECT MAX(seq) FROM audit_records")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let got = seqs.lock().unwrap().clone();
        if written >= 11 && got.len() as i64 >= written {
            assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?} of {written}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = &gw.gateway().pipeline.audit.forwarded;
    assert!(stats.failures.load(Ordering::SeqCst) >= 3);
    ct.cancel();
}

/// Records older than the cut-off go behind a signed checkpoint; the rest
/// still verifies, the pruning is recorded, and later tampering is still
/// found.
async fn retention_keeps_the_chain_verifiable(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(backend.url(), dir.path()).await.unwrap();
    let key = SigningKey::from_text(&"42".repeat(32)).unwrap();
    let file = dir.path().join("checkpoints.jsonl");
    let now = toolgate::audit::now_ms();
    let records: Vec<Record> = (0..10)
        .map(|i| {
            let mut r = Record::new(Kind::Decided);
            r.target = Some(format!("tool-{i}"));
            // The first six are 100 days old.
            if i < 6 {
                r.at_ms = now - 100 * 86_400_000;
            }
            r
        })
        .collect();
    append_now(&store, &records).await.unwrap();
    let pruned = toolgate::audit::retention::prune(
        &store,
        &key,
        &file,
        now - 90 * 86_400_000,
        &[],
        toolgate::audit::Who::operator(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((pruned.through_seq, pruned.records), (6, 6));
    let v = verify(store.pool(), &key.public_hex(), Some(&file))
        .await
        .unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!((v.first_seq, v.last_seq), (Some(7), Some(11)));
    let (kind,): (String,) = sqlx::query_as("SELECT kind FROM audit_records WHERE seq = 11")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(kind, "pruned");
    // Nothing older is left: pruning again does nothing.
    assert_eq!(
        toolgate::audit::retention::prune(
            &store,
            &key,
            &file,
            now - 90 * 86_400_000,
            &[],
            toolgate::audit::Who::operator()
        )
        .await
        .unwrap(),
        None
    );
    // Deleting the first kept record is still noticed.
    exec(&store, "DELETE FROM audit_records WHERE seq = 7").await;
    assert_eq!(first_bad(&store, &key, Some(&file)).await, Some(7));
}

on_both_stores!(
    retention_keeps_the_chain_verifiable,
    retention_keeps_the_chain_verifiable_on_sqlite,
    retention_keeps_the_chain_verifiable_on_postgres,
    "retention"
);

/// A prune deletes in chunks, each behind a signed checkpoint: a prune cut
/// short after any chunk leaves a trail that verifies, the next prune
/// finishes it, and the store keeps only the checkpoints still vouching
/// for something (the exported file keeps every one).
async fn retention_cut_short_still_verifies(backend: Backend) {
    use toolgate::audit::retention::{CHUNK, delete_through, prune};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(backend.url(), dir.path()).await.unwrap();
    let key = SigningKey::from_text(&"42".repeat(32)).unwrap();
    let file = dir.path().join("checkpoints.jsonl");
    let now = toolgate::audit::now_ms();
    let old = 2 * CHUNK + CHUNK / 2;
    for start in (0..old + 10).step_by(5_000) {
        let records: Vec<Record> = (start..(start + 5_000).min(old + 10))
            .map(|i| {
                let mut r = Record::new(Kind::Decided);
                r.target = Some(format!("tool-{i}"));
                if i < old {
                    r.at_ms = now - 100 * 86_400_000;
                }
                r
            })
            .collect();
        append_now(&store, &records).await.unwrap();
    }
    // What a prune cut short after its first chunk leaves.
    checkpoint::at(store.pool(), &key, &file, old)
        .await
        .unwrap();
    delete_through(&store, &key, &file, 1, CHUNK).await.unwrap();
    let v = verify(store.pool(), &key.public_hex(), Some(&file))
        .await
        .unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!(v.first_seq, Some(CHUNK + 1));
    // The next prune finishes it.
    let pruned = prune(
        &store,
        &key,
        &file,
        now - 90 * 86_400_000,
        &[],
        toolgate::audit::Who::operator(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (pruned.through_seq, pruned.records),
        (old, (old - CHUNK) as u64)
    );
    let v = verify(store.pool(), &key.public_hex(), Some(&file))
        .await
        .unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!((v.first_seq, v.last_seq), (Some(old + 1), Some(old + 11)));
    // Only the checkpoint the kept records start from is left in the store.
    let stored = checkpoint::stored(store.pool()).await.unwrap();
    assert_eq!(
        stored.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![old],
        "checkpoints left"
    );
    // The exported file has each chunk's.
    let exported: Vec<i64> = checkpoint::read_file(&file)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    for seq in [CHUNK, 2 * CHUNK, old] {
        assert!(exported.contains(&seq), "{seq} not in {exported:?}");
    }
}

on_both_stores!(
    retention_cut_short_still_verifies,
    retention_cut_short_still_verifies_on_sqlite,
    retention_cut_short_still_verifies_on_postgres,
    "retention_chunks"
);

/// `[audit] retain`: the gateway prunes on its own, behind signed
/// checkpoints, but never what a forwarding receiver has not taken yet.
#[tokio::test]
async fn scheduled_retention_prunes_but_never_what_a_receiver_has_not_taken() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // A receiver that refuses everything until `open`.
    let open = Arc::new(AtomicBool::new(false));
    let opened = open.clone();
    let (receiver, seqs) = receiver(move |_, _| opened.load(Ordering::SeqCst)).await;
    let (gw, ct, _github) = gateway(&Backend::Sqlite.config(&format!(
        "retain = \"1s\"\n[audit.forward]\nurl = \"{receiver}\"\ninterval = \"100ms\"\nmax_backoff = \"200ms\"\n"
    )))
    .await;
    let eng = key(&gw, "eng", &["eng"]);
    let e = Session::open(&gw.url, &eng, false).await;
    for i in 0..5 {
        let args = json!({"title": format!("n{i}"), "body": "b"});
        assert!(e.call("notes__add_note", args).await.is_ok());
    }
    let store = Backend::Sqlite.store(&gw).await;
    let first = || async {
        let (first, last): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM audit_records")
                .fetch_one(store.pool())
                .await
                .unwrap();
        (first.unwrap_or(0), last.unwrap_or(0))
    };
    // Past retention several times over, but not delivered: all kept.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(first().await.0, 1, "undelivered records were pruned");
    // Once delivered, pruned behind a checkpoint; what remains verifies.
    open.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (kept_from, _) = loop {
        let (from, to) = first().await;
        if from > 11 {
            break (from, to);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not pruned: {from}..={to}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The receiver has every record that was pruned.
    let got = seqs.lock().unwrap().clone();
    for seq in 1..kept_from {
        assert!(
            got.contains(&seq),
            "seq {seq} pruned before it was forwarded"
        );
    }
    let (kind, by): (String, String) = sqlx::query_as(
        "SELECT kind, subject FROM audit_records WHERE kind = 'pruned' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), by.as_str()),
        ("pruned", "toolgate:retention")
    );
    let (ok, out) = verify_cli(&gw.dir.path().join("toolgate.toml"));
    assert!(ok, "{out}");
    ct.cancel();
}

/// Credentials in forms the masker must find, each with its own canary:
/// (text an agent might send, the secret in it).
pub(crate) fn glued_secrets() -> Vec<(String, &'static str)> {
    vec![
        (
            "AWS_ACCESS_KEY_ID=AKIACANARYQ7ZX3KW5PN aws s3 ls".into(),
            "AKIACANARYQ7ZX3KW5PN",
        ),
        (
            "gh auth login --with-token=ghp_CANARY2aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW".into(),
            "CANARY2aB3d",
        ),
        (
            "git clone https://ghp_CANARY3bC4eF6gH8jK2mN4pQ6sT8vW2yZ4aB@github.com/acme/x".into(),
            "CANARY3bC4e",
        ),
        (
            "curl https://deploy:canary4-pass@registry.example/v2/".into(),
            "canary4-pass",
        ),
        (
            "fetch https://api.example/v1/charges?key=sk_live_CANARY5xxxxxxxxxxxxxxx&limit=3"
                .into(),
            "CANARY5xxxx",
        ),
        (
            "curl -H \"Authorization: Bearer canary6opaque\" https://api.example".into(),
            "canary6opaque",
        ),
        (
            r#"payload {"user":"bob","password":"canary7 with spaces"}"#.into(),
            "canary7",
        ),
        ("mysql --password canary8pw -u root".into(), "canary8pw"),
        (
            "open https://h.example/x?access_token=canary9tok&page=2".into(),
            "canary9tok",
        ),
        (
            "Cookie: sid=canary10cookie; theme=dark\nAccept: */*".into(),
            "canary10cookie",
        ),
        ("PGPASSWORD=canary11pg psql -h db".into(), "canary11pg"),
        (
            "DATABASE_URL=postgres://app:canary12db@db.internal:5432/app".into(),
            "canary12db",
        ),
    ]
}

/// Arguments carrying every [`glued_secrets`] form, secrets used as
/// object keys, an argument list and a name/value pair; `extra` fields
/// on top. The secrets besides the glued ones are returned too.
pub(crate) fn secret_laden_args(extra: Value) -> (Value, Vec<&'static str>) {
    let text: Vec<String> = glued_secrets().into_iter().map(|(t, _)| t).collect();
    let mut args = json!({
        "body": text.join("\n"),
        "ghp_CANARYKEYc4eF6gH8jK2mN4pQ6sT8vW2yZ4a": "a secret used as a key",
        "headers": {"AKIACANARYK7ZX3KW5PM": true},
        "argv": ["deploy", "--api-key", "canary-argv-1"],
        "env": [{"name": "DB_PASSWORD", "value": "canary-env-1"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    let mut secrets: Vec<&'static str> = glued_secrets().into_iter().map(|(_, s)| s).collect();
    secrets.extend([
        "CANARYKEYc4eF",
        "AKIACANARYK7ZX3KW5PM",
        "canary-argv-1",
        "canary-env-1",
    ]);
    (args, secrets)
}

/// Every secret of `secrets` absent from `text`, told by name.
#[track_caller]
pub(crate) fn none_of(secrets: &[&str], text: &str, place: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{s:?} leaked into {place}: {text}");
    }
}

/// Secrets glued to other text, used as object keys, in argument lists
/// and name/value pairs, and an unknown tool named by a secret: none of
/// them reaches the audit trail (its records through the admin API, the
/// store's bytes), through the fast lane and through rmcp alike.
#[tokio::test]
async fn secret_leaks_into_the_audit_trail_are_masked() {
    let (mut gw, ct, _github) = gateway(&Backend::Sqlite.config("")).await;
    let admin = key(&gw, "auditor", &["admin"]);
    let eng = key(&gw, "eng", &["eng"]);
    let (_, secrets) = secret_laden_args(json!({}));
    let mut secrets = secrets;
    secrets.push("CANARYTOOLe6gH");
    for (title, via_rmcp) in [("lane", false), ("rmcp", true)] {
        let s = Session::open(&gw.url, &eng, via_rmcp).await;
        let (args, _) = secret_laden_args(json!({"title": title}));
        assert!(
            s.call("notes__add_note", args).await.is_ok(),
            "{title}: allowed"
        );
        // Refused, its name (the record's target) and error text masked.
        assert!(
            s.call("ghp_CANARYTOOLe6gH8jK2mN4pQ6sT8vW2yZ4aBc", json!({}))
                .await
                .is_err()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let all = loop {
        let all = records(&gw, &admin).await;
        let completed = all
            .iter()
            .filter(|r| r["record"]["kind"] == "completed")
            .count();
        if completed >= 4 {
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let decided = find(&all, "decided", "notes__add_note");
    assert_eq!(decided.len(), 2, "{all:#?}");
    for d in &decided {
        let args = &d["record"]["args"];
        // Still readable around what was hidden.
        let body = args["body"].as_str().unwrap();
        for kept in [
            "aws s3 ls",
            "github.com/acme/x",
            "registry.example/v2/",
            "limit=3",
            "psql -h db",
        ] {
            assert!(body.contains(kept), "{kept:?} lost: {body}");
        }
        assert_eq!(args["argv"][1], "--api-key");
        assert_eq!(args["env"][0]["name"], "DB_PASSWORD");
    }
    assert_eq!(
        all.iter()
            .filter(|r| r["record"]["target"] == "[REDACTED:github-pat-classic]")
            .count(),
        4,
        "the unknown tool's decided and completed records, both paths"
    );
    none_of(&secrets, &Value::Array(all).to_string(), "the admin API");

    gw.shutdown().await;
    let store = Backend::Sqlite.store(&gw).await;
    let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM audit_records")
        .fetch_all(store.pool())
        .await
        .unwrap();
    for (body,) in &bodies {
        none_of(&secrets, body, "a stored record");
    }
    drop(store);
    for file in ["toolgate.db", "toolgate.db-wal"] {
        if let Ok(bytes) = std::fs::read(gw.dir.path().join("data").join(file)) {
            none_of(&secrets, &String::from_utf8_lossy(&bytes), file);
        }
    }
    ct.cancel();
}

/// `args_hash` is keyed by the audit key: a reader of the audit cannot
/// recompute it from guessed arguments (the bare SHA-256 of old records is
/// not it), two gateways with different keys hash the same arguments
/// apart, and the key the gateway keeps beside its store reproduces it.
#[tokio::test]
async fn masked_arguments_cannot_be_guessed_from_args_hash() {
    let args = json!({"title": "h1", "body": "b", "password": "hunter2"});
    let mut hashes = Vec::new();
    for _ in 0..2 {
        let (mut gw, ct, _github) = gateway(&Backend::Sqlite.config("")).await;
        let admin = key(&gw, "auditor", &["admin"]);
        let eng = key(&gw, "eng", &["eng"]);
        let s = Session::open(&gw.url, &eng, false).await;
        assert!(s.call("notes__add_note", args.clone()).await.is_ok());
        let all = records(&gw, &admin).await;
        let hash = find(&all, "decided", "notes__add_note")[0]["record"]["args_hash"]
            .as_str()
            .unwrap()
            .to_string();
        gw.shutdown().await;
        let map = args.as_object().unwrap();
        // A guess with the right password, hashed the old, unkeyed way.
        let bare = toolgate::util::digest::sha256_hex(toolgate::audit::canonical(&args).as_bytes());
        assert!(!hash.contains(&bare), "{hash}");
        assert!(
            hash.starts_with(toolgate::audit::ARGS_HASH_PREFIX),
            "{hash}"
        );
        // The gateway's own key (beside the store, not in it) does.
        let own = SigningKey::load(None, &gw.dir.path().join("data")).unwrap();
        assert_eq!(toolgate::audit::args_hash(&own, map), hash);
        let guessed = json!({"title": "h1", "body": "b", "password": "hunter3"});
        assert_ne!(
            toolgate::audit::args_hash(&own, guessed.as_object().unwrap()),
            hash
        );
        hashes.push(hash);
        ct.cancel();
    }
    assert_ne!(hashes[0], hashes[1], "different keys, different hashes");
}

/// Rewrite the chain from `seq` on as someone with write access to the
/// store would: `edit` that record's body, re-hash it and every later
/// record, and move the head along.
async fn rewrite_from(store: &Store, seq: i64, edit: impl Fn(&str) -> String) {
    let (mut prev,): (String,) =
        sqlx::query_as("SELECT record_hash FROM audit_records WHERE seq = $1")
            .bind(seq - 1)
            .fetch_one(store.pool())
            .await
            .unwrap();
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, body FROM audit_records WHERE seq >= $1 ORDER BY seq")
            .bind(seq)
            .fetch_all(store.pool())
            .await
            .unwrap();
    for (s, body) in rows {
        let body = if s == seq { edit(&body) } else { body };
        let hash = toolgate::audit::chain_hash(&prev, &body);
        sqlx::query(
            "UPDATE audit_records SET body = $1, prev_hash = $2, record_hash = $3 WHERE seq = $4",
        )
        .bind(&body)
        .bind(&prev)
        .bind(&hash)
        .bind(s)
        .execute(store.pool())
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET record_hash = $1 WHERE chain = 'main'")
        .bind(&prev)
        .execute(store.pool())
        .await
        .unwrap();
}

/// `toolgate audit verify` over a store whose first records were written
/// before argument hashes were keyed (bare SHA-256): they verify with the
/// new ones; records after the last signed checkpoint are reported as not
/// yet covered; and a chain rewritten (and re-hashed) from an early record
/// is reported with the range the edit must be in, not only the
/// checkpoint's seq.
#[tokio::test]
async fn audit_verify_over_old_records_an_unsigned_tail_and_a_rewritten_chain() {
    // A data directory as an earlier toolgate left it: five records with
    // bare SHA-256 argument hashes, behind a signed checkpoint.
    let data = tempfile::tempdir().unwrap();
    let old_hash = toolgate::util::digest::sha256_hex(br#"{"title":"old"}"#);
    {
        let store = Store::open(None, data.path()).await.unwrap();
        let key = SigningKey::load(None, data.path()).unwrap();
        let records: Vec<Record> = (0..5)
            .map(|i| {
                let mut r = Record::new(Kind::Decided);
                r.target = Some(format!("notes__add_note-{i}"));
                r.decision = Some("allow");
                r.args_hash = Some(old_hash.clone());
                r.args = Some(json!({"title": "old"}));
                r
            })
            .collect();
        append_now(&store, &records).await.unwrap();
        checkpoint::write(
            store.pool(),
            &key,
            &data.path().join("audit-checkpoints.jsonl"),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let config = format!(
        "data_dir = \"{}\"\n[audit]\ncheckpoint_file = \"{}\"\n",
        data.path().display(),
        data.path().join("audit-checkpoints.jsonl").display()
    );
    let (mut gw, ct, _github) = gateway(&config).await;
    let eng = key(&gw, "eng", &["eng"]);
    let s = Session::open(&gw.url, &eng, false).await;
    assert!(
        s.call("notes__add_note", json!({"title": "new", "body": "b"}))
            .await
            .is_ok()
    );
    gw.shutdown().await;
    let cfg = gw.dir.path().join("toolgate.toml");
    let (ok, out) = verify_cli(&cfg);
    assert!(ok && out.contains("no problems"), "{out}");
    assert!(
        !out.contains("not yet covered"),
        "all signed at shutdown: {out}"
    );
    let store = Store::open(None, data.path()).await.unwrap();
    let hashes: Vec<(String,)> = sqlx::query_as(
        "SELECT json_extract(body, '$.args_hash') FROM audit_records \
         WHERE json_extract(body, '$.args_hash') IS NOT NULL ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        hashes.first().unwrap().0,
        old_hash,
        "old records keep theirs"
    );
    assert!(
        hashes
            .last()
            .unwrap()
            .0
            .starts_with(toolgate::audit::ARGS_HASH_PREFIX),
        "{hashes:?}"
    );
    let (signed_at,): (i64,) = sqlx::query_as("SELECT MAX(seq) FROM audit_checkpoints")
        .fetch_one(store.pool())
        .await
        .unwrap();

    // Records appended while no gateway runs (keys made at the command
    // line): they chain, but no signature covers them yet.
    key(&gw, "later-1", &["eng"]);
    key(&gw, "later-2", &["eng"]);
    let (ok, out) = verify_cli(&cfg);
    assert!(ok, "{out}");
    let tail = format!(
        "records {}..={} are not yet covered by a signed checkpoint (after the last signed checkpoint (seq {signed_at}))",
        signed_at + 1,
        signed_at + 2
    );
    assert!(out.contains(&tail), "{out}");

    // Someone who can write the store rewrites record 7 (a gateway record)
    // and re-hashes everything after it: every record links, only the
    // checkpoint signed at shutdown disagrees, and the edit is placed
    // between the last checkpoint that still matches (the old records')
    // and that one.
    let (before,): (i64,) = sqlx::query_as("SELECT MAX(seq) FROM audit_checkpoints WHERE seq < 7")
        .fetch_one(store.pool())
        .await
        .unwrap();
    rewrite_from(&store, 7, |body| body.replacen('{', "{\"forged\":true,", 1)).await;
    let (ok, out) = verify_cli(&cfg);
    assert!(!ok, "{out}");
    let range = format!("somewhere in {}..={signed_at}", before + 1);
    assert!(
        out.contains(&format!("records were edited {range}"))
            && out.contains(&format!(
                "the signed checkpoint at seq {before} still matches"
            ))
            && out.contains(&format!("first bad seq: {range}")),
        "{out}"
    );
    ct.cancel();
}
