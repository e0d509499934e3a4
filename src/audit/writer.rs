//! The audit writer: one task that appends queued records to the chain in
//! batches (group commit) and signs checkpoints. On SQLite it runs on a
//! thread of its own with its own connection; on PostgreSQL it is a task
//! on the gateway's runtime.
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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::pool::PoolConnection;
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
/// How long records nobody waits for may wait for a record someone waits
/// for, to share its commit.
const LINGER: Duration = Duration::from_millis(20);
/// Failed batches in a row after which closing gives up on kept records.
const GIVE_UP_AFTER: u64 = 3;

/// Start the writer over `store`, taking records from `rx`.
pub(super) fn spawn(
    store: Store,
    rx: mpsc::Receiver<Msg>,
    config: Arc<AuditConfig>,
    key: Arc<SigningKey>,
    counters: Arc<Counters>,
) {
    if !store.is_sqlite() {
        tokio::spawn(run(store, rx, config, key, counters));
        return;
    }
    // SQLite calls block: they get a thread, whose own small runtime keeps
    // the queue's waits and the checkpoints' timers.
    let started = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime.block_on(run(store, rx, config, key, counters)),
                // The queue is dropped with `rx`: calls are refused.
                Err(e) => tracing::error!(error = %e, "the audit writer could not start"),
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "the audit writer's thread could not start");
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Msg>,
    config: Arc<AuditConfig>,
    key: Arc<SigningKey>,
    counters: Arc<Counters>,
) {
    let pool = store.pool().clone();
    let mut sink = Sink::new(&store, &config);
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
            // Records nobody waits for (a call's `completed`) wait a little
            // for company: they ride with the next call's `decided`, so at
            // low rates a call costs one commit, not two.
            let linger_until = Instant::now() + LINGER;
            while closing.is_none()
                && kept.is_empty()
                && batch.len() < MAX_BATCH
                && !batch.is_empty()
                && batch.iter().all(|j| j.done.is_none())
            {
                match tokio::time::timeout_at(linger_until, rx.recv()).await {
                    Ok(Some(Msg::Record(job))) => batch.push(*job),
                    Ok(Some(Msg::Close(done))) => closing = Some(done),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            let ok = commit(&mut sink, batch, &mut kept, &config, &counters).await;
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
    sink: &mut Sink,
    batch: Vec<Job>,
    kept: &mut VecDeque<Record>,
    config: &AuditConfig,
    counters: &Counters,
) -> bool {
    let records: Vec<&Record> = batch.iter().map(|j| &j.record).collect();
    match sink.append(&records).await {
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
        Err(e) => fail(batch, e, kept, config, counters),
    }
}

/// A batch that could not be written: its waiting calls are told (and
/// refused); the other records are kept for a retry, up to the bound.
fn fail(
    batch: Vec<Job>,
    e: String,
    kept: &mut VecDeque<Record>,
    config: &AuditConfig,
    counters: &Counters,
) -> bool {
    counters.failed_batches.fetch_add(1, Ordering::Relaxed);
    tracing::error!(error = %e, records = batch.len(), "audit batch not written");
    for job in batch {
        match job.done {
            // Its call is refused: the record is not kept.
            Some(done) => {
                let _ = done.send(Err(AuditError::Store(e.clone())));
            }
            None if kept.len() < config.queue => kept.push_back(job.record),
            None => {
                counters.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    false
}

/// Where the writer appends batches.
enum Sink {
    /// A connection of the writer's own to the SQLite file. On SQLite the
    /// writer runs on a thread of its own ([`spawn`]), so an append is
    /// plain calls into SQLite on that thread: no hand-off to a driver
    /// thread and back for each statement, which cost a call more than the
    /// commit itself.
    Sqlite {
        file: PathBuf,
        busy: Duration,
        conn: Option<rusqlite::Connection>,
    },
    /// A connection kept from the pool, and the chain's head as this writer
    /// last left it.
    Postgres {
        pool: AnyPool,
        conn: Option<PoolConnection<sqlx::Any>>,
        head: Head,
    },
}

impl Sink {
    fn new(store: &Store, config: &AuditConfig) -> Sink {
        match store.sqlite_file() {
            Some(file) => Sink::Sqlite {
                file: file.to_path_buf(),
                // A locked database is waited for no longer than a call
                // waits for its record.
                busy: config.wait.min(Duration::from_secs(5)),
                conn: None,
            },
            None => Sink::Postgres {
                pool: store.pool().clone(),
                conn: None,
                head: None,
            },
        }
    }

    /// Append `records` in one transaction; the `seq` of the first. A
    /// connection is kept between batches, and dropped after an error (it
    /// may be the broken part) to be opened afresh next time. Why not
    /// stays a string: one message goes to every call of the batch
    /// (`AuditError::Store`) and the log; nothing branches on it.
    async fn append(&mut self, records: &[&Record]) -> Result<u64, String> {
        match self {
            Sink::Sqlite { file, busy, conn } => {
                let c = match conn {
                    Some(c) => c,
                    None => conn.insert(
                        open_sqlite(file, *busy)
                            .map_err(|e| format!("opening {}: {e}", file.display()))?,
                    ),
                };
                let result = append_sqlite(c, records);
                if result.is_err() {
                    *conn = None;
                }
                result.map_err(|e| e.to_string())
            }
            Sink::Postgres { pool, conn, head } => {
                let c = match conn {
                    Some(c) => c,
                    None => conn.insert(pool.acquire().await.map_err(|e| {
                        *head = None;
                        e.to_string()
                    })?),
                };
                let result = append_postgres(c, head, records).await;
                if result.is_err() {
                    // Not knowing what state it is in: roll back, and start
                    // afresh.
                    let _ = sqlx::query("ROLLBACK").execute(&mut **c).await;
                    *conn = None;
                    *head = None;
                }
                result.map_err(|e| e.to_string())
            }
        }
    }
}

/// The writer's connection to the SQLite file the pool has migrated (in
/// WAL mode): every commit is synced to disk (`synchronous = FULL`) before
/// its calls go on. Its page cache is [`WRITER_CACHE_KIB`], so the pages an
/// append touches (the right edge of each index, one leaf per active
/// caller in the subject index) stay in it however large the store grows.
///
/// SQLite copies the WAL into the file itself, inside the commit that
/// passes 1,000 pages. Tried and dropped: a thread of its own copying it
/// every 500 ms (appends/s up by half) made the gateway's p99 at 2,000
/// calls/s 2–3 ms worse, its disk flush delaying commits' (README,
/// *Benchmark*).
fn open_sqlite(file: &Path, busy: Duration) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    Ok(conn)
}

/// The writer connection's page cache (KiB).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// Append to SQLite in one IMMEDIATE transaction, which takes the write
/// lock first: the command line (`keys create`) appending meanwhile waits,
/// and the head read here is the head written back.
fn append_sqlite(conn: &mut rusqlite::Connection, records: &[&Record]) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Every statement is prepared once per connection (`prepare_cached`):
    // preparing them again was a sixth of the writer's time at 1,000
    // calls/s.
    let (seq, prev): (i64, String) = tx
        .prepare_cached("SELECT seq, record_hash FROM audit_head WHERE chain = 'main'")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let rows = rows(seq, &prev, records);
    {
        let mut insert = tx.prepare_cached(&format!("{INSERT} VALUES {}", values(1, 0, false)))?;
        for row in &rows {
            let r = row.record;
            insert.execute(rusqlite::params![
                row.seq,
                r.at_ms,
                r.kind.name(),
                r.call,
                r.subject(),
                r.target,
                r.decision,
                row.body,
                row.prev,
                row.hash,
            ])?;
        }
    }
    if let Some(last) = rows.last() {
        tx.prepare_cached("UPDATE audit_head SET seq = $1, record_hash = $2 WHERE chain = 'main'")?
            .execute(rusqlite::params![last.seq, last.hash])?;
    }
    tx.commit()?;
    Ok((seq + 1) as u64)
}

/// The chain's head as this writer last left it: `(seq, record_hash)`.
type Head = Option<(i64, String)>;

/// Append to PostgreSQL in one round trip, assuming the chain head is still
/// where this writer left it (it is, unless another replica or the command
/// line appended meanwhile): one statement (a data-modifying CTE) updates
/// the head row only if it still holds `head`, and inserts the records only
/// if that update took; otherwise nothing changes, the head is read again
/// and it is tried once more. Each round trip costs a network hop, so this
/// is most of the difference at low call rates.
async fn append_postgres(
    conn: &mut sqlx::AnyConnection,
    head: &mut Head,
    records: &[&Record],
) -> Result<u64, sqlx::Error> {
    for _attempt in 0..2 {
        let (seq, prev) = match head.take() {
            Some(h) => h,
            None => {
                sqlx::query_as("SELECT seq, record_hash FROM audit_head WHERE chain = 'main'")
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        let rows = rows(seq, &prev, records);
        let (last, last_hash) = rows
            .last()
            .map(|r| (r.seq, r.hash.clone()))
            .unwrap_or((seq, prev.clone()));
        let sql = format!(
            "WITH head AS (UPDATE audit_head SET seq = $1, record_hash = $2 \
             WHERE chain = 'main' AND seq = $3 AND record_hash = $4 RETURNING seq) \
             {INSERT} SELECT v.* FROM (VALUES {}) AS v WHERE EXISTS (SELECT 1 FROM head)",
            values(rows.len(), 4, true)
        );
        let done = bind_rows(
            sqlx::query_as::<_, ()>(sqlx::AssertSqlSafe(sql))
                .bind(last)
                .bind(last_hash.clone())
                .bind(seq)
                .bind(prev.clone()),
            &rows,
        );
        // A statement without rows: its count is what was inserted.
        let inserted = sqlx::Executor::execute(&mut *conn, done).await?;
        if inserted.rows_affected() == rows.len() as u64 {
            *head = Some((last, last_hash));
            return Ok((seq + 1) as u64);
        }
        // Someone else appended: read the head and try again.
    }
    Err(sqlx::Error::Protocol(
        "the audit chain head kept moving (another writer); the batch was not written".into(),
    ))
}

/// The start of every insert of records.
const INSERT: &str = "INSERT INTO audit_records \
    (seq, at_ms, kind, call_id, subject, target, decision, body, prev_hash, record_hash)";

/// `$n+1,…,$n+10`: one row's binds (as [`bind_rows`] binds them), typed for
/// PostgreSQL's `VALUES` when `cast`.
fn placeholders(n: usize, cast: bool) -> String {
    const TYPES: [&str; 10] = [
        "BIGINT", "BIGINT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT",
    ];
    TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if cast {
                format!("${}::{t}", n + i + 1)
            } else {
                format!("${}", n + i + 1)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `(…),(…)` for `rows` rows whose binds start after `offset` others.
fn values(rows: usize, offset: usize, cast: bool) -> String {
    (0..rows)
        .map(|i| format!("({})", placeholders(offset + i * 10, cast)))
        .collect::<Vec<_>>()
        .join(",")
}

/// One record ready to insert.
struct Row<'a> {
    seq: i64,
    record: &'a Record,
    body: String,
    prev: String,
    hash: String,
}

/// `records` placed after `(seq, prev)`: their bodies and hashes.
fn rows<'a>(mut seq: i64, prev: &str, records: &[&'a Record]) -> Vec<Row<'a>> {
    let mut prev = prev.to_string();
    records
        .iter()
        .map(|record| {
            seq += 1;
            let body = record.body(seq);
            let hash = chain_hash(&prev, &body);
            Row {
                seq,
                record,
                body,
                prev: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}

fn bind_rows<'q, O>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    rows: &[Row<'_>],
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
    for row in rows {
        query = query
            .bind(row.seq)
            .bind(row.record.at_ms)
            .bind(row.record.kind.name())
            .bind(row.record.call.clone())
            .bind(row.record.subject().map(str::to_string))
            .bind(row.record.target.clone())
            .bind(row.record.decision)
            .bind(row.body.clone())
            .bind(row.prev.clone())
            .bind(row.hash.clone());
    }
    query
}

/// Append records inside the caller's transaction, so they commit (or
/// not) with whatever else it changes (an API key and its `key_created`);
/// the `seq` of the first.
///
/// The head row is locked first (the UPDATE takes PostgreSQL's row lock and
/// SQLite's write lock), so concurrent appenders (replicas, the command
/// line) take turns and the chain stays one gapless sequence.
pub async fn append_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[&Record],
) -> Result<u64, sqlx::Error> {
    // Takes the lock and reads the head in one statement: the new `seq`
    // (old + n) and the current hash, which is the first record's `prev`.
    let (last, prev): (i64, String) = sqlx::query_as(
        "UPDATE audit_head SET seq = seq + $1 WHERE chain = 'main' RETURNING seq, record_hash",
    )
    .bind(records.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    let first = last - records.len() as i64 + 1;
    let rows = rows(first - 1, &prev, records);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!("{INSERT} VALUES {}", values(chunk.len(), 0, false));
        let insert = bind_rows(sqlx::query_as::<_, ()>(sqlx::AssertSqlSafe(sql)), chunk);
        sqlx::Executor::execute(&mut **tx, insert).await?;
    }
    if let Some(row) = rows.last() {
        sqlx::query("UPDATE audit_head SET record_hash = $1 WHERE chain = 'main'")
            .bind(&row.hash)
            .execute(&mut **tx)
            .await?;
    }
    Ok(first as u64)
}

/// Append records from outside the gateway (the command line), in one
/// transaction; their first `seq`.
pub async fn append_now(store: &Store, records: &[Record]) -> Result<u64, AuditError> {
    let store_error = |e: sqlx::Error| AuditError::Store(e.to_string());
    let refs: Vec<&Record> = records.iter().collect();
    let mut tx = store.pool().begin().await.map_err(store_error)?;
    let first = append_in(&mut tx, &refs).await.map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::super::{Audit, AuditConfig, Kind, Record, SigningKey};
    use crate::storage::Store;

    /// Every append maintains every index of the table: only the ones a
    /// query reads are left (migration 0006 dropped the one on call ids).
    #[tokio::test]
    async fn the_writer_maintains_only_indexes_a_query_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("store");
        let key = SigningKey::from_text(&"ab".repeat(32)).expect("key");
        let audit =
            Audit::start(store.clone(), AuditConfig::defaults(dir.path()), key).expect("audit");
        audit
            .write(Record::new(Kind::Decided))
            .await
            .expect("written");
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_records' \
             AND name LIKE 'audit_records_%' ORDER BY name",
        )
        .fetch_all(store.pool())
        .await
        .expect("indexes");
        let names: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
        assert_eq!(names, ["audit_records_at", "audit_records_subject"]);
        audit.close().await;
    }
}
