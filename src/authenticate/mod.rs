//! Stage 1, authenticate: who is calling.
//!
//! One axum layer covers every route except [`PUBLIC_ROUTES`]: it turns the
//! request's credential into a [`Caller`] (a request extension), or answers
//! 401 itself, so nothing without an identity reaches a handler. The
//! pipeline's authenticate stage then checks every call has one; the MCP
//! ingress reads it per request (not per session), so each call runs as
//! whoever sent it.
//!
//! Credentials, in order:
//! - `Authorization: Bearer tgk_…`: a toolgate API key ([`api_keys`]);
//! - `Authorization: Bearer <JWT>`: an OIDC access token from one of the
//!   `[[auth.issuers]]` ([`oidc`], rules in [`jwt`]);
//! - none, from a loopback address, under `serve --dev-insecure` (refused
//!   on a non-loopback address): the local dev user.
//!
//! On the LLM API (`/v1/…`) the credential may also come the way LLM SDKs
//! send theirs: `x-api-key` (Anthropic's) or `api-key` (Azure OpenAI's),
//! and a refusal is in the API's own error envelope.
//!
//! A token in the query string is refused and never logged. The caller's
//! token is never forwarded upstream: upstream credentials come only from
//! `servers/*.toml`.

pub mod api_keys;
pub mod graph;
pub mod idp_http;
pub mod jwt;
pub mod oidc;
pub mod sessions;
pub mod sso;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use api_keys::ApiKeys;

use crate::call::Caller;

/// The body of an identity provider's (or Graph's) answer, read chunk by
/// chunk and abandoned as soon as it passes `limit` bytes: never buffered
/// whole first. A `Content-Length` over the limit is refused unread.
/// Why not stays a string: callers only put it into their own message.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let over = || format!("answer over the limit of {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(over());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(over());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Paths anyone may fetch without credentials.
pub const PUBLIC_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
    "/auth/login",
    "/auth/callback",
    "/auth/logout",
];

/// What the authenticate layer needs.
pub struct Authenticator {
    pub keys: Arc<ApiKeys>,
    pub issuers: Vec<Arc<oidc::Issuer>>,
    /// `--dev-insecure`: loopback callers without credentials are let in.
    pub dev_insecure: bool,
    /// Browser sessions (`[auth.sso]`), on browser routes only.
    pub sso: Option<Arc<sso::Sso>>,
    /// For the URLs in challenges.
    pub http: crate::config::HttpConfig,
    pub listen: SocketAddr,
}

/// Why a request has no caller; each becomes a 401 (or 400) with a reason.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("credentials are required: send Authorization: Bearer <API key or access token>")]
    Missing,
    #[error("tokens are not accepted in the URL (they end up in logs); send Authorization: Bearer")]
    TokenInQuery,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("your browser session has expired or ended: sign in again at /auth/login")]
    SessionEnded,
    #[error("{0}")]
    InvalidKey(api_keys::Refusal),
    #[error("access tokens are not accepted: no identity provider is configured")]
    NoIdentityProvider,
    #[error("access token refused: {0}")]
    InvalidToken(String),
    #[error("access token refused: it lacks scope(s) {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
    /// A valid token whose caller may still not be let in (e.g. groups unknown).
    #[error("access token refused: {0}")]
    Forbidden(String),
    /// Deciding needs something that is down right now.
    #[error("cannot decide who is calling right now: {0}; try again")]
    Unavailable(String),
}

