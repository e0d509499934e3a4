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
//!   for [`MAX_STALE`]; after that its tokens are refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwt::{self, Alg, Jwk, JwtError, Rules};
use crate::config::IssuerConfig;
use crate::pipeline::{Caller, Credential};

/// Shortest time between two key refreshes caused by unknown `kid`s.
pub const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
/// How long fetched keys are used while the IdP cannot be reached.
pub const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Verified tokens remembered (by SHA-256), so an agent's repeated calls
/// with one token cost a hash, not a signature check; at the bound the
/// expired ones go, then all.
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
    #[error("identity provider `{0}`'s keys are older than {1}h and it cannot be reached")]
    Stale(String, u64),
    #[error("the token lacks scope(s) {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
}

struct KeySet {
    keys: Arc<Vec<Jwk>>,
    fetched: Option<Instant>,
    max_age: Duration,
    /// The last fetch error, while there is one.
    problem: Option<String>,
    jwks_uri: Option<String>,
    last_unknown_kid_refresh: Option<Instant>,
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
    verified: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl Issuer {
    pub fn new(config: IssuerConfig) -> Arc<Self> {
        let rules = Rules {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            algorithms: vec![Alg::Rs256, Alg::Es256],
            leeway: config.leeway,
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // Keys come only from the issuer itself: no redirects elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            config,
            rules,
            http,
            state: Mutex::new(KeySet {
                keys: Arc::default(),
                fetched: None,
                max_age: DEFAULT_KEYS_MAX_AGE,
                problem: Some("not fetched yet".into()),
                jwks_uri: None,
                last_unknown_kid_refresh: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            verified: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeySet> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Fetch discovery (once) and the JWKS.
    async fn refresh(&self) -> Result<(), String> {
        let _one_at_a_time = self.fetching.lock().await;
        let result = self.fetch().await;
        let mut state = self.lock();
        match result {
            Ok((keys, max_age, jwks_uri)) => {
                state.keys = Arc::new(keys);
                state.fetched = Some(Instant::now());
                state.max_age = max_age;
                state.jwks_uri = Some(jwks_uri);
                state.problem = None;
                Ok(())
            }
            Err(why) => {
                state.problem = Some(why.clone());
                Err(why)
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Jwk>, Duration, String), String> {
        let known = self.lock().jwks_uri.clone();
        let jwks_uri = match known {
            Some(uri) => uri,
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
                doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| format!("discovery at {url} has no jwks_uri"))?
                    .to_string()
            }
        };
        let (body, max_age) = self.get(&jwks_uri).await?;
        let keys = jwt::parse_jwks(&body).map_err(|e| format!("{jwks_uri}: {e}"))?;
        if keys.is_empty() {
            return Err(format!("{jwks_uri} has no RSA or P-256 signing keys"));
        }
        Ok((keys, max_age.unwrap_or(DEFAULT_KEYS_MAX_AGE), jwks_uri))
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
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!("GET {url}: document over 1 MiB"));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: document over 1 MiB"));
        }
        Ok((body.to_vec(), max_age))
    }

    /// Whether the issuer has usable keys, and if not, why.
    pub fn health(&self) -> Result<(), String> {
        let state = self.lock();
        match (state.fetched, &state.problem) {
            (Some(_), None) => Ok(()),
            (Some(_), Some(p)) => Err(format!("serving cached keys; last refresh failed: {p}")),
            (None, p) => Err(p.clone().unwrap_or_default()),
        }
    }

    /// The caller an access token from this issuer stands for.
    pub async fn verify(&self, token: &str) -> Result<Caller, OidcError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((caller, until)) = self.lock_verified().get(&digest)
            && Instant::now() < *until
        {
            return Ok(caller.clone());
        }
        let now = crate::storage::now_unix();
        let keys = self.usable_keys()?;
        let claims = match jwt::verify(token, &keys, &self.rules, now) {
            Err(JwtError::UnknownKey(kid)) if self.may_refresh_for_unknown_kid() => {
                // A rotation: refresh once, then judge again.
                let _ = self.refresh().await;
                let keys = self.usable_keys()?;
                jwt::verify(token, &keys, &self.rules, now).map_err(|e| match e {
                    JwtError::UnknownKey(_) => JwtError::UnknownKey(kid),
                    other => other,
                })?
            }
            other => other?,
        };
        let caller = self.caller(&claims)?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        let left = Duration::from_secs(exp.saturating_sub(now).max(0) as u64);
        self.remember(digest, caller.clone(), VERIFIED_FOR.min(left));
        Ok(caller)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Caller, Instant)>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, digest: [u8; 32], caller: Caller, for_: Duration) {
        let mut verified = self.lock_verified();
        if verified.len() >= MAX_VERIFIED_TOKENS {
            let now = Instant::now();
            verified.retain(|_, (_, until)| now < *until);
            if verified.len() >= MAX_VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(digest, (caller, Instant::now() + for_));
    }

    fn usable_keys(&self) -> Result<Arc<Vec<Jwk>>, OidcError> {
        let state = self.lock();
        match state.fetched {
            None => Err(OidcError::NoKeys(
                self.config.name.clone(),
                state.problem.clone().unwrap_or_default(),
            )),
            Some(at) if state.problem.is_some() && at.elapsed() > MAX_STALE => Err(
                OidcError::Stale(self.config.name.clone(), MAX_STALE.as_secs() / 3600),
            ),
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

    fn caller(&self, claims: &Map<String, Value>) -> Result<Caller, OidcError> {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
        let sub = text("sub")
            .filter(|s| !s.is_empty())
            .ok_or(JwtError::Missing("sub"))?;
        // `scope` (RFC 9068, Okta) or `scp` (Entra), space-separated or a list.
        let granted: Vec<&str> = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let missing: Vec<String> = self
            .config
            .required_scopes
            .iter()
            .filter(|s| !granted.contains(&s.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(OidcError::InsufficientScope(missing));
        }
        let list = |k: &str| match claims.get(k) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Caller {
            name: text("name")
                .or_else(|| text("preferred_username"))
                .or_else(|| text("email")),
            groups: list(&self.config.groups_claim),
            roles: list("roles"),
            email: text("email"),
            tenant: text("tid"),
            issuer: Some(self.config.issuer.clone()),
            client_id: text("azp")
                .or_else(|| text("client_id"))
                .or_else(|| text("appid")),
            scopes: granted.iter().map(|s| s.to_string()).collect(),
            ..Caller::new(
                format!("{}:{sub}", self.config.name),
                Credential::AccessToken,
            )
        })
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
    use super::*;

    #[test]
    fn claims_fill_the_caller() {
        let issuer = Issuer::new(IssuerConfig {
            name: "entra".into(),
            issuer: "https://login.microsoftonline.com/t1/v2.0".into(),
            audiences: vec!["api://toolgate".into()],
            groups_claim: "groups".into(),
            leeway: Duration::from_secs(60),
            required_scopes: vec!["mcp".into()],
        });
        let claims = serde_json::json!({
            "sub": "s1", "name": "Alice", "email": "alice@example.com", "tid": "t1",
            "roles": ["Tools.Write"], "groups": ["g1", "g2"], "azp": "agent-app",
            "scp": "mcp other"
        });
        let caller = issuer
            .caller(claims.as_object().expect("object"))
            .expect("a caller");
        assert_eq!(caller.subject, "entra:s1");
        assert_eq!(caller.name.as_deref(), Some("Alice"));
        assert_eq!(caller.email.as_deref(), Some("alice@example.com"));
        assert_eq!(caller.tenant.as_deref(), Some("t1"));
        assert_eq!(caller.roles, vec!["Tools.Write".to_string()]);
        assert_eq!(caller.groups, vec!["g1".to_string(), "g2".to_string()]);
        assert_eq!(caller.client_id.as_deref(), Some("agent-app"));
        assert_eq!(caller.scopes, vec!["mcp".to_string(), "other".to_string()]);
        assert_eq!(
            caller.issuer.as_deref(),
            Some("https://login.microsoftonline.com/t1/v2.0")
        );
        assert_eq!(caller.credential, Credential::AccessToken);
    }
}
