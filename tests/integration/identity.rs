//! Identity (first part): API keys through the gateway, deny by default,
//! RFC 9728 metadata and challenges, tokens never in URLs and never
//! forwarded upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::bad_input::{post, rpc};
use crate::common::*;

/// An echo upstream that keeps every request's headers.
async fn recording_upstream(ct: CancellationToken) -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = StreamableHttpService::new(
        || Ok(Echo::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(ct.child_token()),
    );
    let record = seen.clone();
    let router =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    record.lock().unwrap().push(request.headers().clone());
                    next.run(request)
                },
            ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { ct.cancelled().await })
            .await
            .unwrap();
    });
    (format!("http://{addr}/mcp"), seen)
}

/// `toolgate keys …` against the gateway's config; stdout on success.
fn keys_cli(gw: &Gateway, args: &[&str]) -> String {
    let out = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(gw.dir.path().join("toolgate.toml"))
        .arg("keys")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn initialize(url: &str, key: Option<&str>) -> reqwest::Response {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let mut request = post(url).json(&init);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// A session opened with `key`, then one echo call with it (on the fast
/// lane, or through rmcp when `via_rmcp`); the echoed text.
async fn echo_with(url: &str, key: &str, via_rmcp: bool) -> Result<String, reqwest::StatusCode> {
    let r = initialize(url, Some(key)).await;
    if r.status() != 200 {
        return Err(r.status());
    }
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let send = |body: Value| {
        let mut request = post(url)
            .bearer_auth(key)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25");
        if via_rmcp {
            request = request.header("origin", "http://localhost:1");
        }
        request.json(&body).send()
    };
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .unwrap();
    let r = send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo__echo", "arguments": {"message": "hello"}}}))
    .await
    .unwrap();
    if r.status() != 200 {
        return Err(r.status());
    }
    let v = rpc(r).await;
    Ok(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn api_keys_gate_every_request_and_never_reach_the_upstream() {
    let ct = CancellationToken::new();
    let (url, seen) = recording_upstream(ct.clone()).await;
    let mut gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[auth]\nlocal_without_credentials = false\napi_key_cache_ttl = \"200ms\"",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let base = format!("http://{}", gw.addr);

    // Deny by default, with a challenge pointing at the metadata.
    let r = initialize(&gw.url, None).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer resource_metadata=")
            && challenge.contains("/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    let metadata: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("{base}/mcp"), "{metadata}");
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    // A key from the CLI works on both paths.
    let key = keys_cli(&gw, &["create", "--name", "ci-bot", "--group", "eng"])
        .trim()
        .to_string();
    assert!(key.starts_with("tgk_"), "{key}");
    assert_eq!(echo_with(&gw.url, &key, false).await, Ok("hello".into()));
    assert_eq!(echo_with(&gw.url, &key, true).await, Ok("hello".into()));
    assert!(gw.gateway().fast_lane.calls_taken() >= 1);

    // Wrong keys, other tokens and tokens in the URL are refused.
    let wrong = format!("{}0", &key[..key.len() - 1]);
    let wrong = if wrong == key {
        format!("{}1", &key[..key.len() - 1])
    } else {
        wrong
    };
    let r = initialize(&gw.url, Some(&wrong)).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        initialize(&gw.url, Some("eyJhbGciOiJub25lIn0.e30."))
            .await
            .status(),
        401
    );
    let r = post(&format!("{}?access_token={key}", gw.url))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The upstream never saw the caller's credential.
    for headers in seen.lock().unwrap().iter() {
        assert!(headers.get("authorization").is_none(), "{headers:?}");
        assert!(!format!("{headers:?}").contains("tgk_"), "{headers:?}");
    }

    // Revoked: refused within the cache time.
    keys_cli(&gw, &["revoke", "ci-bot"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        echo_with(&gw.url, &key, false).await,
        Err(reqwest::StatusCode::UNAUTHORIZED)
    );

    // Expired: refused once the time is up.
    let short = keys_cli(&gw, &["create", "--name", "short", "--expires", "1s"])
        .trim()
        .to_string();
    assert_eq!(echo_with(&gw.url, &short, false).await, Ok("hello".into()));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        echo_with(&gw.url, &short, false).await,
        Err(reqwest::StatusCode::UNAUTHORIZED)
    );

    // Last use is written at shutdown at the latest.
    gw.shutdown().await;
    let listed: Value = serde_json::from_str(&keys_cli(&gw, &["list", "--json"])).unwrap();
    let bot = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci-bot")
        .unwrap();
    assert!(bot["last_used_at"].is_i64(), "{listed}");
    assert!(bot["revoked_at"].is_i64(), "{listed}");
    ct.cancel();
}

#[tokio::test]
async fn loopback_callers_without_credentials_are_the_local_user_by_default() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(&[("echo", http_server_toml("echo", &url, ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    assert_eq!(initialize(&gw.url, None).await.status(), 200);
    // A bad credential is still refused: presenting one means checking it.
    assert_eq!(initialize(&gw.url, Some("tgk_bogus")).await.status(), 401);
    gw.shutdown().await;
    ct.cancel();
}

#[test]
fn serving_beyond_loopback_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("toolgate.toml");
    std::fs::write(&cfg, "listen = \"0.0.0.0:0\"\n").unwrap();
    let out = std::process::Command::new(TOOLGATE)
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.local_without_credentials"), "{err}");
}

#[tokio::test]
async fn a_session_belongs_to_the_caller_who_opened_it() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[auth]\nlocal_without_credentials = false",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let alice = keys_cli(&gw, &["create", "--name", "alice"])
        .trim()
        .to_string();
    let mallory = keys_cli(&gw, &["create", "--name", "mallory"])
        .trim()
        .to_string();
    let r = initialize(&gw.url, Some(&alice)).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let call = |key: &str| {
        post(&gw.url)
            .bearer_auth(key)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo__echo", "arguments": {"message": "mine"}}}))
            .send()
    };
    // Someone else's valid key gets the unknown-session answer, on either path.
    assert_eq!(call(&mallory).await.unwrap().status(), 404);
    let v = rpc(call(&alice).await.unwrap()).await;
    assert_eq!(v["result"]["content"][0]["text"], "mine", "{v}");
    gw.shutdown().await;
    ct.cancel();
}
