//! Retention: records older than a cut-off are deleted behind signed
//! checkpoints, so what remains still verifies (its first `prev_hash` is a
//! checkpoint's hash), and the deletion is itself recorded (`pruned`).
//!
//! Deletion goes in chunks of [`CHUNK`] records, oldest first, each in its
//! own transaction and each behind a checkpoint signed at its last record:
//! the writer waits at most one chunk's delete for the store (not a day's
//! worth), and a prune cut short (a crash, a restart) leaves a trail that
//! still verifies and is finished by the next one.
//!
//! `[audit] retain` runs [`prune`] on a schedule inside the gateway
//! ([`schedule`]); `toolgate audit prune` runs it once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, SigningKey};
use super::{AuditError, Kind, Record, Who, append_in, now_ms};
use crate::storage::Store;
use crate::util::sync::LockExt;

/// Records deleted per transaction.
pub const CHUNK: i64 = 10_000;
/// The most often a scheduled prune looks for old records.
const MIN_EVERY: Duration = Duration::from_secs(1);
/// The least often.
const MAX_EVERY: Duration = Duration::from_secs(3600);

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The last deleted record (the checkpoint's `seq`).
    pub through_seq: i64,
    pub records: u64,
    /// Records kept although old enough, because a forwarding feed has
    /// not delivered them yet (0 when none).
    pub held_back: u64,
}

/// Delete every record written before `before_ms` (milliseconds since the
/// epoch), behind checkpoints signed with `key` and appended to `file`.
/// Records a feed in `hold` (cursor names in `audit_forward`) has not
/// delivered yet are kept: pruning never loses what a receiver has not
/// received. `None` when there is nothing to delete.
pub async fn prune(
    store: &Store,
    key: &SigningKey,
    file: &Path,
    before_ms: i64,
    hold: &[&str],
    by: Who,
) -> Result<Option<Pruned>, AuditError> {
    let pool = store.pool();
    let read = AuditError::ReadTrail;
    // Records are in time order within the chain only roughly (a kept
    // record may be written late): cut at the last record of the oldest
    // run that is entirely older than the cut-off.
    let (first_newer,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(seq) FROM audit_records WHERE at_ms >= $1")
            .bind(before_ms)
            .fetch_one(pool)
            .await
            .map_err(read)?;
    let (last_old,): (Option<i64>,) = match first_newer {
        Some(seq) => sqlx::query_as("SELECT MAX(seq) FROM audit_records WHERE seq < $1")
            .bind(seq)
            .fetch_one(pool)
            .await
            .map_err(read)?,
        None => sqlx::query_as("SELECT MAX(seq) FROM audit_records")
            .fetch_one(pool)
            .await
            .map_err(read)?,
    };
    let (first,): (Option<i64>,) = sqlx::query_as("SELECT MIN(seq) FROM audit_records")
        .fetch_one(pool)
        .await
        .map_err(read)?;
    let (Some(last_old), Some(first)) = (last_old, first) else {
        return Ok(None);
    };
    let mut through = last_old;
    for cursor in hold {
        let delivered: Option<(i64,)> =
            sqlx::query_as("SELECT last_seq FROM audit_forward WHERE name = $1")
                .bind(*cursor)
                .fetch_optional(pool)
                .await
                .map_err(read)?;
        through = through.min(delivered.map_or(0, |(seq,)| seq));
    }
    let held_back = (last_old - through).max(0) as u64;
    if through < first {
        if held_back > 0 {
            tracing::warn!(
                records = held_back,
                "audit records past retention are kept: a forwarding receiver has not taken them yet"
            );
        }
        return Ok(None);
    }
    // The checkpoint first: if anything after fails, nothing is lost, and
    // the `pruned` record says what is being deleted before it goes (seq is
    // gapless, so the count is known).
    checkpoint::at(pool, key, file, through).await?;
    let records = (through - first + 1) as u64;
    let mut record = Record::new(Kind::Pruned);
    record.caller = Some(by);
    record.detail = Some(serde_json::json!({
        "through_seq": through,
        "records": records,
        "before_ms": before_ms,
    }));
    let mut tx = pool.begin().await?;
    append_in(&mut tx, &[&record]).await?;
    tx.commit().await?;
    delete_through(store, key, file, first, through).await?;
    Ok(Some(Pruned {
        through_seq: through,
        records,
        held_back,
    }))
}

/// Delete records `first..=through`, oldest first, [`CHUNK`] at a time,
/// each chunk behind a checkpoint signed at its last record: after every
/// chunk the trail verifies.
pub async fn delete_through(
    store: &Store,
    key: &SigningKey,
    file: &Path,
    first: i64,
    through: i64,
) -> Result<(), AuditError> {
    let pool = store.pool();
    let mut from = first;
    while from <= through {
        let end = (from + CHUNK - 1).min(through);
        checkpoint::at(pool, key, file, end).await?;
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM audit_records WHERE seq <= $1")
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(|source| AuditError::DeleteRecords { end, source })?;
        // Checkpoints behind the first kept record vouch for nothing any
        // more (the exported file keeps them all).
        sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1")
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(|source| AuditError::DeleteCheckpoints { end, source })?;
        tx.commit().await?;
        from = end + 1;
        // Let the writer's next batch in between chunks.
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// What a scheduled prune needs.
pub struct Schedule {
    pub store: Store,
    pub key: Arc<SigningKey>,
    pub checkpoint_file: PathBuf,
    /// Records older than this are deleted.
    pub retain: Duration,
    /// Feeds whose undelivered records are kept (their cursors; feeds
    /// started later add theirs).
    pub hold: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

/// How often a scheduled prune looks: a tenth of the retention, between
/// [`MIN_EVERY`] and [`MAX_EVERY`] (the store then holds at most 10% more
/// than `retain`, or an hour more).
pub fn every(retain: Duration) -> Duration {
    (retain / 10).clamp(MIN_EVERY, MAX_EVERY)
}

/// Prune on a schedule until `stop`. Failures are logged and tried again
/// at the next turn.
pub async fn schedule(s: Schedule, stop: CancellationToken) {
    let every = every(s.retain);
    let retain_ms = i64::try_from(s.retain.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let before = now_ms().saturating_sub(retain_ms);
        let by = Who {
            subject: "toolgate:retention".into(),
            ..Who::operator()
        };
        // A poisoned lock still holds the cursors: an empty hold would
        // prune records a feed has not forwarded yet.
        let hold: Vec<&str> = s.hold.locked().clone();
        match prune(&s.store, &s.key, &s.checkpoint_file, before, &hold, by).await {
            Ok(Some(p)) => tracing::info!(
                records = p.records,
                through_seq = p.through_seq,
                "audit records past retention pruned behind a signed checkpoint"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "pruning audit records past retention failed"),
        }
    }
}
