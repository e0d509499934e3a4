//! Forwarding audit records to a webhook or SIEM endpoint
//! (`[audit.forward]`): batches of records, oldest first, as JSON
//! `{"records": [{seq, record_hash, prev_hash, record}, …]}` POSTed to the
//! configured URL; retried with backoff until it answers 2xx.
//!
//! The records in the store are the backlog: a cursor in the store says how
//! far they have been delivered, so a receiver that is down loses nothing
//! and the gateway holds at most one batch in memory. Several replicas
//! advance one cursor (compare-and-set); a batch may be sent twice, never
//! skipped: receivers dedupe on `seq`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::query::{Filter, page};
use crate::config::Secret;
use crate::storage::Store;

/// Where and how to forward (`[audit.forward]`).
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub url: String,
    /// Sent as the `Authorization` header, if set.
    pub authorization: Option<Secret>,
    /// Records per request.
    pub batch: usize,
    /// How often to look for new records when caught up.
    pub interval: Duration,
    /// Longest wait between retries of a failed request.
    pub max_backoff: Duration,
}

/// Counters, for tests and `/readyz`.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    /// The last `seq` delivered.
    pub cursor: AtomicU64,
}

/// Most records per request.
pub const MAX_BATCH: usize = 1000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliver records until `stop`.
pub async fn run(
    store: Store,
    config: ForwardConfig,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut backoff = Duration::from_millis(500);
    loop {
        let pause = match deliver_once(&store, &client, &config, &stats).await {
            Ok(n) if n == config.batch => Duration::ZERO,
            Ok(_) => {
                backoff = Duration::from_millis(500);
                config.interval
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %config.url, error = %e, retry_in_ms = backoff.as_millis() as u64, "audit forwarding failed; retrying");
                let wait = backoff;
                backoff = (backoff * 2).min(config.max_backoff);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Send the next batch after the cursor; how many records were delivered.
async fn deliver_once(
    store: &Store,
    client: &reqwest::Client,
    config: &ForwardConfig,
    stats: &ForwardStats,
) -> Result<usize, String> {
    let pool = store.pool();
    let (cursor,): (i64,) =
        sqlx::query_as("SELECT last_seq FROM audit_forward WHERE name = 'default'")
            .fetch_one(pool)
            .await
            .map_err(|e| format!("reading the forwarding cursor: {e}"))?;
    let records = page(pool, &Filter::default(), cursor, config.batch as i64).await?;
    let Some(last) = records.last().map(|r| r.seq) else {
        return Ok(0);
    };
    let mut request = client
        .post(&config.url)
        .json(&serde_json::json!({ "records": records }));
    if let Some(auth) = &config.authorization {
        request = request.header(reqwest::header::AUTHORIZATION, auth.expose());
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the receiver answered {}", response.status()));
    }
    // Advance only from where we read: if another replica moved it, it
    // sent these too.
    sqlx::query("UPDATE audit_forward SET last_seq = $1 WHERE name = 'default' AND last_seq = $2")
        .bind(last)
        .bind(cursor)
        .execute(pool)
        .await
        .map_err(|e| format!("advancing the forwarding cursor: {e}"))?;
    stats
        .delivered
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    stats.cursor.store(last as u64, Ordering::Relaxed);
    Ok(records.len())
}
