//! The fast lane: `tools/call` from a 2025-11-25 session to an HTTP upstream,
//! forwarded as JSON without rmcp's per-message tasks and channels.
//!
//! rmcp serves the virtual server (sessions, lists, every other method) and
//! stays the reference for what a request means. But a tool call on its
//! streamable HTTP stack costs about four times what the call costs the
//! upstream itself: a session worker, a service task, typed
//! (de)serialisation and an SSE stream on each side. A gateway in front of
//! fast tools must not cost more than the tools, so the commonest request
//! takes this lane instead — and only when nothing about it needs more than
//! JSON in and JSON out:
//!
//! - a POST with a JSON body that is one `tools/call` request whose params
//!   are just `name`, `arguments` and perhaps a progress token (no task, no
//!   other `_meta`, no per-request protocol version),
//! - on an existing session (`Mcp-Session-Id`), with a 2025 protocol
//!   version, an allowed `Host`, no `Origin` and no other `Mcp-*` header,
//! - for a tool whose upstream is reached over plain HTTP (the lane shares
//!   the rmcp link's upstream session; see [`link`]).
//!
//! Anything else goes to rmcp unchanged, which also answers every malformed
//! request. The call itself runs through the same [`crate::pipeline`] as every
//! other call ([`LaneToolCall`]). What the upstream sends while the call
//! runs is not lost: its server-to-client requests (sampling, elicitation,
//! roots) and notifications go to the caller on the call's own response
//! stream (the response turns from JSON into SSE for that), and the
//! caller's answers come back through [`FastLane::intercept`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use rmcp::model::ErrorData;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod link;
mod sse;

use link::LinkResult;
pub use link::{LaneLink, SessionSpy};

use crate::call::{
    CallContext, CallError, CallKind, Caller, Confirmation, NoStream, PolicyQuestion, Reply,
};
use crate::mcp::calls::UpstreamTarget;
use crate::mcp::ingress::confirm::{self, Back};
use crate::mcp::ingress::context;
use crate::mcp::ingress::errors::{self, ToolAnswer};
use crate::mcp::jsonrpc::{self, Id, Typed};
use crate::mcp::state::McpState;
use crate::mcp::upstream::Upstream;
use crate::util::sync::LockExt;

/// Messages (relayed requests, notifications) queued for one caller's
/// response stream; the upstream's stream is not read while it is full.
const OUT_QUEUE: usize = 16;
/// Longest a session may go without rmcp hearing of it; fast-lane traffic
/// tells rmcp the session is in use at least this often, so its idle timer
/// (5 minutes) only ends sessions nobody uses.
const SESSION_TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Ids of server-to-client requests relayed on the fast lane start with
/// this; rmcp numbers its own, so they never collide.
const RELAY_ID_PREFIX: &str = "toolgate-relay-";

const LEGACY_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The fast lane's shared state: calls in flight (for the caller's
/// `notifications/cancelled`), relayed requests awaiting the caller's
/// answer, and when each session last told rmcp it is alive.
pub struct FastLane {
    sessions: Arc<LocalSessionManager>,
    calls: Mutex<HashMap<(Arc<str>, String), CancellationToken>>,
    relays: Mutex<HashMap<String, Relay>>,
    touched: Mutex<HashMap<Arc<str>, Instant>>,
    next_relay: AtomicU64,
    taken: AtomicU64,
}

/// A server-to-client request relayed to a caller, by its relay id.
struct Relay {
    /// The caller's session: only it may answer.
    session: Arc<str>,
    /// Where the caller's answer goes; taken when it comes.
    answer: Option<oneshot::Sender<Bytes>>,
    /// Where the caller's progress on it goes, if the upstream asked for
    /// progress: the upstream, the upstream session and its own token.
    progress_back: Option<(Arc<Upstream>, HeaderValue, Box<RawValue>)>,
}

