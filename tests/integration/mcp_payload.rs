//! The payload view of MCP calls, through the real gateway: inspectors
//! (the pipeline's inspect stages) see a `tools/call`'s arguments and its
//! result's text, may rewrite them or refuse the call, and the fast lane
//! yields to the typed path for any call an inspector may rewrite.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::call::{CallError, Inspect, Inspected, Part, Report, Target};
use toolgate::reference::echo::Echo;

use crate::bad_input::{session, tools_call};
use crate::common::*;
use crate::pipeline_hooks::mask_value;

/// What an inspector saw, by stage and kind of part.
type Seen = Arc<Mutex<Vec<String>>>;

/// Masks `secret-123` in results only (so the upstream sees it and the
/// caller does not); may rewrite calls to the server `echo`.
struct MaskResults(Seen);

/// Refuses arguments that say "forbidden" and results that say
/// "classified"; rewrites nothing, so calls may keep the lane.
struct Stopper(Seen);

fn describe(stage: &str, part: &Part<'_>) -> String {
    match part {
        Part::Text(text) => format!("{stage} text {text}"),
        Part::Value(value) => format!("{stage} value {value}"),
        Part::Quoted(value) => format!("{stage} quoted {value}"),
        Part::Object(object) => format!("{stage} object {}", Value::Object((*object).clone())),
    }
}

impl Inspect for MaskResults {
    fn name(&self) -> &str {
        "mask-results"
    }

    fn rewrites(&self, target: &Target<'_>) -> bool {
        target.server().is_some_and(|s| s.name == "echo")
    }

    fn input(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        self.0.lock().unwrap().push(describe("in", &part));
        Ok(())
    }

    fn output(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        self.0.lock().unwrap().push(describe("out", &part));
        match part {
            Part::Text(text) => *text = text.replace("secret-123", "[masked]"),
            Part::Value(value) | Part::Quoted(value) => mask_value(value),
            Part::Object(object) => object.values_mut().for_each(mask_value),
        }
        Ok(())
    }
}

impl Inspect for Stopper {
    fn name(&self) -> &str {
        "stopper"
    }

    fn rewrites(&self, _target: &Target<'_>) -> bool {
        false
    }

    fn input(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        let seen = describe("in", &part);
        self.0.lock().unwrap().push(seen.clone());
        if seen.contains("forbidden") {
            return Err(CallError::Refused {
                by: "stopper".into(),
                reason: "the arguments say forbidden".into(),
            });
        }
        Ok(())
    }

    fn output(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        let seen = describe("out", &part);
        self.0.lock().unwrap().push(seen.clone());
        if seen.contains("classified") {
            return Err(CallError::Refused {
                by: "stopper".into(),
                reason: "the result says classified".into(),
            });
        }
        Ok(())
    }
}

async fn gateway_with(inspector: Arc<dyn Inspect>, url: &str) -> Gateway {
    let servers = [("echo", http_server_toml("echo", url, ""))];
    let gw =
        Gateway::start_inspected(&servers, "", true, &[ALLOW_ALL], |_| {}, vec![inspector]).await;
    gw.wait_ready(&["echo"]).await;
    gw
}

/// A lane-shaped `tools/call` (2025 session, plain params) of `echo__echo`.
async fn echo(gw: &Gateway, sid: &str, id: u64, message: &str) -> Value {
    tools_call(&gw.url, sid, id, "echo__echo", json!({"message": message})).await
}

#[tokio::test]
async fn a_call_an_inspector_may_rewrite_takes_the_typed_path_and_its_result_is_rewritten() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let seen = Seen::default();
    let mut gw = gateway_with(Arc::new(MaskResults(seen.clone())), &url).await;
    let sid = session(&gw.url).await;

    let v = echo(&gw, &sid, 1, "the key is secret-123").await;
    assert_eq!(
        v["result"]["content"][0]["text"], "the key is [masked]",
        "{v}"
    );
    // Not on the lane: its answer could not have been rewritten there.
    assert_eq!(gw.gateway().mcp.fast_lane.calls_taken(), 0);
    // The inspector saw the arguments as an object and the result's text.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&r#"in object {"message":"the key is secret-123"}"#.to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"out text the key is secret-123".to_string()),
        "{seen:?}"
    );
    gw.shutdown().await;
    ct.cancel();
}

#[tokio::test]
async fn a_reading_inspector_keeps_the_lane_and_refuses_in_and_out() {
    let ct = CancellationToken::new();
    let url = http_upstream(Echo::new, ct.clone()).await;
    let seen = Seen::default();
    let mut gw = gateway_with(Arc::new(Stopper(seen.clone())), &url).await;
    let lane = || gw.gateway().mcp.fast_lane.calls_taken();
    let sid = session(&gw.url).await;

    // Nothing to refuse: the lane, the answer as the upstream sent it, and
    // the inspector saw the whole result as one JSON value.
    let v = echo(&gw, &sid, 1, "hello").await;
    assert_eq!(v["result"]["content"][0]["text"], "hello", "{v}");
    assert_eq!(lane(), 1);
    let out = seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.starts_with("out value") && s.contains("hello"));
    assert!(out, "{:?}", seen.lock().unwrap());

    // Refused on the way in: a tool error naming the inspector, and the
    // upstream never called.
    let v = echo(&gw, &sid, 2, "forbidden words").await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("refused by `stopper`"), "{v}");

    // Refused on the way out, on the lane too: the upstream's answer does
    // not reach the caller.
    let v = echo(&gw, &sid, 3, "classified").await;
    assert_eq!(v["result"]["isError"], true, "{v}");
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("the result says classified"), "{v}");
    assert!(!v.to_string().contains("\"classified\""), "{v}");
    assert_eq!(lane(), 3);
    gw.shutdown().await;
    ct.cancel();
}
