//! OIDC issuers: discovery, a JWKS cache, and access tokens checked with
//! [`super::jwt`] into a [`Caller`].
//!
//! - Discovery (`{issuer}/.well-known/openid-configuration`) runs at start
//!   and is retried in the background (1 s doubling to 60 s) while the IdP
//!   is down; until keys arrive, its tokens are refused (fail closed) and
//!   `/readyz` says why.
//! - Keys are refreshed when `Cache-Control: max-age` says (between 1 minute
//!   and 1 day; 1 hour without it), and at once on an unknown `kid` — at most
//!   once per [`UNKNOWN_KID_REFRESH`], so a flood of random `kid`s costs the
//!   IdP nothing.
//! - While the IdP is unreachable the keys already fetched keep working
//!   for `keys_max_stale` (default [`DEFAULT_MAX_STALE`]); after that its
//!   tokens are refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::graph::Graph;
use super::idp_http::IdpHttpError;
use super::jwt::{self, Alg, Jwk, JwtError, Rules};
use crate::call::{Caller, Credential};
use crate::config::auth::ClaimMapping;
use crate::config::{IssuerConfig, Provider};
use crate::util::sync::LockExt;

/// Shortest time between two key refreshes caused by unknown `kid`s.
pub const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
pub use crate::config::auth::DEFAULT_MAX_STALE;
const DEFAULT_KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Verified tokens remembered (by SHA-256), so an agent's repeated calls
/// with one token cost a hash, not a signature check; at the bound the
/// cache evicts by use (`quick_cache`), so many fresh tokens do not push
/// out the ones in use.
pub const MAX_VERIFIED_TOKENS: usize = 10_000;
/// Longest a verified token is trusted without checking it again (it also
/// never outlives its `exp`), so a key the IdP withdrew stops working soon.
const VERIFIED_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("{0}")]
    Token(#[from] JwtError),
    #[error("identity provider `{0}` has no usable keys yet: {1}")]
    NoKeys(String, String),
    #[error(
        "identity provider `{0}` cannot be reached and its keys are older than keys_max_stale ({1} s): failing closed until it is back"
    )]
    Stale(String, u64),
    #[error("the token lacks scope(s) {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
    #[error("its `tid` ({tid}) is not the tenant of its `iss` ({iss})")]
    TenantMismatch { iss: String, tid: String },
    #[error("tenant `{0}` is not in this issuer's `tenants` allowlist")]
    OtherTenant(String),
    #[error("it has no subject claim (`{0}`)")]
    NoSubject(String),
    #[error(
        "the caller is in too many groups for the token to carry them (Entra groups overage) and [auth.issuers.graph] is not configured for issuer `{0}`, so their groups are unknown; configure Graph, or have the app registration emit only groups assigned to the application (groupMembershipClaims = ApplicationGroup) or app roles"
    )]
    GroupsOverage(String),
    #[error("groups overage: looking the caller's groups up in Microsoft Graph failed: {0}")]
    Graph(String),
}

struct KeySet {
    keys: Arc<Vec<Jwk>>,
    /// The JWKS document `keys` came from, as fetched: browser sign-in
    /// hands it to `openidconnect` (see [`Issuer::jwks_document`]).
    document: Arc<Vec<u8>>,
    fetched: Option<Instant>,
    max_age: Duration,
    /// The last fetch error, while there is one.
    problem: Option<String>,
    /// From discovery: where the keys are, and the sign-in endpoints.
    discovered: Option<Discovered>,
    last_unknown_kid_refresh: Option<Instant>,
}

/// What discovery told us.
#[derive(Debug, Clone)]
struct Discovered {
    jwks_uri: String,
    endpoints: Option<Endpoints>,
}

/// An issuer's browser sign-in endpoints (for SSO).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub end_session: Option<String>,
}

/// How a token's claimed `iss` relates to a configured issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognised {
    /// One of the issuer's accepted `iss` values.
    Ours,
    /// An Entra issuer of a tenant not in `tenants`.
    OtherTenant(String),
    /// The org authorization server of an Okta custom one.
    OktaOrgServer,
    Unrelated,
}

