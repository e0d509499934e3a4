//! Notification reordering and loss: progress an upstream sends back to
//! back must reach the caller in the order it was sent, every step of it,
//! before the result. Observed on the wire (raw HTTP bodies, raw stdio
//! lines), not through an SDK client that could reorder on its own side;
//! on every path: rmcp's session path and the fast lane (2025-11-25), the
//! stateless era (2026-07-28), stdio upstreams, and `toolgate stdio`.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::bad_input::{post, session};
use crate::common::*;

const CALLS: usize = 40;
const AT_ONCE: usize = 8;
const STEPS: u64 = 10;

/// A call that makes the upstream send `STEPS` progress notifications with
/// nothing between them.
fn params(tool: &str, token: &str) -> Value {
    json!({"name": tool, "arguments": {"ms": 0, "steps": STEPS},
           "_meta": {"progressToken": token}})
}

/// The JSON-RPC messages of a response body (JSON or SSE), in order.
fn messages(body: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

/// Check one call's messages: progress 1..=STEPS under `token`, in order,
/// then the result and nothing after it.
fn check(what: &str, token: &str, messages: &[Value]) {
    let progress: Vec<u64> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .inspect(|m| assert_eq!(m["params"]["progressToken"], token, "{what}: {m}"))
        .map(|m| m["params"]["progress"].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(
        progress,
        (1..=STEPS).collect::<Vec<_>>(),
        "{what}: progress out of order or missing"
    );
    let last = messages.last().unwrap();
    assert!(
        last.get("result").is_some(),
        "{what}: the result is not the last message: {messages:?}"
    );
    assert_ne!(last["result"]["isError"], true, "{what}: {last}");
}

/// `CALLS` calls, `AT_ONCE` at a time, each checked.
async fn calls<F, Fut>(what: &str, call: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (String, Vec<Value>)>,
{
    for batch in (0..CALLS).collect::<Vec<_>>().chunks(AT_ONCE) {
        let done = futures::future::join_all(batch.iter().map(|&i| call(i))).await;
        for (token, messages) in done {
            check(what, &token, &messages);
        }
    }
}

async fn gateway(fast_lane: bool, ct: &CancellationToken) -> Gateway {
    let url = http_upstream(Echo::new, ct.clone()).await;
    let gw = Gateway::start(
        &[
            ("echo", http_server_toml("echo", &url, "")),
            ("secho", stdio_reference_toml("secho", "echo", "")),
        ],
        &format!("[http]\nfast_lane = {fast_lane}"),
    )
    .await;
    gw.wait_ready(&["echo", "secho"]).await;
    gw
}

#[tokio::test]
async fn progress_keeps_its_order_on_2025_sessions() {
    for fast_lane in [false, true] {
        let ct = CancellationToken::new();
        let mut gw = gateway(fast_lane, &ct).await;
        let sid = session(&gw.url).await;
        let lane_before = gw.gateway().mcp.fast_lane.calls_taken();
        for tool in ["echo__sleep", "secho__sleep"] {
            let what = format!("{tool}, fast_lane = {fast_lane}");
            calls(&what, |i| {
                let (url, sid) = (gw.url.clone(), sid.clone());
                async move {
                    let token = format!("t{i}");
                    let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                      "params": params(tool, &token)});
                    let resp = post(&url)
                        .header("mcp-session-id", &sid)
                        .header("mcp-protocol-version", "2025-11-25")
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    (token, messages(&resp.text().await.unwrap()))
                }
            })
            .await;
        }
        // The lane took the HTTP upstream's calls only when it was on.
        let taken = gw.gateway().mcp.fast_lane.calls_taken() - lane_before;
        assert_eq!(taken, if fast_lane { CALLS as u64 } else { 0 });
        gw.shutdown().await;
        ct.cancel();
    }
}

#[tokio::test]
async fn progress_keeps_its_order_for_stateless_2026_callers() {
    let ct = CancellationToken::new();
    let mut gw = gateway(true, &ct).await;
    for tool in ["echo__sleep", "secho__sleep"] {
        calls(tool, |i| {
            let url = gw.url.clone();
            async move {
                let token = format!("m{i}");
                let mut params = params(tool, &token);
                params["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2026-07-28".into();
                params["_meta"]["io.modelcontextprotocol/clientInfo"] =
                    json!({"name": "raw", "version": "1"});
                params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
                let resp = post(&url)
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", tool)
                    .json(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}))
                    .send()
                    .await
                    .unwrap();
                (token, messages(&resp.text().await.unwrap()))
            }
        })
        .await;
    }
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn progress_keeps_its_order_through_toolgate_stdio() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("servers/secho.toml"),
        stdio_reference_toml("secho", "echo", ""),
    )
    .unwrap();
    std::fs::write(dir.path().join("toolgate.toml"), "").unwrap();
    write_policies(dir.path(), &[ALLOW_ALL]);
    let mut stdio = RawStdio::start(dir.path());
    stdio.send(&json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
    .await;
    assert_eq!(stdio.next().await["id"], "init");
    stdio
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    // The upstream is up once its tool is listed.
    let mut listed = false;
    for attempt in 0..100 {
        stdio
            .send(
                &json!({"jsonrpc": "2.0", "id": format!("list{attempt}"), "method": "tools/list"}),
            )
            .await;
        let id = format!("list{attempt}");
        // Notifications (a list change) may come before the answer.
        let list = loop {
            let message = stdio.next().await;
            if message["id"] == id {
                break message;
            }
        };
        if list["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "secho__sleep"))
        {
            listed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed, "secho never came up");
    for batch in (0..CALLS).collect::<Vec<_>>().chunks(AT_ONCE) {
        for &i in batch {
            stdio
                .send(&json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                        "params": params("secho__sleep", &format!("s{i}"))}))
                .await;
        }
        // Interleaved across calls; in order within each.
        let mut heard: HashMap<String, Vec<Value>> = HashMap::new();
        let mut results = 0;
        while results < batch.len() {
            let message = stdio.next().await;
            let token = match message.get("id") {
                Some(id) => {
                    results += 1;
                    format!("s{id}")
                }
                None => message["params"]["progressToken"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            };
            heard.entry(token).or_default().push(message);
        }
        for &i in batch {
            let token = format!("s{i}");
            check("toolgate stdio", &token, &heard[&token]);
        }
    }
    stdio.kill().await;
}
