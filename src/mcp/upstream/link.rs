//! The fast lane's upstream side: tool calls POSTed as plain JSON over a
//! pooled HTTP/1.1 client, on the *same* 2025-11-25 session as the rmcp link.
//!
//! One session per upstream, whichever path a call takes: an upstream that
//! keeps state per session (a tool call that changes what a resource read
//! returns) sees one client, as before. rmcp owns the session — opens it,
//! reads its GET stream, recovers it after a restart — and [`SessionSpy`],
//! the HTTP client rmcp is given, tells the lane its id. Lane requests carry
//! string ids (`toolgate-N`), which never collide with rmcp's numbers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use futures::stream::FuturesUnordered;
use http::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sse_stream::Sse;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sse::MessageReader;
use crate::call::CallError;
use crate::config::{Secret, UpstreamUrl};
use crate::egress::{self, CheckedResolver};
use crate::mcp::calls::UpstreamTarget;
use crate::mcp::hub::{LaneDownstream, Out};
use crate::mcp::jsonrpc::{self, Id, Typed};
use crate::mcp::state::McpState;
use crate::util::sync::LockExt;

/// Why an exchange with the upstream failed, before it became a [`CallError`].
/// A string on purpose: every one ends as the reason of
/// `CallError::UpstreamFailed` (a person reads it; no caller branches on it).
pub(crate) type LinkResult<T> = Result<T, String>;

/// How to reach the upstream.
struct Endpoint {
    /// Resolves through [`CheckedResolver`]; hyper's client never follows
    /// redirects (a 3xx is refused in [`LaneLink::exchange`]).
    client: Client<HttpConnector<CheckedResolver>, Full<Bytes>>,
    uri: http::Uri,
    /// The same URL, for messages (prints without credentials).
    url: UpstreamUrl,
    server: Arc<str>,
    /// From the server's config (credentials); marked sensitive.
    headers: HeaderMap,
}

impl Endpoint {
    fn request(
        &self,
        method: Method,
        session: Option<&HeaderValue>,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-11-25"),
        );
        if let Some(s) = session {
            headers.insert("mcp-session-id", s.clone());
        }
        request
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> LinkResult<Response<Incoming>> {
        self.client.request(request).await.map_err(|e| {
            if let Some(refused) = egress::refusal_in(&e) {
                return refused.to_string();
            }
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            self.url.scrub(&text)
        })
    }

    /// Why a 3xx answer is refused, naming where it pointed (safely).
    fn redirect_refused(&self, response: &Response<Incoming>) -> String {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url::Url::parse(self.url.expose()).ok()?.join(l).ok())
            .map_or_else(
                || "an unreadable location".to_string(),
                |l| crate::config::egress::redact(&l, &[]),
            );
        egress::Refused::Redirect {
            place: egress::server_place(&self.server).into(),
            status: response.status().as_u16(),
            location,
        }
        .to_string()
    }

    /// POST a notification or an answer; the reply (202) carries nothing.
    async fn notify(&self, session: &HeaderValue, body: impl Into<Bytes>) {
        match self
            .send(self.request(Method::POST, Some(session), body.into()))
            .await
        {
            Ok(response) => drop(response.into_body()),
            Err(why) => tracing::debug!(%why, "fast lane: notifying the upstream failed"),
        }
    }
}

/// What a session's two streams share.
#[derive(Default)]
struct Shared {
    /// Requests the upstream sent callers, by the upstream's id (as JSON):
    /// the relay id the caller knows it by and the call's response stream.
    relayed: Mutex<HashMap<String, (String, mpsc::Sender<Out>)>>,
    /// Asks the supervisor to re-list the upstream.
    refresh: Mutex<Option<mpsc::Sender<()>>>,
    /// Calls in flight, by request id: where an untagged message (a log
    /// line on the GET stream) goes when there is just one.
    calls: Mutex<HashMap<String, CallSink>>,
}

impl Shared {
    fn relayed(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, mpsc::Sender<Out>)>> {
        self.relayed.locked()
    }

