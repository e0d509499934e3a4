//! The running gateway: shared state, the HTTP router, and the two ways to
//! serve it (streamable HTTP in axum, or stdio), with graceful shutdown.
//!
//! Shutdown order: stop taking new calls → let in-flight calls finish (up to
//! `shutdown_grace`) → close client sessions → stop upstreams (stdio children
//! get SIGTERM, then SIGKILL).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::authenticate::sessions::Ownership;
use crate::authenticate::{self, ApiKeys, Authenticator, sso};
use crate::call::Caller;
use crate::config::Config;
use crate::mcp::hub::ListChanged;
use crate::mcp::lane::FastLane;
use crate::mcp::server::VirtualServer;
use crate::mcp::state::McpState;
use crate::pipeline::{InFlight, Pipeline};
use crate::storage::{Store, StoreError};

/// How long the last responses get to reach clients after the final call
/// completes during shutdown.
const RESPONSE_FLUSH: Duration = Duration::from_millis(200);

/// Shared state of one gateway process.
pub struct Gateway {
    pub config: Arc<Config>,
    /// The spine every call runs through.
    pub pipeline: Arc<Pipeline>,
    /// The MCP front end: upstreams, catalog, sessions.
    pub mcp: Arc<McpState>,
    /// Stops upstream supervisors (and so child processes).
    pub shutdown: CancellationToken,
    /// Trusted OIDC issuers and their keys.
    pub issuers: Arc<[Arc<authenticate::oidc::Issuer>]>,
}

impl Gateway {
    /// Build the gateway and start one supervisor per upstream; fails only
    /// when an HTTP client cannot be built (never a fallback client).
    pub fn start(
        config: Config,
        policies: crate::authorize::Policies,
        audit: crate::audit::Audit,
    ) -> Result<Arc<Self>, StartError> {
        let issuers = config
            .auth
            .issuers
            .iter()
            .cloned()
            .map(authenticate::oidc::Issuer::new)
            .collect::<Result<_, _>>()
            .map_err(StartError::HttpClient)?;
        let pipeline = Arc::new(Pipeline {
            policies: crate::authorize::Engine::new(policies, config.policies_dir.clone()),
            audit,
            approvals: config.approvals.clone(),
            admission: InFlight::new(config.max_in_flight_calls),
        });
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        let mcp = McpState::start(config.clone(), pipeline.clone(), &shutdown);
        let gw = Arc::new(Gateway {
            config,
            pipeline,
            mcp,
            shutdown,
            issuers,
        });
        tokio::spawn(policy_task(Arc::downgrade(&gw)));
        Ok(gw)
    }

    /// The gateway's state in detail (see [`crate::admin::readiness`]).
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        crate::admin::readiness(&self.mcp, &self.issuers)
    }

    /// What the admin API and the approver page read.
    pub fn admin(&self) -> crate::admin::Admin {
        crate::admin::Admin {
            pipeline: self.pipeline.clone(),
            mcp: self.mcp.clone(),
            issuers: self.issuers.clone(),
        }
    }

    /// Stop taking calls, wait for in-flight ones up to the grace period,
    /// then stop upstreams.
    pub async fn drain(&self) {
        let grace = self.config.shutdown_grace;
        let left = self.pipeline.admission.close_and_wait(grace).await;
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                grace_s = grace.as_secs_f64(),
                "shutdown grace period over; abandoning calls"
            );
        }
        // Every queued audit record is written (and a checkpoint signed)
        // before the process goes.
        self.pipeline.audit.close().await;
        self.shutdown.cancel();
    }
}

