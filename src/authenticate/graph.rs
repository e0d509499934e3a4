//! Microsoft Graph, for Entra's groups overage: a token of a user in more
//! than 200 groups carries `_claim_names` instead of `groups`, and the
//! groups must be asked for (`getMemberGroups`, transitive). toolgate asks
//! with its own app credentials (client credentials per tenant; the app
//! needs `GroupMember.Read.All`), and remembers the answer for a while.
//!
//! The app token comes from the `oauth2` crate's client-credentials grant
//! (`client_secret_post`, scope `{endpoint}/.default`); it and the Graph
//! call go through [`IdpHttp`]: no redirects, a timeout, bodies capped
//! while read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::idp_http::{GrantError, IdpHttp, IdpHttpError, client_credentials, error_chain};
use crate::config::auth::GraphConfig;
use crate::util::sync::LockExt;

/// How long a caller's looked-up groups are reused.
const GROUPS_FOR: Duration = Duration::from_secs(600);
/// Callers whose groups are remembered; at the bound the least used go
/// (`quick_cache`), not the callers who keep calling.
pub const MAX_CACHED_CALLERS: usize = 10_000;
/// Largest Graph answer read (11,000 group ids fit easily).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

type Groups = quick_cache::sync::Cache<(String, String), (Vec<String>, Instant)>;

pub struct Graph {
    config: GraphConfig,
    http: IdpHttp,
    /// Tenant → app token and until when it is good.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// (tenant, object id) → groups and when they were fetched.
    groups: Groups,
}

/// Why a Graph lookup failed; the caller is refused with
/// `OidcError::Graph` (which carries the text).
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("`oid` {0:?} is not an object id")]
    NotAnObjectId(String),
    #[error("{0}: no `value` list in the answer")]
    NoValue(String),
    #[error("token_url {url}: {source}")]
    TokenUrl {
        url: String,
        #[source]
        source: oauth2::url::ParseError,
    },
    /// The token endpoint refused or failed; a string, as the OAuth
    /// errors are flattened for a person (`token_error`).
    #[error("{0}")]
    Token(String),
    /// Sending failed; reqwest's chain, flattened.
    #[error("POST {url}: {chain}")]
    Send { url: String, chain: String },
    #[error("POST {url}: the answer is a redirect (HTTP {status}), which toolgate does not follow")]
    Redirect {
        url: String,
        status: reqwest::StatusCode,
    },
    /// The body could not be read within the cap (why, for a person).
    #[error("POST {url}: {why}")]
    Read { url: String, why: String },
    #[error("POST {url}: HTTP {status}: {text}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        text: String,
    },
    #[error("POST {url}: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Graph {
    pub fn new(config: GraphConfig) -> Result<Self, IdpHttpError> {
        let http = IdpHttp::new("Microsoft Graph", TIMEOUT, MAX_RESPONSE_BYTES)?;
        Ok(Self {
            config,
            http,
            tokens: Mutex::default(),
            groups: Groups::new(MAX_CACHED_CALLERS),
        })
    }

    /// Ids of every group `oid` (a user, or a service principal when
    /// `app`) of tenant `tid` is in.
    pub async fn member_groups(
        &self,
        tid: &str,
        oid: &str,
        app: bool,
    ) -> Result<Vec<String>, GraphError> {
        if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(GraphError::NotAnObjectId(oid.to_string()));
        }
        let key = (tid.to_string(), oid.to_string());
        if let Some(groups) = fresh(&self.groups, &key) {
            return Ok(groups);
        }
        let token = self.token(tid).await?;
        let kind = if app { "servicePrincipals" } else { "users" };
        let url = format!("{}/v1.0/{kind}/{oid}/getMemberGroups", self.config.endpoint);
        let body = self
            .post(
                self.http
                    .client()
                    .post(&url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "securityEnabledOnly": false })),
                &url,
            )
            .await?;
        let groups: Vec<String> = body["value"]
            .as_array()
            .ok_or_else(|| GraphError::NoValue(url.clone()))?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        self.groups.insert(key, (groups.clone(), Instant::now()));
        Ok(groups)
    }

    /// An app token for Graph in tenant `tid` (client credentials).
    async fn token(&self, tid: &str) -> Result<String, GraphError> {
        if let Some((token, until)) = lock(&self.tokens).get(tid)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = self.config.token_url.replace("{tid}", tid);
        let (token, expires_in) = client_credentials(
            &self.http,
            &url,
            &self.config.client_id,
            self.config.client_secret.expose(),
            &format!("{}/.default", self.config.endpoint),
        )
        .await
        .map_err(|e| match e {
            GrantError::TokenUrl(source) => GraphError::TokenUrl {
                url: url.clone(),
                source,
            },
            GrantError::Token(why) => GraphError::Token(why),
        })?;
        // Renew a minute early; never trust it longer than an hour.
        let lifetime = expires_in.map_or(300, |d| d.as_secs()).clamp(60, 3600);
        let until = Instant::now() + Duration::from_secs(lifetime - 30);
        lock(&self.tokens).insert(tid.to_string(), (token.clone(), until));
        Ok(token)
    }

    async fn post(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Value, GraphError> {
        let response = request.send().await.map_err(|e| GraphError::Send {
            url: url.to_string(),
            chain: error_chain(&e),
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(GraphError::Redirect {
                url: url.to_string(),
                status,
            });
        }
        let bytes = super::read_capped(response, self.http.limit())
            .await
            .map_err(|why| GraphError::Read {
                url: url.to_string(),
                why,
            })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(GraphError::Status {
                url: url.to_string(),
                status,
                text,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| GraphError::Json {
            url: url.to_string(),
            source,
        })
    }
}

/// The remembered groups for `key`, if fetched less than [`GROUPS_FOR`] ago.
fn fresh(cache: &Groups, key: &(String, String)) -> Option<Vec<String>> {
    cache
        .get(key)
        .filter(|(_, at)| at.elapsed() < GROUPS_FOR)
        .map(|(groups, _)| groups)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.locked()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_keeping_callers_in_use() {
        let cache = Groups::new(64);
        let key = |o: &str| ("t".to_string(), o.to_string());
        cache.insert(key("busy"), (vec!["eng".into()], Instant::now()));
        for i in 0..640 {
            cache.insert(
                key(&format!("o{i}")),
                (vec![format!("g{i}")], Instant::now()),
            );
            if i % 32 == 0 {
                assert!(fresh(&cache, &key("busy")).is_some(), "evicted at {i}");
            }
            assert!(cache.len() <= 64, "{} entries", cache.len());
        }
        assert_eq!(fresh(&cache, &key("busy")), Some(vec!["eng".to_string()]));
        // Past GROUPS_FOR an entry is not used.
        let old = Instant::now().checked_sub(GROUPS_FOR + Duration::from_secs(1));
        if let Some(old) = old {
            cache.insert(key("old"), (vec!["x".into()], old));
            assert_eq!(fresh(&cache, &key("old")), None);
        }
    }
}
