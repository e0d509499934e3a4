//! What flows back and forth through the gateway during a call: progress,
//! cancellation, sampling and elicitation, list_changed, timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ProgressToken, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{PeerRequestOptions, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use toolgate::reference::echo::Echo;

use crate::common::*;

/// An upstream whose `hang` tool never answers, and remembers being cancelled.
#[derive(Clone)]
struct Hanging {
    cancelled: Arc<AtomicBool>,
}

impl ServerHandler for Hanging {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "hang",
            "never answers",
            Arc::new(serde_json::Map::new()),
        )]))
    }

    async fn call_tool(
        &self,
        _r: CallToolRequestParams,
        c: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        c.ct.cancelled().await;
        self.cancelled.store(true, Ordering::SeqCst);
        Ok(CallToolResult::success(vec![ContentBlock::text("cancelled")]).into())
    }
}

/// A `Hanging` upstream over HTTP, and the flag it sets when cancelled.
async fn hanging_upstream(ct: &CancellationToken) -> (String, Arc<AtomicBool>) {
    let cancelled = Arc::new(AtomicBool::new(false));
    let seen = cancelled.clone();
    let url = http_upstream(
        move || Hanging {
            cancelled: seen.clone(),
        },
        ct.clone(),
    )
    .await;
    (url, cancelled)
}

#[tokio::test]
async fn progress_is_routed_to_the_caller_with_its_own_token() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(&[("echo", http_server_toml("echo", &url, ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    let (client, heard) = connect(&gw.url).await;

    let mut meta = rmcp::model::RequestMetaObject::new();
    meta.set_progress_token(ProgressToken(rmcp::model::NumberOrString::String(
        "mine".into(),
    )));
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(call(
                "echo__sleep",
                json!({"ms": 60, "steps": 3}),
            ))),
            PeerRequestOptions::no_options().with_meta(meta),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    handle.await_response().await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            heard.progress.lock().unwrap().len() == 3
        })
        .await
    );
    let progress = heard.progress.lock().unwrap().clone();
    assert!(
        progress.iter().all(|p| p.progress_token == token),
        "{progress:?}"
    );
    assert_eq!(
        progress.iter().map(|p| p.progress).collect::<Vec<_>>(),
        [1.0, 2.0, 3.0]
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn cancellation_reaches_the_upstream() {
    let ct = CancellationToken::new();
    let (url, cancelled) = hanging_upstream(&ct).await;
    let mut gw = Gateway::start(&[("slow", http_server_toml("slow", &url, ""))], "").await;
    gw.wait_ready(&["slow"]).await;
    let (client, _) = connect(&gw.url).await;
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(call(
                "slow__hang",
                json!({}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            cancelled.load(Ordering::SeqCst)
        })
        .await,
        "upstream never saw the cancellation"
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn a_hanging_upstream_gets_a_clear_timeout_error() {
    let ct = CancellationToken::new();
    let (url, cancelled) = hanging_upstream(&ct).await;
    let mut gw = Gateway::start(
        &[(
            "slow",
            http_server_toml("slow", &url, "[timeouts]\ncall = \"300ms\""),
        )],
        "",
    )
    .await;
    gw.wait_ready(&["slow"]).await;
    let (client, _) = connect(&gw.url).await;
    let r = client
        .call_tool(call("slow__hang", json!({})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(
        text(&r).contains("upstream `slow` did not answer within 0.3s"),
        "{}",
        text(&r)
    );
    // The upstream is told to stop working on it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            cancelled.load(Ordering::SeqCst)
        })
        .await
    );
    client.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}

/// Returns how many of the calls took the fast lane.
async fn sampling_and_elicitation_round_trip(servers: &[(&str, String)]) -> u64 {
    let mut gw = Gateway::start(servers, "").await;
    gw.wait_ready(&["echo"]).await;
    let (client, heard) = connect(&gw.url).await;
    let r = client
        .call_tool(call(
            "echo__ask_llm",
            json!({"question": "meaning of life?"}),
        ))
        .await
        .unwrap();
    assert_eq!(text(&r), "42", "{r:?}");
    assert_eq!(heard.sampling_requests.load(Ordering::SeqCst), 1);
    // The client's progress on the sampling request went back to the upstream.
    let back = eventually(Duration::from_secs(5), || async {
        let r = client
            .call_tool(call("echo__progress_seen", json!({})))
            .await
            .unwrap();
        text(&r) == "1"
    })
    .await;
    assert!(back, "the caller's progress never reached the upstream");
    // The upstream gives up on a slow answer: the caller is told to stop.
    let r = client
        .call_tool(call(
            "echo__ask_llm_briefly",
            json!({"question": "take your time"}),
        ))
        .await
        .unwrap();
    assert!(text(&r).starts_with("gave up"), "{r:?}");
    let told = eventually(Duration::from_secs(5), || async {
        heard.sampling_cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(told, "the upstream's cancellation never reached the caller");
    let r = client
        .call_tool(call("echo__ask_user", json!({"question": "proceed?"})))
        .await
        .unwrap();
    assert!(
        text(&r).contains("Accept") && text(&r).contains("yes"),
        "{r:?}"
    );
    assert_eq!(heard.elicitations.load(Ordering::SeqCst), 1);
    let lane_calls = gw.gateway().mcp.fast_lane.calls_taken();
    client.cancel().await.unwrap();
    gw.shutdown().await;
    lane_calls
}

#[tokio::test]
async fn sampling_and_elicitation_over_an_http_upstream() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let lane =
        sampling_and_elicitation_round_trip(&[("echo", http_server_toml("echo", &url, ""))]).await;
    // Relayed on the fast lane: requests, progress and cancellation both ways.
    assert!(lane >= 4, "only {lane} calls took the fast lane");
    ct.cancel();
}

#[tokio::test]
async fn sampling_and_elicitation_over_a_stdio_upstream() {
    let lane =
        sampling_and_elicitation_round_trip(&[("echo", stdio_reference_toml("echo", "echo", ""))])
            .await;
    assert_eq!(lane, 0, "stdio upstreams have no fast lane");
}

#[tokio::test]
async fn upstream_list_changed_refreshes_the_catalog_and_reaches_clients() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let mut gw = Gateway::start(&[("echo", http_server_toml("echo", &url, ""))], "").await;
    gw.wait_ready(&["echo"]).await;
    let (client, heard) = connect(&gw.url).await;
    let (watcher, watcher_heard) = connect(&gw.url).await;
    assert!(
        !tool_names(&client)
            .await
            .contains(&"echo__extra".to_string())
    );
    client
        .call_tool(call("echo__add_tool", json!({})))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            watcher_heard.tools_changed.load(Ordering::SeqCst) >= 1
        })
        .await
    );
    assert!(heard.tools_changed.load(Ordering::SeqCst) >= 1);
    assert!(
        tool_names(&watcher)
            .await
            .contains(&"echo__extra".to_string())
    );
    let r = watcher
        .call_tool(call("echo__extra", json!({})))
        .await
        .unwrap();
    assert_eq!(text(&r), "extra");
    client.cancel().await.unwrap();
    watcher.cancel().await.unwrap();
    gw.shutdown().await;
    ct.cancel();
}
