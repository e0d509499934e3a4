//! Browser sign-in (SSO): OpenID Connect authorization code + PKCE against
//! one of the `[[auth.issuers]]`, giving a session cookie. The approver UI
//! uses it; agents use access tokens or API keys instead.
//!
//! - `GET /auth/login?next=/path` sends the browser to the IdP with a fresh
//!   `state`, `nonce` and PKCE challenge, remembered in a signed, short-lived
//!   login cookie (nothing is stored server-side before sign-in).
//! - `GET /auth/callback` checks `state` against that cookie, redeems the
//!   code with the PKCE verifier, verifies the ID token twice (below), then
//!   starts a session: a random id in a signed cookie (`HttpOnly`, `SameSite=Lax`,
//!   `Path=/`, expiring; `Secure` and the `__Host-` prefix over https). The
//!   store keeps only the id's SHA-256 and who signed in.
//! - `GET|POST /auth/logout` ends the session; `GET /auth/me` says who the
//!   request's credential (session, token or key) stands for.
//!
//! The protocol is the `openidconnect` crate's (authorization URL with
//! state, nonce and S256 PKCE; the code exchange; OpenID Connect ID-token
//! validation), sending through [`IdpHttp`] (our reqwest client: no
//! redirects, a timeout, the body capped while read). What the crate works
//! from comes from the [`Issuer`], which already ran discovery and holds
//! the JWKS with its bounds, refresh on an unknown `kid`, and staleness
//! limit: the crate's client is built from those endpoints and that JWKS
//! document, so there is no second discovery fetch, no second key cache,
//! and `/readyz` describes the one state both use.
//!
//! The ID token must pass both the crate's validation (signature with the
//! issuer's keys, `iss`, `aud` = our client id and no other untrusted
//! audience, `exp`, `iat`, `sub`, `nonce`) and the project's stricter
//! verifier ([`Issuer::verify_id_token`]: only RS256/ES256, RSA keys of at
//! least 2048 bits, `crit`/`jku`/`x5u`/`jwk`/`b64` refused, duplicate
//! header names refused, `nbf`, one clock-skew rule). The crate checks no
//! `azp`, so that check is ours: when present it must be our client id.
//!
//! Session cookies are accepted only on browser routes (`/auth/`, `/ui/`,
//! `/admin/`), never on `/mcp`: an agent endpoint must not act on a
//! browser's ambient credential.

use std::path::Path;
use std::sync::Arc;

use askama::Template as _;
use aws_lc_rs::hmac;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::api_keys::sha256_hex;
use super::idp_http::{IdpHttp, error_chain, token_error};
use super::oidc::{Endpoints, Issuer};
use crate::call::Caller;
use crate::config::auth::{ClientAuth, SsoConfig};
use crate::storage::{Store, now_unix};
use crate::util::digest::random_hex;
use crate::util::html::filters;

/// How long a sign-in may take between `/auth/login` and the callback.
const LOGIN_WINDOW_SECS: i64 = 600;
/// Paths where a session cookie counts as a credential.
pub const COOKIE_ROUTES: &[&str] = &["/auth/", "/ui/", "/admin/"];
/// Longest `next` path kept across a sign-in.
const MAX_NEXT: usize = 512;
/// Sessions one subject may hold at once; a new sign-in beyond it ends
/// their oldest.
pub const MAX_SESSIONS_PER_SUBJECT: usize = 20;
/// Largest token endpoint answer read.
pub const MAX_TOKEN_RESPONSE: usize = 256 * 1024;
/// The whole code exchange, connection to last byte.
const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `openidconnect` client of a sign-in: authorization and token
/// endpoints set, nothing else.
type SignInClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// What the login cookie carries to the callback.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    exp: i64,
}

pub struct Sso {
    config: SsoConfig,
    /// The configured redirect URL, or this server's own.
    redirect_url: String,
    issuer: Arc<Issuer>,
    key: hmac::Key,
    store: Store,
    http: IdpHttp,
}

/// Why a sign-in or session failed; each becomes a short page.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the identity provider is not reachable yet ({0}); try again shortly")]
    IdpUnavailable(String),
    #[error("this sign-in expired or was started in another browser; start again at /auth/login")]
    NoPendingLogin,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("redeeming the sign-in code failed: {0}")]
    Exchange(String),
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(String),
    #[error("session store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("no randomness available: {0}")]
    Random(String),
}

