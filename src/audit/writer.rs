//! The audit writer: one task that appends queued records to the chain in
//! batches (group commit) and signs checkpoints.
//!
//! - It takes the first queued record and whatever else is queued by then
//!   (at most [`MAX_BATCH`]), appends them in one transaction, and tells
//!   each waiting call its `seq`. Calls that arrive during a commit form the
//!   next batch, so the commit rate, not the call rate, is bounded by the
//!   store.
//! - When a batch fails (the store is down, read-only, …), waiting calls
//!   are told at once (they are refused, not forwarded); records nobody
//!   waits for (`completed`, events) are kept and retried every second, up
//!   to the queue's bound, past which they are counted as lost and logged.
//! - On close it writes everything still queued, then a checkpoint.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::checkpoint::{self, SigningKey};
use super::{AuditConfig, AuditError, Counters, Job, Msg, Record, chain_hash};
use crate::storage::Store;

/// Most records appended in one transaction.
pub const MAX_BATCH: usize = 512;
/// Rows per INSERT statement (bind parameters stay well under limits).
const ROWS_PER_INSERT: usize = 50;
/// How often kept records are retried while the store is failing.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Failed batches in a row after which closing gives up on kept records.
const GIVE_UP_AFTER: u64 = 3;

pub(super) async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Msg>,
    config: Arc<AuditConfig>,
    key: Arc<SigningKey>,
    counters: Arc<Counters>,
) {
    let pool = store.pool().clone();
    let mut conn = None;
    // Records nobody waits for whose batch failed: retried first.
    let mut kept: VecDeque<Record> = VecDeque::new();
    let mut next_checkpoint = Instant::now() + config.checkpoint_interval;
    let mut closing: Option<tokio::sync::oneshot::Sender<()>> = None;
    loop {
        let mut batch: Vec<Job> = Vec::new();
        // Kept records go first, in their order.
        while batch.len() < MAX_BATCH
            && let Some(record) = kept.pop_front()
        {
            batch.push(Job { record, done: None });
        }
        let wait_until = if batch.is_empty() {
            next_checkpoint
        } else {
            Instant::now() + RETRY_EVERY
        };
        // While kept records fill the bound, take nothing new (senders wait,
        // then give up): memory stays bounded while the store is down.
        let room = kept.len() < config.queue;
        if closing.is_none() && room && batch.is_empty() {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Record(job)) => batch.push(*job),
                    Some(Msg::Close(done)) => closing = Some(done),
                    None => return,
                },
                () = tokio::time::sleep_until(wait_until) => {}
            }
        }
        if room {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Record(job)) => batch.push(*job),
                    Ok(Msg::Close(done)) => closing = Some(done),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            let ok = commit(&pool, &mut conn, batch, &mut kept, &config, &counters).await;
            if !ok && closing.is_none() {
                // Let the store recover before the next attempt (waiting
                // calls were already told).
                tokio::time::sleep(RETRY_EVERY.min(config.wait / 2)).await;
            }
        }
        let drained = rx.is_empty() && kept.is_empty();
        if Instant::now() >= next_checkpoint || (closing.is_some() && drained) {
            next_checkpoint = Instant::now() + config.checkpoint_interval;
            match checkpoint::write(&pool, &key, &config.checkpoint_file).await {
                Ok(Some(c)) => {
                    counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(seq = c.seq, "audit checkpoint signed");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
            }
        }
        // Closing: done once everything is written, or once the store has
        // failed [`GIVE_UP_AFTER`] batches in a row.
        let give_up = counters.failed_batches.load(Ordering::Relaxed) >= GIVE_UP_AFTER;
        if closing.is_some() && rx.is_empty() && (kept.is_empty() || give_up) {
            if !kept.is_empty() {
                counters
                    .lost
                    .fetch_add(kept.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    records = kept.len(),
                    "audit records could not be written before shutdown"
                );
            }
            rx.close();
            if let Some(done) = closing.take() {
                let _ = done.send(());
            }
            return;
        }
    }
}