/// What the call sends to the caller's response.
pub(super) enum Out {
    /// A message before the result (a relayed request, a notification).
    Message(Bytes),
    /// The JSON-RPC response; the last thing sent.
    Final(Bytes),
}

impl FastLane {
    pub fn new(sessions: Arc<LocalSessionManager>) -> Self {
        Self {
            sessions,
            calls: Mutex::default(),
            relays: Mutex::default(),
            touched: Mutex::default(),
            next_relay: AtomicU64::new(1),
            taken: AtomicU64::new(0),
        }
    }

    /// Calls that took the fast lane so far.
    pub fn calls_taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> Arc<LocalSessionManager> {
        self.sessions.clone()
    }

    /// Take the request if it belongs on the fast lane and answer it;
    /// `None` hands it to rmcp. `message` is the body, already parsed
    /// strictly (see [`crate::mcp::ingress`]): what the lane forwards is
    /// serialised from it, never the caller's bytes.
    pub async fn intercept(
        mcp: &Arc<McpState>,
        parts: &http::request::Parts,
        body: &Bytes,
        message: Value,
    ) -> Option<Response<Body>> {
        let lane = &mcp.fast_lane;
        if !mcp.config.http.fast_lane
            || parts.method != http::Method::POST
            || !eligible_headers(mcp, &parts.headers)
        {
            return None;
        }
        let session: Arc<str> = parts.headers.get("mcp-session-id")?.to_str().ok()?.into();
        let Value::Object(mut message) = message else {
            return None;
        };
        let method = match message.get("method") {
            Some(Value::String(m)) => Some(m.as_str()),
            Some(_) => return None,
            None => None,
        };
        match (method, message.contains_key("id")) {
            (Some("tools/call"), true) => {
                let id = message.remove("id")?;
                // Anything rmcp would refuse (a non-object `arguments`,
                // fields the lane does not carry) goes to rmcp, which
                // answers it.
                let params = CallParams::deserialize(message.remove("params")?).ok()?;
                let arguments = match params.arguments {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(arguments)) => Some(arguments),
                    Some(_) => return None,
                };
                if !has_lane(mcp, &params.name) {
                    return None;
                }
                if !lane.sessions.has_session(&session).await.ok()? {
                    return None; // rmcp answers 404
                }
                let caller = parts.extensions.get::<Caller>()?.clone();
                lane.touch(&session, mcp.config.http.max_sessions).await;
                lane.taken.fetch_add(1, Ordering::Relaxed);
                let progress_token = match params.meta.and_then(|m| m.progress_token) {
                    Some(token) => Some(serde_json::value::to_raw_value(&token).ok()?),
                    None => None,
                };
                let (out, rx) = mpsc::channel(OUT_QUEUE);
                let input = LaneInput {
                    name: params.name,
                    arguments,
                    progress_token,
                    out,
                    session,
                };
                Some(
                    call(
                        mcp.clone(),
                        caller,
                        &parts.headers,
                        id.to_string(),
                        input,
                        rx,
                    )
                    .await,
                )
            }
            (Some("notifications/cancelled"), false) => {
                // Keyed by the id as serialised from the strict value, as
                // the call was.
                let request_id = message.get("params")?.get("requestId")?;
                let key = (session, request_id.to_string());
                let token = lane.lock_calls().get(&key).cloned()?;
                token.cancel();
                Some(accepted())
            }
            (Some("notifications/progress"), false) => {
                // The caller's progress on a request relayed on the lane.
                let token = message.get("params")?.get("progressToken")?.as_str()?;
                let (upstream, lane_session, upstream_token) = {
                    let relays = lane.lock_relays();
                    let relay = relays.get(token).filter(|r| r.session == session)?;
                    let (u, s, t) = relay.progress_back.as_ref()?;
                    (u.clone(), s.clone(), t.get().to_string())
                };
                let link = upstream.lane()?;
                let notification = with_param(body, "progressToken", &upstream_token).ok()?;
                link.notify(&lane_session, notification).await;
                Some(accepted())
            }
            (None, true) => {
                let id = message.get("id")?.as_str()?;
                let answer = lane
                    .lock_relays()
                    .get_mut(id)
                    .filter(|r| r.session == session)?
                    .answer
                    .take()?;
                // The caller's answer as it sent it (it parsed strictly);
                // the upstream's id is put back before it goes on.
                let _ = answer.send(body.clone());
                Some(accepted())
            }
            _ => None,
        }
    }

    /// A fresh id for a request relayed to a caller.
    fn new_relay_id(&self) -> String {
        format!(
            "{RELAY_ID_PREFIX}{}",
            self.next_relay.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Expect the caller of `session` to answer relay `relay_id`.
    fn register(
        &self,
        relay_id: &str,
        session: Arc<str>,
        progress_back: Option<(Arc<Upstream>, HeaderValue, Box<RawValue>)>,
    ) {
        self.lock_relays().insert(
            relay_id.to_string(),
            Relay {
                session,
                answer: None,
                progress_back,
            },
        );
    }

    /// The caller's answer to relay `relay_id`, `None` if it never comes.
    /// Set up at once (an answer arriving before this is awaited is kept);
    /// the relay is forgotten when the wait ends, answered or not.
    fn answer_to(&self, relay_id: String) -> impl Future<Output = Option<Bytes>> + '_ {
        let (tx, rx) = oneshot::channel();
        if let Some(relay) = self.lock_relays().get_mut(&relay_id) {
            relay.answer = Some(tx);
        }
        let forget = Forget(self, relay_id);
        async move {
            let _forget = forget;
            rx.await.ok()
        }
    }

    fn lock_relays(&self) -> std::sync::MutexGuard<'_, HashMap<String, Relay>> {
        self.relays.locked()
    }

    fn lock_calls(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(Arc<str>, String), CancellationToken>> {
        self.calls.locked()
    }

    /// Keep rmcp's idle timer from ending a session used only on this lane:
    /// at most once a minute, hand rmcp a harmless message for it (a
    /// cancellation of a request that does not exist).
    async fn touch(&self, session: &Arc<str>, max_sessions: usize) {
        let now = Instant::now();
        {
            let mut touched = self.touched.locked();
            match touched.get_mut(session) {
                Some(at) if now.duration_since(*at) < SESSION_TOUCH_EVERY => return,
                Some(at) => *at = now,
                None => {
                    // Sessions end without telling us: at the session limit,
                    // forget those not seen for a while (one still in use
                    // comes back on its next call, well within rmcp's 5
                    // minutes).
                    if touched.len() >= max_sessions {
                        touched.retain(|_, at| now.duration_since(*at) < 2 * SESSION_TOUCH_EVERY);
                    }
                    // Hard bound, for a flood of short sessions.
                    if touched.len() >= 2 * max_sessions {
                        return;
                    }
                    touched.insert(session.clone(), now);
                    return;
                }
            }
        }
        let nothing = cancelled("toolgate-keepalive", Some("keep-alive"));
        if let Ok(message) = serde_json::from_slice(&nothing) {
            let _ = self.sessions.accept_message(session, message).await;
        }
    }
}

