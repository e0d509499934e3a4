//! The pipeline's hooks for what comes after MCP, on real parts (a SQLite
//! store, the audit trail, the Cedar engine under an allow-all policy) with
//! a test kind of call: a streamed reply is inspected a window at a time and
//! recorded once, when it ends or when its caller drops it; inspectors
//! rewrite input and output, or refuse the call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use toolgate::audit::{Kind, Record};
use toolgate::authorize::{Annotations, Engine, Policies};
use toolgate::call::{
    CallContext, CallError, CallKind, Caller, Inspect, Inspected, NotAdmitted, Part,
    PolicyQuestion, Reply, Report, Target,
};
use toolgate::config::{Config, ServerFacts};
use toolgate::pipeline::{InFlight, Pipeline};
use toolgate::storage::Store;

use crate::common::{ALLOW_ALL, TOOLGATE, write_policies};

type Chunks = mpsc::UnboundedReceiver<Result<String, CallError>>;

/// What the test kind forwards to: a whole answer, or the stream the test
/// feeds; and what it was sent.
#[derive(Default)]
struct Upstream {
    answer: String,
    stream: Mutex<Option<Chunks>>,
    /// The arguments of each call forwarded, as forwarded.
    seen: Mutex<Vec<Map<String, Value>>>,
}

struct ChatInput {
    args: Map<String, Value>,
}

/// A neutral kind of call (a stand-in for a chat completion): its
/// arguments are one payload part, its answer text, each chunk text.
struct Chat;

impl CallKind for Chat {
    const METHOD: &'static str = "test/chat";
    type Input = ChatInput;
    type Target = ServerFacts;
    type Output = String;
    type Chunk = String;
    type Stream = Chunks;
    type Env = Upstream;

    fn subject(_input: &ChatInput) -> &str {
        "chat"
    }

