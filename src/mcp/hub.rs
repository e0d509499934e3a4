//! The hub: which downstream client is behind which upstream request.
//!
//! Upstream connections are shared by every downstream session, so anything an
//! upstream sends *back* (progress, sampling / elicitation / roots requests,
//! log messages) must be routed to the one downstream call it belongs to, and
//! never to anyone else.
//!
//! - Progress: every forwarded request gets its own upstream progress token;
//!   the hub maps it back to the caller's token.
//! - Server-to-client requests over streamable HTTP arrive on the response
//!   stream of the upstream request they belong to (SEP-2260); rmcp tags them
//!   with that request id, so the route is exact.
//! - Over stdio there is no such tag. The request is routed only if exactly
//!   one downstream session has calls in flight on that upstream; otherwise it
//!   is refused (with an error to the upstream), because guessing could hand
//!   one user's data to another.
//!
//! - The fast lane ([`crate::mcp::ingress::lane`]) relays an upstream's
//!   server-to-client requests on the call's own HTTP response, under a
//!   relay id of its own; the hub keeps each relay (whose session may
//!   answer it, where the answer goes, where the caller's progress on it
//!   goes) until it is answered or its call ends.
//!
//! The hub also knows the connected sessions and who opened them, to forward
//! `list_changed` to those whose lists changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use rmcp::model::{ProgressToken, RequestId};
use rmcp::service::{Peer, RoleClient, RoleServer, SubscriptionSink};

use crate::call::Caller;
use crate::util::sync::LockExt;

/// Process-unique id of a downstream session (one per MCP session, or one per
/// request for stateless clients).
pub type SessionId = u64;

/// The downstream side of one forwarded call.
#[derive(Clone)]
pub struct Downstream {
    pub session: SessionId,
    pub peer: Peer<RoleServer>,
    /// The caller's JSON-RPC id for the call, so server-to-client requests ride
    /// that request's response stream.
    pub request_id: RequestId,
    pub progress_token: Option<ProgressToken>,
    /// The caller speaks 2026-07-28 or later: it takes `InputRequiredResult`
    /// itself and cannot receive server-to-client requests.
    pub modern: bool,
    /// What the caller can do (sampling, elicitation, …), passed to the
    /// upstream with each request so it can refuse what the caller can't take.
    pub capabilities: Option<rmcp::model::ClientCapabilities>,
}

/// The downstream side of one call on the fast lane: the caller's own
/// HTTP response, which turns into an SSE stream when anything goes to the
/// caller before the result.
pub struct LaneDownstream {
    /// The caller's MCP session id.
    pub session: Arc<str>,
    /// The caller's progress token, if it wants progress.
    pub progress_token: Option<Box<RawValue>>,
    /// The caller's response stream.
    pub out: mpsc::Sender<Out>,
}

/// What a lane call sends to its caller's response.
pub enum Out {
    /// A message before the result (a relayed request, a notification).
    Message(Bytes),
    /// The JSON-RPC response; the last thing sent.
    Final(Bytes),
}

/// Where a caller's progress on a relayed request goes: the upstream
/// (by server name), the lane's session with it, and the upstream's own
/// progress token.
pub type LaneProgressBack = (Arc<str>, HeaderValue, Box<RawValue>);

/// A server-to-client request relayed to a lane caller, by its relay id.
struct LaneRelay {
    /// The caller's session: only it may answer.
    session: Arc<str>,
    /// Where the caller's answer goes; taken when it comes.
    answer: Option<oneshot::Sender<Bytes>>,
    progress_back: Option<LaneProgressBack>,
}

/// Ids of server-to-client requests relayed on the fast lane start with
/// this; rmcp numbers its own, so they never collide.
const RELAY_ID_PREFIX: &str = "toolgate-relay-";

type Key = (Arc<str>, RequestId);

