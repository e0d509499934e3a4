//! Bad input gets a clear answer, never a hang or a crash. Also: the other
//! two ways in (stdio, and the stateless 2026-07-28 era).

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::common::*;

const ACCEPT: &str = "application/json, text/event-stream";

async fn gateway() -> (Gateway, CancellationToken) {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[http]\nmax_body_bytes = 4096",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    (gw, ct)
}

pub(crate) fn post(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
}

/// The JSON-RPC message in a JSON or SSE body.
pub(crate) async fn rpc(resp: reqwest::Response) -> Value {
    let body = resp.text().await.unwrap();
    if let Ok(v) = serde_json::from_str(&body) {
        return v;
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some() || v.get("error").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC message in {body}"))
}

/// A plain 2025 `tools/call` in session `sid`; the JSON-RPC response.
pub(crate) async fn tools_call(url: &str, sid: &str, id: u64, tool: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    let response = post(url)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body)
        .send()
        .await
        .unwrap();
    rpc(response).await
}

pub(crate) async fn session(url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let resp = post(url).json(&init).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    post(url)
        .header("mcp-session-id", &sid)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    sid
}

#[tokio::test]
async fn malformed_json_rpc_is_a_parse_error() {
    let (mut gw, ct) = gateway().await;
    let resp = post(&gw.url).body("{not json").send().await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    // rmcp answers 415 "fail to deserialize request body: …" before any handler runs.
    assert!(status.is_client_error(), "{status} {body}");
    assert!(
        body.contains("deserialize") || body.contains("-32700"),
        "{status} {body}"
    );
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn unknown_method_and_unknown_tool() {
    let (mut gw, ct) = gateway().await;
    let sid = session(&gw.url).await;
    let headers = |b: reqwest::RequestBuilder| {
        b.header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
    };
    let v = rpc(headers(post(&gw.url))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/frobnicate"}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(v["error"]["code"], -32601, "{v}");
    let v = rpc(headers(post(&gw.url))
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo__nope", "arguments": {}}}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: echo__nope"),
        "{v}"
    );
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (mut gw, ct) = gateway().await;
    let sid = session(&gw.url).await;
    let big = "x".repeat(8192);
    let resp = post(&gw.url)
        .header("mcp-session-id", &sid)
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo__echo", "arguments": {"message": big}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Just under the limit still works.
    let ok = "x".repeat(3000);
    let v = rpc(post(&gw.url)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo__echo", "arguments": {"message": ok}}}))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(
        v["result"]["content"][0]["text"].as_str().map(str::len),
        Some(3000),
        "{v}"
    );
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn bad_host_and_bad_origin_are_403() {
    let (mut gw, ct) = gateway().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let resp = post(&gw.url)
        .header("host", "evil.example:80")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "DNS rebinding: foreign Host");
    let resp = post(&gw.url)
        .header("origin", "https://evil.example")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "cross-site Origin");
    let resp = post(&gw.url)
        .header("origin", format!("http://localhost:{}", gw.addr.port()))
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a local page is allowed");
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn invalid_config_names_file_and_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("toolgate.toml"),
        "listen = \"127.0.0.1:0\"\nlisen = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("servers/bad.toml"),
        "transport = \"stdio\"\nargs = [\"x\"]\n",
    )
    .unwrap();
    for cmd in ["check", "serve"] {
        let out = std::process::Command::new(TOOLGATE)
            .arg("--config")
            .arg(dir.path().join("toolgate.toml"))
            .arg(cmd)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("toolgate.toml: `lisen`: unknown key"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("bad.toml: `command`: required for transport = \"stdio\""),
            "{cmd}: {err}"
        );
        assert!(err.contains("2 configuration errors"), "{cmd}: {err}");
    }
}

#[tokio::test]
async fn stateless_2026_07_28_clients_list_and_call() {
    let (mut gw, ct) = gateway().await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let req = |id: u32, method: &str, params: Value| {
        let mut params = params;
        params["_meta"] = meta.clone();
        post(&gw.url)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    };
    let resp = req(1, "tools/list", json!({})).send().await.unwrap();
    assert!(
        resp.headers().get("mcp-session-id").is_none(),
        "stateless: no session"
    );
    let v = rpc(resp).await;
    let tools = v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(tools.iter().any(|t| t["name"] == "echo__echo"));
    let resp = req(
        2,
        "tools/call",
        json!({"name": "echo__echo", "arguments": {"message": "modern"}}),
    )
    .header("mcp-name", "echo__echo")
    .send()
    .await
    .unwrap();
    let v = rpc(resp).await;
    assert_eq!(v["result"]["content"][0]["text"], "modern", "{v}");
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn stdio_front_end_lists_and_calls() {
    use rmcp::ServiceExt;
    use rmcp::transport::TokioChildProcess;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("servers/clock.toml"),
        stdio_reference_toml("clock", "clock", ""),
    )
    .unwrap();
    std::fs::write(dir.path().join("toolgate.toml"), "").unwrap();
    write_policies(dir.path(), &[ALLOW_ALL]);
    let mut cmd = tokio::process::Command::new(TOOLGATE);
    cmd.arg("--config")
        .arg(dir.path().join("toolgate.toml"))
        .arg("stdio");
    let client = TestClient::default()
        .serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap();
    let ok = eventually(std::time::Duration::from_secs(10), || async {
        client
            .list_all_tools()
            .await
            .map(|t| t.iter().any(|t| t.name == "clock__weekday"))
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "clock tools never listed over stdio");
    let r = client
        .call_tool(call("clock__weekday", json!({"date": "2026-11-23"})))
        .await
        .unwrap();
    assert_eq!(text(&r), "Monday");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sessions_are_bounded_and_a_closed_one_frees_its_place() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[http]\nmax_sessions = 2",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let (a, _) = connect(&gw.url).await;
    let (b, _) = connect(&gw.url).await;
    use rmcp::ServiceExt;
    let third = TestClient::default()
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            gw.url.clone(),
        ))
        .await;
    let err = third.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("too many sessions"),
        "third session admitted: {err}"
    );
    a.cancel().await.unwrap();
    // Closing `a` frees its place (closed sessions are pruned at the bound).
    let admitted = eventually(std::time::Duration::from_secs(5), || async {
        TestClient::default()
            .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
                gw.url.clone(),
            ))
            .await
            .is_ok()
    })
    .await;
    assert!(admitted);
    b.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[test]
fn a_busy_listen_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("toolgate.toml"),
        format!("listen = \"{addr}\"\n"),
    )
    .unwrap();
    write_policies(dir.path(), &[ALLOW_ALL]);
    let out = std::process::Command::new(TOOLGATE)
        .arg("--config")
        .arg(dir.path().join("toolgate.toml"))
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"),
        "{err}"
    );
}

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_are_refused_clearly() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        "max_in_flight_calls = 1",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let (client, _) = connect(&gw.url).await;
    let (other, _) = connect(&gw.url).await;
    let slow = tokio::spawn(async move {
        let r = client
            .call_tool(call("echo__sleep", json!({"ms": 600})))
            .await;
        (client, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = other
        .call_tool(call("echo__echo", json!({"message": "x"})))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).contains("limit of 1 calls in flight"),
        "{}",
        text(&refused)
    );
    let (client, r) = slow.await.unwrap();
    assert_eq!(text(&r.unwrap()), "slept 600 ms");
    // With the slot free again, calls go through.
    let ok = other
        .call_tool(call("echo__echo", json!({"message": "x"})))
        .await
        .unwrap();
    assert_eq!(text(&ok), "x");
    client.cancel().await.unwrap();
    other.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}