/// Host, Origin, Accept, Content-Type and protocol headers allow the lane;
/// anything unusual is left to rmcp, which checks it properly.
fn eligible_headers(mcp: &McpState, headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, part: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(part))
    };
    let version_ok = headers
        .get("mcp-protocol-version")
        .is_none_or(|v| LEGACY_VERSIONS.iter().any(|l| v.as_bytes() == l.as_bytes()));
    let other_mcp_headers = headers.keys().any(|k| {
        let k = k.as_str();
        k.starts_with("mcp-") && k != "mcp-session-id" && k != "mcp-protocol-version"
    });
    version_ok
        && !other_mcp_headers
        && !headers.contains_key(header::ORIGIN)
        && has(header::ACCEPT, "application/json")
        && has(header::ACCEPT, "text/event-stream")
        && crate::mcp::ingress::is_json(headers)
        && host_allowed(headers, &mcp.config.http.allowed_hosts)
}

/// The same rule rmcp applies: a listed host without a port allows any
/// port; with a port, only that one. Unparseable means "let rmcp say no".
fn host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let parse = |s: &str| {
        if s.matches(':').count() > 1 && !s.starts_with('[') {
            return Some((s.to_ascii_lowercase(), None)); // a bare IPv6 address
        }
        let a = http::uri::Authority::try_from(s).ok()?;
        let host = a.host().trim_start_matches('[').trim_end_matches(']');
        Some((host.to_ascii_lowercase(), a.port_u16()))
    };
    let Some((host, port)) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(parse)
    else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|a| parse(a))
        .any(|(h, p)| h == host && p.is_none_or(|p| Some(p) == port))
}

