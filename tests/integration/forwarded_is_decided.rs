//! Parser differentials: what the upstream receives must be exactly what
//! the policies, approvals and audit decided on. A message that readers
//! could read differently (a duplicate key, a number out of range, a lone
//! surrogate, nesting past the limit, bytes after the value) is refused
//! before any stage runs, on every path in: the fast lane (2025-11-25
//! sessions), rmcp (2026-07-28 stateless) and `toolgate stdio`. What does
//! parse reaches the upstream as the serialisation of the value decided on.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bad_input::{post, rpc, session};
use crate::common::*;

/// An upstream that keeps the arguments of every call it receives and
/// answers with them.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<JsonObject>>>,
}

impl ServerHandler for Recorder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object"});
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        let mut tool = Tool::new("run", "Run a command.", schema);
        tool.annotations = Some(rmcp::model::ToolAnnotations::from_raw(
            None,
            Some(true),
            None,
            None,
            None,
        ));
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        self.seen.lock().unwrap().push(args.clone());
        Ok(
            CallToolResult::success(vec![ContentBlock::text(Value::Object(args).to_string())])
                .into(),
        )
    }
}

/// Everyone may call `rec__run`, unless its `cmd` removes something.
const POLICY: (&str, &str) = (
    "no-rm",
    "@id(\"call-anything\")\npermit (principal, action, resource);\n\
     @id(\"no-rm\")\n@reason(\"no removing\")\n\
     forbid (principal, action == Action::\"call_tool\", resource)\n\
     when { context.args has cmd && context.args.cmd like \"*rm *\" };\n",
);

/// Bodies that do not parse strictly, each carrying a command the policy
/// forbids somewhere a lenient reader would miss it. `$` marks where the
/// `tools/call` params go.
fn hostile_params() -> Vec<(&'static str, String)> {
    let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
    vec![
        (
            "duplicate argument key",
            r#"{"name":"rec__run","arguments":{"cmd":"rm -rf /","cmd":"ls"}}"#.into(),
        ),
        (
            "duplicate argument key, escaped",
            r#"{"name":"rec__run","arguments":{"cmd":"rm -rf /","c\u006dd":"ls"}}"#.into(),
        ),
        (
            "number out of range",
            r#"{"name":"rec__run","arguments":{"cmd":"rm -rf /","n":1e400}}"#.into(),
        ),
        (
            "integer out of range",
            format!(
                r#"{{"name":"rec__run","arguments":{{"cmd":"rm -rf /","n":1{}}}}}"#,
                "0".repeat(320)
            ),
        ),
        (
            "lone surrogate",
            r#"{"name":"rec__run","arguments":{"cmd":"rm -rf /","s":"\ud800"}}"#.into(),
        ),
        (
            "lone surrogate in a key",
            r#"{"name":"rec__run","arguments":{"cmd":"rm -rf /","\udc00":1}}"#.into(),
        ),
        (
            "nesting past the limit",
            format!(r#"{{"name":"rec__run","arguments":{{"cmd":"rm -rf /","d":{deep}}}}}"#),
        ),
        (
            "duplicate arguments",
            r#"{"name":"rec__run","arguments":{"cmd":"ls"},"arguments":{"cmd":"rm -rf /"}}"#.into(),
        ),
        (
            "duplicate name",
            r#"{"name":"rec__run","name":"rec__run","arguments":{"cmd":"rm -rf /"}}"#.into(),
        ),
    ]
}

/// Whole messages that do not parse strictly (beyond their params).
fn hostile_messages() -> Vec<(&'static str, String)> {
    let mut messages: Vec<(&'static str, String)> = hostile_params()
        .into_iter()
        .map(|(what, params)| {
            (
                what,
                format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{params}}}"#),
            )
        })
        .collect();
    let call = r#"{"name":"rec__run","arguments":{"cmd":"rm -rf /"}}"#;
    messages.push((
        "duplicate params",
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"rec__run","arguments":{{"cmd":"ls"}}}},"params":{call}}}"#
        ),
    ));
    messages.push((
        "duplicate method",
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/list","method":"tools/call","params":{call}}}"#
        ),
    ));
    messages.push((
        "duplicate id",
        format!(r#"{{"jsonrpc":"2.0","id":7,"id":8,"method":"tools/call","params":{call}}}"#),
    ));
    messages.push((
        "a second message after the first",
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"rec__run","arguments":{{"cmd":"ls"}}}}}} {{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{call}}}"#
        ),
    ));
    messages
}

