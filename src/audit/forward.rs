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

use super::AuditError;
use super::query::{Entry, Filter, page};
use crate::storage::Store;

pub use crate::config::{ForwardConfig, MAX_FORWARD_BATCH as MAX_BATCH};

/// Counters, for tests and `/readyz`.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    /// The last `seq` delivered.
    pub cursor: AtomicU64,
}

/// Shapes a batch of records into a request body.
pub type Shape = Box<dyn Fn(&[Entry]) -> serde_json::Value + Send + Sync>;

/// What a forwarder sends: which records, from which cursor, shaped how.
pub struct Feed {
    /// Its row in `audit_forward`.
    pub cursor: &'static str,
    /// Only records of these kinds (all when empty).
    pub kinds: &'static [&'static str],
    /// The request body for a batch of records.
    pub body: Shape,
}

impl Feed {
    /// `[audit.forward]`: every record, as `{"records": […]}`.
    pub fn all_records() -> Feed {
        Feed {
            cursor: "default",
            kinds: &[],
            body: Box::new(|records| serde_json::json!({ "records": records })),
        }
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client of a feed: no redirects (the receiver's
/// `authorization` and the records would go wherever it points).
pub fn client() -> Result<reqwest::Client, AuditError> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(AuditError::ForwardClient)
}

/// Deliver `feed` with `client` until `stop`.
pub async fn run(
    store: Store,
    client: reqwest::Client,
    config: ForwardConfig,
    feed: Feed,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
) {
    // A receiver URL may carry a token in its query: log it safely.
    let shown = url::Url::parse(&config.url).map_or_else(
        |_| "(an invalid URL)".to_string(),
        |u| crate::config::egress::redact(&u, &[]),
    );
    let mut backoff = Duration::from_millis(500);
    loop {
        let pause = match deliver_once(&store, &client, &config, &feed, &stats).await {
            Ok(n) if n == config.batch => Duration::ZERO,
            Ok(_) => {
                backoff = Duration::from_millis(500);
                config.interval
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                // The client's error may repeat a credential the URL carries.
                let error = super::redact::Redactor::default().text(&e.to_string());
                tracing::warn!(url = %shown, %error, retry_in_ms = backoff.as_millis() as u64, "audit forwarding failed; retrying");
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
/// The chain's head is read first: every record up to it is committed
/// (records and the head move in one transaction), so when fewer than a
/// batch match, the cursor moves to the head and the records a feed skips
/// are not read again.
async fn deliver_once(
    store: &Store,
    client: &reqwest::Client,
    config: &ForwardConfig,
    feed: &Feed,
    stats: &ForwardStats,
) -> Result<usize, AuditError> {
    let pool = store.pool();
    let (cursor,): (i64,) = sqlx::query_as("SELECT last_seq FROM audit_forward WHERE name = $1")
        .bind(feed.cursor)
        .fetch_one(pool)
        .await
        .map_err(AuditError::ReadCursor)?;
    let (head,): (i64,) = sqlx::query_as("SELECT seq FROM audit_head WHERE chain = 'main'")
        .fetch_one(pool)
        .await
        .map_err(AuditError::ReadHead)?;
    let filter = Filter {
        kinds: feed.kinds.to_vec(),
        until_seq: Some(head),
        ..Filter::default()
    };
    let records = page(pool, &filter, cursor, config.batch as i64).await?;
    let next = match records.last() {
        Some(last) if records.len() == config.batch => last.seq,
        _ => head,
    };
    if !records.is_empty() {
        let mut request = client.post(&config.url).json(&(feed.body)(&records));
        if let Some(auth) = &config.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth.expose());
        }
        // reqwest's message prints the URL in full (tokens in its query).
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            AuditError::Send(text)
        })?;
        if response.status().is_redirection() {
            return Err(AuditError::Redirect(response.status()));
        }
        if !response.status().is_success() {
            return Err(AuditError::Refused(response.status()));
        }
    }
    if next > cursor {
        // Advance only from where we read: if another replica moved it,
        // it sent these too.
        sqlx::query("UPDATE audit_forward SET last_seq = $1 WHERE name = $2 AND last_seq = $3")
            .bind(next)
            .bind(feed.cursor)
            .bind(cursor)
            .execute(pool)
            .await
            .map_err(AuditError::AdvanceCursor)?;
    }
    stats
        .delivered
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    stats.cursor.store(next as u64, Ordering::Relaxed);
    Ok(records.len())
}