    fn request_refresh(&self) {
        if let Some(refresh) = self.refresh.locked().as_ref() {
            // Full means a re-list is already pending.
            let _ = refresh.try_send(());
        }
    }

    /// Handle a notification that is the gateway's business rather than one
    /// caller's; returns where a rewritten copy must go, if anywhere.
    fn on_notification(&self, method: &str, message: &[u8]) -> Option<(mpsc::Sender<Out>, Bytes)> {
        match method {
            "notifications/tools/list_changed"
            | "notifications/resources/list_changed"
            | "notifications/prompts/list_changed" => {
                self.request_refresh();
                None
            }
            "notifications/cancelled" => {
                // The upstream gave up on a request it relayed: tell the
                // caller, in the caller's id.
                let message_params: Message = serde_json::from_slice(message).ok()?;
                let params: CancelParams =
                    serde_json::from_str(message_params.params?.get()).ok()?;
                let (relay_id, out) = self.relayed().get(params.request_id.get()).cloned()?;
                let relay_id = serde_json::Value::from(relay_id).to_string();
                let message = with_param(message, "requestId", &relay_id).ok()?;
                Some((out, Bytes::from(message)))
            }
            _ => None,
        }
    }
}

/// A call's relayed requests still waiting for the caller's answer, by
/// the upstream's id (as JSON) and the relay id; forgotten when the call
/// ends.
struct Relayed<'a> {
    shared: &'a Shared,
    open: Vec<(String, String)>,
}

impl Relayed<'_> {
    fn answered(&mut self, upstream_id: &RawValue) {
        self.open.retain(|(id, _)| id != upstream_id.get());
        self.shared.relayed().remove(upstream_id.get());
    }

    /// The call is over: what the upstream asked the caller is moot.
    async fn cancel_open(&self, out: &mpsc::Sender<Out>) {
        for (_, relay_id) in &self.open {
            let message = cancelled(relay_id.as_str(), Some("the upstream no longer needs it"));
            let _ = out.send(Out::Message(Bytes::from(message))).await;
        }
    }
}

/// Where a call in flight takes messages from outside its own stream.
struct CallSink {
    out: mpsc::Sender<Out>,
    /// A log message reached it from the rmcp link: more may be on their
    /// way when the result arrives (see [`LOG_LINGER`]).
    heard_logs: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a call that received log messages through the rmcp link holds
/// its result, so log lines the upstream sent before the result (on its
/// other stream) still reach the caller first.
const LOG_LINGER: Duration = Duration::from_millis(20);

/// Unregisters a call from [`Shared::calls`] when it ends.
struct InFlight<'a>(&'a Shared, &'a str);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.calls.locked().remove(self.1);
    }
}

impl Drop for Relayed<'_> {
    fn drop(&mut self) {
        let mut relayed = self.shared.relayed();
        for (id, _) in &self.open {
            relayed.remove(id);
        }
    }
}

/// The fast lane's link to one HTTP upstream.
pub struct LaneLink {
    endpoint: Endpoint,
    /// The rmcp link's session id, as [`SessionSpy`] last saw it.
    session: Arc<Mutex<Option<HeaderValue>>>,
    next_id: AtomicU64,
    shared: Shared,
}

type Answer<'a> = Pin<Box<dyn Future<Output = (Box<RawValue>, Bytes)> + Send + 'a>>;

