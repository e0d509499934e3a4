//! API keys for agents and local use: created, listed and revoked with
//! `toolgate keys …`, presented as `Authorization: Bearer tgk_…`.
//!
//! A key is `tgk_{id}_{secret}`: a 16-hex-digit id (to find the record) and
//! 256 random bits (64 hex digits). Only SHA-256 of the secret is stored: a
//! slow password hash buys nothing for a secret with full entropy and would
//! cost milliseconds per call. Verified keys are cached for
//! `auth.api_key_cache_ttl`, so a revocation by another process takes effect
//! within that time (at once in this one). Last use is recorded at most
//! once per flush (every 30 s and at shutdown), not on every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::call::{Caller, Credential};
use crate::storage::{Store, now_unix};
use crate::util::digest::random_hex;
use crate::util::sync::LockExt;

const PREFIX: &str = "tgk_";
/// Keys held in the verification cache (unknown ids included). At the
/// bound the cache evicts by use (`quick_cache`'s S3-FIFO-like policy):
/// a flood of unique ids passes through its probation part and never
/// pushes out the keys agents keep presenting.
pub const MAX_CACHED_KEYS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key named `{0}` exists already (names are unique; revoked keys keep theirs)")]
    NameTaken(String),
    #[error("no key with id or name `{0}` (see `toolgate keys list`)")]
    NotFound(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// The environment variable holding the API key `toolgate stdio` runs as
/// (an environment variable, not a flag: command lines are visible to
/// every local user).
pub const STDIO_KEY_ENV: &str = "TOOLGATE_API_KEY";

/// Why a presented key was refused (logged; the caller gets a plain 401).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("not a toolgate API key")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("API key `{0}` is revoked")]
    Revoked(String),
    #[error("API key `{0}` expired")]
    Expired(String),
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl KeyRecord {
    fn caller(&self) -> Caller {
        Caller {
            name: Some(self.name.clone()),
            groups: self.groups.clone(),
            ..Caller::new(format!("apikey:{}", self.id), Credential::ApiKey)
        }
    }
}

/// A cached lookup: the record and its secret's hash, or "no such id".
#[derive(Clone)]
struct Cached {
    found: Option<Arc<(KeyRecord, String)>>,
    at: Instant,
}

pub struct ApiKeys {
    store: Store,
    ttl: Duration,
    cache: quick_cache::sync::Cache<String, Cached>,
    /// Lookups that went to the store (the cache missed or was stale).
    store_lookups: AtomicU64,
    /// Keys used since the last flush, with when.
    used: Mutex<HashMap<String, i64>>,
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const COLUMNS: &str =
    "id, name, secret_sha256, groups_json, created_at, expires_at, revoked_at, last_used_at";

fn record(row: Row) -> (KeyRecord, String) {
    let (id, name, hash, groups, created_at, expires_at, revoked_at, last_used_at) = row;
    let groups = serde_json::from_str(&groups).unwrap_or_default();
    (
        KeyRecord {
            id,
            name,
            groups,
            created_at,
            expires_at,
            revoked_at,
            last_used_at,
        },
        hash,
    )
}

pub(crate) fn sha256_hex(secret: &str) -> String {
    crate::util::digest::sha256_hex(secret.as_bytes())
}

impl From<getrandom::Error> for KeyError {
    fn from(e: getrandom::Error) -> Self {
        KeyError::Invalid {
            what: "randomness",
            why: e.to_string(),
        }
    }
}

/// Split `tgk_{id}_{secret}`.
fn parse(presented: &str) -> Option<(&str, &str)> {
    let (id, secret) = presented.strip_prefix(PREFIX)?.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

/// Name and group of the key the first `serve` creates.
pub const FIRST_ADMIN: &str = "admin";

/// Whether `token` looks like one of our keys (as opposed to a JWT).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

impl ApiKeys {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self::with_capacity(store, ttl, MAX_CACHED_KEYS)
    }

    fn with_capacity(store: Store, ttl: Duration, capacity: usize) -> Self {
        Self {
            store,
            ttl,
            cache: quick_cache::sync::Cache::new(capacity),
            store_lookups: AtomicU64::new(0),
            used: Mutex::default(),
        }
    }

    /// Create a key; the returned string is the only time the key is shown.
    pub async fn create(
        &self,
        name: &str,
        groups: &[String],
        valid_for: Option<Duration>,
        by: crate::audit::Who,
    ) -> Result<(KeyRecord, String), KeyError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(KeyError::Invalid {
                what: "name",
                why: format!("`{name}`: use 1-64 letters, digits, `-`, `_` or `.`"),
            });
        }
        if let Some(group) = groups.iter().find(|g| g.is_empty() || g.len() > 128) {
            return Err(KeyError::Invalid {
                what: "group",
                why: format!("`{group}`: use 1-128 characters"),
            });
        }
        let id = random_hex(8)?;
        let secret = random_hex(32)?;
        let now = now_unix();
        let record = KeyRecord {
            id: id.clone(),
            name: name.to_string(),
            groups: groups.to_vec(),
            created_at: now,
            expires_at: valid_for.map(|d| now + d.as_secs() as i64),
            revoked_at: None,
            last_used_at: None,
        };
        let groups_json = serde_json::to_string(&record.groups).unwrap_or_else(|_| "[]".into());
        let mut tx = self.store.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, name, secret_sha256, groups_json, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(sha256_hex(&secret))
        .bind(groups_json)
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                // Recorded in the same transaction: no key without its record.
                let mut event = crate::audit::Record::new(crate::audit::Kind::KeyCreated);
                event.caller = Some(by);
                event.target = Some(record.name.clone());
                event.detail = Some(serde_json::json!({
                    "id": record.id,
                    "groups": record.groups,
                    "expires_at": record.expires_at,
                }));
                crate::audit::append_in(&mut tx, &[&event]).await?;
                tx.commit().await?;
                Ok((record, format!("{PREFIX}{id}_{secret}")))
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(KeyError::NameTaken(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// On a store that has never held a key: create `admin` (group
    /// `admin`) and return it, to be shown once. `None` once any key exists
    /// (revoked ones too: revoking every key does not bring one back).
    pub async fn create_first_admin(&self) -> Result<Option<String>, KeyError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_keys")
            .fetch_one(self.store.pool())
            .await?;
        if count > 0 {
            return Ok(None);
        }
        let by = crate::audit::Who {
            subject: "toolgate:first-start".into(),
            ..crate::audit::Who::operator()
        };
        match self
            .create(FIRST_ADMIN, &[FIRST_ADMIN.to_string()], None, by)
            .await
        {
            Ok((_, key)) => Ok(Some(key)),
            // Another replica got there first.
            Err(KeyError::NameTaken(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, name"
        )))
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.into_iter().map(|r| record(r).0).collect())
    }

    /// Revoke the key with this id or name; it stops working at once here
    /// and within the cache time in other processes.
    pub async fn revoke(
        &self,
        id_or_name: &str,
        by: crate::audit::Who,
    ) -> Result<KeyRecord, KeyError> {
        let now = now_unix();
        let mut tx = self.store.pool().begin().await?;
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id_or_name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked > 0 {
            let mut event = crate::audit::Record::new(crate::audit::Kind::KeyRevoked);
            event.caller = Some(by);
            event.target = Some(id_or_name.to_string());
            crate::audit::append_in(&mut tx, &[&event]).await?;
        }
        tx.commit().await?;
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1 OR name = $1"
        )))
        .bind(id_or_name)
        .fetch_optional(self.store.pool())
        .await?;
        let (record, _) = record(row.ok_or_else(|| KeyError::NotFound(id_or_name.to_string()))?);
        self.cache.remove(&record.id);
        Ok(record)
    }

    /// The caller a presented key stands for, or why not. Fails closed when
    /// the store cannot be read.
    pub async fn verify(&self, presented: &str) -> Result<Caller, Refusal> {
        let (id, secret) = parse(presented).ok_or(Refusal::Malformed)?;
        let fresh = |c: &Cached| c.at.elapsed() < self.ttl;
        let found = match self.cache.get(id) {
            Some(c) if fresh(&c) => c.found,
            stale => {
                if stale.is_some() {
                    self.cache.remove(id);
                }
                // One store read per key at a time: a burst of sessions
                // opened with one new key waits for the first lookup
                // instead of queueing every one on the store's pool.
                match self.cache.get_value_or_guard_async(id).await {
                    Ok(c) if fresh(&c) => c.found,
                    Ok(_) => self.lookup(id).await?,
                    Err(guard) => {
                        let found = self.lookup(id).await?;
                        let _ = guard.insert(Cached {
                            found: found.clone(),
                            at: Instant::now(),
                        });
                        found
                    }
                }
            }
        };
        let found = found.ok_or(Refusal::Unknown)?;
        let (record, hash) = &*found;
        if !bool::from(sha256_hex(secret).as_bytes().ct_eq(hash.as_bytes())) {
            return Err(Refusal::Unknown);
        }
        let now = now_unix();
        if record.revoked_at.is_some() {
            return Err(Refusal::Revoked(record.name.clone()));
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(Refusal::Expired(record.name.clone()));
        }
        let mut used = self.used.locked();
        match used.get_mut(&record.id) {
            Some(at) => *at = now,
            None => {
                used.insert(record.id.clone(), now);
            }
        }
        drop(used);
        Ok(record.caller())
    }

    /// Read key `id` from the store.
    async fn lookup(&self, id: &str) -> Result<Option<Arc<(KeyRecord, String)>>, Refusal> {
        self.store_lookups.fetch_add(1, Ordering::Relaxed);
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        Ok(row.map(|r| Arc::new(record(r))))
    }

    /// Write the last-use times gathered since the previous flush.
    pub async fn flush_last_used(&self) -> Result<(), KeyError> {
        let used: Vec<(String, i64)> = self.used.locked().drain().collect();
        for (id, at) in used {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(self.store.pool())
                .await?;
        }
        Ok(())
    }

    /// Entries in the verification cache (for tests of its bound).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// How many verifications had to read the store (for tests that a hot
    /// key stays cached).
    pub fn store_lookups(&self) -> u64 {
        self.store_lookups.load(Ordering::Relaxed)
    }
}

