//! The front door: accepts TCP connections and serves HTTP/1.1 on them,
//! bounded in time and number, before any request reaches the router
//! ([`super::router()`], whose authenticate layer comes next).
//!
//! `axum::serve` has no header-read or idle timeout and no cap on
//! connections, so a few thousand half-sent requests used to hold as many
//! descriptors until the process could open no file (the audit store's
//! included). Here:
//!
//! - **Header-read timeout**: a request's head must arrive complete within
//!   `http.header_read_timeout`, counted from the connection's opening (its
//!   first request) or from the request's first byte (later ones).
//! - **Idle timeout**: a connection with no request in progress and nothing
//!   arriving is closed after `http.idle_timeout`. A response in progress
//!   (a long call, an event stream) is never idle, unless the client stops
//!   reading it: a response that cannot be written for `http.idle_timeout`
//!   closes its connection too (the slow-reading form of the same attack).
//! - **Connection cap**: at most `http.max_connections` connections are
//!   served. A further one is answered at once with `503` and `Retry-After`
//!   and closed (up to [`REFUSING`] being answered at a time; beyond that
//!   they wait in the kernel's accept queue, holding no descriptor, until a
//!   slot frees). Refusing rather than holding: a client or load balancer
//!   told "full" can go elsewhere or back off, while one held silently only
//!   learns of it from its own timeout.
//! - **Descriptors**: the soft open-files limit is raised to the hard one at
//!   start, and the cap is set so that the connections, the upstream link a
//!   call on each may open, and the refusals all fit below it with
//!   [`reserved_descriptors`] left for the store, upstream supervisors,
//!   stdio children, the checkpoint file and the feeds: audit writes never
//!   starve.
//!
//! hyper's own `header_read_timeout` starts counting when a connection goes
//! idle, so it cannot tell a slow request head from an idle keep-alive
//! connection; both clocks are kept here instead ([`Clock`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::util::sync::LockExt;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Connections over the cap that may be being answered `503` at once.
pub const REFUSING: usize = 64;
/// How long a connection over the cap gets to send its request head before
/// it is closed unanswered.
const REFUSAL_HEAD: Duration = Duration::from_secs(2);
/// Descriptors kept for everything but client connections: standard
/// streams, the runtime, listeners, the store's pool (SQLite keeps several
/// files per connection), the checkpoint file, the audit and approval feeds,
/// identity providers' key fetches.
const RESERVED_BASE: u64 = 256;
/// Descriptors kept per upstream: a stdio child's pipes, an HTTP upstream's
/// event stream and reconnects.
const RESERVED_PER_UPSTREAM: u64 = 8;
/// How often a refusal at the cap is logged, at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits the front door applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Why the front door cannot open.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot read or raise the open-files limit (RLIMIT_NOFILE): {0}")]
    Rlimit(#[source] std::io::Error),
    #[error(
        "http.max_connections = {wanted} does not fit the open-files limit of {limit} (RLIMIT_NOFILE): with {reserved} descriptors kept for the store and upstreams, and each connection counted twice (its socket and the upstream link a call on it may open), at most {fits} fit; lower http.max_connections or raise the limit (`ulimit -n`, systemd `LimitNOFILE=`)"
    )]
    TooManyConnections {
        wanted: usize,
        limit: u64,
        reserved: u64,
        fits: usize,
    },
    #[error(
        "the open-files limit (RLIMIT_NOFILE) of {limit} leaves no room for client connections after {reserved} descriptors kept for the store and upstreams; raise it to at least {needed} (`ulimit -n`, systemd `LimitNOFILE=`)"
    )]
    TooFewDescriptors {
        limit: u64,
        reserved: u64,
        needed: u64,
    },
}

/// The process's open-files limit.
#[derive(Debug, Clone, Copy)]
pub struct Descriptors {
    /// The soft limit now in force.
    pub limit: u64,
    /// The soft limit before it was raised.
    pub was: u64,
}

/// Raise the soft open-files limit to the hard one (a process may do so
/// without privilege); children started later inherit it.
pub fn raise_descriptor_limit() -> Result<Descriptors, ListenError> {
    let was = rlimit::Resource::NOFILE
        .get_soft()
        .map_err(ListenError::Rlimit)?;
    let limit = rlimit::increase_nofile_limit(u64::MAX).map_err(ListenError::Rlimit)?;
    Ok(Descriptors { limit, was })
}

/// Descriptors kept for everything but client connections, with this many
/// upstreams.
pub fn reserved_descriptors(upstreams: usize) -> u64 {
    RESERVED_BASE + RESERVED_PER_UPSTREAM * upstreams as u64
}

