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
//!   the rmcp link's upstream session; see [`crate::mcp::upstream::link`]).
//!
//! Anything else goes to rmcp unchanged, which also answers every malformed
//! request. The call itself is the same [`ToolCall`] as on the rmcp path,
//! through the same [`crate::pipeline`]; its [`Origin::Lane`] makes it
//! forwarded by the upstream's lane link. What the upstream sends while the
//! call runs is not lost: its server-to-client requests (sampling,
//! elicitation, roots) and notifications go to the caller on the call's own
//! response stream (the response turns from JSON into SSE for that), and
//! the caller's answers come back through [`FastLane::intercept`] to the
//! [`crate::mcp::hub`], which keeps every relay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode, header};
use rmcp::model::{CallToolRequestParams, CallToolResponse, ErrorData};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::call::{CallError, Caller, Reply, Target};
use crate::mcp::calls::{McpInput, Origin, ToolCall, ToolReply};
use crate::mcp::hub::{LaneDownstream, Out};
use crate::mcp::ingress::context;
use crate::mcp::ingress::errors::{self, ToolAnswer};
use crate::mcp::jsonrpc::{self, Id, Typed};
use crate::mcp::state::McpState;
use crate::mcp::upstream::link::{RawReply, cancelled, with_param};
use crate::util::sync::LockExt;

/// Messages (relayed requests, notifications) queued for one caller's
/// response stream; the upstream's stream is not read while it is full.
const OUT_QUEUE: usize = 16;
/// Longest a session may go without rmcp hearing of it; fast-lane traffic
/// tells rmcp the session is in use at least this often, so its idle timer
/// (5 minutes) only ends sessions nobody uses.
const SESSION_TOUCH_EVERY: Duration = Duration::from_secs(60);

const LEGACY_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The fast lane's shared state: calls in flight (for the caller's
/// `notifications/cancelled`) and when each session last told rmcp it is
/// alive. Requests relayed to lane callers are kept by the [`Hub`], with
/// every other route back to a caller.
pub struct FastLane {
    sessions: Arc<LocalSessionManager>,
    calls: Mutex<HashMap<(Arc<str>, String), CancellationToken>>,
    touched: Mutex<HashMap<Arc<str>, Instant>>,
    taken: AtomicU64,
}

impl FastLane {
    pub fn new(sessions: Arc<LocalSessionManager>) -> Self {
        Self {
            sessions,
            calls: Mutex::default(),
            touched: Mutex::default(),
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
                let mut call_params = CallToolRequestParams::new(params.name);
                call_params.arguments = arguments;
                let down = LaneDownstream {
                    session,
                    progress_token,
                    out,
                };
                Some(
                    call(
                        mcp.clone(),
                        caller,
                        &parts.headers,
                        id.to_string(),
                        call_params,
                        down,
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
                let (server, lane_session, upstream_token) =
                    mcp.hub.lane_progress_back(&session, token)?;
                let upstream = mcp.upstream(&server)?;
                let link = upstream.lane()?;
                let notification = with_param(body, "progressToken", upstream_token.get()).ok()?;
                link.notify(&lane_session, notification).await;
                Some(accepted())
            }
            (None, true) => {
                let id = message.get("id")?.as_str()?;
                // The caller's answer as it sent it (it parsed strictly);
                // the upstream's id is put back before it goes on.
                mcp.hub
                    .answer_lane_relay(&session, id, body.clone())
                    .then(accepted)
            }
            _ => None,
        }
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

/// Whether a call of tool `name` can take the lane: its upstream has a
/// lane link, and no inspector may rewrite it (the lane hands the
/// upstream's answer back as it came, so a rewrite of it needs the typed
/// path).
fn has_lane(mcp: &McpState, name: &str) -> bool {
    let catalog = mcp.catalog();
    let Some(entry) = catalog.tool(name) else {
        return false;
    };
    let Some(upstream) = mcp.upstream(&entry.route.server) else {
        return false;
    };
    if upstream.lane().is_none() {
        return false;
    }
    let pipeline = &mcp.pipeline;
    pipeline.inspectors.is_empty()
        || !pipeline.rewrites(&Target::Tool {
            name,
            server: &upstream.config.facts,
            annotations: crate::mcp::catalog::annotations(&entry.upstream),
            labels: entry.labels,
        })
}

fn accepted() -> Response<Body> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Body::empty())
        .expect("valid response")
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

/// Run one lane call: JSON back if nothing came before the result,
/// otherwise an SSE stream that carries what the upstream sent meanwhile.
async fn call(
    mcp: Arc<McpState>,
    caller: Caller,
    headers: &HeaderMap,
    id: String,
    params: CallToolRequestParams,
    down: LaneDownstream,
    mut rx: mpsc::Receiver<Out>,
) -> Response<Body> {
    let out = down.out.clone();
    let session = down.session.clone();
    let input = McpInput {
        params,
        origin: Origin::Lane(down),
        returned: None,
    };
    let cancel = CancellationToken::new();
    let key = (session.clone(), id.clone());
    mcp.fast_lane
        .lock_calls()
        .insert(key.clone(), cancel.clone());
    let task_mcp = mcp.clone();
    let ctx = context::open::<ToolCall>(
        caller,
        input,
        cancel.clone(),
        Some(session.to_string()),
        Some(headers),
    );
    // Its own task, so a caller that hangs up still lets the call tell the
    // upstream (the guard below cancels it).
    tokio::spawn(async move {
        let reply = task_mcp
            .pipeline
            .run::<ToolCall>(&task_mcp, ctx)
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
fn response_bytes(id: &str, reply: Result<ToolReply, CallError>) -> Bytes {
    // The caller's id, as serialised from its strict value.
    let id = Id::Json(id);
    let protocol_error = |error: &ErrorData| {
        let code = i64::from(error.code.0);
        jsonrpc::error(id, code, &error.message, error.data.as_ref())
    };
    let bytes = match reply {
        // As the upstream sent it: 2025 callers take no `resultType`.
        Ok(ToolReply::Raw(RawReply::Result(result))) => jsonrpc::result(id, &*result),
        Ok(ToolReply::Raw(RawReply::Error(error))) => jsonrpc::error_object(id, &*error),
        // 2025 callers, the only ones on the lane, never take these.
        Ok(ToolReply::InputRequired { result, .. }) => jsonrpc::result(id, &Typed(&result)),
        Ok(ToolReply::Typed(response)) => match response {
            CallToolResponse::Complete(r) => jsonrpc::result(id, &Typed(&r)),
            CallToolResponse::InputRequired(r) => jsonrpc::result(id, &Typed(&r)),
            CallToolResponse::Task(r) => jsonrpc::result(id, &Typed(&r)),
            _ => jsonrpc::error(
                id,
                jsonrpc::INTERNAL_ERROR,
                "toolgate: an answer of a kind it cannot write",
                None,
            ),
        },
        Err(e) => match errors::tool_call(e) {
            ToolAnswer::Protocol(error) => protocol_error(&error),
            ToolAnswer::ToolError(result) => jsonrpc::result(id, &Typed(&result)),
            ToolAnswer::Question(question) => jsonrpc::result(id, &Typed(&*question)),
        },
    };
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

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