/// The axum router: `/mcp`, `/healthz`, `/readyz` and the RFC 9728
/// metadata, behind the authenticate layer.
pub fn router(
    gw: Arc<Gateway>,
    auth: Arc<Authenticator>,
    sessions_ct: CancellationToken,
) -> axum::Router {
    let http = &gw.config.http;
    let mut origins = http.allowed_origins.clone();
    if origins.is_empty() {
        // A browser page on this machine may talk to a local gateway; any
        // other site may not (cross-site requests get 403).
        origins = vec![
            "http://localhost:*".into(),
            "http://127.0.0.1:*".into(),
            "http://[::1]:*".into(),
        ];
    }
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(http.allowed_hosts.clone())
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(http.max_body_bytes)
        .with_cancellation_token(sessions_ct);
    let factory_gw = gw.clone();
    let mcp = StreamableHttpService::new(
        // Each request's caller comes from the authenticate layer; a
        // request without one runs as nobody and is refused.
        move || Ok(VirtualServer::new(factory_gw.mcp.clone(), Caller::nobody())),
        gw.mcp.fast_lane.sessions(),
        mcp_config,
    );
    let mcp_gw = gw.clone();
    let mcp = axum::routing::any(move |request: axum::extract::Request| {
        mcp_endpoint(mcp_gw.clone(), mcp.clone(), request)
    });
    axum::Router::new()
        .route("/mcp", mcp)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/auth/me", get(sso::me))
        .with_state(gw.clone())
        .merge(
            axum::Router::new()
                .route(
                    "/.well-known/oauth-protected-resource",
                    get(authenticate::protected_resource_metadata),
                )
                .route(
                    "/.well-known/oauth-protected-resource/mcp",
                    get(authenticate::protected_resource_metadata),
                )
                .with_state(gw.config.clone()),
        )
        .merge(crate::admin::router(gw.admin()))
        .merge(crate::admin::approver_page::router(
            crate::admin::approver_page::Ui {
                admin: gw.admin(),
                sso: auth.sso.clone(),
            },
        ))
        .merge(
            axum::Router::new()
                .route("/auth/login", get(sso::login))
                .route("/auth/callback", get(sso::callback))
                .route("/auth/logout", get(sso::logout).post(sso::logout))
                .with_state(auth.sso.clone()),
        )
        // Deny by default: every route but the public ones needs a caller.
        .layer(axum::middleware::from_fn_with_state(
            auth,
            authenticate::layer,
        ))
}

/// `/mcp`: the fast lane takes the `tools/call` requests it can
/// (see [`FastLane`]); rmcp serves everything else.
async fn mcp_endpoint<S, B>(
    gw: Arc<Gateway>,
    mut rmcp: S,
    request: axum::extract::Request,
) -> axum::response::Response
where
    S: tower::Service<
            axum::http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        >,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = request.into_parts();
    let limit = gw.config.http.max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {limit} bytes (http.max_body_bytes)"),
        )
            .into_response();
    };
    let subject = parts
        .extensions
        .get::<Caller>()
        .map_or("", |c| c.subject.as_str());
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    if let Some(session) = session
        && gw.mcp.session_owners.check(session, subject) == Ownership::Foreign
    {
        tracing::warn!(caller = %subject, "request names another caller's MCP session; answered as unknown");
        return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
    }
    // Parsed once, strictly, before anything acts on it (the fast lane,
    // rmcp, the stages behind them): see `mcp::ingress`.
    let message = match strict_message(&parts, &body) {
        Ok(Some(message)) if let Some(answer) = crate::mcp::ingress::misshapen(&message) => {
            return (
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/json")],
                answer,
            )
                .into_response();
        }
        Ok(message) => message,
        Err(refused) => {
            tracing::info!(caller = %subject, error = %refused, "refused an MCP message that does not parse strictly");
            return (
                StatusCode::BAD_REQUEST,
                [(http::header::CONTENT_TYPE, "application/json")],
                crate::mcp::ingress::parse_error(&refused),
            )
                .into_response();
        }
    };
    // Who opens a session, if this request may (it names none), and
    // whether its client can be asked questions (kept for the fast lane).
    let opener = session.is_none().then(|| subject.to_string());
    let elicits = opener.is_some()
        && message
            .as_ref()
            .is_some_and(initialize_declares_elicitation);
    if let Some(message) = message
        && let Some(response) = FastLane::intercept(&gw.mcp, &parts, &body, message).await
    {
        return response;
    }
    let request = axum::http::Request::from_parts(parts, http_body_util::Full::new(body));
    let response = match rmcp.call(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    };
    if let Some(opener) = opener
        && let Some(opened) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        gw.mcp
            .remember_session_owner(opened, &opener, elicits)
            .await;
    }
    response
}