fn has_lane(mcp: &McpState, name: &str) -> bool {
    let catalog = mcp.catalog();
    catalog
        .tool(name)
        .and_then(|entry| mcp.upstream(&entry.route.server))
        .is_some_and(|upstream| upstream.lane().is_some())
}

fn accepted() -> Response<Body> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Body::empty())
        .expect("valid response")
}

/// A JSON-RPC message, looked at only as far as routing needs.
#[derive(Deserialize)]
pub(super) struct Message<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<&'a str>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
}

/// `tools/call` params the lane takes: nothing but these (any other
/// field, or `_meta` key, sends the call to rmcp).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallParams {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default, rename = "_meta")]
    meta: Option<CallMeta>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallMeta {
    progress_token: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProgressParams<'a> {
    #[serde(borrow)]
    pub progress_token: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelParams<'a> {
    #[serde(borrow)]
    pub request_id: &'a RawValue,
}

/// The params of the `notifications/progress` the lane sends a caller.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressNote<'a> {
    progress_token: &'a RawValue,
    progress: u32,
    message: &'a str,
}

/// `notifications/cancelled` for `request_id`, with `reason` if given.
pub(super) fn cancelled<I: Serialize + ?Sized>(request_id: &I, reason: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct CancelNote<'a, I: ?Sized> {
        request_id: &'a I,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    }
    let params = CancelNote { request_id, reason };
    jsonrpc::notification("notifications/cancelled", &Typed(&params))
}

/// What a lane call carries through the pipeline.
pub struct LaneInput {
    name: String,
    /// The arguments, parsed strictly: what policies, approvals and the
    /// audit see, and (serialised) what the upstream receives.
    pub(super) arguments: Option<Map<String, Value>>,
    /// The caller's progress token, if it wants progress.
    pub(super) progress_token: Option<Box<RawValue>>,
    /// The caller's response stream, for what the upstream sends meanwhile.
    pub(super) out: mpsc::Sender<Out>,
    session: Arc<str>,
}

impl LaneInput {
    /// Tell the caller how the call is going, if it asked for progress:
    /// the response becomes a stream; a full one skips a beat.
    pub(crate) fn progress(&self, step: u32, message: &str) {
        if let Some(token) = &self.progress_token {
            let params = ProgressNote {
                progress_token: token,
                progress: step,
                message,
            };
            let notification = jsonrpc::notification("notifications/progress", &Typed(&params));
            let _ = self.out.try_send(Out::Message(Bytes::from(notification)));
        }
    }

    /// Whether the caller's client declared it can be asked (elicitation),
    /// when it opened the session.
    pub(crate) fn can_elicit(&self, mcp: &McpState) -> bool {
        mcp.session_owners.elicits(&self.session)
    }