#[derive(Default)]
struct Inner {
    calls: HashMap<Key, Downstream>,
    progress: HashMap<(Arc<str>, ProgressToken), Downstream>,
    sessions: HashMap<SessionId, (Peer<RoleServer>, Caller)>,
    subscriptions: HashMap<SessionId, (SubscriptionSink, ListChanged, Caller)>,
    /// (server, upstream URI) → sessions subscribed to it (2025-11-25
    /// `resources/subscribe`), with the URI as each knows it.
    resource_subscribers: HashMap<(Arc<str>, String), HashMap<SessionId, ResourceSubscriber>>,
    /// Task id → the upstream that created it (SEP-2663 tasks), oldest first
    /// out when full.
    tasks: HashMap<String, Arc<str>>,
    task_order: std::collections::VecDeque<String>,
    /// Progress the other way: a caller reporting on a request an upstream
    /// sent it (sampling, elicitation). (session, caller-side token) → the
    /// upstream link and the upstream's own token.
    reverse_progress: HashMap<(SessionId, ProgressToken), (Peer<RoleClient>, ProgressToken)>,
    /// Requests relayed to fast-lane callers, by relay id.
    lane_relays: HashMap<String, LaneRelay>,
}

/// Unregisters a relayed request's progress route when dropped.
pub struct ReverseProgress {
    hub: Arc<Hub>,
    key: (SessionId, ProgressToken),
}

impl Drop for ReverseProgress {
    fn drop(&mut self) {
        self.hub.lock().reverse_progress.remove(&self.key);
    }
}

/// Forgets a lane relay when its wait ends, answered or not.
struct ForgetRelay<'a>(&'a Hub, String);

impl Drop for ForgetRelay<'_> {
    fn drop(&mut self) {
        self.0.lock().lane_relays.remove(&self.1);
    }
}

/// Most task ids remembered; the oldest is forgotten beyond it (its
/// `tasks/get` then answers "unknown task").
pub const MAX_TASKS: usize = 10_000;

/// One session's subscription to one resource.
#[derive(Clone)]
pub struct ResourceSubscriber {
    pub peer: Peer<RoleServer>,
    /// The URI as the caller named it (namespaced).
    pub exposed_uri: String,
}

/// Most resources one session may subscribe to; beyond it, subscribe fails.
pub const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1000;

/// Which lists changed, or which `list_changed` notifications a subscriber
/// asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListChanged {
    pub tools: bool,
    pub resources: bool,
    pub prompts: bool,
}

pub struct Hub {
    inner: Mutex<Inner>,
    max_sessions: usize,
    /// Woken when a call registers, for a request that raced ahead of it.
    registered: tokio::sync::Notify,
    next_relay: AtomicU64,
}

/// Unregisters a call when dropped (completed, failed or cancelled alike).
pub struct Registration {
    hub: Arc<Hub>,
    key: Key,
    progress: Option<(Arc<str>, ProgressToken)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Progress read before the result has been sent on by now
        // (`in_order`): nothing more is routed for this call.
        let mut hub = self.hub.lock();
        hub.calls.remove(&self.key);
        if let Some(p) = self.progress.take() {
            hub.progress.remove(&p);
        }
    }
}

/// A session could not be admitted.
#[derive(Debug, thiserror::Error)]
#[error(
    "too many sessions: {0} are open (http.max_sessions); close idle clients or raise the limit"
)]
pub struct TooManySessions(pub usize);

impl Hub {
    pub fn new(max_sessions: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_sessions,
            registered: tokio::sync::Notify::new(),
            next_relay: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps behind; keep going.
        self.inner.locked()
    }

    /// Record that upstream request `upstream_id` (with `upstream_progress`)
    /// on `server` serves `downstream`.
    pub fn register(
        self: &Arc<Self>,
        server: &Arc<str>,
        upstream_id: RequestId,
        upstream_progress: ProgressToken,
        downstream: Downstream,
    ) -> Registration {
        let key = (server.clone(), upstream_id);
        let progress = downstream
            .progress_token
            .is_some()
            .then(|| (server.clone(), upstream_progress));
        {
            let mut inner = self.lock();
            if let Some(p) = &progress {
                inner.progress.insert(p.clone(), downstream.clone());
            }
            inner.calls.insert(key.clone(), downstream);
        }
        self.registered.notify_waiters();
        Registration {
            hub: self.clone(),
            key,
            progress,
        }
    }