impl LaneLink {
    pub fn new(
        server: &str,
        url: &UpstreamUrl,
        headers: &[(String, Secret)],
        resolver: CheckedResolver,
    ) -> Result<Self, String> {
        let uri: http::Uri = url
            .expose()
            .parse()
            .map_err(|e| format!("url `{url}`: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err("the fast lane speaks plain HTTP only".into());
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = header::HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?;
            let mut value = HeaderValue::try_from(value.expose()).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            map.append(name, value);
        }
        let mut connector = HttpConnector::new_with_resolver(resolver);
        connector.set_nodelay(true);
        Ok(Self {
            endpoint: Endpoint {
                client: Client::builder(TokioExecutor::new()).build(connector),
                uri,
                url: url.clone(),
                server: Arc::from(server),
                headers: map,
            },
            session: Arc::default(),
            next_id: AtomicU64::new(1),
            shared: Shared::default(),
        })
    }

    /// The HTTP client for the rmcp link: `inner`, reporting the session
    /// id it uses to this lane.
    pub fn spy(&self, inner: reqwest::Client) -> SessionSpy {
        SessionSpy {
            inner,
            session: self.session.clone(),
        }
    }

    /// The upstream cancelled a request of its own, heard on the rmcp link:
    /// if the lane relayed it, tell the caller.
    pub fn upstream_cancelled(&self, id: &rmcp::model::RequestId) {
        let message = cancelled(id, None);
        if let Some((out, rewritten)) = self
            .shared
            .on_notification("notifications/cancelled", &message)
        {
            let _ = out.try_send(Out::Message(rewritten));
        }
    }

    /// Calls in flight on the lane.
    pub fn calls_in_flight(&self) -> usize {
        self.shared.calls.locked().len()
    }

    /// Give an untagged notification (a log message heard on the rmcp link)
    /// to the lane's caller, if there is exactly one; `false` if not.
    pub fn deliver_to_sole_caller(&self, notification: &impl serde::Serialize) -> bool {
        let calls = self.shared.calls.locked();
        let (Some(sink), 1) = (calls.values().next(), calls.len()) else {
            return false;
        };
        sink.heard_logs.store(true, Ordering::Relaxed);
        match serde_json::to_vec(notification) {
            Ok(message) => sink
                .out
                .try_send(Out::Message(Bytes::from(message)))
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Where `list_changed` from the upstream should ask for a re-list (the
    /// supervisor's channel of its current connection).
    pub fn set_refresh(&self, refresh: mpsc::Sender<()>) {
        *self.shared.refresh.locked() = Some(refresh);
    }

    /// POST a notification on the lane's session `session`.
    pub(crate) async fn notify(&self, session: &HeaderValue, body: String) {
        self.endpoint.notify(session, body).await;
    }

    /// Forward one tool call within `timeout`, unless `cancel` fires first;
    /// either way the upstream is told to stop.
    pub(crate) async fn call(
        &self,
        mcp: &McpState,
        target: &UpstreamTarget,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        down: &LaneDownstream,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Result<RawReply, CallError> {
        let id = format!("toolgate-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let sent_on = OnceLock::new();
        let exchange = self.exchange(mcp, target, arguments, down, &id, &sent_on);
        let (outcome, reason) = tokio::select! {
            r = tokio::time::timeout(timeout, exchange) => match r {
                Ok(reply) => return reply,
                Err(_) => (
                    CallError::UpstreamTimeout { server: target.upstream.config.name.clone(), after: timeout },
                    "toolgate: call timeout",
                ),
            },
            _ = cancel.cancelled() => (CallError::Cancelled, "cancelled by the client"),
        };
        if let Some(session) = sent_on.get() {
            self.endpoint
                .notify(session, cancelled(id.as_str(), Some(reason)))
                .await;
        }
        Err(outcome)
    }

    /// POST the call and read its response stream to the end, relaying what
    /// comes before the result.
    async fn exchange(
        &self,
        mcp: &McpState,
        target: &UpstreamTarget,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
        down: &LaneDownstream,
        id: &str,
        sent_on: &OnceLock<HeaderValue>,
    ) -> Result<RawReply, CallError> {
        let server = || target.upstream.config.name.clone();
        let failed = |reason: String| CallError::UpstreamFailed {
            server: server(),
            reason,
        };
        // The upstream sees the lane's own request id as the progress token:
        // callers' tokens may collide on the lane's one session.
        let body = call_body(
            id,
            &target.upstream_name,
            arguments,
            down.progress_token.is_some(),
        );
        let (session, response) =
            self.post_call(body)
                .await
                .map_err(|reason| CallError::UpstreamUnavailable {
                    server: server(),
                    reason,
                })?;
        let _ = sent_on.set(session.clone());
        if response.status().is_redirection() {
            return Err(failed(self.endpoint.redirect_refused(&response)));
        }
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let heard_logs = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.shared.calls.locked().insert(
            id.to_string(),
            CallSink {
                out: down.out.clone(),
                heard_logs: heard_logs.clone(),
            },
        );
        let _in_flight = InFlight(&self.shared, id);
        let mut reader = MessageReader::new(response);
        // Requests the upstream sent the caller, answered while the stream
        // is read on (the upstream may cancel them meanwhile).
        let mut answers: FuturesUnordered<Answer<'_>> = FuturesUnordered::new();
        let mut relayed = Relayed {
            shared: &self.shared,
            open: Vec::new(),
        };
        loop {
            let bytes = tokio::select! {
                next = reader.next() => match next.map_err(failed)? {
                    Some(bytes) => bytes,
                    None => return Err(failed("the response ended without a result".into())),
                },
                Some((upstream_id, answer)) = answers.next() => {
                    relayed.answered(&upstream_id);
                    let answer = with_id(&answer, &upstream_id).map_err(failed)?;
                    self.endpoint.notify(&session, answer).await;
                    continue;
                }
            };
            let message: Message = serde_json::from_slice(&bytes)
                .map_err(|e| failed(format!("unreadable message: {e}")))?;
            let forward = match (message.method, message.id) {
                // Only our request is answered on this stream.
                (None, Some(_)) => {
                    if heard_logs.load(Ordering::Relaxed) {
                        tokio::time::sleep(LOG_LINGER).await;
                    }
                    relayed.cancel_open(&down.out).await;
                    return parse_reply(&bytes).map_err(failed);
                }
                (Some(_), Some(upstream_id)) => {
                    let (relay_id, request) =
                        relay_request(mcp, target, &session, down, &bytes).map_err(failed)?;
                    let key = upstream_id.get().to_string();
                    self.shared
                        .relayed()
                        .insert(key.clone(), (relay_id.clone(), down.out.clone()));
                    relayed.open.push((key, relay_id.clone()));
                    answers.push(Box::pin(await_answer(
                        mcp,
                        relay_id,
                        upstream_id.to_owned(),
                    )));
                    Some(request)
                }
                (Some("notifications/progress"), None) => {
                    our_progress(&message, id, down.progress_token.as_deref(), &bytes)
                }
                (Some(method), None) => match self.shared.on_notification(method, &bytes) {
                    Some((_, rewritten)) => Some(rewritten),
                    None if is_gateway_business(method) => None,
                    // Logging and the like: for this caller.
                    None => Some(bytes),
                },
                (None, None) => {
                    return Err(failed("a message with neither id nor method".into()));
                }
            };
            if let Some(message) = forward {
                // A caller that is gone ends the call through its cancellation.
                let _ = down.out.send(Out::Message(message)).await;
            }
        }
    }

    /// POST a call on the rmcp link's session.
    async fn post_call(&self, body: Vec<u8>) -> LinkResult<(HeaderValue, Response<Incoming>)> {
        let session = self.session.locked().clone().ok_or("not connected")?;
        let request = self
            .endpoint
            .request(Method::POST, Some(&session), Bytes::from(body));
        let response = self.endpoint.send(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            // The upstream restarted: a re-list makes rmcp open a new
            // session, which the spy reports.
            self.shared.request_refresh();
            return Err("the upstream no longer knows the session (HTTP 404); reconnecting".into());
        }
        Ok((session, response))
    }
}

/// Notifications the gateway handles itself rather than pass to a caller.
fn is_gateway_business(method: &str) -> bool {
    method.ends_with("/list_changed") || method == "notifications/cancelled"
}

/// Progress on our request, in the caller's token; `None` for anything else.
fn our_progress(
    message: &Message<'_>,
    id: &str,
    caller_token: Option<&RawValue>,
    bytes: &[u8],
) -> Option<Bytes> {
    let params: ProgressParams = serde_json::from_str(message.params?.get()).ok()?;
    if serde_json::from_str::<&str>(params.progress_token.get()).ok() != Some(id) {
        return None;
    }
    let message = with_param(bytes, "progressToken", caller_token?.get()).ok()?;
    Some(Bytes::from(message))
}

/// The upstream's `tools/call`: the arguments are the serialisation of the
/// value the stages decided on, never the caller's bytes.
fn call_body(
    id: &str,
    name: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    progress: bool,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct CallParams<'a> {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<&'a serde_json::Map<String, serde_json::Value>>,
        #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
        meta: Option<CallMeta<'a>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct CallMeta<'a> {
        progress_token: &'a str,
    }
    let params = CallParams {
        name,
        arguments,
        meta: progress.then_some(CallMeta { progress_token: id }),
    };
    jsonrpc::request(Id::Text(id), "tools/call", &Typed(&params))
}

/// A JSON-RPC message, looked at only as far as routing needs.
#[derive(Deserialize)]
pub struct Message<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<&'a str>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressParams<'a> {
    #[serde(borrow)]
    pub progress_token: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelParams<'a> {
    #[serde(borrow)]
    pub request_id: &'a RawValue,
}

/// `notifications/cancelled` for `request_id`, with `reason` if given.
pub fn cancelled<I: Serialize + ?Sized>(request_id: &I, reason: Option<&str>) -> Vec<u8> {
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

/// The upstream's answer: a JSON-RPC `result` or `error` value, as sent.
pub enum RawReply {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

impl RawReply {
    /// rmcp's typed reading of the same answer.
    pub fn into_typed(self) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        use rmcp::ErrorData;
        match self {
            RawReply::Result(raw) => serde_json::from_str::<rmcp::model::CallToolResult>(raw.get())
                .map(rmcp::model::CallToolResponse::Complete)
                .map_err(|e| {
                    let why = format!("toolgate: the upstream's result is not a tool result: {e}");
                    ErrorData::internal_error(why, None)
                }),
            RawReply::Error(raw) => Err(serde_json::from_str::<ErrorData>(raw.get())
                .unwrap_or_else(|e| {
                    let why = format!("toolgate: the upstream's error is unreadable: {e}");
                    ErrorData::internal_error(why, None)
                })),
        }
    }
}

/// A JSON-RPC response's outcome, kept as the upstream wrote it.
pub fn parse_reply(bytes: &[u8]) -> LinkResult<RawReply> {
    #[derive(Deserialize)]
    struct Reply {
        result: Option<Box<RawValue>>,
        error: Option<Box<RawValue>>,
    }
    let reply: Reply =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable response: {e}"))?;
    match (reply.result, reply.error) {
        (Some(result), None) => Ok(RawReply::Result(result)),
        (None, Some(error)) => Ok(RawReply::Error(error)),
        _ => Err("a response with neither (or both) result and error".into()),
    }
}

/// `message` with its `id` replaced.
pub fn with_id(message: &[u8], id: &RawValue) -> LinkResult<String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(message).map_err(|e| format!("unreadable message: {e}"))?;
    let id: serde_json::Value = serde_json::from_str(id.get()).map_err(|e| e.to_string())?;
    object.insert("id".into(), id);
    serde_json::to_string(&object).map_err(|e| e.to_string())
}

/// Register an upstream's request for relaying to the caller: the request
/// as the caller will see it (a relay id instead of the upstream's id and
/// progress token) and that id.
pub fn relay_request(
    mcp: &McpState,
    target: &UpstreamTarget,
    lane_session: &HeaderValue,
    down: &LaneDownstream,
    request: &[u8],
) -> LinkResult<(String, Bytes)> {
    let relay_id = mcp.hub.new_lane_relay_id();
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
            Some((target.upstream.name.clone(), lane_session.clone(), theirs))
        }
        None => None,
    };
    let request = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
    mcp.hub
        .register_lane_relay(&relay_id, down.session.clone(), progress_back);
    Ok((relay_id, Bytes::from(request)))
}

/// Wait for the caller's answer to a relayed request; an answer that can't
/// be had is a JSON-RPC error for the upstream.
pub async fn await_answer(
    mcp: &McpState,
    relay_id: String,
    upstream_id: Box<RawValue>,
) -> (Box<RawValue>, Bytes) {
    let answer = mcp.hub.lane_answer(relay_id).await.unwrap_or_else(|| {
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
pub fn with_param(message: &[u8], key: &str, value: &str) -> LinkResult<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_replaced_and_replies_read_as_sent() {
        let id = RawValue::from_string("\"toolgate-relay-1\"".into()).expect("valid");
        let out = with_id(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#, &id).expect("rewritten");
        assert!(out.contains(r#""id":"toolgate-relay-1""#), "{out}");
        match parse_reply(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#) {
            Ok(RawReply::Result(r)) => assert_eq!(r.get(), r#"{"content":[]}"#),
            _ => panic!("a result"),
        }
        assert!(parse_reply(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
    }

    #[test]
    fn call_bodies_carry_only_what_was_asked() {
        let args = serde_json::from_str(r#"{"a":1}"#).expect("valid");
        let body = |id, name, args, progress| {
            String::from_utf8(call_body(id, name, args, progress)).expect("utf-8")
        };
        assert_eq!(
            body("toolgate-7", "echo", Some(&args), true),
            r#"{"jsonrpc":"2.0","id":"toolgate-7","method":"tools/call","params":{"name":"echo","arguments":{"a":1},"_meta":{"progressToken":"toolgate-7"}}}"#
        );
        assert_eq!(
            body("toolgate-8", "a\"b", None, false),
            r#"{"jsonrpc":"2.0","id":"toolgate-8","method":"tools/call","params":{"name":"a\"b"}}"#
        );
    }
}

/// The rmcp link's HTTP client: reqwest, reporting the session id of every
/// request it sends to the lane (and forgetting it when rmcp ends the
/// session).
#[derive(Clone)]
pub struct SessionSpy {
    inner: reqwest::Client,
    session: Arc<Mutex<Option<HeaderValue>>>,
}

impl SessionSpy {
    /// For an upstream without a fast lane: reports to nobody.
    pub fn detached(inner: reqwest::Client) -> Self {
        Self {
            inner,
            session: Arc::default(),
        }
    }

    fn saw(&self, session: Option<&Arc<str>>) {
        let Some(id) = session.and_then(|s| HeaderValue::from_str(s).ok()) else {
            return;
        };
        let mut current = self.session.locked();
        if current.as_ref() != Some(&id) {
            *current = Some(id);
        }
    }
}

type SpyResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

/// A refused redirect or address as its own message: reqwest's text would
/// only say "error following redirect" (and print the URL in full).
fn explain(error: StreamableHttpError<reqwest::Error>) -> StreamableHttpError<reqwest::Error> {
    match error {
        StreamableHttpError::Client(e) => match egress::refusal_in(&e) {
            Some(refused) => {
                StreamableHttpError::UnexpectedServerResponse(refused.to_string().into())
            }
            None => StreamableHttpError::Client(e),
        },
        other => other,
    }
}

impl StreamableHttpClient for SessionSpy {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> SpyResult<StreamableHttpPostResponse> {
        self.saw(session_id.as_ref());
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
            .map_err(explain)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> SpyResult<StreamableHttpPostResponse> {
        self.saw(session_id.as_ref());
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
            .map_err(explain)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> SpyResult<()> {
        *self.session.locked() = None;
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
            .map_err(explain)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> SpyResult<BoxStream<'static, Result<Sse, SseError>>> {
        self.saw(session_id.as_ref());
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
            .map_err(explain)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> SpyResult<BoxStream<'static, Result<Sse, SseError>>> {
        self.saw(session_id.as_ref());
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
            .map_err(explain)
    }
}