impl Rejection {
    fn into_response(self, base: &str) -> Response {
        let scope = match &self {
            Rejection::InsufficientScope(scopes) => Some(scopes.join(" ")),
            _ => None,
        };
        let (status, error) = match self {
            Rejection::Missing | Rejection::SessionEnded => (StatusCode::UNAUTHORIZED, None),
            Rejection::TokenInQuery | Rejection::Malformed => {
                (StatusCode::BAD_REQUEST, Some("invalid_request"))
            }
            Rejection::InvalidKey(_)
            | Rejection::NoIdentityProvider
            | Rejection::InvalidToken(_) => (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            // RFC 6750 §3.1: authenticated, but not allowed this far.
            Rejection::InsufficientScope(_) => (StatusCode::FORBIDDEN, Some("insufficient_scope")),
            Rejection::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            Rejection::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        // RFC 6750 / RFC 9728: tell the client where to learn how to sign in.
        let mut challenge = format!("Bearer resource_metadata=\"{}\"", metadata_url(base));
        if let Some(error) = error {
            challenge.push_str(&format!(", error=\"{error}\""));
        }
        if let Some(scope) = scope {
            challenge.push_str(&format!(", scope=\"{scope}\""));
        }
        let message = self.to_string();
        let mut response = (status, format!("toolgate: {message}\n")).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// A refusal on the LLM API in the API's own error envelope (Anthropic's
/// on `/v1/messages`, OpenAI's elsewhere), so SDKs raise their
/// authentication error rather than fail to read the body.
fn llm_envelope(path: &str, message: &str, response: &mut Response) {
    let status = response.status();
    let kind = match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::SERVICE_UNAVAILABLE => "api_error",
        _ => "invalid_request_error",
    };
    let body = if path.starts_with("/v1/messages") {
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
    } else {
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": "invalid_api_key"}})
    };
    *response.body_mut() = axum::body::Body::from(body.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
}

/// The layer: a [`Caller`] in the request's extensions, or a 401.
pub async fn layer(
    State(auth): State<Arc<Authenticator>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC_ROUTES.contains(&path) {
        return next.run(request).await;
    }
    match identify(&auth, peer, path, request.uri().query(), request.headers()).await {
        Ok(mut caller) => {
            caller.address = Some(peer.ip());
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(rejection) => {
            // The reason goes to the log; never the credential itself.
            tracing::info!(%peer, path, reason = %rejection, "request refused: not authenticated");
            // A browser opening a page without a session signs in first.
            if matches!(rejection, Rejection::Missing | Rejection::SessionEnded)
                && auth.sso.is_some()
                && path.starts_with("/ui/")
                && request.method() == axum::http::Method::GET
            {
                let back = request.uri().path_and_query().map_or(path, |p| p.as_str());
                return sso::sign_in_first(back);
            }
            let text = format!("toolgate: {rejection}");
            let mut response =
                rejection.into_response(&public_base(&auth.http, auth.listen, request.headers()));
            if is_llm_api(path) {
                llm_envelope(path, &text, &mut response);
            }
            response
        }
    }
}

async fn identify(
    auth: &Authenticator,
    peer: SocketAddr,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Caller, Rejection> {
    if token_in_query(query) {
        return Err(Rejection::TokenInQuery);
    }
    match credential(headers, path)? {
        Some(token) if api_keys::is_api_key(token) => {
            auth.keys
                .verify(token)
                .await
                .map_err(|refusal| match refusal {
                    // The store could not be read: nothing is known about the
                    // key, so not "invalid" (401) but "try again" (503).
                    api_keys::Refusal::Unavailable(why) => {
                        Rejection::Unavailable(format!("the key store is unavailable: {why}"))
                    }
                    refusal => Rejection::InvalidKey(refusal),
                })
        }
        Some(_) if auth.issuers.is_empty() => Err(Rejection::NoIdentityProvider),
        Some(token) => verify_access_token(auth, token).await,
        None => {
            if let Some(sso) = &auth.sso
                && sso::COOKIE_ROUTES.iter().any(|p| path.starts_with(p))
                && sso.has_session_cookie(headers)
            {
                return match sso.session(headers).await {
                    Ok(Some(caller)) => Ok(caller),
                    Ok(None) => Err(Rejection::SessionEnded),
                    Err(e) => Err(Rejection::Unavailable(e.to_string())),
                };
            }
            if auth.dev_insecure && peer.ip().is_loopback() {
                Ok(Caller::dev())
            } else {
                Err(Rejection::Missing)
            }
        }
    }
}

/// The caller of an OIDC access token, judged by the issuer it names.
async fn verify_access_token(auth: &Authenticator, token: &str) -> Result<Caller, Rejection> {
    use oidc::{OidcError, Recognised};
    let claimed = oidc::claimed_issuer(token)
        .ok_or_else(|| Rejection::InvalidToken("not a JWT with an `iss` claim".into()))?;
    let mut why_not = format!("issuer `{claimed}` is not trusted");
    for issuer in &auth.issuers {
        match issuer.recognise(&claimed) {
            Recognised::Ours => {
                let name = &issuer.config.name;
                return issuer.verify(token).await.map_err(|e| match e {
                    OidcError::InsufficientScope(missing) => Rejection::InsufficientScope(missing),
                    OidcError::GroupsOverage(_) => Rejection::Forbidden(format!("{name}: {e}")),
                    OidcError::Graph(_) => Rejection::Unavailable(format!("{name}: {e}")),
                    other => Rejection::InvalidToken(format!("{name}: {other}")),
                });
            }
            Recognised::OtherTenant(tid) => {
                why_not = format!(
                    "{}: tenant `{tid}` is not in the `tenants` allowlist",
                    issuer.config.name
                );
            }
            Recognised::OktaOrgServer => {
                why_not = format!(
                    "{}: `{claimed}` is Okta's org authorization server, whose tokens are for Okta's own APIs; get tokens from the custom authorization server `{}`",
                    issuer.config.name, issuer.config.issuer
                );
            }
            Recognised::Unrelated => {}
        }
    }
    Err(Rejection::InvalidToken(why_not))
}

/// The bearer token, if an Authorization header is present.
/// The request's credential: its bearer token, or on the LLM API (`/v1/…`)
/// the `x-api-key` or `api-key` header LLM SDKs send instead.
fn credential<'h>(headers: &'h HeaderMap, path: &str) -> Result<Option<&'h str>, Rejection> {
    let token = bearer(headers)?;
    if token.is_some() || !is_llm_api(path) {
        return Ok(token);
    }
    for name in ["x-api-key", "api-key"] {
        if let Some(value) = headers.get(name) {
            let value = value.to_str().map_err(|_| Rejection::Malformed)?.trim();
            if value.is_empty() {
                return Err(Rejection::Malformed);
            }
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Whether `path` is on the LLM API.
fn is_llm_api(path: &str) -> bool {
    path.starts_with("/v1/")
}

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Rejection::Malformed);
    }
    Ok(Some(token))
}

/// OAuth's query-string token (RFC 6750 §2.3) and the usual variants.
fn token_in_query(query: Option<&str>) -> bool {
    // Decoded as the application would read it: `access%5Ftoken` and
    // `access_token` are one key.
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(key, _)| {
            ["access_token", "token", "api_key", "apikey"]
                .iter()
                .any(|k| key.trim().eq_ignore_ascii_case(k))
        })
    })
}

/// Where this server's protected-resource metadata is (RFC 9728).
fn metadata_url(base: &str) -> String {
    format!("{base}/.well-known/oauth-protected-resource/mcp")
}

/// The base URL clients reach toolgate at: `http.public_url`, else
/// `http://` + the request's `Host` when it is an allowed host (a public
/// route must not echo whatever `Host` a client sends), else the listen
/// address.
pub fn public_base(
    http: &crate::config::HttpConfig,
    listen: SocketAddr,
    headers: &HeaderMap,
) -> String {
    if let Some(url) = &http.public_url {
        return url.clone();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let allowed = host.filter(|h| {
        let name = match h.rsplit_once(':') {
            // `[::1]:8088`, `example.com:8088`; a bare `::1` has no port.
            Some((name, port))
                if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') =>
            {
                name
            }
            _ => h,
        };
        http.allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name))
    });
    match allowed {
        Some(host) => format!("http://{host}"),
        None => format!("http://{listen}"),
    }
}