    /// The downstream call an upstream progress notification belongs to.
    pub fn progress_target(&self, server: &Arc<str>, token: &ProgressToken) -> Option<Downstream> {
        self.lock()
            .progress
            .get(&(server.clone(), token.clone()))
            .cloned()
    }

    /// The downstream call a server-to-client request belongs to.
    /// `origin` is the upstream request it arrived with (HTTP), or `None`
    /// when the transport cannot tell (stdio). Waits briefly for a call that
    /// is still registering. Why not is a string on purpose: it only becomes
    /// the message of the error the upstream gets.
    pub async fn request_target(
        &self,
        server: &Arc<str>,
        origin: Option<&RequestId>,
    ) -> Result<Downstream, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        loop {
            let notified = self.registered.notified();
            match self.try_request_target(server, origin) {
                Ok(d) => return Ok(d),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
            }
        }
    }

    fn try_request_target(
        &self,
        server: &Arc<str>,
        origin: Option<&RequestId>,
    ) -> Result<Downstream, String> {
        let inner = self.lock();
        if let Some(id) = origin {
            return inner
                .calls
                .get(&(server.clone(), id.clone()))
                .cloned()
                .ok_or_else(|| "no caller is waiting on the request this belongs to".to_string());
        }
        self.sole_session(&inner, server)
    }

    /// Whether any call to `server` is in flight on the rmcp path.
    pub fn has_calls(&self, server: &Arc<str>) -> bool {
        self.lock().calls.keys().any(|(s, _)| s == server)
    }

    /// For notifications without a request tag (log messages): the one
    /// session with calls in flight on `server`, if there is exactly one.
    pub fn sole_target(&self, server: &Arc<str>) -> Option<Downstream> {
        let inner = self.lock();
        self.sole_session(&inner, server).ok()
    }

    fn sole_session(&self, inner: &Inner, server: &Arc<str>) -> Result<Downstream, String> {
        let mut found: Option<&Downstream> = None;
        for ((s, _), d) in &inner.calls {
            if s != server {
                continue;
            }
            match found {
                Some(f) if f.session != d.session => {
                    return Err("several clients have calls in flight on this stdio upstream, so the request cannot be attributed to one of them".into());
                }
                _ => found = Some(d),
            }
        }
        found
            .cloned()
            .ok_or_else(|| "no client has a call in flight on this upstream".into())
    }

    /// Add a resource subscriber. `Ok(true)` when it is the first for this
    /// upstream resource (so the upstream must be asked to subscribe). The
    /// refusal (the session's limit) is text the caller reads.
    pub fn subscribe_resource(
        &self,
        server: &Arc<str>,
        upstream_uri: &str,
        session: SessionId,
        subscriber: ResourceSubscriber,
    ) -> Result<bool, String> {
        let mut inner = self.lock();
        let held = inner
            .resource_subscribers
            .values()
            .filter(|s| s.contains_key(&session))
            .count();
        if held >= MAX_SUBSCRIPTIONS_PER_SESSION {
            return Err(format!(
                "this session already has {held} resource subscriptions (the limit); unsubscribe from some first"
            ));
        }
        let subscribers = inner
            .resource_subscribers
            .entry((server.clone(), upstream_uri.to_string()))
            .or_default();
        let first = subscribers.is_empty();
        subscribers.insert(session, subscriber);
        Ok(first)
    }

    /// Remove a resource subscriber; `true` when it was the last one.
    pub fn unsubscribe_resource(
        &self,
        server: &Arc<str>,
        upstream_uri: &str,
        session: SessionId,
    ) -> bool {
        let mut inner = self.lock();
        let key = (server.clone(), upstream_uri.to_string());
        let Some(subscribers) = inner.resource_subscribers.get_mut(&key) else {
            return false;
        };
        let removed = subscribers.remove(&session).is_some();
        let last = removed && subscribers.is_empty();
        if subscribers.is_empty() {
            inner.resource_subscribers.remove(&key);
        }
        last
    }

    /// Upstream URIs on `server` that some session is subscribed to.
    pub fn subscribed_uris(&self, server: &Arc<str>) -> Vec<String> {
        self.lock()
            .resource_subscribers
            .keys()
            .filter(|(s, _)| s == server)
            .map(|(_, uri)| uri.clone())
            .collect()
    }

    /// Who to tell that an upstream resource changed (closed sessions pruned).
    pub fn resource_subscribers(
        &self,
        server: &Arc<str>,
        upstream_uri: &str,
    ) -> Vec<ResourceSubscriber> {
        let mut inner = self.lock();
        let key = (server.clone(), upstream_uri.to_string());
        let Some(subscribers) = inner.resource_subscribers.get_mut(&key) else {
            return Vec::new();
        };
        subscribers.retain(|_, s| !s.peer.is_transport_closed());
        subscribers.values().cloned().collect()
    }

    /// Route the caller's progress on a relayed request back to the upstream.
    pub fn register_reverse_progress(
        self: &Arc<Self>,
        session: SessionId,
        caller_token: ProgressToken,
        upstream: Peer<RoleClient>,
        upstream_token: ProgressToken,
    ) -> ReverseProgress {
        let key = (session, caller_token);
        self.lock()
            .reverse_progress
            .insert(key.clone(), (upstream, upstream_token));
        ReverseProgress {
            hub: self.clone(),
            key,
        }
    }

    /// Where a caller's progress notification goes, if it is about a
    /// request an upstream sent it.
    pub fn reverse_progress_target(
        &self,
        session: SessionId,
        caller_token: &ProgressToken,
    ) -> Option<(Peer<RoleClient>, ProgressToken)> {
        self.lock()
            .reverse_progress
            .get(&(session, caller_token.clone()))
            .cloned()
    }

    /// A fresh id for a request relayed to a lane caller.
    pub fn new_lane_relay_id(&self) -> String {
        format!(
            "{RELAY_ID_PREFIX}{}",
            self.next_relay.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Expect the lane caller of `session` to answer relay `relay_id`;
    /// `progress_back` when the upstream asked for progress on it.
    pub fn register_lane_relay(
        &self,
        relay_id: &str,
        session: Arc<str>,
        progress_back: Option<LaneProgressBack>,
    ) {
        self.lock().lane_relays.insert(
            relay_id.to_string(),
            LaneRelay {
                session,
                answer: None,
                progress_back,
            },
        );
    }

    /// The caller's answer to relay `relay_id`, `None` if it never comes.
    /// Set up at once (an answer arriving before this is awaited is kept);
    /// the relay is forgotten when the wait ends, answered or not.
    pub fn lane_answer(&self, relay_id: String) -> impl Future<Output = Option<Bytes>> + '_ {
        let (tx, rx) = oneshot::channel();
        if let Some(relay) = self.lock().lane_relays.get_mut(&relay_id) {
            relay.answer = Some(tx);
        }
        let forget = ForgetRelay(self, relay_id);
        async move {
            let _forget = forget;
            rx.await.ok()
        }
    }

    /// Hand the caller's `answer` to relay `relay_id`, if `session` may
    /// answer it and it is awaited; whether it was taken.
    pub fn answer_lane_relay(&self, session: &str, relay_id: &str, answer: Bytes) -> bool {
        let taken = self
            .lock()
            .lane_relays
            .get_mut(relay_id)
            .filter(|r| &*r.session == session)
            .and_then(|r| r.answer.take());
        match taken {
            Some(tx) => {
                let _ = tx.send(answer);
                true
            }
            None => false,
        }
    }

    /// Where the caller's progress on relay `relay_id` goes, if `session`
    /// owns it and the upstream asked for progress.
    pub fn lane_progress_back(&self, session: &str, relay_id: &str) -> Option<LaneProgressBack> {
        let inner = self.lock();
        let relay = inner
            .lane_relays
            .get(relay_id)
            .filter(|r| &*r.session == session)?;
        let (server, lane_session, token) = relay.progress_back.as_ref()?;
        Some((server.clone(), lane_session.clone(), token.clone()))
    }

    /// Remember which upstream owns a task, for `tasks/get|update|cancel`.
    pub fn remember_task(&self, task_id: String, server: Arc<str>) {
        let mut inner = self.lock();
        if inner.tasks.insert(task_id.clone(), server).is_none() {
            inner.task_order.push_back(task_id);
        }
        while inner.task_order.len() > MAX_TASKS {
            if let Some(old) = inner.task_order.pop_front() {
                inner.tasks.remove(&old);
                tracing::debug!(task = %old, "forgot the oldest task: over {MAX_TASKS}");
            }
        }
    }

    pub fn task_server(&self, task_id: &str) -> Option<Arc<str>> {
        self.lock().tasks.get(task_id).cloned()
    }

    /// Admit a session, opened by `caller`, for `list_changed` notifications.
    pub fn add_session(
        &self,
        id: SessionId,
        peer: Peer<RoleServer>,
        caller: Caller,
    ) -> Result<(), TooManySessions> {
        let mut inner = self.lock();
        if inner.sessions.len() >= self.max_sessions {
            inner.sessions.retain(|_, (p, _)| !p.is_transport_closed());
            if inner.sessions.len() >= self.max_sessions {
                return Err(TooManySessions(inner.sessions.len()));
            }
        }
        inner.sessions.insert(id, (peer, caller));
        Ok(())
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn add_subscription(
        &self,
        id: SessionId,
        sink: SubscriptionSink,
        wants: ListChanged,
        caller: Caller,
    ) {
        self.lock().subscriptions.insert(id, (sink, wants, caller));
    }

    pub fn remove_subscription(&self, id: SessionId) {
        self.lock().subscriptions.remove(&id);
    }

    /// Tell every connected client what changed. Closed sessions are pruned.
    pub fn broadcast_list_changed(&self, changed: ListChanged) {
        self.notify_list_changed(|_| changed);
    }

    /// The distinct callers of the connected sessions and subscriptions.
    pub fn callers(&self) -> Vec<Caller> {
        let inner = self.lock();
        let callers: std::collections::HashSet<&Caller> = inner
            .sessions
            .values()
            .filter(|(p, _)| !p.is_transport_closed())
            .map(|(_, c)| c)
            .chain(inner.subscriptions.values().map(|(_, _, c)| c))
            .collect();
        callers.into_iter().cloned().collect()
    }

    /// Tell each connected client what changed for its caller. Closed
    /// sessions are pruned.
    pub fn notify_list_changed(&self, changed: impl Fn(&Caller) -> ListChanged) {
        let (peers, sinks) = {
            let mut inner = self.lock();
            inner.sessions.retain(|_, (p, _)| !p.is_transport_closed());
            let peers: Vec<_> = inner
                .sessions
                .values()
                .map(|(p, c)| (p.clone(), changed(c)))
                .filter(|(_, what)| *what != ListChanged::default())
                .collect();
            let sinks: Vec<_> = inner
                .subscriptions
                .values()
                .map(|(sink, wants, c)| (sink.clone(), *wants, changed(c)))
                .filter(|(_, _, what)| *what != ListChanged::default())
                .collect();
            (peers, sinks)
        };
        if peers.is_empty() && sinks.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for (peer, changed) in peers {
                if changed.tools {
                    let _ = peer.notify_tool_list_changed().await;
                }
                if changed.resources {
                    let _ = peer.notify_resource_list_changed().await;
                }
                if changed.prompts {
                    let _ = peer.notify_prompt_list_changed().await;
                }
            }
            for (sink, wants, changed) in sinks {
                if changed.tools && wants.tools {
                    let _ = sink.notify_tool_list_changed().await;
                }
                if changed.resources && wants.resources {
                    let _ = sink.notify_resource_list_changed().await;
                }
                if changed.prompts && wants.prompts {
                    let _ = sink.notify_prompt_list_changed().await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_forgotten_oldest_first_at_the_bound() {
        let hub = Hub::new(1);
        let server: Arc<str> = Arc::from("s");
        for i in 0..=MAX_TASKS {
            hub.remember_task(format!("t{i}"), server.clone());
        }
        assert!(hub.task_server("t0").is_none(), "oldest forgotten");
        assert!(hub.task_server("t1").is_some());
        assert!(hub.task_server(&format!("t{MAX_TASKS}")).is_some());
        assert_eq!(hub.lock().tasks.len(), MAX_TASKS);
    }
}