/// One trusted issuer and its keys.
pub struct Issuer {
    pub config: IssuerConfig,
    rules: Rules,
    http: reqwest::Client,
    state: Mutex<KeySet>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// SHA-256 of a verified token → its caller and until when.
    verified: quick_cache::sync::Cache<[u8; 32], (Caller, Instant)>,
    /// Entra groups overage lookups, when configured.
    graph: Option<Graph>,
}

impl Issuer {
    /// Fails only when its HTTP client cannot be built.
    pub fn new(config: IssuerConfig) -> Result<Arc<Self>, IdpHttpError> {
        let rules = Rules {
            issuers: config.accepted_issuers(),
            audiences: config.audiences.clone(),
            algorithms: vec![Alg::Rs256, Alg::Es256],
            leeway: config.leeway,
            id_token_nonce: None,
        };
        let graph = match &config.provider {
            Provider::Entra(entra) => entra.graph.clone().map(Graph::new).transpose()?,
            _ => None,
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // Keys come only from the issuer itself: no redirects elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| IdpHttpError::Client {
                what: format!("identity provider `{}`", config.name),
                source,
            })?;
        Ok(Arc::new(Self {
            config,
            rules,
            http,
            state: Mutex::new(KeySet {
                keys: Arc::default(),
                document: Arc::default(),
                fetched: None,
                max_age: DEFAULT_KEYS_MAX_AGE,
                problem: Some("not fetched yet".into()),
                discovered: None,
                last_unknown_kid_refresh: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            verified: quick_cache::sync::Cache::new(MAX_VERIFIED_TOKENS),
            graph,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeySet> {
        self.state.locked()
    }

    /// Keep the keys fresh until `stop`: fetch now, retry with backoff while
    /// failing, then again when they expire.
    pub async fn maintain(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    self.lock().max_age
                }
                Err(why) => {
                    tracing::warn!(issuer = %self.config.name, %why, retry_in_s = backoff.as_secs(), "identity provider unavailable");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Fetch discovery (once) and the JWKS. Why not stays a string (here,
    /// in `fetch` and `get`): it is kept as the issuer's `problem`, logged
    /// and shown by [`Issuer::health`]; nothing branches on it.
    async fn refresh(&self) -> Result<(), String> {
        let _one_at_a_time = self.fetching.lock().await;
        let result = self.fetch().await;
        let mut state = self.lock();
        match result {
            Ok((keys, document, max_age, discovered)) => {
                state.keys = Arc::new(keys);
                state.document = Arc::new(document);
                state.fetched = Some(Instant::now());
                state.max_age = max_age;
                state.discovered = Some(discovered);
                state.problem = None;
                Ok(())
            }
            Err(why) => {
                state.problem = Some(why.clone());
                Err(why)
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Jwk>, Vec<u8>, Duration, Discovered), String> {
        let known = self.lock().discovered.clone();
        let discovered = match known {
            Some(d) => d,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let (body, _) = self.get(&url).await?;
                let doc: Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("discovery document at {url}: {e}"))?;
                if doc["issuer"].as_str() != Some(self.config.issuer.as_str()) {
                    return Err(format!(
                        "discovery at {url} names issuer {}, not {}",
                        doc["issuer"], self.config.issuer
                    ));
                }
                let text = |k: &str| doc[k].as_str().map(str::to_string);
                Discovered {
                    jwks_uri: text("jwks_uri")
                        .ok_or_else(|| format!("discovery at {url} has no jwks_uri"))?,
                    endpoints: text("authorization_endpoint")
                        .zip(text("token_endpoint"))
                        .map(|(authorization, token)| Endpoints {
                            authorization,
                            token,
                            end_session: text("end_session_endpoint"),
                        }),
                }
            }
        };
        let jwks_uri = &discovered.jwks_uri;
        let (body, max_age) = self.get(jwks_uri).await?;
        let keys = jwt::parse_jwks(&body).map_err(|e| format!("{jwks_uri}: {e}"))?;
        if keys.is_empty() {
            return Err(format!("{jwks_uri} has no RSA or P-256 signing keys"));
        }
        Ok((
            keys,
            body,
            max_age.unwrap_or(DEFAULT_KEYS_MAX_AGE),
            discovered,
        ))
    }

    /// The sign-in endpoints discovery named, once it has run.
    pub fn endpoints(&self) -> Option<Endpoints> {
        self.lock()
            .discovered
            .as_ref()
            .and_then(|d| d.endpoints.clone())
    }

    /// The JWKS document behind the keys [`Self::verify_id_token`] uses,
    /// under the same rules (none before the first fetch, none once stale).
    pub fn jwks_document(&self) -> Result<Arc<Vec<u8>>, OidcError> {
        self.usable_keys()?;
        Ok(self.lock().document.clone())
    }

    /// Whether a token claiming `iss` is this issuer's business.
    pub fn recognise(&self, iss: &str) -> Recognised {
        if self.rules.issuers.iter().any(|i| i == iss) {
            return Recognised::Ours;
        }
        match &self.config.provider {
            Provider::Entra(entra) => match entra.tenant_of(iss) {
                Some(tid) => Recognised::OtherTenant(tid.to_string()),
                None => Recognised::Unrelated,
            },
            Provider::Okta => {
                let org = self.config.issuer.split("/oauth2/").next();
                if org == Some(iss.trim_end_matches('/')) {
                    Recognised::OktaOrgServer
                } else {
                    Recognised::Unrelated
                }
            }
            Provider::Generic => Recognised::Unrelated,
        }
    }

    /// GET a small JSON document; its `Cache-Control: max-age`, bounded.
    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|d| d.trim().strip_prefix("max-age="))
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .map(|s| Duration::from_secs(s.clamp(60, 86_400)));
        let body = super::read_capped(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok((body, max_age))
    }

    /// Whether the issuer has usable keys, and if not, why (a string for
    /// a person: the readiness answer and the sign-in page show it).
    pub fn health(&self) -> Result<(), String> {
        let state = self.lock();
        match (state.fetched, &state.problem) {
            (Some(_), None) => Ok(()),
            (Some(at), Some(p)) if at.elapsed() > self.config.keys_max_stale => Err(format!(
                "failing closed: keys older than keys_max_stale; last refresh failed: {p}"
            )),
            (Some(_), Some(p)) => Err(format!("serving cached keys; last refresh failed: {p}")),
            (None, p) => Err(p.clone().unwrap_or_default()),
        }
    }

    /// The caller an access token from this issuer stands for.
    pub async fn verify(&self, token: &str) -> Result<Caller, OidcError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((caller, until)) = self.verified.get(&digest)
            && Instant::now() < until
        {
            return Ok(caller);
        }
        let now = crate::storage::now_unix();
        let claims = self.judge(token, &self.rules, now).await?;
        let caller = self.caller(&claims, Credential::AccessToken).await?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        let left = Duration::from_secs(exp.saturating_sub(now).max(0) as u64);
        self.remember(digest, caller.clone(), VERIFIED_FOR.min(left));
        Ok(caller)
    }

    /// The caller the ID token of a browser sign-in stands for: issued to
    /// `client_id`, for the sign-in that sent `nonce`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Caller, OidcError> {
        let rules = Rules {
            audiences: vec![client_id.to_string()],
            id_token_nonce: Some(nonce.to_string()),
            ..self.rules.clone()
        };
        let claims = self
            .judge(token, &rules, crate::storage::now_unix())
            .await?;
        self.caller(&claims, Credential::Session).await
    }

    /// The token's claims if it passes `rules` with this issuer's keys,
    /// refreshing the keys once for an unknown `kid` (a rotation).
    async fn judge(
        &self,
        token: &str,
        rules: &Rules,
        now: i64,
    ) -> Result<Map<String, Value>, OidcError> {
        let keys = self.usable_keys()?;
        match jwt::verify(token, &keys, rules, now) {
            Err(JwtError::UnknownKey(kid)) if self.may_refresh_for_unknown_kid() => {
                let _ = self.refresh().await;
                let keys = self.usable_keys()?;
                Ok(jwt::verify(token, &keys, rules, now).map_err(|e| match e {
                    JwtError::UnknownKey(_) => JwtError::UnknownKey(kid),
                    other => other,
                })?)
            }
            other => Ok(other?),
        }
    }

    fn remember(&self, digest: [u8; 32], caller: Caller, for_: Duration) {
        self.verified
            .insert(digest, (caller, Instant::now() + for_));
    }

    fn usable_keys(&self) -> Result<Arc<Vec<Jwk>>, OidcError> {
        let state = self.lock();
        match state.fetched {
            None => Err(OidcError::NoKeys(
                self.config.name.clone(),
                state.problem.clone().unwrap_or_default(),
            )),
            Some(at) if state.problem.is_some() && at.elapsed() > self.config.keys_max_stale => {
                Err(OidcError::Stale(
                    self.config.name.clone(),
                    self.config.keys_max_stale.as_secs(),
                ))
            }
            Some(_) => Ok(state.keys.clone()),
        }
    }

    fn may_refresh_for_unknown_kid(&self) -> bool {
        let mut state = self.lock();
        let allowed = state
            .last_unknown_kid_refresh
            .is_none_or(|at| at.elapsed() >= UNKNOWN_KID_REFRESH);
        if allowed {
            state.last_unknown_kid_refresh = Some(Instant::now());
        }
        allowed
    }

    /// Map verified claims to a caller (subject, groups, roles, …), with
    /// the provider's rules: Entra's tenant checks and groups overage.
    async fn caller(
        &self,
        claims: &Map<String, Value>,
        credential: Credential,
    ) -> Result<Caller, OidcError> {
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mapping = &self.config.claims;
        // `scope` (RFC 9068, Okta's `scp` list) or `scp` (Entra), space-separated or a list.
        let granted = strings(claims.get("scope").or_else(|| claims.get("scp")), true);
        if credential == Credential::AccessToken {
            // Entra app-only tokens (client credentials) carry application
            // permissions as `roles` and no `scp`: there the required
            // values are looked for in `roles` (define an app role with the
            // scope's value).
            let app_only = matches!(self.config.provider, Provider::Entra(_))
                && match text("idtyp") {
                    Some(kind) => kind == "app",
                    None => granted.is_empty(),
                };
            let held = if app_only {
                strings(claims.get("roles"), false)
            } else {
                granted.clone()
            };
            let missing: Vec<String> = self
                .config
                .required_scopes
                .iter()
                .filter(|s| !held.contains(s))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(OidcError::InsufficientScope(missing));
            }
        }
        let name = &self.config.name;
        let (subject, tenant, oid) = match &self.config.provider {
            Provider::Entra(entra) => {
                let iss = text("iss").unwrap_or_default();
                let tid = text("tid").ok_or(JwtError::Missing("tid"))?;
                if entra.tenant_of(&iss) != Some(tid.as_str()) {
                    return Err(OidcError::TenantMismatch { iss, tid });
                }
                if !entra.tenants.contains(&tid) {
                    return Err(OidcError::OtherTenant(tid));
                }
                let oid = text("oid").ok_or(JwtError::Missing("oid"))?;
                (format!("{name}:{tid}:{oid}"), Some(tid), oid)
            }
            _ => {
                let sub = mapping
                    .subject
                    .iter()
                    .find_map(|c| {
                        claim(claims, c)
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                    })
                    .ok_or_else(|| OidcError::NoSubject(mapping.subject.join("` or `")))?;
                (format!("{name}:{sub}"), text("tid"), String::new())
            }
        };
        let mut groups = strings(claim(claims, &mapping.groups), false);
        if groups.is_empty() && groups_overage(claims, &mapping.groups) {
            groups = match (&self.config.provider, &self.graph, &tenant) {
                (Provider::Entra(_), Some(graph), Some(tid)) => {
                    // App-only tokens say `idtyp: app` when that optional
                    // claim is on; without it, no `scp` means no user.
                    let app = match text("idtyp") {
                        Some(kind) => kind == "app",
                        None => granted.is_empty(),
                    };
                    graph
                        .member_groups(tid, &oid, app)
                        .await
                        .map_err(|e| OidcError::Graph(e.to_string()))?
                }
                _ => return Err(OidcError::GroupsOverage(name.clone())),
            };
        }
        Ok(Caller {
            name: text("name")
                .or_else(|| text("preferred_username"))
                .or_else(|| text("email"))
                .or_else(|| text("upn")),
            groups: mapping.rename(groups, true),
            roles: mapping.rename(strings(claim(claims, &mapping.roles), false), false),
            email: text("email").or_else(|| text("upn")),
            tenant,
            issuer: text("iss"),
            client_id: text("azp")
                .or_else(|| text("client_id"))
                .or_else(|| text("appid"))
                .or_else(|| text("cid")),
            scopes: granted,
            ..Caller::new(subject, credential)
        })
    }
}

/// A claim by name, or by a dotted path into nested objects
/// (`realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// A list of strings from a list claim, or from one string (split on
/// spaces when `space_separated`, as scopes are).
fn strings(value: Option<&Value>, space_separated: bool) -> Vec<String> {
    match value {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) if space_separated => {
            s.split_whitespace().map(str::to_string).collect()
        }
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Entra left the groups out because there were too many: `_claim_names`
/// points elsewhere for them, or `hasgroups` says there are some.
fn groups_overage(claims: &Map<String, Value>, groups_claim: &str) -> bool {
    claims
        .get("_claim_names")
        .and_then(|names| names.get(groups_claim))
        .is_some()
        || claims.get("hasgroups") == Some(&Value::Bool(true))
}

impl ClaimMapping {
    /// Apply the mapping table (groups only) and the prefix stripping.
    fn rename(&self, names: Vec<String>, groups: bool) -> Vec<String> {
        let mut out: Vec<String> = names
            .into_iter()
            .map(|n| match self.group_map.get(&n) {
                Some(mapped) if groups => mapped.clone(),
                _ => match &self.strip_prefix {
                    Some(p) => n.strip_prefix(p.as_str()).map(str::to_string).unwrap_or(n),
                    None => n,
                },
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The `iss` a token claims, unverified: only to pick which issuer's rules
/// and keys then judge it.
pub fn claimed_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::auth::EntraConfig;

    fn entra() -> IssuerConfig {
        let provider = Provider::Entra(EntraConfig {
            tenants: vec!["t1".into(), "t2".into()],
            authority: "https://login.microsoftonline.com".into(),
            sts: "https://sts.windows.net".into(),
            graph: None,
        });
        IssuerConfig {
            name: "entra".into(),
            issuer: "https://login.microsoftonline.com/t1/v2.0".into(),
            required_scopes: vec!["mcp".into()],
            claims: ClaimMapping::defaults(&provider),
            provider,
            ..IssuerConfig::generic("entra", "", &["api://toolgate"])
        }
    }

    async fn map(config: IssuerConfig, claims: Value) -> Result<Caller, OidcError> {
        Issuer::new(config)
            .expect("client")
            .caller(claims.as_object().expect("object"), Credential::AccessToken)
            .await
    }

    #[tokio::test]
    async fn entra_claims_fill_the_caller() {
        let claims = json!({
            "iss": "https://login.microsoftonline.com/t1/v2.0", "tid": "t1", "oid": "o1",
            "sub": "pairwise", "name": "Alice", "email": "alice@example.com",
            "roles": ["Tools.Write"], "groups": ["g2", "g1"], "azp": "agent-app",
            "scp": "mcp other"
        });
        let caller = map(entra(), claims).await.expect("a caller");
        assert_eq!(caller.subject, "entra:t1:o1", "keyed by tid + oid");
        assert_eq!(caller.name.as_deref(), Some("Alice"));
        assert_eq!(caller.email.as_deref(), Some("alice@example.com"));
        assert_eq!(caller.tenant.as_deref(), Some("t1"));
        assert_eq!(caller.roles, vec!["Tools.Write".to_string()]);
        assert_eq!(caller.groups, vec!["g1".to_string(), "g2".to_string()]);
        assert_eq!(caller.client_id.as_deref(), Some("agent-app"));
        assert_eq!(caller.scopes, vec!["mcp".to_string(), "other".to_string()]);
        assert_eq!(caller.credential, Credential::AccessToken);

        // v1 shape: sts issuer, appid, upn.
        let v1 = json!({
            "iss": "https://sts.windows.net/t2/", "tid": "t2", "oid": "o2",
            "appid": "agent-app", "upn": "bob@contoso.example", "scp": "mcp"
        });
        let caller = map(entra(), v1).await.expect("a v1 caller");
        assert_eq!(caller.subject, "entra:t2:o2");
        assert_eq!(caller.email.as_deref(), Some("bob@contoso.example"));
        assert_eq!(caller.client_id.as_deref(), Some("agent-app"));
    }

    #[tokio::test]
    async fn entra_refusals() {
        let base = json!({
            "iss": "https://login.microsoftonline.com/t1/v2.0", "tid": "t1", "oid": "o1", "scp": "mcp"
        });
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            c
        };
        assert!(matches!(
            map(entra(), with("tid", json!("t2"))).await,
            Err(OidcError::TenantMismatch { .. })
        ));
        assert!(matches!(
            map(entra(), with("oid", Value::Null)).await,
            Err(OidcError::Token(JwtError::Missing("oid")))
        ));
        assert!(matches!(
            map(entra(), with("scp", json!("other"))).await,
            Err(OidcError::InsufficientScope(_))
        ));
        // App-only tokens: the required value is looked for in `roles`.
        let mut app = with("scp", Value::Null);
        app["idtyp"] = json!("app");
        assert!(matches!(
            map(entra(), app.clone()).await,
            Err(OidcError::InsufficientScope(_))
        ));
        app["roles"] = json!(["mcp"]);
        assert!(map(entra(), app.clone()).await.is_ok());
        app["idtyp"] = Value::Null;
        assert!(
            map(entra(), app).await.is_ok(),
            "no scp, no idtyp: app-only"
        );
        // Groups overage without Graph: fail closed, saying what to do.
        let overage = with("_claim_names", json!({"groups": "src1"}));
        let err = map(entra(), overage).await.expect_err("overage refused");
        assert!(matches!(err, OidcError::GroupsOverage(_)));
        assert!(err.to_string().contains("[auth.issuers.graph]"), "{err}");
        let hasgroups = with("hasgroups", json!(true));
        assert!(matches!(
            map(entra(), hasgroups).await,
            Err(OidcError::GroupsOverage(_))
        ));
    }

    #[tokio::test]
    async fn generic_mapping_paths_prefixes_and_table() {
        let mut config = IssuerConfig::generic("kc", "https://idp.example/realms/x", &["api"]);
        config.claims.groups = "realm_access.roles".into();
        config.claims.strip_prefix = Some("toolgate-".into());
        config.claims.group_map = [("00g1abc".to_string(), "eng".to_string())].into();
        let claims = json!({
            "iss": "https://idp.example/realms/x", "sub": "u1",
            "realm_access": {"roles": ["toolgate-ops", "00g1abc", "other", "toolgate-ops"]},
            "roles": ["toolgate-admin"]
        });
        let caller = map(config, claims).await.expect("a caller");
        assert_eq!(caller.subject, "kc:u1");
        assert_eq!(caller.groups, vec!["eng", "ops", "other"]);
        assert_eq!(caller.roles, vec!["admin"]);

        let mut okta = IssuerConfig::generic(
            "okta",
            "https://org.okta.com/oauth2/default",
            &["api://default"],
        );
        okta.claims = ClaimMapping::defaults(&Provider::Okta);
        okta.provider = Provider::Okta;
        let claims = json!({"sub": "alice@example.com", "uid": "00u1", "cid": "0oa9", "scp": ["mcp", "openid"]});
        let caller = map(okta.clone(), claims).await.expect("okta caller");
        assert_eq!(caller.subject, "okta:00u1", "Okta users keyed by uid");
        assert_eq!(caller.client_id.as_deref(), Some("0oa9"));
        assert_eq!(caller.scopes, vec!["mcp", "openid"]);
        let service = json!({"sub": "0oa9", "cid": "0oa9"});
        assert_eq!(
            map(okta, service).await.expect("service").subject,
            "okta:0oa9"
        );
    }

    #[test]
    fn recognising_issuers() {
        let issuer = Issuer::new(entra()).expect("client");
        assert_eq!(
            issuer.recognise("https://sts.windows.net/t2/"),
            Recognised::Ours
        );
        assert_eq!(
            issuer.recognise("https://login.microsoftonline.com/t9/v2.0"),
            Recognised::OtherTenant("t9".into())
        );
        assert_eq!(
            issuer.recognise("https://elsewhere/t1/v2.0"),
            Recognised::Unrelated
        );
        let mut okta = IssuerConfig::generic("okta", "https://org.okta.com/oauth2/default", &["a"]);
        okta.provider = Provider::Okta;
        let okta = Issuer::new(okta).expect("client");
        assert_eq!(
            okta.recognise("https://org.okta.com"),
            Recognised::OktaOrgServer
        );
        assert_eq!(
            okta.recognise("https://org.okta.com/oauth2/other"),
            Recognised::Unrelated
        );
    }
}
