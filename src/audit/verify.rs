//! `toolgate audit verify`: check the chain, its checkpoints and,
//! given one, an exported checkpoint file; name the first bad `seq`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use sqlx::AnyPool;

use super::checkpoint::{self, Checkpoint};
use super::{GENESIS, chain_hash};

/// One thing wrong, at a place in the chain where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: Option<i64>,
    pub message: String,
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Verification {
    pub records: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub checkpoints: usize,
    pub exported: usize,
    pub problems: Vec<Problem>,
    /// Problems past the [`MAX_PROBLEMS`] listed.
    pub more: usize,
}

/// Most problems listed (the count goes on).
pub const MAX_PROBLEMS: usize = 50;
/// Records read per query.
const PAGE: i64 = 2000;

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The lowest `seq` any problem is at.
    pub fn first_bad_seq(&self) -> Option<i64> {
        self.problems.iter().filter_map(|p| p.seq).min()
    }

    /// `seq → record_hash` of the checkpoints `public_key` signed; each
    /// other one is a problem.
    fn signed(
        &mut self,
        checkpoints: &[Checkpoint],
        source: &str,
        public_key: &str,
    ) -> BTreeMap<i64, String> {
        let mut signed = BTreeMap::new();
        for c in checkpoints {
            if c.signed_by(public_key) {
                signed.insert(c.seq, c.record_hash.clone());
            } else {
                self.problem(
                    Some(c.seq),
                    format!(
                        "the {source} checkpoint at seq {} is not signed by the audit key {}",
                        c.seq,
                        short(public_key)
                    ),
                );
            }
        }
        signed
    }

    fn problem(&mut self, seq: Option<i64>, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { seq, message });
        } else {
            self.more += 1;
        }
    }
}

type Row = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
);

/// Check everything; `public_key` is the hex Ed25519 key checkpoints must
/// be signed with; `exported`: a checkpoint file kept outside the store.
pub async fn verify(
    pool: &AnyPool,
    public_key: &str,
    exported: Option<&Path>,
) -> Result<Verification, String> {
    let mut v = Verification::default();
    // Signed checkpoints, by seq (stored and exported).
    let stored = checkpoint::stored(pool).await?;
    v.checkpoints = stored.len();
    let signed = v.signed(&stored, "stored", public_key);
    let exported: Vec<Checkpoint> = match exported {
        Some(file) => checkpoint::read_file(file)?,
        None => Vec::new(),
    };
    v.exported = exported.len();
    let file_signed = v.signed(&exported, "exported", public_key);
    let wanted: BTreeSet<i64> = signed.keys().chain(file_signed.keys()).copied().collect();
    // Where records may have been pruned behind: any signed checkpoint.
    let mut vouched = signed.clone();
    vouched.extend(file_signed.clone());
    let mut hashes_at: BTreeMap<i64, String> = BTreeMap::new();

    // The records, in order.
    let mut after = i64::MIN;
    let mut expected: Option<(i64, String)> = None;
    loop {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, at_ms, kind, call_id, subject, target, decision, body, prev_hash, record_hash \
             FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(pool)
        .await
        .map_err(|e| format!("reading the audit records: {e}"))?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for row in rows {
            check_record(&mut v, &row, &mut expected, &vouched);
            if wanted.contains(&row.0) {
                hashes_at.insert(row.0, row.9.clone());
            }
        }
    }
    v.last_seq = expected.as_ref().map(|(s, _)| *s);

    // The head must be the last record.
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, record_hash FROM audit_head WHERE chain = 'main'")
            .fetch_optional(pool)
            .await
            .map_err(|e| format!("reading the audit head: {e}"))?;
    let last = expected.clone().unwrap_or((0, GENESIS.to_string()));
    match head {
        Some(head) if head == last => {}
        Some((seq, _)) if seq > last.0 => v.problem(
            Some(last.0 + 1),
            format!(
                "the chain head says {seq} records were written, but they end at {}: records {}..={seq} are missing (tail truncated)",
                last.0,
                last.0 + 1
            ),
        ),
        Some((seq, _)) => v.problem(
            Some(seq.min(last.0)),
            format!(
                "the chain head (seq {seq}) does not match the last record (seq {}): edited",
                last.0
            ),
        ),
        None => v.problem(None, "the chain head row is missing".into()),
    }

    // Every signed checkpoint must match the record at its seq.
    for (source, map) in [("stored", &signed), ("exported", &file_signed)] {
        for (seq, hash) in map {
            match hashes_at.get(seq) {
                Some(h) if h == hash => {}
                Some(_) => v.problem(
                    Some(*seq),
                    format!("record {seq} differs from the {source} signed checkpoint at {seq}"),
                ),
                None if *seq > last.0 => v.problem(
                    Some(last.0 + 1),
                    format!(
                        "the {source} signed checkpoint says the chain reached seq {seq}, but records end at {}: records {}..={seq} were removed (tail truncated)",
                        last.0,
                        last.0 + 1
                    ),
                ),
                // Before the first record kept: pruned behind it.
                None => {}
            }
        }
    }
    Ok(v)
}

