//! Serving the gateway: [`HttpServer`] (streamable HTTP behind the front
//! door of [`super::listen`], routed by [`super::router()`]) and
//! [`serve_stdio`] (one local client over stdin/stdout), each with its
//! graceful shutdown; and [`StartError`], why either could not start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use super::{Gateway, listen, router, start_audit, tasks};
use crate::authenticate::{ApiKeys, Authenticator, sso};
use crate::call::{Caller, Inspect};
use crate::config::Config;
use crate::guardrails::Guardrails;
use crate::mcp::ingress::server::VirtualServer;
use crate::storage::{Store, StoreError};

/// How long the last responses get to reach clients after the final call
/// completes during shutdown.
const RESPONSE_FLUSH: Duration = Duration::from_millis(200);

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
    #[error("invalid guardrails; nothing was started:\n{}", lines(.0))]
    Guardrails(Vec<crate::guardrails::policy::PolicyError>),
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
    Listen(#[from] listen::ListenError),
    /// An HTTP client (upstream links, identity providers, forwarding)
    /// could not be built; toolgate never falls back to another one.
    #[error("{0}")]
    HttpClient(String),
    /// The injection model shipped in the binary (the tool-definition
    /// lint's, without guardrails) did not load.
    #[error("the shipped injection model did not load: {0}")]
    InjectionModel(String),
    /// `toolgate stdio`'s policies did not load; shown as they are, with
    /// no "nothing was started" prefix (the stdio session never had one).
    #[error(transparent)]
    StdioPolicies(crate::authorize::PolicyErrors),
    /// The stdio client's `initialize` failed.
    #[error(transparent)]
    StdioInitialize(Box<rmcp::service::ServerInitializeError>),
}

/// Raise the open-files limit and fit the connection cap under it.
fn front_door_limits(config: &Config) -> Result<listen::Limits, StartError> {
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

impl HttpServer {
    /// Open the store, bind `config.listen` (port 0 picks a free one) and
    /// start serving.
    pub async fn start(config: Config) -> Result<HttpServer, StartError> {
        Self::start_inspected(config, Vec::new()).await
    }

    /// [`HttpServer::start`], with `inspectors` in the pipeline's inspect
    /// stages (see [`crate::call::Inspect`]).
    pub async fn start_inspected(
        config: Config,
        inspectors: Vec<Arc<dyn Inspect>>,
    ) -> Result<HttpServer, StartError> {
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
        let guardrails = load_guardrails(&config)?;
        let store = Store::open_configured(&config.storage).await?;
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
            .map_err(|e| StartError::Sso(e.to_string()))?;
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
        let gateway = Gateway::start(config, policies, audit, guardrails, inspectors)?;
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
                    .map_err(|e| StartError::HttpClient(e.to_string()))?,
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
        tokio::spawn(tasks::flush_last_used(keys, stop.clone()));
        for issuer in issuers.iter() {
            tokio::spawn(issuer.clone().maintain(stop.clone()));
        }
        let gw = gateway.clone();
        let stop_signal = stop.clone();
        let task = tokio::spawn(async move {
            let drained = CancellationToken::new();
            let serve = tokio::spawn(listen::serve(listener, app, limits, drained.clone()));
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

/// `toolgate stdio`: serve one local client over stdin/stdout, as
/// `local:$USER` without groups, or, given `api_key` (the
/// `TOOLGATE_API_KEY` environment variable), as that key's identity and
/// groups, verified against the key store as the HTTP front end does. The
/// key is checked again every `auth.api_key_cache_ttl`: once revoked or
/// expired, the session ends.
pub async fn serve_stdio(
    config: Config,
    api_key: Option<crate::config::Secret>,
) -> Result<(), StartError> {
    let policies = crate::authorize::Policies::load(&config.policies_dir, 1)
        .map_err(StartError::StdioPolicies)?;
    let guardrails = load_guardrails(&config)?;
    let store = Store::open_configured(&config.storage).await?;
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
    let gw = Gateway::start(config, policies, audit, guardrails, Vec::new())?;
    let caller = key
        .as_ref()
        .map_or_else(Caller::local_process, |(_, _, caller)| caller.clone());
    tracing::info!(subject = %caller.subject, groups = ?caller.groups, "serving one client over stdio");
    let server = VirtualServer::new(gw.mcp.clone(), caller);
    // A message is read as strictly on stdio as on HTTP, with the same bound.
    let max_line = gw.config.http.max_body_bytes;
    let running = server
        .serve(crate::mcp::ingress::stdio(max_line))
        .await
        .map_err(|e| StartError::StdioInitialize(Box::new(e)))?;
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
        return Err(StartError::StdioKey(refusal));
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

/// The guardrails of `policies_dir` (none without `guardrails.toml`).
fn load_guardrails(config: &Config) -> Result<Option<Guardrails>, StartError> {
    let set =
        crate::guardrails::load::load(&config.policies_dir).map_err(StartError::Guardrails)?;
    Ok(set.map(Guardrails::new))
}

/// One error a line.
fn lines(errors: &[crate::guardrails::policy::PolicyError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