impl Sso {
    /// `addr` is where this gateway listens (for the default redirect URL).
    pub fn new(
        config: SsoConfig,
        issuer: Arc<Issuer>,
        key: &[u8],
        store: Store,
        addr: std::net::SocketAddr,
    ) -> Result<Self, super::idp_http::IdpHttpError> {
        let http = IdpHttp::new("browser sign-in", TOKEN_TIMEOUT, MAX_TOKEN_RESPONSE)?;
        let redirect_url = config
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}/auth/callback"));
        Ok(Self {
            config,
            redirect_url,
            issuer,
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            store,
            http,
        })
    }

    fn cookie_name(&self, what: &str) -> String {
        if self.config.https() {
            format!("__Host-toolgate-{what}")
        } else {
            format!("toolgate-{what}")
        }
    }

    fn set_cookie(&self, what: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.config.https() { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name(what)
        );
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn sign(&self, payload: &str) -> String {
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The payload of a cookie value we signed, if untouched.
    fn unsign<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        Some(payload)
    }

    fn cookie<'a>(&self, headers: &'a HeaderMap, what: &str) -> Option<&'a str> {
        let name = self.cookie_name(what);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }

    /// Whether the request carries a session cookie at all.
    pub fn has_session_cookie(&self, headers: &HeaderMap) -> bool {
        self.cookie(headers, "session").is_some()
    }

    /// The token the forms of this request's session carry (a hash of the
    /// session's secret id): a page on another site cannot know it. `None`
    /// without a signed session cookie.
    pub fn form_token(&self, headers: &HeaderMap) -> Option<String> {
        let id = self
            .cookie(headers, "session")
            .and_then(|v| self.unsign(v))?;
        Some(sha256_hex(&format!("toolgate-form:{id}")))
    }

    /// The caller of the request's session cookie: `Ok(None)` without a
    /// valid, unexpired session.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<Caller>, SsoError> {
        let Some(id) = self.cookie(headers, "session").and_then(|v| self.unsign(v)) else {
            return Ok(None);
        };
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT caller_json, expires_at FROM sso_sessions WHERE id_sha256 = $1")
                .bind(sha256_hex(id))
                .fetch_optional(self.store.pool())
                .await?;
        Ok(row
            .filter(|(_, expires_at)| *expires_at > now_unix())
            .and_then(|(json, _)| serde_json::from_str(&json).ok()))
    }

    /// Start a sign-in: where to send the browser, and the login cookie.
    async fn begin(&self, next: &str) -> Result<(String, HeaderValue), SsoError> {
        let endpoints = self.issuer.endpoints().ok_or_else(|| {
            SsoError::IdpUnavailable(self.issuer.health().err().unwrap_or_default())
        })?;
        let pending = Pending {
            state: random_hex(32)?,
            nonce: random_hex(32)?,
            verifier: random_hex(32)?,
            next: next.to_string(),
            exp: now_unix() + LOGIN_WINDOW_SECS,
        };
        // Our own randomness (getrandom, as for every other secret here)
        // for state, nonce and verifier: the crate takes them as given.
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pending.verifier.clone(),
        ));
        let (state, nonce) = (pending.state.clone(), pending.nonce.clone());
        let (url, _, _) = self
            .client(&endpoints)?
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            // The crate always asks for `openid`; the rest as configured.
            .add_scopes(
                self.config
                    .scopes
                    .iter()
                    .filter(|s| *s != "openid")
                    .map(|s| Scope::new(s.clone())),
            )
            .set_pkce_challenge(challenge)
            .url();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&pending).unwrap_or_default());
        let cookie = self.set_cookie("login", &self.sign(&payload), LOGIN_WINDOW_SECS);
        Ok((url.into(), cookie))
    }

    /// Finish a sign-in: the caller and where to go next.
    async fn finish(
        &self,
        headers: &HeaderMap,
        code: &str,
        state: &str,
    ) -> Result<(Caller, String), SsoError> {
        let pending: Pending = self
            .cookie(headers, "login")
            .and_then(|v| self.unsign(v))
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .filter(|p: &Pending| p.exp > now_unix())
            .ok_or(SsoError::NoPendingLogin)?;
        let same_state: bool =
            subtle::ConstantTimeEq::ct_eq(pending.state.as_bytes(), state.as_bytes()).into();
        if !same_state {
            return Err(SsoError::NoPendingLogin);
        }
        let endpoints = self
            .issuer
            .endpoints()
            .ok_or_else(|| SsoError::IdpUnavailable("no endpoints".into()))?;
        let token = endpoints.token.as_str();
        let answer: CoreTokenResponse = self
            .client(&endpoints)?
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                // The crate parses the ID token with the answer: a token
                // it cannot read is a refused ID token, not a failed exchange.
                RequestTokenError::Parse(e, body) => match unreadable_id_token(&body) {
                    Some(why) => SsoError::IdToken(why),
                    None => SsoError::Exchange(token_error::<
                        openidconnect::core::CoreErrorResponseType,
                    >(
                        token, RequestTokenError::Parse(e, body)
                    )),
                },
                e => SsoError::Exchange(token_error(token, e)),
            })?;
        let id_token = answer
            .id_token()
            .ok_or_else(|| SsoError::Exchange("no id_token (is `openid` in the scopes?)".into()))?;
        // The project's rules first: they refresh the keys on an unknown
        // `kid`, so the crate below sees the keys the token needs.
        let raw = id_token.to_string();
        let caller = self
            .issuer
            .verify_id_token(&raw, &self.config.client_id, &pending.nonce)
            .await
            .map_err(|e| SsoError::IdToken(e.to_string()))?;
        let keys = self
            .issuer
            .jwks_document()
            .map_err(|e| SsoError::IdToken(e.to_string()))?;
        let keys: CoreJsonWebKeySet = serde_json::from_slice(&keys)
            .map_err(|e| SsoError::IdToken(format!("the issuer's JWKS: {e}")))?;
        // Checked above against the issuer's accepted `iss` values (Entra
        // has several); the crate then holds the token to that one.
        let iss = caller
            .issuer
            .clone()
            .ok_or_else(|| SsoError::IdToken("missing `iss` claim".into()))?;
        let iss = IssuerUrl::new(iss).map_err(|e| SsoError::IdToken(format!("`iss`: {e}")))?;
        let leeway = chrono::TimeDelta::seconds(self.issuer.config.leeway.as_secs() as i64);
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            iss,
            keys,
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ])
        // The crate allows no skew on `exp`; ours allows `leeway`.
        .set_time_fn(move || chrono::Utc::now() - leeway);
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| SsoError::IdToken(error_chain(&e)))?;
        if let Some(azp) = claims.authorized_party()
            && azp.as_str() != self.config.client_id
        {
            return Err(SsoError::IdToken(format!(
                "its `azp` ({}) is not this client ({})",
                azp.as_str(),
                self.config.client_id
            )));
        }
        Ok((caller, pending.next))
    }

    /// The crate's client for this issuer's endpoints, with our client
    /// credentials.
    fn client(&self, endpoints: &Endpoints) -> Result<SignInClient, SsoError> {
        let url = |what: &str, e: url::ParseError| {
            SsoError::IdpUnavailable(format!("the discovered {what} endpoint: {e}"))
        };
        let issuer = IssuerUrl::new(self.issuer.config.issuer.clone())
            .map_err(|e| SsoError::IdpUnavailable(format!("issuer URL: {e}")))?;
        let client = CoreClient::new(
            ClientId::new(self.config.client_id.clone()),
            issuer,
            CoreJsonWebKeySet::default(),
        )
        .set_auth_uri(
            AuthUrl::new(endpoints.authorization.clone()).map_err(|e| url("authorization", e))?,
        )
        .set_token_uri(TokenUrl::new(endpoints.token.clone()).map_err(|e| url("token", e))?)
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_url.clone())
                .map_err(|e| SsoError::IdpUnavailable(format!("redirect_url: {e}")))?,
        );
        // RFC 6749 §2.3.1: the crate form-encodes both before Basic.
        Ok(
            match (&self.config.client_secret, self.config.client_auth) {
                (Some(secret), auth) => client
                    .set_client_secret(ClientSecret::new(secret.expose().to_string()))
                    .set_auth_type(match auth {
                        ClientAuth::Basic => AuthType::BasicAuth,
                        ClientAuth::Post => AuthType::RequestBody,
                    }),
                (None, _) => client,
            },
        )
    }

    /// Store a session for `caller`; the cookie to set.
    async fn start_session(&self, caller: &Caller) -> Result<HeaderValue, SsoError> {
        let id = random_hex(32)?;
        let now = now_unix();
        let ttl = self.config.session_ttl.as_secs() as i64;
        // Keep the table bounded by live sessions.
        sqlx::query("DELETE FROM sso_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.store.pool())
            .await?;
        let id_sha256 = sha256_hex(&id);
        // The session and its `login` audit record commit together.
        let mut tx = self.store.pool().begin().await?;
        sqlx::query(
            "INSERT INTO sso_sessions (id_sha256, subject, caller_json, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id_sha256)
        .bind(&caller.subject)
        .bind(serde_json::to_string(caller).unwrap_or_default())
        .bind(now)
        .bind(now + ttl)
        .execute(&mut *tx)
        .await?;
        let mut login = crate::audit::Record::new(crate::audit::Kind::Login);
        login.caller = Some(crate::audit::Who::of(caller));
        login.detail =
            Some(serde_json::json!({ "issuer": self.config.issuer, "expires_at": now + ttl }));
        crate::audit::append_in(&mut tx, &[&login]).await?;
        tx.commit().await?;
        // At most MAX_SESSIONS_PER_SUBJECT: the new one and the newest others.
        let others: Vec<(String,)> = sqlx::query_as(
            "SELECT id_sha256 FROM sso_sessions WHERE subject = $1 AND id_sha256 <> $2 \
             ORDER BY created_at DESC",
        )
        .bind(&caller.subject)
        .bind(&id_sha256)
        .fetch_all(self.store.pool())
        .await?;
        for (old,) in others.iter().skip(MAX_SESSIONS_PER_SUBJECT - 1) {
            sqlx::query("DELETE FROM sso_sessions WHERE id_sha256 = $1")
                .bind(old)
                .execute(self.store.pool())
                .await?;
        }
        Ok(self.set_cookie("session", &self.sign(&id), ttl))
    }

    async fn end_session(&self, headers: &HeaderMap) -> Result<(), SsoError> {
        if let Some(id) = self.cookie(headers, "session").and_then(|v| self.unsign(v)) {
            let mut tx = self.store.pool().begin().await?;
            let ended: Option<(String,)> =
                sqlx::query_as("DELETE FROM sso_sessions WHERE id_sha256 = $1 RETURNING subject")
                    .bind(sha256_hex(id))
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((subject,)) = ended {
                let mut logout = crate::audit::Record::new(crate::audit::Kind::Logout);
                logout.caller = Some(crate::audit::Who {
                    subject,
                    credential: crate::call::Credential::Session,
                    ..crate::audit::Who::operator()
                });
                crate::audit::append_in(&mut tx, &[&logout]).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The HMAC key for cookies: configured, or generated once into
/// `data_dir/cookie.key` (owner-only). Several replicas sharing a database
/// need the configured one.
pub fn cookie_key(
    config: &SsoConfig,
    data_dir: &Path,
) -> Result<Vec<u8>, crate::storage::StoreError> {
    if let Some(key) = &config.cookie_key {
        return Ok(key.expose().as_bytes().to_vec());
    }
    crate::storage::key_file(&data_dir.join("cookie.key")).map(String::into_bytes)
}

/// Why the `id_token` of a token endpoint answer does not parse as an ID
/// token, if that is what made the answer unreadable.
fn unreadable_id_token(body: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let raw = answer.get("id_token")?.as_str()?;
    serde_json::from_value::<CoreIdToken>(serde_json::Value::String(raw.to_string()))
        .err()
        .map(|e| format!("it does not parse: {e}"))
}

impl From<getrandom::Error> for SsoError {
    fn from(e: getrandom::Error) -> Self {
        SsoError::Random(e.to_string())
    }
}

/// A local path to return to after sign-in; anything else (another site,
/// `//host`, backslashes) becomes `/auth/me`.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= MAX_NEXT
                && p.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            p.to_string()
        }
        _ => "/auth/me".to_string(),
    }
}

/// The answer to a browser opening a page without a session: sign in,
/// then come back to `path` (with its query).
pub fn sign_in_first(path: &str) -> Response {
    redirect(
        &format!(
            "/auth/login?next={}",
            crate::util::html::percent_encode(path, crate::util::html::PATH)
        ),
        &[],
    )
}

/// A short HTML page: `title` and `message` as text (an askama template,
/// found through `src/askama.toml`; see `crate::util::html` for how text shows).
#[derive(askama::Template)]
#[template(path = "sign_in_page.html", config = "src/askama.toml")]
struct Page<'a> {
    title: &'a str,
    message: &'a str,
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let (status, body) = match (Page { title, message }).render() {
        Ok(body) => (status, body),
        Err(e) => {
            tracing::error!(error = %e, "sign-in page: the template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the sign-in page could not be rendered; see the gateway's log".to_string(),
            )
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn not_configured() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Sign-in not configured",
        "Browser sign-in is not configured on this gateway: add [auth.sso] to toolgate.toml.",
    )
}

fn failed(e: SsoError) -> Response {
    let status = match e {
        SsoError::IdpUnavailable(_) | SsoError::Store(_) | SsoError::Random(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        SsoError::Exchange(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    };
    tracing::info!(reason = %e, "sign-in failed");
    page(status, "Sign-in failed", &e.to_string())
}

fn redirect(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    for cookie in cookies {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /auth/login`
pub async fn login(State(sso): State<Option<Arc<Sso>>>, Query(q): Query<LoginQuery>) -> Response {
    let Some(sso) = sso else {
        return not_configured();
    };
    match sso.begin(&local_path(q.next.as_deref())).await {
        Ok((url, cookie)) => redirect(&url, &[cookie]),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`
pub async fn callback(
    State(sso): State<Option<Arc<Sso>>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(sso) = sso else {
        return not_configured();
    };
    let (code, state) = match (q.code, q.state, q.error) {
        (_, _, Some(error)) => {
            let why = format!("{error} {}", q.error_description.unwrap_or_default());
            return failed(SsoError::Refused(why.trim().to_string()));
        }
        (Some(code), Some(state), None) => (code, state),
        _ => return failed(SsoError::NoPendingLogin),
    };
    let result = match sso.finish(&headers, &code, &state).await {
        Ok((caller, next)) => sso
            .start_session(&caller)
            .await
            .map(|cookie| (caller, next, cookie)),
        Err(e) => Err(e),
    };
    match result {
        Ok((caller, next, cookie)) => {
            tracing::info!(subject = %caller.subject, "signed in");
            let clear_login = sso.set_cookie("login", "", 0);
            redirect(&next, &[cookie, clear_login])
        }
        Err(e) => failed(e),
    }
}

/// `GET|POST /auth/logout`
pub async fn logout(State(sso): State<Option<Arc<Sso>>>, headers: HeaderMap) -> Response {
    let Some(sso) = sso else {
        return not_configured();
    };
    if let Err(e) = sso.end_session(&headers).await {
        return failed(e);
    }
    let mut response = page(
        StatusCode::OK,
        "Signed out",
        "You are signed out of toolgate. Sign in again at /auth/login.",
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, sso.set_cookie("session", "", 0));
    response
}

/// `GET /auth/me`: who this request's credential stands for.
pub async fn me(axum::Extension(caller): axum::Extension<Caller>) -> impl IntoResponse {
    axum::Json(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(local_path(Some("/ui/approvals?x=1")), "/ui/approvals?x=1");
        for hostile in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a b",
        ] {
            assert_eq!(local_path(Some(hostile)), "/auth/me", "{hostile}");
        }
        assert_eq!(local_path(None), "/auth/me");
    }

    #[tokio::test]
    async fn one_subject_holds_a_bounded_number_of_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("store");
        let issuer = Issuer::new(crate::config::IssuerConfig::generic(
            "idp",
            "https://idp.example",
            &["api"],
        ))
        .expect("client");
        let config = SsoConfig {
            issuer: "idp".into(),
            client_id: "web".into(),
            client_secret: None,
            client_auth: ClientAuth::Basic,
            redirect_url: None,
            scopes: vec!["openid".into()],
            session_ttl: std::time::Duration::from_secs(3600),
            cookie_key: None,
        };
        let sso = Sso::new(
            config,
            issuer,
            &[7; 32],
            store.clone(),
            ([127, 0, 0, 1], 1).into(),
        )
        .expect("client");
        let alice = Caller::new("idp:alice".into(), crate::call::Credential::Session);
        let mut cookies = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_SUBJECT + 5 {
            cookies.push(sso.start_session(&alice).await.expect("session"));
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sso_sessions")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(count, MAX_SESSIONS_PER_SUBJECT as i64);
        // The newest session always survives.
        let newest = cookies.last().expect("cookies").to_str().expect("ascii");
        let mut headers = HeaderMap::new();
        let pair = newest.split(';').next().expect("name=value");
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).expect("value"));
        let who = sso.session(&headers).await.expect("lookup");
        assert_eq!(who.map(|c| c.subject), Some("idp:alice".to_string()));
    }
}