/// `30d`, `12h`, `90m`, `45s`: how long a new key stays valid (whole
/// seconds, at least one).
pub fn parse_validity(text: &str) -> Result<Duration, KeyError> {
    let invalid = |why: String| KeyError::Invalid {
        what: "expiry",
        why,
    };
    let validity = crate::config::parse_duration(text).map_err(invalid)?;
    if validity.as_secs() == 0 {
        return Err(invalid(format!(
            "`{text}`: at least one second, e.g. 30d, 12h, 90m"
        )));
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Who;

    async fn keys(capacity: usize) -> (ApiKeys, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("store");
        (
            ApiKeys::with_capacity(store, Duration::from_secs(60), capacity),
            dir,
        )
    }

    #[tokio::test]
    async fn create_use_revoke() {
        let (keys, _dir) = keys(100).await;
        let (record, key) = keys
            .create("ci-bot", &["eng".into()], None, Who::operator())
            .await
            .expect("created");
        assert!(
            key.starts_with("tgk_") && key.len() == 4 + 16 + 1 + 64,
            "{key}"
        );
        let caller = keys.verify(&key).await.expect("valid");
        assert_eq!(caller.subject, format!("apikey:{}", record.id));
        assert_eq!(caller.groups, vec!["eng".to_string()]);
        assert_eq!(caller.credential, Credential::ApiKey);

        // The secret is not stored, and a wrong secret is refused.
        let stored: Vec<(String,)> = sqlx::query_as("SELECT secret_sha256 FROM api_keys")
            .fetch_all(keys.store.pool())
            .await
            .expect("query");
        assert!(!key.contains(&stored[0].0));
        let mut wrong = key.clone();
        wrong.replace_range(key.len() - 1.., if key.ends_with('0') { "1" } else { "0" });
        assert_eq!(keys.verify(&wrong).await, Err(Refusal::Unknown));
        assert_eq!(keys.verify("tgk_nope").await, Err(Refusal::Malformed));

        // Names are unique.
        assert!(matches!(
            keys.create("ci-bot", &[], None, Who::operator()).await,
            Err(KeyError::NameTaken(_))
        ));

        // Last use is recorded at the flush.
        keys.flush_last_used().await.expect("flush");
        let listed = keys.list().await.expect("list");
        assert!(listed[0].last_used_at.is_some());

        keys.revoke("ci-bot", Who::operator())
            .await
            .expect("revoked");
        assert_eq!(
            keys.verify(&key).await,
            Err(Refusal::Revoked("ci-bot".into()))
        );
        assert!(matches!(
            keys.revoke("nobody", Who::operator()).await,
            Err(KeyError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn expired_keys_are_refused() {
        let (keys, _dir) = keys(100).await;
        let (record, key) = keys
            .create("short", &[], Some(Duration::from_secs(2)), Who::operator())
            .await
            .expect("created");
        assert!(record.expires_at.is_some());
        assert!(keys.verify(&key).await.is_ok());
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert_eq!(
            keys.verify(&key).await,
            Err(Refusal::Expired("short".into()))
        );
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bound() {
        let (keys, _dir) = keys(8).await;
        // A flood of unknown ids fills the cache only up to its bound.
        for i in 0..50u64 {
            let key = format!("tgk_{i:016x}_{}", "0".repeat(64));
            assert_eq!(keys.verify(&key).await, Err(Refusal::Unknown));
            assert!(keys.cached() <= 8, "{} cached", keys.cached());
        }
        // A real key still verifies after the flood.
        let (_, key) = keys
            .create("after", &[], None, Who::operator())
            .await
            .expect("created");
        assert!(keys.verify(&key).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_sessions_with_one_new_key_reads_the_store_once() {
        let (keys, _dir) = keys(64).await;
        let keys = Arc::new(keys);
        let (_, key) = keys
            .create("burst", &[], None, Who::operator())
            .await
            .expect("created");
        let unknown = format!("tgk_{:016x}_{}", 7, "0".repeat(64));
        let tasks = (0..50).map(|i| {
            let (keys, key, unknown) = (keys.clone(), key.clone(), unknown.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    keys.verify(&key).await.is_ok()
                } else {
                    keys.verify(&unknown).await == Err(Refusal::Unknown)
                }
            })
        });
        for answer in futures::future::join_all(tasks).await {
            assert!(answer.expect("joined"));
        }
        assert_eq!(
            keys.store_lookups(),
            2,
            "one read for the key, one for the unknown id"
        );
    }

    #[tokio::test]
    async fn a_flood_of_unique_ids_does_not_evict_a_hot_key() {
        let (keys, _dir) = keys(64).await;
        let (_, hot) = keys
            .create("hot", &[], None, Who::operator())
            .await
            .expect("created");
        // In use: read from the store once, then served from the cache.
        for _ in 0..3 {
            assert!(keys.verify(&hot).await.is_ok());
        }
        assert_eq!(keys.store_lookups(), 1);
        // Ten times the cache's size of unique unknown ids, the hot key
        // still in use between them, as an agent's would be.
        for i in 0..640u64 {
            let key = format!("tgk_{i:016x}_{}", "0".repeat(64));
            assert_eq!(keys.verify(&key).await, Err(Refusal::Unknown));
            if i % 64 == 0 {
                assert!(keys.verify(&hot).await.is_ok());
            }
            assert!(keys.cached() <= 64, "{} cached", keys.cached());
        }
        let lookups = keys.store_lookups();
        assert_eq!(
            lookups, 641,
            "each unknown id read the store once, the hot key never again"
        );
        assert!(keys.verify(&hot).await.is_ok());
        assert_eq!(keys.store_lookups(), lookups, "the hot key is still cached");
    }

    #[test]
    fn validity_periods() {
        assert_eq!(
            parse_validity("30d").expect("ok"),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_validity("90m").expect("ok"),
            Duration::from_secs(5_400)
        );
        for bad in ["", "d", "0d", "30", "3w", "-1d"] {
            assert!(parse_validity(bad).is_err(), "{bad}");
        }
    }
}
