//! `toolgate audit verify`: check the chain, its checkpoints and,
//! given one, an exported checkpoint file; name the first bad `seq`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use sqlx::AnyPool;

use super::checkpoint::{self, Checkpoint};
use super::{AuditError, GENESIS, chain_hash};

/// One thing wrong, at a place in the chain where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The record it is at; for one located only to a range (a chain
    /// rewritten and re-hashed, which only a signed checkpoint catches),
    /// the first record of that range.
    pub seq: Option<i64>,
    /// The last record of that range.
    pub through: Option<i64>,
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
    /// The records after the last signed checkpoint (first, last), if
    /// any: they chain, but no signature covers them yet.
    pub unsigned: Option<(i64, i64)>,
    /// The seq of the last signed checkpoint within the records.
    pub last_signed: Option<i64>,
}

/// Most problems listed (the count goes on).
pub const MAX_PROBLEMS: usize = 50;
/// Records read per query.
const PAGE: i64 = 2000;

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The lowest `seq` a problem is known to be at; when every problem
    /// is located only to a range, the lowest start of one.
    pub fn first_bad_seq(&self) -> Option<i64> {
        self.first_problem().and_then(|p| p.seq)
    }

    /// The problem [`Self::first_bad_seq`] is about: the earliest known
    /// place, or else the earliest (then narrowest) range.
    fn first_problem(&self) -> Option<&Problem> {
        self.problems
            .iter()
            .filter(|p| p.seq.is_some())
            .min_by_key(|p| (p.through.is_some(), p.seq, p.through))
    }

    /// Where the first bad record is, as people are told: `5`, or
    /// `somewhere in 1..=77` when only a range is known.
    pub fn first_bad(&self) -> Option<String> {
        let first = self.first_problem()?;
        Some(match (first.seq, first.through) {
            (Some(from), Some(through)) if through > from => {
                format!("somewhere in {from}..={through}")
            }
            (seq, _) => seq.map(|s| s.to_string()).unwrap_or_default(),
        })
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
        self.problem_in(seq, None, message);
    }

    fn problem_in(&mut self, seq: Option<i64>, through: Option<i64>, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                seq,
                through,
                message,
            });
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
) -> Result<Verification, AuditError> {
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
        .map_err(AuditError::ReadRecords)?;
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
            .map_err(AuditError::ReadAuditHead)?;
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

    // Every signed checkpoint must match the record at its seq. One that
    // does not means the chain was rewritten (and re-hashed) from some
    // record after the last checkpoint that still matches: the edit is
    // somewhere in between, not necessarily at the checkpoint.
    let matched: BTreeSet<i64> = signed
        .iter()
        .chain(file_signed.iter())
        .filter(|(seq, hash)| hashes_at.get(*seq) == Some(*hash))
        .map(|(seq, _)| *seq)
        .collect();
    let first_kept = v.first_seq.unwrap_or(1);
    for (source, map) in [("stored", &signed), ("exported", &file_signed)] {
        for (seq, hash) in map {
            match hashes_at.get(seq) {
                Some(h) if h == hash => {}
                Some(_) => {
                    let (from, since) = match matched.range(..*seq).next_back() {
                        Some(good) => (
                            good + 1,
                            format!("the signed checkpoint at seq {good} still matches"),
                        ),
                        None => (
                            first_kept,
                            "no earlier signed checkpoint narrows it down".to_string(),
                        ),
                    };
                    v.problem_in(
                        Some(from),
                        Some(*seq),
                        format!(
                            "record {seq} differs from the {source} signed checkpoint at seq {seq}: records were edited somewhere in {from}..={seq} and the chain re-hashed after them ({since}); compare them with a copy kept elsewhere (the forward feed, an export)"
                        ),
                    );
                }
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

    // Records after the last signed checkpoint chain, but only a
    // signature proves them: say so, even when everything verifies.
    if let Some(last) = v.last_seq {
        v.last_signed = wanted.range(..=last).next_back().copied();
        let from = v.last_signed.map_or(first_kept, |s| s + 1);
        if from <= last {
            v.unsigned = Some((from, last));
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