/// The JSON-RPC message a POST carries, parsed strictly; `None` when
/// there is nothing to parse (another method, an empty body, a content
/// type rmcp will refuse with 415).
fn strict_message(
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Option<serde_json::Value>, crate::util::json::Refused> {
    let json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if parts.method != http::Method::POST || !json {
        return Ok(None);
    }
    crate::util::json::parse(body).map(Some)
}

/// Whether an `initialize` request's client capabilities take form
/// elicitation.
fn initialize_declares_elicitation(message: &serde_json::Value) -> bool {
    use serde::Deserialize as _;
    #[derive(serde::Deserialize)]
    struct Initialize {
        params: Params,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        capabilities: rmcp::model::ClientCapabilities,
    }
    Initialize::deserialize(message)
        .is_ok_and(|i| crate::mcp::confirm::can_elicit(&i.params.capabilities))
}

/// `/readyz` is public (load balancers, orchestrators): states only. Error
/// texts and addresses say where internal services live and may echo what
/// an upstream sent, so they are for admins (`GET /admin/v1/status`).
async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let (ready, detail) = gw.readiness();
    let names = |list: &serde_json::Value| list.as_array().cloned().unwrap_or_default();
    let upstreams: Vec<_> = names(&detail["upstreams"])
        .iter()
        .map(|u| serde_json::json!({"name": u["name"], "health": {"state": u["health"]["state"]}}))
        .collect();
    let issuers: Vec<_> = names(&detail["issuers"])
        .iter()
        .map(|i| serde_json::json!({"name": i["name"], "state": i["state"]}))
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "upstreams": upstreams,
        "issuers": issuers,
        "details": "GET /admin/v1/status (administer Admin::\"status\")",
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// The audit trail over `store`, with its checkpoint key.
pub fn start_audit(config: &Config, store: &Store) -> Result<crate::audit::Audit, StartError> {
    let key =
        crate::audit::SigningKey::load(config.audit.signing_key.as_ref(), &config.storage.data_dir)
            .map_err(StartError::Audit)?;
    let audit = crate::audit::Audit::start(store.clone(), config.audit.clone(), key)
        .map_err(StartError::HttpClient)?;
    if let Some(w) = &config.approvals.webhook {
        audit.forward(
            w.forward.clone(),
            crate::approvals::webhook_feed(w.slack, w.ui_url.clone()),
        );
    }
    Ok(audit)
}

/// How often `policies/` is checked for changes.
const POLICY_CHECK: Duration = Duration::from_secs(1);

/// Reload policies when their files change (until the gateway stops); a
/// swap may change what clients see, so each client whose lists differ
/// under the new set is told to list again.
async fn policy_task(gw: std::sync::Weak<Gateway>) {
    let mut refused = None;
    loop {
        tokio::time::sleep(POLICY_CHECK).await;
        let Some(gw) = gw.upgrade() else { return };
        if gw.shutdown.is_cancelled() {
            return;
        }
        let old = gw.pipeline.policies.current();
        let mut record = crate::audit::Record::new(crate::audit::Kind::PolicyReload);
        match gw.pipeline.policies.reload_if_changed(&mut refused) {
            crate::authorize::Reload::Unchanged => continue,
            crate::authorize::Reload::Swapped => {
                let new = gw.pipeline.policies.current();
                record.outcome = Some("ok");
                record.detail = Some(serde_json::json!({
                    "version": new.version,
                    "policies": new.len(),
                    "digest": crate::util::digest::hex(&new.digest),
                }));
                gw.pipeline.audit.submit(record).await;
                announce_policy_change(&gw, old).await;
            }
            crate::authorize::Reload::Refused(errors) => {
                record.outcome = Some("refused");
                record.detail = Some(serde_json::json!({
                    "version_in_force": old.version,
                    "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                }));
                gw.pipeline.audit.submit(record).await;
            }
        }
    }
}

/// Most distinct connected callers whose lists are compared after a policy
/// reload; past it, every client is told to list again.
const MAX_COMPARED_CALLERS: usize = 1000;

/// Tell each connected client whose lists differ between the `old` policies
/// and the ones now in force (comparing is a list per caller and set:
/// done off the async workers).
async fn announce_policy_change(gw: &Arc<Gateway>, old: Arc<crate::authorize::Policies>) {
    let everything = ListChanged {
        tools: true,
        resources: true,
        prompts: true,
    };
    let callers = gw.mcp.hub.callers();
    if callers.len() > MAX_COMPARED_CALLERS {
        gw.mcp.hub.broadcast_list_changed(everything);
        return;
    }
    let compare = gw.clone();
    let changed = tokio::task::spawn_blocking(move || {
        let new = compare.pipeline.policies.current();
        callers
            .into_iter()
            .map(|c| {
                let changed = crate::mcp::views::changed(&compare.mcp, &old, &new, &c);
                (c, changed)
            })
            .collect::<HashMap<_, _>>()
    })
    .await
    .unwrap_or_default();
    // A session opened meanwhile is told everything, to be safe.
    gw.mcp
        .hub
        .notify_list_changed(|c| changed.get(c).copied().unwrap_or(everything));
}

/// A bound HTTP gateway, for `serve` and for tests.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    /// The admin API key this start created (a fresh store, no identity
    /// provider): shown once by `serve`, never stored in clear.
    pub first_admin_key: Option<String>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot listen on {addr}: {source}; pick another address with `listen` in toolgate.toml or `serve --listen ADDR`"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--dev-insecure lets local callers in without a credential, so it only listens on loopback, not {0}"
    )]
    DevInsecureBeyondLoopback(SocketAddr),
    #[error(
        "listening on {0}, beyond loopback, needs an identity provider: add an [[auth.issuers]] entry to toolgate.toml (see examples/okta, examples/entra), or listen on 127.0.0.1"
    )]
    NoIdentityBeyondLoopback(SocketAddr),
    #[error("invalid policies; nothing was started:\n{0}")]
    Policies(#[from] crate::authorize::PolicyErrors),
    #[error("browser sign-in ([auth.sso]): {0}")]
    Sso(String),
    #[error("creating the first admin API key: {0}")]
    FirstKey(#[from] crate::authenticate::api_keys::KeyError),
    #[error(
        "TOOLGATE_API_KEY: {0}; `toolgate stdio` runs as that key's identity, so give it a key from `toolgate keys create --name NAME --group GROUP` (same toolgate.toml), or unset it to run as local:$USER without groups"
    )]
    StdioKey(crate::authenticate::api_keys::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit trail's signing key ([audit] signing_key): {0}")]
    Audit(String),
    #[error(transparent)]
    Listen(#[from] crate::listen::ListenError),
    /// An HTTP client (upstream links, identity providers, forwarding)
    /// could not be built; toolgate never falls back to another one.
    #[error("{0}")]
    HttpClient(String),
}

/// Raise the open-files limit and fit the connection cap under it.
fn front_door_limits(config: &Config) -> Result<crate::listen::Limits, StartError> {
    use crate::listen;
    let descriptors = listen::raise_descriptor_limit()?;
    let reserved = listen::reserved_descriptors(config.servers.len());
    let max_connections =
        listen::connection_cap(config.http.max_connections, descriptors.limit, reserved)?;
    tracing::info!(
        open_files = descriptors.limit,
        raised_from = descriptors.was,
        reserved,
        max_connections,
        "open-files limit and connection cap"
    );
    Ok(listen::Limits {
        header_read_timeout: config.http.header_read_timeout,
        idle_timeout: config.http.idle_timeout,
        max_connections,
    })
}

/// How often API keys' last-use times are written.
const LAST_USED_FLUSH: Duration = Duration::from_secs(30);

impl HttpServer {
    /// Open the store, bind `config.listen` (port 0 picks a free one) and
    /// start serving.
    pub async fn start(config: Config) -> Result<HttpServer, StartError> {
        // Again after `serve`'s `--listen` / `--dev-insecure` overrides.
        if !config.listen.ip().is_loopback() {
            use crate::config::auth::LoopbackOnly;
            match config.auth.loopback_only().next() {
                Some(LoopbackOnly::DevInsecure) => {
                    return Err(StartError::DevInsecureBeyondLoopback(config.listen));
                }
                Some(LoopbackOnly::NoIdentity) => {
                    return Err(StartError::NoIdentityBeyondLoopback(config.listen));
                }
                None => {}
            }
        }
        let policies = crate::authorize::Policies::load(&config.policies_dir, 1)?;
        let store = Store::open(
            config.storage.database_url.as_ref().map(|s| s.expose()),
            &config.storage.data_dir,
        )
        .await?;
        let keys = Arc::new(ApiKeys::new(store.clone(), config.auth.api_key_cache_ttl));
        let first_admin_key = if config.auth.issuers.is_empty() && !config.auth.dev_insecure {
            keys.create_first_admin().await?
        } else {
            None
        };
        let cookie_key = config
            .auth
            .sso
            .as_ref()
            .map(|s| sso::cookie_key(s, &config.storage.data_dir))
            .transpose()
            .map_err(StartError::Sso)?;
        let limits = front_door_limits(&config)?;
        let bind = |source| StartError::Bind {
            addr: config.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let audit = start_audit(&config, &store)?;
        let gateway = Gateway::start(config, policies, audit)?;
        let issuers = gateway.issuers.clone();
        let sso = match &gateway.config.auth.sso {
            Some(sso) => {
                let issuer = issuers
                    .iter()
                    .find(|i| i.config.name == sso.issuer)
                    .cloned()
                    .ok_or_else(|| StartError::Sso(format!("no issuer `{}`", sso.issuer)))?;
                Some(Arc::new(
                    sso::Sso::new(
                        sso.clone(),
                        issuer,
                        cookie_key.as_deref().unwrap_or_default(),
                        store,
                        addr,
                    )
                    .map_err(StartError::HttpClient)?,
                ))
            }
            None => None,
        };
        let auth = Arc::new(Authenticator {
            sso,
            http: gateway.config.http.clone(),
            listen: addr,
            keys: keys.clone(),
            issuers: issuers.to_vec(),
            dev_insecure: gateway.config.auth.dev_insecure,
        });
        let stop = CancellationToken::new();
        let sessions_ct = CancellationToken::new();
        let app = router(gateway.clone(), auth, sessions_ct.clone());
        tokio::spawn(flush_last_used(keys, stop.clone()));
        for issuer in issuers.iter() {
            tokio::spawn(issuer.clone().maintain(stop.clone()));
        }
        let gw = gateway.clone();
        let stop_signal = stop.clone();
        let task = tokio::spawn(async move {
            let drained = CancellationToken::new();
            let serve = tokio::spawn(crate::listen::serve(listener, app, limits, drained.clone()));
            stop_signal.cancelled().await;
            // Stop accepting connections; requests already open keep going.
            drained.cancel();
            gw.drain().await;
            // A finished call's response is still on its way to the client
            // when the call's guard drops: let it flush before closing sessions.
            tokio::time::sleep(RESPONSE_FLUSH).await;
            sessions_ct.cancel();
            // Open streams end with their sessions; don't wait forever on a stuck one.
            let _ = tokio::time::timeout(Duration::from_secs(2), serve).await;
        });
        tracing::info!(%addr, "toolgate listening; MCP endpoint http://{addr}/mcp");
        Ok(HttpServer {
            addr,
            gateway,
            first_admin_key,
            stop,
            task,
        })
    }

    /// Graceful shutdown; returns when done.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        // Give supervisors a moment to end their children.
        self.gateway
            .mcp
            .wait_upstreams_stopped(Duration::from_secs(5))
            .await;
    }
}

/// Write API keys' last-use times now and then, and once more at shutdown.
async fn flush_last_used(keys: Arc<ApiKeys>, stop: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(LAST_USED_FLUSH) => false,
            _ = stop.cancelled() => true,
        };
        if let Err(e) = keys.flush_last_used().await {
            tracing::warn!(error = %e, "could not record API keys' last use");
        }
        if stopping {
            return;
        }
    }
}