/// Append `batch`; tell its waiters. Returns whether it was written.
async fn commit(
    pool: &AnyPool,
    conn: &mut Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    batch: Vec<Job>,
    kept: &mut VecDeque<Record>,
    config: &AuditConfig,
    counters: &Counters,
) -> bool {
    let records: Vec<&Record> = batch.iter().map(|j| &j.record).collect();
    // One connection, kept: no pool checkout per batch. Dropped after an
    // error (it may be the broken part) and taken afresh next time.
    let result = match conn {
        Some(c) => append_on(c, &records).await,
        None => match pool.acquire().await {
            Ok(mut c) => {
                let r = append_on(&mut c, &records).await;
                *conn = Some(c);
                r
            }
            Err(e) => Err(e),
        },
    };
    if result.is_err() {
        *conn = None;
    }
    match result {
        Ok(first) => {
            counters.failed_batches.store(0, Ordering::Relaxed);
            counters
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (i, job) in batch.into_iter().enumerate() {
                if let Some(done) = job.done {
                    let _ = done.send(Ok(first + i as u64));
                }
            }
            true
        }
        Err(e) => {
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, records = batch.len(), "audit batch not written");
            for job in batch {
                match job.done {
                    // Its call is refused: the record is not kept.
                    Some(done) => {
                        let _ = done.send(Err(AuditError::Store(e.to_string())));
                    }
                    None if kept.len() < config.queue => kept.push_back(job.record),
                    None => {
                        counters.lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            false
        }
    }
}

/// Append records to the chain in one transaction; the `seq` of the first.
///
/// The head row is locked first (an UPDATE takes PostgreSQL's row lock and
/// SQLite's write lock), so concurrent appenders (replicas, the command
/// line) take turns and the chain stays one gapless sequence.
pub(super) async fn append(pool: &AnyPool, records: &[&Record]) -> Result<u64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    append_on(&mut conn, records).await
}

/// [`append`] on a connection the caller holds (the writer keeps one).
async fn append_on(
    conn: &mut sqlx::AnyConnection,
    records: &[&Record],
) -> Result<u64, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let first = append_in(&mut tx, records).await?;
    tx.commit().await?;
    Ok(first)
}

/// [`append`] inside the caller's transaction, so the records commit (or
/// not) with whatever else it changes (an API key and its `key_created`).
pub async fn append_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[&Record],
) -> Result<u64, sqlx::Error> {
    // Takes the lock and reads the head in one statement: the new `seq`
    // (old + n) and the current hash, which is the first record's `prev`.
    let (last, mut prev): (i64, String) = sqlx::query_as(
        "UPDATE audit_head SET seq = seq + $1 WHERE chain = 'main' RETURNING seq, record_hash",
    )
    .bind(records.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    let mut seq = last - records.len() as i64;
    let first = seq + 1;
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        seq += 1;
        let body = record.body(seq);
        let hash = chain_hash(&prev, &body);
        rows.push((
            seq,
            *record,
            body,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO audit_records (seq, at_ms, kind, call_id, subject, target, decision, body, prev_hash, record_hash) VALUES ",
        );
        for i in 0..chunk.len() {
            let n = i * 10;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${},${},${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8,
                n + 9,
                n + 10
            ));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, record, body, prev_hash, hash) in chunk {
            query = query
                .bind(*seq)
                .bind(record.at_ms)
                .bind(record.kind.name())
                .bind(record.call.clone())
                .bind(record.subject().map(str::to_string))
                .bind(record.target.clone())
                .bind(record.decision)
                .bind(body.clone())
                .bind(prev_hash.clone())
                .bind(hash.clone());
        }
        query.execute(&mut **tx).await?;
    }
    sqlx::query("UPDATE audit_head SET record_hash = $1 WHERE chain = 'main'")
        .bind(&prev)
        .execute(&mut **tx)
        .await?;
    Ok(first as u64)
}

/// Append records from outside the gateway (the command line), in one
/// transaction; their first `seq`.
pub async fn append_now(store: &Store, records: &[Record]) -> Result<u64, AuditError> {
    let refs: Vec<&Record> = records.iter().collect();
    append(store.pool(), &refs)
        .await
        .map_err(|e| AuditError::Store(e.to_string()))
}