/// The connection cap: `configured`, or the default lowered to what fits.
/// Each connection counts twice (its socket, and the upstream link a call
/// on it may open); [`REFUSING`] sockets are kept for answering `503`.
pub fn connection_cap(
    configured: Option<usize>,
    limit: u64,
    reserved: u64,
) -> Result<usize, ListenError> {
    let spare = limit.saturating_sub(reserved + REFUSING as u64);
    let fits = usize::try_from(spare / 2).unwrap_or(usize::MAX);
    if fits == 0 {
        return Err(ListenError::TooFewDescriptors {
            limit,
            reserved,
            needed: reserved + REFUSING as u64 + 2,
        });
    }
    match configured {
        Some(wanted) if wanted > fits => Err(ListenError::TooManyConnections {
            wanted,
            limit,
            reserved,
            fits,
        }),
        Some(wanted) => Ok(wanted),
        None => Ok(fits.min(crate::config::DEFAULT_MAX_CONNECTIONS)),
    }
}

/// Serve `app` on `listener` within `limits` until `stop`; then accept no
/// more, let each connection finish its request in progress (hyper's
/// graceful shutdown) and return once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let sockets_total = limits.max_connections + REFUSING;
    // A socket is accepted only with one of these: the bound on
    // descriptors held for clients, whatever they send.
    let sockets = Arc::new(Semaphore::new(sockets_total));
    let serving = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Refusals::new(limits.max_connections);
    loop {
        let socket = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = sockets.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Nagle's algorithm + delayed ACK adds ~40 ms per response.
        let _ = tcp.set_nodelay(true);
        match serving.clone().try_acquire_owned() {
            Ok(slot) => {
                let (app, stop) = (app.clone(), stop.clone());
                tokio::spawn(async move {
                    serve_connection(tcp, peer, app, limits, stop).await;
                    drop((slot, socket));
                });
            }
            Err(_) => {
                let refusals = refusals.clone();
                tokio::spawn(async move {
                    refusals.refuse(tcp, peer).await;
                    drop(socket);
                });
            }
        }
    }
    drop(listener);
    // Every connection holds a socket permit until it closes.
    let all = u32::try_from(sockets_total).unwrap_or(u32::MAX);
    let _ = sockets.acquire_many(all).await;
}