/// `toolgate stdio`: serve one local client over stdin/stdout, as
/// `local:$USER` without groups, or, given `api_key` (the
/// `TOOLGATE_API_KEY` environment variable), as that key's identity and
/// groups, verified against the key store as the HTTP front end does. The
/// key is checked again every `auth.api_key_cache_ttl`: once revoked or
/// expired, the session ends.
pub async fn serve_stdio(
    config: Config,
    api_key: Option<crate::config::Secret>,
) -> anyhow::Result<()> {
    let policies = crate::authorize::Policies::load(&config.policies_dir, 1)?;
    let store = Store::open(
        config.storage.database_url.as_ref().map(|s| s.expose()),
        &config.storage.data_dir,
    )
    .await?;
    let key = match api_key {
        None => None,
        Some(key) => {
            let keys = Arc::new(ApiKeys::new(store.clone(), config.auth.api_key_cache_ttl));
            let caller = keys
                .verify(key.expose())
                .await
                .map_err(StartError::StdioKey)?;
            Some((keys, key, caller))
        }
    };
    let audit = start_audit(&config, &store)?;
    let gw = Gateway::start(config, policies, audit)?;
    let caller = key
        .as_ref()
        .map_or_else(Caller::local_process, |(_, _, caller)| caller.clone());
    tracing::info!(subject = %caller.subject, groups = ?caller.groups, "serving one client over stdio");
    let server = VirtualServer::new(gw.mcp.clone(), caller);
    // A message is read as strictly on stdio as on HTTP, with the same bound.
    let max_line = gw.config.http.max_body_bytes;
    let running = server.serve(crate::mcp::ingress::stdio(max_line)).await?;
    let ct = running.cancellation_token();
    let revoked = async {
        match &key {
            Some((keys, key, _)) => {
                until_refused(keys, key, gw.config.auth.api_key_cache_ttl).await
            }
            None => std::future::pending().await,
        }
    };
    let mut refused = None;
    tokio::select! {
        _ = running.waiting() => {}
        _ = crate::util::signal::shutdown_signal() => { ct.cancel(); }
        refusal = revoked => { ct.cancel(); refused = Some(refusal); }
    }
    if let Some((keys, ..)) = &key
        && let Err(e) = keys.flush_last_used().await
    {
        tracing::warn!(error = %e, "could not record the API key's last use");
    }
    gw.drain().await;
    gw.mcp.wait_upstreams_stopped(Duration::from_secs(5)).await;
    if let Some(refusal) = refused {
        return Err(StartError::StdioKey(refusal).into());
    }
    Ok(())
}

/// Returns once `key` is refused (revoked, expired, deleted, or the store
/// cannot vouch for it: fail closed), checking every `every`.
async fn until_refused(
    keys: &ApiKeys,
    key: &crate::config::Secret,
    every: Duration,
) -> crate::authenticate::api_keys::Refusal {
    loop {
        if let Err(e) = keys.flush_last_used().await {
            tracing::warn!(error = %e, "could not record the API key's last use");
        }
        // At least a second apart, however short the cache TTL.
        tokio::time::sleep(every.max(Duration::from_secs(1))).await;
        if let Err(refusal) = keys.verify(key.expose()).await {
            tracing::error!(%refusal, "TOOLGATE_API_KEY is no longer accepted: ending the stdio session");
            return refusal;
        }
    }
}