/// `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728): what this
/// resource is and which authorization servers issue tokens for it.
pub async fn protected_resource_metadata(
    State(config): State<Arc<crate::config::Config>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let issuers = &config.auth.issuers;
    // Entra: one authorization server per allowed tenant (v2 issuers).
    let servers: Vec<String> = issuers
        .iter()
        .flat_map(|i| match &i.provider {
            crate::config::Provider::Entra(entra) => {
                entra.tenants.iter().map(|t| entra.v2_issuer(t)).collect()
            }
            _ => vec![i.issuer.clone()],
        })
        .collect();
    let mut scopes: Vec<&str> = issuers
        .iter()
        .flat_map(|i| i.required_scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let base = public_base(&config.http, config.listen, &headers);
    axum::Json(serde_json::json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
        "resource_name": "toolgate",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server answering `/exact/N` with N bytes in chunks (no
    /// `Content-Length`), `/declared` with a `Content-Length` over any
    /// limit, and `/endless` with a body that never ends.
    async fn body_server() -> String {
        use axum::body::Body;
        use axum::routing::get;
        let chunks = |n: usize| {
            futures::stream::iter((0..n).step_by(1000).map(move |at| {
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; (n - at).min(1000)]))
            }))
        };
        let router = axum::Router::new()
            .route(
                "/exact/{n}",
                get(
                    move |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                        Body::from_stream(chunks(n))
                    },
                ),
            )
            .route(
                "/declared",
                get(|| async {
                    axum::http::Response::builder()
                        .header("content-length", "999999999")
                        .body(Body::from_stream(futures::stream::repeat_with(|| {
                            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x"))
                        })))
                        .expect("response")
                }),
            )
            .route(
                "/endless",
                get(|| async {
                    Body::from_stream(futures::stream::repeat_with(|| {
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))
                    }))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    #[tokio::test]
    async fn answers_are_capped_while_read() {
        let base = body_server().await;
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("{base}{path}")).send();
        let limit = 10_000;
        let body = read_capped(get("/exact/10000").await.expect("get"), limit).await;
        assert_eq!(
            body.map(|b| b.len()),
            Ok(limit),
            "exactly the limit is fine"
        );
        for path in ["/exact/10001", "/exact/50000", "/declared"] {
            let err = read_capped(get(path).await.expect("get"), limit)
                .await
                .expect_err(path);
            assert_eq!(err, "answer over the limit of 10000 bytes", "{path}");
        }
        // A body that never ends: refused at the limit, not read forever.
        let endless = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            read_capped(get("/endless").await.expect("get"), limit),
        )
        .await
        .expect("stops at the limit");
        assert!(endless.is_err());
    }

    #[test]
    fn query_tokens_are_spotted() {
        assert!(token_in_query(Some("access_token=abc")));
        assert!(token_in_query(Some("x=1&API_KEY=abc")));
        assert!(!token_in_query(Some("x=1&tokens=2")));
        // Encoded keys are the same keys once decoded.
        assert!(token_in_query(Some("access%5Ftoken=abc")));
        assert!(token_in_query(Some("x=1&%61pi_key=abc")));
        assert!(token_in_query(Some("x=1;y=2&Token")));
        assert!(token_in_query(Some("&&token=")));
        assert!(!token_in_query(Some("next=%2Fx%3Ftoken%3D1")));
        assert!(!token_in_query(None));
    }

    #[test]
    fn public_urls_never_echo_a_foreign_host() {
        let mut http = crate::config::Config::load(None, "toolgate")
            .expect("defaults load")
            .http;
        let listen: SocketAddr = "127.0.0.1:8088".parse().expect("addr");
        let with_host = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).expect("value"));
            h
        };
        for (host, base) in [
            ("127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("[::1]:9000", "http://[::1]:9000"),
            ("LOCALHOST", "http://LOCALHOST"),
            ("evil.example", "http://127.0.0.1:8088"),
            ("evil.example:80", "http://127.0.0.1:8088"),
        ] {
            assert_eq!(public_base(&http, listen, &with_host(host)), base, "{host}");
        }
        assert_eq!(
            public_base(&http, listen, &HeaderMap::new()),
            "http://127.0.0.1:8088"
        );
        http.public_url = Some("https://toolgate.example.com".into());
        assert_eq!(
            public_base(&http, listen, &with_host("evil.example")),
            "https://toolgate.example.com"
        );
    }

    #[test]
    fn bearer_headers() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(matches!(bearer(&h), Ok(Some("abc"))));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer(&h).is_err());
    }
}