/// After a failed `accept`: a connection that went away before it was
/// taken is nothing; anything else (out of descriptors despite the
/// reserve, out of memory) is logged and retried after a pause rather than
/// in a busy loop.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serve one connection until it closes, times out, or (after `stop`)
/// has finished its request in progress.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let clock = Arc::new(Clock::opened());
    let io = TokioIo::new(Watched {
        inner: tcp,
        clock: clock.clone(),
    });
    let service_clock = clock.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let in_progress = InProgress::start(&service_clock);
        request.extensions_mut().insert(ConnectInfo(peer));
        let call = tower::Service::call(&mut app.clone(), request.map(axum::body::Body::new));
        async move {
            let response = call.await?;
            Ok::<_, Infallible>(response.map(|body| {
                axum::body::Body::new(Tracked {
                    inner: body,
                    _in_progress: in_progress,
                })
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The header-read timeout is kept by `Clock` (see the module doc).
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            why = clock.expired(limits) => {
                // No request is in progress (closing loses nothing), or the
                // client stopped reading its response.
                tracing::debug!(%peer, "{why}; connection closed");
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What one connection is doing, for its timeouts.
struct Clock {
    state: Mutex<State>,
    /// `state.write_stalled_since` is set (checked without the lock on
    /// every write).
    write_stalled: AtomicBool,
    /// When bytes last went out, in ms after `opened`: a response flushing
    /// out of hyper's buffers after its body ended is not idleness.
    last_write_ms: AtomicU64,
    opened: Instant,
    /// A deadline appeared or came closer.
    changed: Notify,
}

struct State {
    /// Requests whose response is not yet fully sent.
    in_progress: usize,
    /// When the head of the request being read began (the connection's
    /// opening for its first request).
    head_since: Option<Instant>,
    /// Since when nothing has happened on the connection.
    idle_since: Option<Instant>,
    /// Since when a response has been waiting for the client to read.
    write_stalled_since: Option<Instant>,
}

impl Clock {
    fn opened() -> Self {
        let now = Instant::now();
        Clock {
            state: Mutex::new(State {
                in_progress: 0,
                head_since: Some(now),
                idle_since: Some(now),
                write_stalled_since: None,
            }),
            write_stalled: AtomicBool::new(false),
            last_write_ms: AtomicU64::new(0),
            opened: now,
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state.locked()
    }

    /// Bytes arrived.
    fn received(&self) {
        let mut s = self.state();
        if s.in_progress == 0 && s.idle_since.is_some() {
            s.idle_since = None;
            if s.head_since.is_none() {
                s.head_since = Some(Instant::now());
                drop(s);
                self.changed.notify_one();
            }
        }
    }

    /// A write could not go out (`stalled`) or went out.
    fn wrote<T>(&self, polled: &Poll<std::io::Result<T>>) {
        if matches!(polled, Poll::Ready(Ok(_))) {
            let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_write_ms.store(ms, Ordering::Relaxed);
        }
        let stalled = polled.is_pending();
        if stalled == self.write_stalled.load(Ordering::Relaxed) {
            return;
        }
        self.write_stalled.store(stalled, Ordering::Relaxed);
        self.state().write_stalled_since = stalled.then(Instant::now);
        if stalled {
            self.changed.notify_one();
        }
    }

    /// Resolves once the connection has been idle, or reading a request's
    /// head, for too long; says which.
    async fn expired(&self, limits: Limits) -> &'static str {
        loop {
            let changed = self.changed.notified();
            let deadline = {
                let s = self.state();
                let head = s.head_since.map(|t| {
                    (
                        t + limits.header_read_timeout,
                        "request head not received in time (http.header_read_timeout)",
                    )
                });
                let wrote =
                    self.opened + Duration::from_millis(self.last_write_ms.load(Ordering::Relaxed));
                let idle = s.idle_since.map(|t| {
                    (
                        t.max(wrote) + limits.idle_timeout,
                        "idle (http.idle_timeout)",
                    )
                });
                let unread = s.write_stalled_since.map(|t| {
                    (
                        t + limits.idle_timeout,
                        "response not read by the client (http.idle_timeout)",
                    )
                });
                [head, idle, unread]
                    .into_iter()
                    .flatten()
                    .min_by_key(|d| d.0)
            };
            match deadline {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    // Woken at the deadline, the state is looked at again:
                    // a request may have begun meanwhile.
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Held from a request's head until its response is fully sent (or
/// dropped).
struct InProgress(Arc<Clock>);

impl InProgress {
    fn start(clock: &Arc<Clock>) -> Self {
        let mut s = clock.state();
        s.in_progress += 1;
        s.head_since = None;
        s.idle_since = None;
        drop(s);
        InProgress(clock.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_progress -= 1;
        if s.in_progress == 0 {
            s.idle_since = Some(Instant::now());
            drop(s);
            self.0.changed.notify_one();
        }
    }
}

/// A response body that marks its request done when sent or dropped.
struct Tracked {
    inner: axum::body::Body,
    _in_progress: InProgress,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client socket that tells its [`Clock`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.clock.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.clock.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Answers connections over the cap.
#[derive(Clone)]
struct Refusals {
    message: Bytes,
    /// When a refusal was last logged.
    logged: Arc<Mutex<Option<Instant>>>,
    cap: usize,
}

impl Refusals {
    fn new(cap: usize) -> Self {
        Refusals {
            message: Bytes::from(format!(
                "toolgate is at its limit of {cap} open connections (http.max_connections); retry shortly\n"
            )),
            logged: Arc::default(),
            cap,
        }
    }

    /// Read the request head (briefly), answer `503` with `Retry-After`
    /// and close.
    async fn refuse(&self, tcp: TcpStream, peer: SocketAddr) {
        self.log(peer);
        let message = self.message.clone();
        let service = hyper::service::service_fn(move |_: http::Request<Incoming>| {
            let mut response = Response::new(http_body_util::Full::new(message.clone()));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(REFUSAL_HEAD)
            .keep_alive(false)
            .serve_connection(TokioIo::new(tcp), service);
        // The head timeout bounds the wait for a request; this bounds a
        // client that will not read the answer.
        let _ = tokio::time::timeout(2 * REFUSAL_HEAD, conn).await;
    }

    fn log(&self, peer: SocketAddr) {
        let mut logged = self.logged.locked();
        if logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            *logged = Some(Instant::now());
            tracing::warn!(
                %peer,
                max_connections = self.cap,
                "at the connection limit (http.max_connections): new connections are answered 503 (logged at most every 10 s)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_and_counts_each_connection_twice() {
        let reserved = reserved_descriptors(2);
        assert_eq!(reserved, 272);
        // 1024 - 272 - 64 = 688 spare: 344 connections.
        assert_eq!(connection_cap(None, 1024, reserved).expect("fits"), 344);
        assert_eq!(
            connection_cap(Some(300), 1024, reserved).expect("fits"),
            300
        );
        let e = connection_cap(Some(345), 1024, reserved).expect_err("refused");
        assert!(e.to_string().contains("at most 344 fit"), "{e}");
        // A roomy limit: the default, not everything that fits.
        assert_eq!(
            connection_cap(None, 1 << 20, reserved).expect("fits"),
            crate::config::DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(
            connection_cap(Some(100_000), 1 << 20, reserved).expect("fits"),
            100_000
        );
    }

    #[test]
    fn a_limit_below_the_reserve_is_refused_with_what_would_do() {
        let e = connection_cap(None, 300, reserved_descriptors(1)).expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("at least 330"), "{text}");
        assert!(matches!(e, ListenError::TooFewDescriptors { .. }));
    }
}