    /// Put `request` (`method` and `params` of a server-to-client request)
    /// to the caller on the call's own response, which becomes a stream,
    /// and wait for the answer's `result`; why not, as the answer to give.
    pub(crate) async fn ask(
        &self,
        mcp: &McpState,
        request: &Value,
        cancel: &CancellationToken,
    ) -> Result<Value, Confirmation> {
        let lane = &mcp.fast_lane;
        let relay_id = lane.new_relay_id();
        lane.register(&relay_id, self.session.clone(), None);
        let request = jsonrpc::request(
            Id::Text(&relay_id),
            request["method"].as_str().unwrap_or_default(),
            &Typed(&request["params"]),
        );
        let answer = lane.answer_to(relay_id);
        if self
            .out
            .send(Out::Message(Bytes::from(request)))
            .await
            .is_err()
        {
            return Err(Confirmation::CannotAsk("the caller has gone".into()));
        }
        let answer = tokio::select! {
            answer = answer => answer,
            () = cancel.cancelled() => return Err(Confirmation::No("cancelled the call".into())),
        };
        let Some(answer) = answer else {
            return Err(Confirmation::CannotAsk("the caller did not answer".into()));
        };
        let mut answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(Confirmation::CannotAsk(format!(
                "the client answered with an error: {}",
                answer["error"]
            ))),
        }
    }
}

/// The upstream's answer: a JSON-RPC `result` or `error` value, as sent.
pub enum LaneReply {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

/// `tools/call` on the fast lane: the same stages as every call, forwarded
/// by the upstream's [`LaneLink`].
pub struct LaneToolCall;

impl CallKind for LaneToolCall {
    const METHOD: &'static str = "tools/call";
    type Input = LaneInput;
    type Target = UpstreamTarget;
    type Output = LaneReply;
    type Chunk = NoStream;
    type Stream = NoStream;
    type Env = McpState;

    fn subject(input: &LaneInput) -> &str {
        &input.name
    }

    fn resolve(mcp: &McpState, input: &LaneInput) -> Result<UpstreamTarget, CallError> {
        crate::mcp::calls::resolve_tool(mcp, &input.name)
    }

    fn question<'a>(
        ctx: &'a CallContext<Self>,
        target: &'a UpstreamTarget,
    ) -> Option<PolicyQuestion<'a>> {
        Some(crate::mcp::calls::tool_question(
            &ctx.input.name,
            target,
            ctx.input.arguments.as_ref(),
        ))
    }

    async fn progress(ctx: &CallContext<Self>, step: u32, message: &str) {
        confirm::progress(Back::Lane(&ctx.input), step, message).await;
    }

    async fn confirm(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        gate: &crate::call::Gate,
        question: &str,
    ) -> Confirmation {
        confirm::confirm(
            mcp,
            Back::Lane(&ctx.input),
            &ctx.caller,
            None,
            &ctx.cancel,
            gate,
            question,
        )
        .await
    }

    async fn forward(
        mcp: &McpState,
        ctx: &CallContext<Self>,
        target: &UpstreamTarget,
    ) -> Result<Reply<LaneReply, NoStream>, CallError> {
        let upstream = &target.upstream;
        let server = || upstream.config.name.clone();
        let link = upstream
            .lane()
            .ok_or_else(|| CallError::UpstreamUnavailable {
                server: server(),
                reason: "no HTTP link".into(),
            })?;
        let timeout = upstream.config.call_timeout;
        link.call(mcp, target, &ctx.input, &ctx.cancel, timeout)
            .await
            .map(Reply::Done)
    }
}

