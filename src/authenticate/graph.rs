//! Microsoft Graph, for Entra's groups overage: a token of a user in more
//! than 200 groups carries `_claim_names` instead of `groups`, and the
//! groups must be asked for (`getMemberGroups`, transitive). toolgate asks
//! with its own app credentials (client credentials per tenant; the app
//! needs `GroupMember.Read.All`), and remembers the answer for a while.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::auth::GraphConfig;

/// How long a caller's looked-up groups are reused.
const GROUPS_FOR: Duration = Duration::from_secs(600);
/// Callers whose groups are remembered; at the bound the oldest half goes.
pub const MAX_CACHED_CALLERS: usize = 10_000;
/// Largest Graph answer read (11,000 group ids fit easily).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

type Groups = HashMap<(String, String), (Vec<String>, Instant)>;

pub struct Graph {
    config: GraphConfig,
    http: reqwest::Client,
    /// Tenant → app token and until when it is good.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// (tenant, object id) → groups and when they were fetched.
    groups: Mutex<Groups>,
}

impl Graph {
    pub fn new(config: GraphConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            tokens: Mutex::default(),
            groups: Mutex::default(),
        }
    }

    /// Ids of every group `oid` (a user, or a service principal when
    /// `app`) of tenant `tid` is in.
    pub async fn member_groups(
        &self,
        tid: &str,
        oid: &str,
        app: bool,
    ) -> Result<Vec<String>, String> {
        if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(format!("`oid` {oid:?} is not an object id"));
        }
        let key = (tid.to_string(), oid.to_string());
        if let Some((groups, at)) = lock(&self.groups).get(&key)
            && at.elapsed() < GROUPS_FOR
        {
            return Ok(groups.clone());
        }
        let token = self.token(tid).await?;
        let kind = if app { "servicePrincipals" } else { "users" };
        let url = format!("{}/v1.0/{kind}/{oid}/getMemberGroups", self.config.endpoint);
        let body = self
            .post(
                self.http
                    .post(&url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "securityEnabledOnly": false })),
                &url,
            )
            .await?;
        let groups: Vec<String> = body["value"]
            .as_array()
            .ok_or_else(|| format!("{url}: no `value` list in the answer"))?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        remember(
            &mut lock(&self.groups),
            key,
            groups.clone(),
            MAX_CACHED_CALLERS,
        );
        Ok(groups)
    }

    /// An app token for Graph in tenant `tid` (client credentials).
    async fn token(&self, tid: &str) -> Result<String, String> {
        if let Some((token, until)) = lock(&self.tokens).get(tid)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = self.config.token_url.replace("{tid}", tid);
        let scope = format!("{}/.default", self.config.endpoint);
        let body = self
            .post(
                self.http.post(&url).form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.config.client_id.as_str()),
                    ("client_secret", self.config.client_secret.expose()),
                    ("scope", scope.as_str()),
                ]),
                &url,
            )
            .await?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| format!("{url}: no access_token in the answer"))?
            .to_string();
        // Renew a minute early; never trust it longer than an hour.
        let lifetime = body["expires_in"].as_u64().unwrap_or(300).clamp(60, 3600);
        let until = Instant::now() + Duration::from_secs(lifetime - 30);
        lock(&self.tokens).insert(tid.to_string(), (token.clone(), until));
        Ok(token)
    }

    async fn post(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Value, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let bytes = super::read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(format!("POST {url}: HTTP {status}: {text}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("POST {url}: {e}"))
    }
}

/// Insert, first dropping the older half when at `capacity`.
fn remember(cache: &mut Groups, key: (String, String), groups: Vec<String>, capacity: usize) {
    if cache.len() >= capacity {
        let mut ages: Vec<Instant> = cache.values().map(|(_, at)| *at).collect();
        ages.sort_unstable();
        let cutoff = ages[ages.len() / 2];
        cache.retain(|_, (_, at)| *at > cutoff);
    }
    cache.insert(key, (groups, Instant::now()));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_keeping_the_newest() {
        let mut cache = Groups::new();
        for i in 0..10 {
            let key = ("t".to_string(), format!("o{i}"));
            remember(&mut cache, key, vec![format!("g{i}")], 4);
            assert!(cache.len() <= 4, "{} entries", cache.len());
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(cache.contains_key(&("t".to_string(), "o9".to_string())));
        assert!(!cache.contains_key(&("t".to_string(), "o0".to_string())));
    }
}
