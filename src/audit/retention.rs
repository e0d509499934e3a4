//! Retention: records older than a cut-off are deleted behind a signed
//! checkpoint at the last deleted record, so what remains still verifies
//! (its first `prev_hash` is that checkpoint's hash), and the deletion is
//! itself recorded (`pruned`).

use std::path::Path;

use super::checkpoint::{self, SigningKey};
use super::{Kind, Record, Who, append_in};
use crate::storage::Store;

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The last deleted record (the checkpoint's `seq`).
    pub through_seq: i64,
    pub records: u64,
}

/// Delete every record written before `before_ms` (milliseconds since the
/// epoch), behind a checkpoint signed with `key` and appended to `file`.
/// `None` when there is nothing that old.
pub async fn prune(
    store: &Store,
    key: &SigningKey,
    file: &Path,
    before_ms: i64,
    by: Who,
) -> Result<Option<Pruned>, String> {
    let pool = store.pool();
    // Records are in time order within the chain only roughly (a kept
    // record may be written late): cut at the last record of the oldest
    // run that is entirely older than the cut-off.
    let (first_newer,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(seq) FROM audit_records WHERE at_ms >= $1")
            .bind(before_ms)
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
    let (last,): (Option<i64>,) = match first_newer {
        Some(seq) => sqlx::query_as("SELECT MAX(seq) FROM audit_records WHERE seq < $1")
            .bind(seq)
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?,
        None => sqlx::query_as("SELECT MAX(seq) FROM audit_records")
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?,
    };
    let Some(through) = last else {
        return Ok(None);
    };
    // The checkpoint first: if the deletion then fails, nothing is lost.
    checkpoint::at(pool, key, file, through).await?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let deleted = sqlx::query("DELETE FROM audit_records WHERE seq <= $1")
        .bind(through)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?
        .rows_affected();
    let mut record = Record::new(Kind::Pruned);
    record.caller = Some(by);
    record.detail = Some(serde_json::json!({
        "through_seq": through,
        "records": deleted,
        "before_ms": before_ms,
    }));
    append_in(&mut tx, &[&record])
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(Some(Pruned {
        through_seq: through,
        records: deleted,
    }))
}