/// Run one lane call: JSON back if nothing came before the result,
/// otherwise an SSE stream that carries what the upstream sent meanwhile.
async fn call(
    mcp: Arc<McpState>,
    caller: Caller,
    headers: &HeaderMap,
    id: String,
    input: LaneInput,
    mut rx: mpsc::Receiver<Out>,
) -> Response<Body> {
    let out = input.out.clone();
    let session = input.session.clone();
    let cancel = CancellationToken::new();
    let key = (session.clone(), id.clone());
    mcp.fast_lane
        .lock_calls()
        .insert(key.clone(), cancel.clone());
    let task_mcp = mcp.clone();
    let ctx = context::open::<LaneToolCall>(
        caller,
        input,
        cancel.clone(),
        session.to_string(),
        Some(headers),
    );
    // Its own task, so a caller that hangs up still lets the call tell the
    // upstream (the guard below cancels it).
    tokio::spawn(async move {
        let reply = task_mcp
            .pipeline
            .run::<LaneToolCall>(&task_mcp, ctx)
            .await
            .map(Reply::done);
        task_mcp.fast_lane.lock_calls().remove(&key);
        let _ = out.send(Out::Final(response_bytes(&id, reply))).await;
    });
    let guard = cancel.drop_guard();
    match rx.recv().await {
        Some(Out::Final(bytes)) => {
            drop(guard.disarm());
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(bytes))
                .expect("valid response")
        }
        Some(Out::Message(first)) => {
            let stream = futures::stream::unfold(
                (Some(first), rx, Some(guard)),
                |(first, mut rx, guard)| async move {
                    let (bytes, last) = match first {
                        Some(b) => (b, false),
                        None => match rx.recv().await? {
                            Out::Message(b) => (b, false),
                            Out::Final(b) => (b, true),
                        },
                    };
                    let guard = guard?;
                    let event = sse_event(&bytes);
                    let guard = if last {
                        drop(guard.disarm());
                        None
                    } else {
                        Some(guard)
                    };
                    Some((Ok::<_, std::convert::Infallible>(event), (None, rx, guard)))
                },
            );
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(Body::from_stream(stream))
                .expect("valid response")
        }
        None => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("toolgate: the call ended without an answer"))
            .expect("valid response"),
    }
}

fn sse_event(json: &[u8]) -> Bytes {
    let mut event = BytesMut::with_capacity(json.len() + 22);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    event.freeze()
}

/// The JSON-RPC response for the caller, by the same rule as the rmcp path
/// ([`errors::tool_call`]).
fn response_bytes(id: &str, reply: Result<LaneReply, CallError>) -> Bytes {
    // The caller's id, as serialised from its strict value.
    let id = Id::Json(id);
    let protocol_error = |error: &ErrorData| {
        let code = i64::from(error.code.0);
        jsonrpc::error(id, code, &error.message, error.data.as_ref())
    };
    let bytes = match reply {
        // As the upstream sent it: 2025 callers take no `resultType`.
        Ok(LaneReply::Result(result)) => jsonrpc::result(id, &*result),
        Ok(LaneReply::Error(error)) => jsonrpc::error_object(id, &*error),
        Err(e) => match errors::tool_call(e) {
            ToolAnswer::Protocol(error) => protocol_error(&error),
            ToolAnswer::ToolError(result) => jsonrpc::result(id, &Typed(&result)),
            ToolAnswer::Question(question) => jsonrpc::result(id, &Typed(&*question)),
        },
    };
    Bytes::from(bytes)
}

/// A JSON-RPC response's outcome, kept as the upstream wrote it.
pub(super) fn parse_reply(bytes: &[u8]) -> LinkResult<LaneReply> {
    #[derive(Deserialize)]
    struct Reply {
        result: Option<Box<RawValue>>,
        error: Option<Box<RawValue>>,
    }
    let reply: Reply =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable response: {e}"))?;
    match (reply.result, reply.error) {
        (Some(result), None) => Ok(LaneReply::Result(result)),
        (None, Some(error)) => Ok(LaneReply::Error(error)),
        _ => Err("a response with neither (or both) result and error".into()),
    }
}

/// `message` with its `id` replaced.
pub(super) fn with_id(message: &[u8], id: &RawValue) -> LinkResult<String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(message).map_err(|e| format!("unreadable message: {e}"))?;
    let id: serde_json::Value = serde_json::from_str(id.get()).map_err(|e| e.to_string())?;
    object.insert("id".into(), id);
    serde_json::to_string(&object).map_err(|e| e.to_string())
}

