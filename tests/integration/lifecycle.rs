//! Upstream crash and restart, and graceful shutdown.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_crashed_stdio_upstream_is_restarted_and_its_tools_come_back() {
    let mut gw = Gateway::start(&[("echo", stdio_reference_toml("echo", "echo", ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    let (client, _) = connect(&gw.url).await;
    // The upstream process exits mid-call: the caller gets a readable error.
    let r = client
        .call_tool(call("echo__crash", json!({})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("upstream `echo`"), "{}", text(&r));
    // Restarted with backoff; the tools come back and work.
    let back = eventually(Duration::from_secs(15), || async {
        client
            .call_tool(call("echo__echo", json!({"message": "back"})))
            .await
            .map(|r| text(&r) == "back")
            .unwrap_or(false)
    })
    .await;
    assert!(
        back,
        "upstream never came back: {}",
        gw.gateway().readiness().1
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn resource_subscriptions_survive_an_upstream_restart() {
    let mut gw = Gateway::start(&[("echo", stdio_reference_toml("echo", "echo", ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    let (client, heard) = connect(&gw.url).await;
    #[expect(deprecated, reason = "resources/subscribe is the 2025-11-25 way")]
    client
        .subscribe(rmcp::model::SubscribeRequestParams::new(
            "echo+echo://counter",
        ))
        .await
        .unwrap();
    client
        .call_tool(call("echo__bump", json!({})))
        .await
        .unwrap();
    let updated = || {
        let heard = heard.clone();
        async move { heard.resource_updates.lock().unwrap().len() }
    };
    assert!(eventually(Duration::from_secs(5), || async { updated().await == 1 }).await);
    assert_eq!(
        heard.resource_updates.lock().unwrap()[0],
        "echo+echo://counter"
    );

    // The upstream dies and comes back with no memory of the subscription.
    let _ = client.call_tool(call("echo__crash", json!({}))).await;
    let back = eventually(Duration::from_secs(15), || async {
        client
            .call_tool(call("echo__bump", json!({})))
            .await
            .map(|r| r.is_error != Some(true))
            .unwrap_or(false)
    })
    .await;
    assert!(back, "upstream never came back");
    // toolgate renewed the subscription on the new connection.
    assert!(
        eventually(Duration::from_secs(5), || async { updated().await >= 2 }).await,
        "no resources/updated after the restart"
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish_and_ends_child_processes() {
    let marker = format!("TOOLGATE_TEST_MARKER={}", std::process::id());
    let env = format!(
        "env = {{ TOOLGATE_TEST_MARKER = \"{}\" }}",
        std::process::id()
    );
    let mut gw = Gateway::start(&[("echo", stdio_reference_toml("echo", "echo", &env))], "").await;
    gw.wait_ready(&["echo"]).await;
    assert_eq!(processes_with_env(&marker).len(), 1, "one child upstream");
    let (client, _) = connect(&gw.url).await;
    let slow = tokio::spawn(async move {
        let r = client
            .call_tool(call("echo__sleep", json!({"ms": 800})))
            .await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = gw.server.take().unwrap();
    let gateway = server.gateway.clone();
    let shutdown = tokio::spawn(server.shutdown());
    // New calls are refused while draining.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        gateway.pipeline.admission.enter().err(),
        Some(toolgate::call::NotAdmitted::ShuttingDown)
    );
    let (client, r) = slow.await.unwrap();
    assert_eq!(text(&r.unwrap()), "slept 800 ms", "in-flight call finished");
    shutdown.await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            processes_with_env(&marker).is_empty()
        })
        .await,
        "child still running"
    );
    drop(client);
}
