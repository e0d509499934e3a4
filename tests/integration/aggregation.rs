//! Listing and calling through the gateway: namespacing, filters, collisions.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;
use toolgate::reference::notes::Notes;

use crate::common::*;

#[tokio::test]
async fn lists_and_calls_http_and_stdio_upstreams_under_namespaced_names() {
    let ct = CancellationToken::new();
    let echo_url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[
            ("echo", http_server_toml("echo", &echo_url, "")),
            ("notes", stdio_reference_toml("notes", "notes", "")),
        ],
        "",
    )
    .await;
    gw.wait_ready(&["echo", "notes"]).await;
    let (client, _) = connect(&gw.url).await;

    let names = tool_names(&client).await;
    for n in [
        "echo__echo",
        "echo__sleep",
        "notes__add_note",
        "notes__delete_note",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| toolgate::mcp::catalog::valid_tool_name(n))
    );

    let r = client
        .call_tool(call("echo__echo", json!({"message": "hi"})))
        .await
        .unwrap();
    assert_eq!(text(&r), "hi");
    let r = client
        .call_tool(call(
            "notes__add_note",
            json!({"title": "t1", "body": "hello"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(false), "{r:?}");

    // Resources and prompts are namespaced and routed too.
    // The new note arrives through the upstream's resources/list_changed.
    let listed = eventually(Duration::from_secs(5), || async {
        client
            .list_all_resources()
            .await
            .unwrap()
            .iter()
            .any(|r| r.uri == "notes+note://t1")
    })
    .await;
    assert!(listed, "note resource never listed");
    let read = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "notes+note://t1",
        ))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { uri, text, .. } = &read.contents[0]
    else {
        panic!("text")
    };
    assert_eq!((uri.as_str(), text.as_str()), ("notes+note://t1", "hello"));
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "notes+note://{title}")
    );
    let prompts = client.list_all_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p.name == "notes__summarize_notes"));
    let prompt = client
        .get_prompt(rmcp::model::GetPromptRequestParams::new(
            "notes__summarize_notes",
        ))
        .await
        .unwrap();
    assert!(format!("{prompt:?}").contains("hello"));

    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn prefix_override_filters_and_collisions() {
    let ct = CancellationToken::new();
    let url_a = http_upstream(Echo::new, ct.clone()).await;
    let url_b = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(
        &[
            // Both keep upstream names: `echo` collides.
            (
                "a",
                http_server_toml(
                    "a",
                    &url_a,
                    "prefix = \"\"\n[tools]\ndeny = [\"crash\", \"sleep\"]",
                ),
            ),
            (
                "b",
                http_server_toml(
                    "b",
                    &url_b,
                    "prefix = \"\"\n[tools]\nallow = [\"echo\", \"fail\"]",
                ),
            ),
        ],
        "",
    )
    .await;
    gw.wait_ready(&["a", "b"]).await;
    let (client, _) = connect(&gw.url).await;
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"echo".to_string()) && names.contains(&"fail".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"crash".to_string()) && !names.contains(&"sleep".to_string()),
        "filtered: {names:?}"
    );
    assert_eq!(names.iter().filter(|n| *n == "echo").count(), 1);

    // The collision is reported, naming both servers; `a` (first by name) keeps `echo`.
    let (_, body) = gw.gateway().readiness();
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("tool `echo` collides with the same name from server `a`"),
        "{problems}"
    );
    assert!(problems.contains("\"server\":\"b\""), "{problems}");
    let entry = gw
        .gateway()
        .mcp
        .catalog()
        .tool("echo")
        .map(|e| e.route.server.to_string());
    assert_eq!(entry.as_deref(), Some("a"));

    // A filtered tool is as unknown as a tool that never existed.
    let denied = client
        .call_tool(call("crash", json!({})))
        .await
        .unwrap_err()
        .to_string();
    let unknown = client
        .call_tool(call("no_such_tool", json!({})))
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("Unknown tool: crash"), "{denied}");
    assert!(unknown.contains("Unknown tool: no_such_tool"), "{unknown}");

    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn unreachable_upstream_does_not_stop_the_gateway() {
    let ct = CancellationToken::new();
    let echo_url = http_upstream(Echo::new, ct.clone()).await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut gw = Gateway::start(
        &[
            ("echo", http_server_toml("echo", &echo_url, "")),
            (
                "dead",
                http_server_toml(
                    "dead",
                    &format!("http://{dead}/mcp"),
                    "[timeouts]\nconnect = \"2s\"",
                ),
            ),
        ],
        "",
    )
    .await;
    gw.wait_ready(&["echo"]).await;
    let readyz = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
    let body: serde_json::Value = readyz.json().await.unwrap();
    let dead_entry = body["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "dead")
        .unwrap()
        .clone();
    // The public /readyz says the state; why is for admins.
    assert_eq!(dead_entry["health"]["state"], "down", "{body}");
    assert!(dead_entry["health"].get("reason").is_none(), "{body}");
    let (_, detail) = gw.gateway().readiness();
    let dead_detail = detail["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "dead")
        .unwrap()
        .clone();
    assert!(
        dead_detail["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{detail}"
    );

    let (client, _) = connect(&gw.url).await;
    let names = tool_names(&client).await;
    assert!(
        names.iter().all(|n| !n.starts_with("dead__")) && names.contains(&"echo__echo".to_string())
    );
    let r = client
        .call_tool(call("echo__echo", json!({"message": "still here"})))
        .await
        .unwrap();
    assert_eq!(text(&r), "still here");
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn notes_reference_upstream_over_http_too() {
    let ct = CancellationToken::new();
    let url = http_upstream(Notes::new, ct.clone()).await;
    let mut gw = Gateway::start(&[("notes", http_server_toml("notes", &url, ""))], "").await;
    gw.wait_ready(&["notes"]).await;
    let (client, _) = connect(&gw.url).await;
    let r = client
        .call_tool(call("notes__read_note", json!({"title": "missing"})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("no note titled"));
    let listed = tokio::time::timeout(Duration::from_secs(5), client.list_all_tools())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 4);
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}
