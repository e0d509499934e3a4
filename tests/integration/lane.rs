//! The fast lane (`src/mcp/ingress/lane.rs`): which calls take it, what they get back,
//! and that it follows an upstream through a restart. The passthrough tests
//! run progress, cancellation, timeouts and sampling/elicitation relays over
//! it too (their HTTP upstreams are on the lane).

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::bad_input::{post, rpc, session};
use crate::common::*;

fn echo_call(id: u64, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

#[tokio::test]
async fn plain_calls_take_the_lane_in_json_and_the_rest_take_rmcp() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(&[("echo", http_server_toml("echo", &url, ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    let lane = || gw.gateway().mcp.fast_lane.calls_taken();
    let sid = session(&gw.url).await;
    let send = |body: Value, extra: Option<(&'static str, &'static str)>| {
        let mut request = post(&gw.url)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.json(&body).send()
    };

    // Plain: the lane, answered in JSON, the caller's id kept.
    let r = send(
        echo_call(
            7,
            json!({"name": "echo__echo", "arguments": {"message": "hi"}}),
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 7, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "hi", "{v}");
    assert_eq!(lane(), 1);

    // A progress token still fits the lane; the answer is the same.
    let v = rpc(send(
        echo_call(
            8,
            json!({"name": "echo__echo", "arguments": {"message": "p"}, "_meta": {"progressToken": "t"}}),
        ),
        None,
    )
    .await
    .unwrap())
    .await;
    assert_eq!(v["result"]["content"][0]["text"], "p", "{v}");
    assert_eq!(lane(), 2);

    // Anything more goes to rmcp, with the same answer: other `_meta`, a
    // browser's Origin, a string id.
    let other_meta = echo_call(
        9,
        json!({"name": "echo__echo", "arguments": {"message": "m"}, "_meta": {"trace": "x"}}),
    );
    let v = rpc(send(other_meta, None).await.unwrap()).await;
    assert_eq!(v["result"]["content"][0]["text"], "m", "{v}");
    let with_origin = echo_call(
        10,
        json!({"name": "echo__echo", "arguments": {"message": "o"}}),
    );
    let r = send(with_origin, Some(("origin", "http://localhost:3000")))
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let v = rpc(r).await;
    assert_eq!(v["result"]["content"][0]["text"], "o", "{v}");
    assert_eq!(lane(), 2);

    // A string id is echoed back as a string on the lane.
    let mut call = echo_call(
        0,
        json!({"name": "echo__echo", "arguments": {"message": "s"}}),
    );
    call["id"] = json!("abc");
    let v = rpc(send(call, None).await.unwrap()).await;
    assert_eq!(v["id"], "abc", "{v}");
    assert_eq!(lane(), 3);

    // An unknown session is rmcp's 404, as before.
    let r = post(&gw.url)
        .header("mcp-session-id", "no-such-session")
        .json(&echo_call(
            11,
            json!({"name": "echo__echo", "arguments": {"message": "x"}}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(lane(), 3);

    // An upstream's tool error passes through unchanged.
    let v = rpc(send(
        echo_call(12, json!({"name": "echo__echo", "arguments": {"wrong": 1}})),
        None,
    )
    .await
    .unwrap())
    .await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("missing field `message`"), "{v}");
    assert_eq!(lane(), 4);
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn the_lane_follows_an_upstream_that_restarted() {
    let first = CancellationToken::new();
    let url = http_upstream(Echo::new, first.clone()).await;
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let mut gw = Gateway::start(&[("echo", http_server_toml("echo", &url, ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    let sid = session(&gw.url).await;
    let echo = |message: &'static str| {
        post(&gw.url)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&echo_call(
                1,
                json!({"name": "echo__echo", "arguments": {"message": message}}),
            ))
            .send()
    };
    let v = rpc(echo("before").await.unwrap()).await;
    assert_eq!(v["result"]["content"][0]["text"], "before", "{v}");

    // The upstream goes away and comes back on the same address, knowing
    // none of its old sessions.
    first.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = CancellationToken::new();
    http_upstream_at(&addr, Echo::new, second.clone()).await;
    let back = eventually(Duration::from_secs(15), || async {
        let v = rpc(echo("after").await.unwrap()).await;
        v["result"]["content"][0]["text"] == "after"
    })
    .await;
    assert!(
        back,
        "calls never worked again after the upstream restarted"
    );
    assert!(gw.gateway().mcp.fast_lane.calls_taken() >= 2);
    gw.shutdown().await;
    second.cancel();
}

#[tokio::test]
async fn the_lane_can_be_turned_off() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[("echo", http_server_toml("echo", &url, ""))],
        "[http]\nfast_lane = false",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let sid = session(&gw.url).await;
    let r = post(&gw.url)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&echo_call(
            1,
            json!({"name": "echo__echo", "arguments": {"message": "rmcp"}}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let v = rpc(r).await;
    assert_eq!(v["result"]["content"][0]["text"], "rmcp", "{v}");
    assert_eq!(gw.gateway().mcp.fast_lane.calls_taken(), 0);
    gw.shutdown().await;
    ct.cancel();
}