fn short(key: &str) -> &str {
    &key[..key.len().min(16)]
}

/// Check one record against the one before it.
fn check_record(
    v: &mut Verification,
    row: &Row,
    expected: &mut Option<(i64, String)>,
    signed: &BTreeMap<i64, String>,
) {
    let (seq, at_ms, kind, call_id, subject, target, decision, body, prev_hash, record_hash) = row;
    let seq = *seq;
    v.records += 1;
    if v.first_seq.is_none() {
        v.first_seq = Some(seq);
    }
    // Where the chain should be.
    let (want_seq, want_prev) = match expected {
        Some((last, hash)) => (*last + 1, hash.clone()),
        None if seq == 1 => (1, GENESIS.to_string()),
        None => match signed.get(&(seq - 1)) {
            // Pruned behind a signed checkpoint.
            Some(hash) => (seq, hash.clone()),
            None => {
                // Missing from just after the last signed checkpoint (records
                // pruned behind it are not missing).
                let from = signed.range(..seq).next_back().map_or(1, |(s, _)| s + 1);
                v.problem(
                    Some(from),
                    format!(
                        "records {from}..{seq} are missing (deleted) and no signed checkpoint at seq {} vouches for them",
                        seq - 1
                    ),
                );
                (seq, prev_hash.clone())
            }
        },
    };
    if seq > want_seq {
        v.problem(
            Some(want_seq),
            if seq == want_seq + 1 {
                format!("record {want_seq} is missing (deleted)")
            } else {
                format!("records {want_seq}..{} are missing (deleted)", seq - 1)
            },
        );
    } else if *prev_hash != want_prev {
        v.problem(
            Some(seq),
            format!(
                "record {seq} does not follow record {}: records were inserted, deleted or reordered",
                seq - 1
            ),
        );
    }
    if chain_hash(prev_hash, body) != *record_hash {
        v.problem(
            Some(seq),
            format!("record {seq} was edited: its hash does not match its content"),
        );
    }
    match serde_json::from_str::<Value>(body) {
        Ok(b) => {
            let text = |v: &Value| v.as_str().map(str::to_string);
            let columns_match = b["seq"].as_i64() == Some(seq)
                && b["at_ms"].as_i64() == Some(*at_ms)
                && b["kind"].as_str() == Some(kind.as_str())
                && text(&b["call"]) == *call_id
                && text(&b["caller"]["subject"]) == *subject
                && text(&b["target"]) == *target
                && text(&b["decision"]) == *decision;
            if b["seq"].as_i64() != Some(seq) {
                v.problem(
                    Some(seq),
                    format!("record {seq} holds the body of record {} (moved)", b["seq"]),
                );
            } else if !columns_match {
                v.problem(
                    Some(seq),
                    format!("record {seq} was edited: its columns do not match its body"),
                );
            }
        }
        Err(e) => v.problem(Some(seq), format!("record {seq}'s body is not JSON: {e}")),
    }
    *expected = Some((seq, record_hash.clone()));
}