/// Register an upstream's request for relaying to the caller: the request
/// as the caller will see it (a relay id instead of the upstream's id and
/// progress token) and that id.
pub(super) fn relay_request(
    mcp: &McpState,
    target: &UpstreamTarget,
    lane_session: &HeaderValue,
    input: &LaneInput,
    request: &[u8],
) -> LinkResult<(String, Bytes)> {
    let lane = &mcp.fast_lane;
    let relay_id = lane.new_relay_id();
    let relay_json = serde_json::Value::from(relay_id.as_str()).to_string();
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(request).map_err(|e| format!("unreadable request: {e}"))?;
    object.insert("id".into(), relay_json.parse().map_err(|e| format!("{e}"))?);
    let token = object
        .get_mut("params")
        .and_then(|p| p.get_mut("_meta"))
        .and_then(|m| m.get_mut("progressToken"));
    let progress_back = match token {
        Some(token) => {
            let theirs = std::mem::replace(token, serde_json::Value::from(relay_id.as_str()));
            let theirs = RawValue::from_string(theirs.to_string()).map_err(|e| e.to_string())?;
            Some((target.upstream.clone(), lane_session.clone(), theirs))
        }
        None => None,
    };
    let request = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
    lane.register(&relay_id, input.session.clone(), progress_back);
    Ok((relay_id, Bytes::from(request)))
}

/// Wait for the caller's answer to a relayed request; an answer that can't
/// be had is a JSON-RPC error for the upstream.
pub(super) async fn await_answer(
    mcp: &McpState,
    relay_id: String,
    upstream_id: Box<RawValue>,
) -> (Box<RawValue>, Bytes) {
    let answer = mcp.fast_lane.answer_to(relay_id).await.unwrap_or_else(|| {
        // The id is a placeholder: the upstream's goes in before it is sent.
        Bytes::from(jsonrpc::error(
            Id::Json("0"),
            jsonrpc::INTERNAL_ERROR,
            "toolgate: the caller did not answer",
            None,
        ))
    });
    (upstream_id, answer)
}

/// `message` with `params.{key}` set to the JSON `value`.
pub(super) fn with_param(message: &[u8], key: &str, value: &str) -> LinkResult<String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(message).map_err(|e| format!("unreadable message: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(value).map_err(|e| e.to_string())?;
    let params = object
        .get_mut("params")
        .and_then(|p| p.as_object_mut())
        .ok_or("a message without params")?;
    params.insert(key.into(), value);
    serde_json::to_string(&object).map_err(|e| e.to_string())
}

/// Drops a relay's entry when its wait ends, answered or not.
struct Forget<'a>(&'a FastLane, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.relays.locked().remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_replaced_and_replies_read_as_sent() {
        let id = RawValue::from_string("\"toolgate-relay-1\"".into()).expect("valid");
        let out = with_id(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#, &id).expect("rewritten");
        assert!(out.contains(r#""id":"toolgate-relay-1""#), "{out}");
        match parse_reply(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#) {
            Ok(LaneReply::Result(r)) => assert_eq!(r.get(), r#"{"content":[]}"#),
            _ => panic!("a result"),
        }
        assert!(parse_reply(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
    }

    #[test]
    fn hosts_follow_rmcps_rule() {
        let allowed = vec![
            "localhost".to_string(),
            "127.0.0.1".into(),
            "::1".into(),
            "example.com:8080".into(),
        ];
        let check = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).expect("valid"));
            host_allowed(&h, &allowed)
        };
        assert!(check("127.0.0.1:8088"));
        assert!(check("LOCALHOST"));
        assert!(check("[::1]:9"));
        assert!(check("example.com:8080"));
        assert!(!check("example.com:8081"));
        assert!(!check("evil.test"));
    }
}