    fn resolve(_env: &Upstream, _input: &ChatInput) -> Result<ServerFacts, CallError> {
        Ok(ServerFacts {
            name: "models".into(),
            ..Default::default()
        })
    }

    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a ServerFacts,
    ) -> Option<PolicyQuestion<'a>> {
        Some(PolicyQuestion {
            target: Target::Tool {
                name: "chat",
                server: target,
                annotations: Annotations::WORST,
                labels: toolgate::config::Labels::NONE,
            },
            args: Some(&ctx.input.args),
            definition_hash: None,
        })
    }

    fn result_bytes(output: &String) -> Option<u64> {
        Some(output.len() as u64)
    }

    fn chunk_bytes(chunk: &String) -> Option<u64> {
        Some(chunk.len() as u64)
    }

    fn input_parts(input: &mut ChatInput, visit: &mut dyn FnMut(Part<'_>)) {
        visit(Part::Object(&mut input.args));
    }

    fn output_parts(output: &mut String, visit: &mut dyn FnMut(Part<'_>)) {
        visit(Part::Text(output));
    }

    fn chunk_parts(chunk: &mut String, visit: &mut dyn FnMut(Option<u64>, Part<'_>)) {
        visit(Some(0), Part::Text(chunk));
    }

    async fn forward(
        env: &Upstream,
        ctx: &CallContext<Self>,
        _target: &ServerFacts,
    ) -> Result<Reply<String, Chunks>, CallError> {
        env.seen.lock().unwrap().push(ctx.input.args.clone());
        match env.stream.lock().unwrap().take() {
            Some(chunks) => Ok(Reply::Stream(chunks)),
            None => Ok(Reply::Done(env.answer.clone())),
        }
    }
}

const SECRET: &str = "secret-123";

/// Masks [`SECRET`] wherever it sees it, in and out; may rewrite calls to
/// the server `models` only.
struct Mask;

fn mask(part: Part<'_>) {
    match part {
        Part::Text(text) => *text = text.replace(SECRET, "[masked]"),
        Part::Value(value) | Part::Quoted(value) => mask_value(value),
        Part::Object(object) => object.values_mut().for_each(mask_value),
    }
}

/// Masks [`SECRET`] in every string of `value` (also used by `mcp_payload`).
pub(crate) fn mask_value(value: &mut Value) {
    match value {
        Value::String(text) => *text = text.replace(SECRET, "[masked]"),
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::Object(object) => object.values_mut().for_each(mask_value),
        _ => {}
    }
}

impl Inspect for Mask {
    fn name(&self) -> &str {
        "mask"
    }

    fn rewrites(&self, target: &Target<'_>) -> bool {
        target.server().is_some_and(|s| s.name == "models")
    }

    fn input(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        mask(part);
        Ok(())
    }

    fn output(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        mask(part);
        Ok(())
    }
}

/// Refuses any call or answer that says "forbidden"; rewrites nothing.
struct Stopper;

fn says_forbidden(part: Part<'_>) -> Result<(), CallError> {
    let text = match part {
        Part::Text(text) => text.clone(),
        Part::Value(value) | Part::Quoted(value) => value.to_string(),
        Part::Object(object) => Value::Object(object.clone()).to_string(),
    };
    if text.contains("forbidden") {
        return Err(CallError::Refused {
            by: "stopper".into(),
            reason: "it says forbidden".into(),
        });
    }
    Ok(())
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
        says_forbidden(part)
    }

    fn output(
        &self,
        _call: &Inspected,
        _at: usize,
        part: Part<'_>,
        _report: &mut Report,
    ) -> Result<(), CallError> {
        says_forbidden(part)
    }
}

/// A pipeline on real parts in a fresh directory, with these inspectors
/// and room for `in_flight` calls.
struct Spine {
    pipeline: Arc<Pipeline>,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn spine(inspectors: Vec<Arc<dyn Inspect>>, in_flight: usize) -> Spine {
    let dir = tempfile::tempdir().unwrap();
    write_policies(dir.path(), &[ALLOW_ALL]);
    let file = dir.path().join("toolgate.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n").unwrap();
    let config = Config::load(Some(&file), TOOLGATE).unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open_configured(&config.storage).await.unwrap();
    let audit = toolgate::app::start_audit(&config, &store).unwrap();
    let policies = Policies::load(&config.policies_dir, 1).unwrap();
    let pipeline = Arc::new(Pipeline {
        policies: Engine::new(policies, config.policies_dir.clone()),
        audit,
        approvals: config.approvals.clone(),
        admission: Arc::new(InFlight::new(in_flight)),
        inspectors,
        flows: Default::default(),
        stream_window: config.llm.stream_window,
    });
    Spine {
        pipeline,
        store,
        _dir: dir,
    }
}

impl Spine {
    async fn call(&self, env: &Upstream, args: Value) -> Result<Reply<String, Watched>, CallError> {
        let Value::Object(args) = args else {
            panic!("arguments are an object")
        };
        let ctx = CallContext::new(Caller::dev(), ChatInput { args }, CancellationToken::new());
        self.pipeline.run::<Chat>(env, ctx).await
    }

    /// The call records in the store, after everything queued before now
    /// is written (the audit writer keeps the order it was given).
    async fn records(&self) -> Vec<Value> {
        self.pipeline
            .audit
            .write(Record::new(Kind::PolicyReload))
            .await
            .unwrap();
        let bodies: Vec<(String,)> = sqlx::query_as("SELECT body FROM audit_records ORDER BY seq")
            .fetch_all(self.store.pool())
            .await
            .unwrap();
        bodies
            .iter()
            .map(|(body,)| serde_json::from_str::<Value>(body).unwrap())
            .filter(|r| r["method"] == Chat::METHOD)
            .collect()
    }

    async fn of_kind(&self, kind: &str) -> Vec<Value> {
        let records = self.records().await;
        records.into_iter().filter(|r| r["kind"] == kind).collect()
    }

    /// The one `completed` record, once it is there (a dropped stream's
    /// record is queued by a task of its own).
    async fn completed(&self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let completed = self.of_kind("completed").await;
            assert!(
                completed.len() <= 1,
                "recorded more than once: {completed:?}"
            );
            if let Some(record) = completed.into_iter().next() {
                return record;
            }
            assert!(tokio::time::Instant::now() < deadline, "never recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

type Watched = toolgate::pipeline::Watched<Chat>;

/// An upstream that streams what the test sends.
fn streaming() -> (Upstream, mpsc::UnboundedSender<Result<String, CallError>>) {
    let (tx, rx) = mpsc::unbounded();
    let upstream = Upstream {
        stream: Mutex::new(Some(rx)),
        ..Default::default()
    };
    (upstream, tx)
}

fn stream(reply: Reply<String, Watched>) -> Watched {
    match reply {
        Reply::Stream(s) => s,
        Reply::Done(d) => panic!("a whole answer: {d}"),
    }
}

#[tokio::test]
async fn a_stream_read_to_the_end_is_recorded_once_after_its_last_chunk() {
    let spine = spine(Vec::new(), 1).await;
    let (upstream, tx) = streaming();
    let mut chunks = stream(spine.call(&upstream, json!({"q": "hi"})).await.unwrap());

    tx.unbounded_send(Ok("Hello".into())).unwrap();
    assert_eq!(chunks.next().await.unwrap().unwrap(), "Hello");
    // Half read: decided, not completed; the call still holds its slot.
    assert_eq!(spine.of_kind("decided").await.len(), 1);
    assert!(spine.of_kind("completed").await.is_empty());
    assert!(matches!(
        spine.call(&Upstream::default(), json!({})).await,
        Err(CallError::NotAdmitted(NotAdmitted::Full(1)))
    ));

    tx.unbounded_send(Ok(", world".into())).unwrap();
    tx.unbounded_send(Ok("!".into())).unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = chunks.next().await {
        rest.push(chunk.unwrap());
    }
    assert_eq!(rest, [", world", "!"]);
    assert!(chunks.next().await.is_none(), "an ended stream stays ended");

    // Recorded by the time the end was seen.
    let completed = spine.of_kind("completed").await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["outcome"], "ok");
    assert_eq!(completed[0]["result_bytes"], "Hello, world!".len());
    drop(chunks);
    // The slot is free again: the next call is admitted.
    let next = spine.call(&Upstream::default(), json!({})).await.unwrap();
    assert!(matches!(next, Reply::Done(_)));
    assert_eq!(spine.of_kind("completed").await.len(), 2);
}

#[tokio::test]
async fn a_stream_its_caller_drops_is_recorded_as_cancelled_and_stopped() {
    let spine = spine(Vec::new(), 1).await;
    let (upstream, tx) = streaming();
    let mut chunks = stream(spine.call(&upstream, json!({})).await.unwrap());
    tx.unbounded_send(Ok("one".into())).unwrap();
    assert_eq!(chunks.next().await.unwrap().unwrap(), "one");
    tx.unbounded_send(Ok("two, never read".into())).unwrap();

    drop(chunks);
    assert!(tx.is_closed(), "the upstream's stream was dropped");
    let completed = spine.completed().await;
    assert_eq!(completed["outcome"], "error");
    assert_eq!(
        completed["error_class"],
        CallError::Cancelled.class(),
        "{completed}"
    );
    // Once only, and the slot is free again.
    spine.call(&Upstream::default(), json!({})).await.unwrap();
    let completed = spine.of_kind("completed").await;
    assert_eq!(completed.len(), 2, "{completed:?}");
}

#[tokio::test]
async fn a_stream_that_fails_midway_is_recorded_once_with_its_error() {
    let spine = spine(Vec::new(), 4).await;
    let (upstream, tx) = streaming();
    let mut chunks = stream(spine.call(&upstream, json!({})).await.unwrap());
    tx.unbounded_send(Ok("partial".into())).unwrap();
    tx.unbounded_send(Err(CallError::UpstreamFailed {
        server: "models".into(),
        reason: "connection reset".into(),
    }))
    .unwrap();
    tx.unbounded_send(Ok("after the error".into())).unwrap();

    assert_eq!(chunks.next().await.unwrap().unwrap(), "partial");
    let e = chunks.next().await.unwrap().unwrap_err();
    assert!(matches!(e, CallError::UpstreamFailed { .. }), "{e}");
    assert!(chunks.next().await.is_none(), "nothing after the error");
    drop(chunks);

    let completed = spine.completed().await;
    assert_eq!(completed["outcome"], "error");
    assert_eq!(completed["error_class"], "upstream/failed");
    assert!(
        completed["error"]
            .as_str()
            .unwrap()
            .contains("connection reset"),
        "{completed}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(spine.of_kind("completed").await.len(), 1);
}

#[tokio::test]
async fn inspectors_rewrite_input_and_output_before_anyone_sees_them() {
    let spine = spine(vec![Arc::new(Mask), Arc::new(Stopper)], 4).await;

    // Input: forwarded and recorded masked; a whole answer masked.
    let upstream = Upstream {
        answer: format!("the key is {SECRET}"),
        ..Default::default()
    };
    let reply = spine
        .call(
            &upstream,
            json!({"note": format!("use {SECRET} please"), "n": 1}),
        )
        .await
        .unwrap();
    let Reply::Done(answer) = reply else {
        panic!("a stream")
    };
    assert_eq!(answer, "the key is [masked]");
    assert_eq!(
        *upstream.seen.lock().unwrap(),
        [json!({"note": "use [masked] please", "n": 1})
            .as_object()
            .unwrap()
            .clone()]
    );
    let decided = spine.of_kind("decided").await;
    assert_eq!(
        decided[0]["args"]["note"], "use [masked] please",
        "{decided:?}"
    );
    let completed = spine.completed().await;
    assert_eq!(completed["outcome"], "ok");
    assert_eq!(completed["result_bytes"], "the key is [masked]".len());

    // A stream is read a window of chunks at a time: a secret split over
    // chunks is masked before any of them is sent; the window's text goes
    // in its first chunk.
    let (upstream, tx) = streaming();
    let mut chunks = stream(spine.call(&upstream, json!({})).await.unwrap());
    tx.unbounded_send(Ok(format!("a {SECRET}"))).unwrap();
    tx.unbounded_send(Ok("the key is secr".into())).unwrap();
    tx.unbounded_send(Ok("et-123, keep it".into())).unwrap();
    drop(tx);
    let mut all = Vec::new();
    while let Some(chunk) = chunks.next().await {
        all.push(chunk.unwrap());
    }
    assert_eq!(all, ["a [masked]the key is [masked], keep it", "", ""]);

    // A window that closed (it waited long enough) is read again with the
    // next: a secret that began in it is masked from where the next starts.
    let (upstream, tx) = streaming();
    let mut chunks = stream(spine.call(&upstream, json!({})).await.unwrap());
    tx.unbounded_send(Ok("key secr".into())).unwrap();
    assert_eq!(chunks.next().await.unwrap().unwrap(), "key secr");
    tx.unbounded_send(Ok("et-123 more".into())).unwrap();
    assert_eq!(chunks.next().await.unwrap().unwrap(), "[masked] more");
    drop(tx);
    assert!(chunks.next().await.is_none());
    let records = spine.records().await;
    assert!(
        records.iter().all(|r| !r.to_string().contains(SECRET)),
        "{records:?}"
    );
}

#[tokio::test]
async fn an_inspector_that_refuses_stops_the_call_and_is_recorded_refused() {
    let spine = spine(vec![Arc::new(Mask), Arc::new(Stopper)], 4).await;

    // Refused on the way in: never forwarded.
    let upstream = Upstream::default();
    let e = spine
        .call(&upstream, json!({"note": "something forbidden"}))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, CallError::Refused { by, .. } if by == "stopper"),
        "{e}"
    );
    assert!(upstream.seen.lock().unwrap().is_empty(), "forwarded");
    let decided = spine.of_kind("decided").await;
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["decision"], "refused");
    assert!(
        decided[0]["reason"].as_str().unwrap().contains("stopper"),
        "{decided:?}"
    );
    let completed = spine.completed().await;
    assert_eq!(completed["outcome"], "refused");
    assert_eq!(completed["error_class"], "caller/refused");
    assert!(
        completed["error"].as_str().unwrap().contains("`stopper`"),
        "{completed}"
    );

    // Refused on the way out: a whole answer, then a stream's chunk.
    let upstream = Upstream {
        answer: "a forbidden answer".into(),
        ..Default::default()
    };
    let e = spine.call(&upstream, json!({})).await.err().unwrap();
    assert!(matches!(e, CallError::Refused { .. }), "{e}");
    let (upstream, tx) = streaming();
    let mut chunks = stream(spine.call(&upstream, json!({})).await.unwrap());
    tx.unbounded_send(Ok("fine".into())).unwrap();
    assert_eq!(chunks.next().await.unwrap().unwrap(), "fine");
    // A refused window is never sent, not even its harmless chunks.
    tx.unbounded_send(Ok("also fine, then ".into())).unwrap();
    tx.unbounded_send(Ok("forbidden".into())).unwrap();
    let e = chunks.next().await.unwrap().unwrap_err();
    assert!(matches!(e, CallError::Refused { .. }), "{e}");
    assert!(chunks.next().await.is_none());
    let completed = spine.of_kind("completed").await;
    let outcomes: Vec<&str> = completed
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "refused", "refused"], "{completed:?}");
}

#[tokio::test]
async fn the_pipeline_rewrites_a_target_when_an_inspector_may() {
    let models = ServerFacts {
        name: "models".into(),
        ..Default::default()
    };
    let other = ServerFacts {
        name: "other".into(),
        ..Default::default()
    };
    let tool = |server| Target::Tool {
        name: "t",
        server,
        annotations: Annotations::WORST,
        labels: toolgate::config::Labels::NONE,
    };
    let none = spine(Vec::new(), 1).await;
    assert!(!none.pipeline.rewrites(&tool(&models)));
    let reading = spine(vec![Arc::new(Stopper)], 1).await;
    assert!(!reading.pipeline.rewrites(&tool(&models)));
    let masking = spine(vec![Arc::new(Stopper), Arc::new(Mask)], 1).await;
    assert!(masking.pipeline.rewrites(&tool(&models)));
    assert!(!masking.pipeline.rewrites(&tool(&other)));
}