async fn gateway(seen: &Recorder, ct: &CancellationToken) -> Gateway {
    let recorder = seen.clone();
    let url = http_upstream(move || recorder.clone(), ct.clone()).await;
    let gw = Gateway::start_governed(
        &[("rec", http_server_toml("rec", &url, ""))],
        "",
        true,
        &[POLICY],
    )
    .await;
    gw.wait_ready(&["rec"]).await;
    gw
}

/// The modern era's request headers and `_meta` (stateless, so rmcp).
fn modern(url: &str, body: String) -> reqwest::RequestBuilder {
    post(url)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "rec__run")
        .body(body)
}

fn with_modern_meta(message: &str) -> String {
    // The hostile part stays as written: only `_meta` is spliced in after
    // `"params":{`.
    message.replacen(
        r#""params":{"#,
        r#""params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}},"#,
        1,
    )
}

async fn assert_parse_error(resp: reqwest::Response, what: &str) {
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 400, "{what}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
    assert_eq!(v["error"]["code"], -32700, "{what}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Parse error: ") && m.contains("line 1")),
        "{what}: {v}"
    );
}

#[tokio::test]
async fn parser_differentials_are_refused_before_any_stage_on_http() {
    let ct = CancellationToken::new();
    let rec = Recorder::default();
    let mut gw = gateway(&rec, &ct).await;
    let sid = session(&gw.url).await;
    for (what, message) in hostile_messages() {
        // 2025-11-25 session: the fast lane's door.
        let resp = post(&gw.url)
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .body(message.clone())
            .send()
            .await
            .unwrap();
        assert_parse_error(resp, what).await;
        // 2026-07-28 stateless: rmcp's door.
        let resp = modern(&gw.url, with_modern_meta(&message))
            .send()
            .await
            .unwrap();
        assert_parse_error(resp, what).await;
    }
    // Malformed JSON is the same answer (rmcp alone said 415).
    for broken in ["{not json", "", "[", r#"{"jsonrpc":"2.0","id":1,"#] {
        let resp = post(&gw.url).body(broken).send().await.unwrap();
        assert_parse_error(resp, broken).await;
    }
    assert!(
        rec.seen.lock().unwrap().is_empty(),
        "the upstream received {:?}",
        rec.seen.lock().unwrap()
    );

    // The same call, well formed, is decided on what it carries.
    for cmd in ["rm -rf /", "ls"] {
        let resp = post(&gw.url)
            .header("mcp-session-id", &sid)
            .body(
                json!({"jsonrpc":"2.0","id":9,"method":"tools/call",
                    "params":{"name":"rec__run","arguments":{"cmd":cmd}}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        let v = rpc(resp).await;
        let refused = v["result"]["isError"] == true;
        assert_eq!(refused, cmd.starts_with("rm"), "{cmd}: {v}");
    }
    assert_eq!(rec.seen.lock().unwrap().len(), 1);
    // No stage ran for a refused message, so the audit trail holds the two
    // well-formed calls only (a decided and a completed record each).
    let store = gw.gateway().pipeline.audit.store().clone();
    let count = || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM audit_records WHERE body LIKE '%rec__run%'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        n
    };
    let settled = eventually(std::time::Duration::from_secs(5), || async {
        count().await == 4
    })
    .await;
    assert!(settled, "audit records of rec__run: {}", count().await);
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn arguments_that_are_not_an_object_never_reach_the_upstream() {
    let ct = CancellationToken::new();
    let rec = Recorder::default();
    let mut gw = gateway(&rec, &ct).await;
    let sid = session(&gw.url).await;
    for arguments in [
        json!("rm -rf /"),
        json!(["rm -rf /"]),
        json!(1),
        json!(true),
    ] {
        let resp = post(&gw.url)
            .header("mcp-session-id", &sid)
            .body(
                json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
                    "params":{"name":"rec__run","arguments":arguments}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        let v = rpc(resp).await;
        assert_eq!(v["error"]["code"], -32602, "{arguments}: {v}");
    }
    assert!(rec.seen.lock().unwrap().is_empty());
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn the_upstream_receives_the_value_that_was_decided_on() {
    let ct = CancellationToken::new();
    let rec = Recorder::default();
    let mut gw = gateway(&rec, &ct).await;
    let sid = session(&gw.url).await;
    // Spellings that a byte-for-byte relay would pass on as written, and a
    // reader could take differently: escapes, exponents, a big integer,
    // whitespace, -0.
    let raw = r#"{ "cmd" : "l\u0073", "n": 1E2, "big": 123456789012345678901234567890,
                   "f": 0.10000000000000000001, "z": -0, "esc": "\u00e9\ud83d\ude00\/",
                   "nested": {"b": [1, 2.50, {"c": null}]} }"#;
    let decided: Value = serde_json::from_str(raw).unwrap();
    let lane_before = gw.gateway().mcp.fast_lane.calls_taken();
    let message = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"rec__run","arguments":{raw}}}}}"#
    );
    let resp = post(&gw.url)
        .header("mcp-session-id", &sid)
        .body(message.clone())
        .send()
        .await
        .unwrap();
    let v = rpc(resp).await;
    assert_ne!(v["result"]["isError"], true, "{v}");
    assert_eq!(gw.gateway().mcp.fast_lane.calls_taken(), lane_before + 1);
    let resp = modern(&gw.url, with_modern_meta(&message))
        .send()
        .await
        .unwrap();
    let v = rpc(resp).await;
    assert_ne!(v["result"]["isError"], true, "{v}");
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for received in seen {
        assert_eq!(Value::Object(received), decided);
    }
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn parser_differentials_are_refused_on_the_stdio_front_end() {
    let ct = CancellationToken::new();
    let rec = Recorder::default();
    let recorder = rec.clone();
    let url = http_upstream(move || recorder.clone(), ct.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("servers")).unwrap();
    std::fs::write(
        dir.path().join("servers/rec.toml"),
        http_server_toml("rec", &url, ""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("toolgate.toml"),
        "[http]\nmax_body_bytes = 65536\n",
    )
    .unwrap();
    write_policies(dir.path(), &[POLICY]);
    let mut stdio = RawStdio::start(dir.path());
    stdio.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#).await;
    let init = stdio.next_answer().await;
    assert_eq!(init["id"], 1, "{init}");
    stdio
        .send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    for (what, message) in hostile_messages() {
        stdio.send(&message).await;
        let v = stdio.next_answer().await;
        assert_eq!(v["error"]["code"], -32700, "{what}: {v}");
        assert_eq!(v["id"], Value::Null, "{what}: {v}");
    }
    // A line over the limit is answered too, and the session goes on.
    stdio
        .send(&format!(r#"{{"x":"{}"}}"#, "a".repeat(70_000)))
        .await;
    let v = stdio.next_answer().await;
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("65536"),
        "{v}"
    );
    stdio
        .send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .await;
    let v = stdio.next_answer().await;
    assert_eq!(v["id"], 2, "{v}");
    assert!(rec.seen.lock().unwrap().is_empty());
    stdio.kill().await;
    ct.cancel();
}
