//! Pinned tool definitions (rug pulls), in the store: which definition of
//! each tool is in force, which wait for a reviewer, and the reviewer's
//! decisions. See `migrations/0007_tool_pins.sql` for the table.
//!
//! [`check`] runs at every catalog build, for every tool an upstream
//! offers, and says which are exposed. A definition is exposed when it is
//! the tool's pin (or the server does not pin); a first-use server pins
//! the first definition it sees. A definition the lint quarantines is
//! exposed only once a person has approved it. Everything else waits,
//! quarantined, for [`approve`] or [`reject`].

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::AnyPool;

use super::IntegrityError;
use super::lint::{LintFinding, StoredFinding};
use crate::audit::redact::Redactor;
use crate::audit::{Audit, Kind, Record, Who, now_ms};
use crate::config::PinMode;
use crate::storage::Store;

/// Who pins a definition seen first (`pin = "first-use"`).
pub const FIRST_USE: &str = "toolgate:first-use";

/// One definition an upstream offers now.
pub struct Offered<'a> {
    /// The upstream's name for the tool.
    pub tool: &'a str,
    /// SHA-256 of the definition's canonical JSON.
    pub hash: &'a str,
    /// The definition's canonical JSON.
    pub definition: &'a str,
    pub lint: &'a [LintFinding],
    /// The lint quarantines it (`lint = "quarantine"` and a finding of that
    /// severity).
    pub lint_blocks: bool,
}

/// Why a tool is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A new tool of a server that reviews every definition.
    New,
    /// Its definition differs from the pinned one.
    Changed,
    /// The poisoning lint found something of quarantine severity.
    Lint,
    /// A reviewer rejected this definition.
    Rejected,
    /// The store could not be read, and this is not the definition last
    /// exposed (fail closed).
    Unchecked,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Changed => "changed",
            Reason::Lint => "lint",
            Reason::Rejected => "rejected",
            Reason::Unchecked => "unchecked",
        }
    }

    /// The reason a stored name stands for.
    pub fn parse_name(text: &str) -> Option<Reason> {
        [
            Reason::New,
            Reason::Changed,
            Reason::Lint,
            Reason::Rejected,
            Reason::Unchecked,
        ]
        .into_iter()
        .find(|r| r.name() == text)
    }

    fn parse(text: &str) -> Reason {
        match text {
            "new" => Reason::New,
            "lint" => Reason::Lint,
            "rejected" => Reason::Rejected,
            _ => Reason::Changed,
        }
    }

    /// What it means, for `/readyz` problems and the log.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::New => "new tool, waiting for review (pin = \"review\")",
            Reason::Changed => "its definition changed since it was pinned",
            Reason::Lint => "the poisoning lint found instructions aimed at the model",
            Reason::Rejected => "a reviewer rejected its current definition",
            Reason::Unchecked => "the pin store could not be read to check its definition",
        }
    }
}

/// Whether an offered definition is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Exposed,
    Quarantined(Reason),
}

#[derive(Debug, Clone)]
struct Row {
    tool: String,
    hash: String,
    state: String,
    reason: String,
    decided_by: Option<String>,
}

/// What to write for one offered definition.
enum Write {
    /// A new row in this state, for this reason.
    Insert(&'static str, Reason),
    /// The row of this hash moves to `pending` for this reason.
    Pend(Reason),
}

/// Decide each offered definition of `server` (in order), recording new
/// pins and quarantines in the store and the audit trail, in one
/// transaction. Replicas racing on one PostgreSQL agree: the store keeps
/// one pin per tool, and a lost race is decided again from what won.
pub async fn check(
    audit: &Audit,
    server: &str,
    mode: PinMode,
    offered: &[Offered<'_>],
) -> Result<Vec<Verdict>, IntegrityError> {
    for _ in 0..3 {
        if let Some(verdicts) = try_check(audit, server, mode, offered).await? {
            return Ok(verdicts);
        }
    }
    Err(IntegrityError::Contended(server.to_string()))
}

async fn try_check(
    audit: &Audit,
    server: &str,
    mode: PinMode,
    offered: &[Offered<'_>],
) -> Result<Option<Vec<Verdict>>, IntegrityError> {
    let pool = audit.store().pool();
    let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT tool, definition_hash, state, reason, decided_by FROM tool_definitions \
         WHERE server = $1",
    )
    .bind(server)
    .fetch_all(pool)
    .await?;
    let mut by_tool: HashMap<&str, Vec<Row>> = HashMap::new();
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(tool, hash, state, reason, decided_by)| Row {
            tool,
            hash,
            state,
            reason,
            decided_by,
        })
        .collect();
    for row in &rows {
        by_tool
            .entry(row.tool.as_str())
            .or_default()
            .push(row.clone());
    }
    let mut verdicts = Vec::with_capacity(offered.len());
    let mut writes: Vec<(usize, Write)> = Vec::new();
    for (i, o) in offered.iter().enumerate() {
        let known = by_tool.get(o.tool).map(Vec::as_slice).unwrap_or_default();
        let (verdict, write) = decide(mode, o, known);
        verdicts.push(verdict);
        if let Some(write) = write {
            writes.push((i, write));
        }
    }
    if writes.is_empty() {
        return Ok(Some(verdicts));
    }
    let now = now_ms();
    let mut tx = pool.begin().await?;
    let mut records = Vec::with_capacity(writes.len());
    for (i, write) in &writes {
        let o = &offered[*i];
        let lint = serde_json::to_string(o.lint)?;
        let (state, reason) = match write {
            Write::Insert(state, reason) => {
                let inserted = sqlx::query(
                    "INSERT INTO tool_definitions (server, tool, definition_hash, definition, \
                     state, reason, lint, first_seen_ms, changed_ms, decided_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(server)
                .bind(o.tool)
                .bind(o.hash)
                .bind(o.definition)
                .bind(*state)
                .bind(reason.name())
                .bind(&lint)
                .bind(now)
                .bind((*state == "pinned").then_some(FIRST_USE))
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    // Another replica wrote first: decide again from its rows.
                    return Ok(None);
                }
                (*state, *reason)
            }
            Write::Pend(reason) => {
                sqlx::query(
                    "UPDATE tool_definitions SET state = 'pending', reason = $1, lint = $2, \
                     changed_ms = $3 WHERE server = $4 AND tool = $5 AND definition_hash = $6",
                )
                .bind(reason.name())
                .bind(&lint)
                .bind(now)
                .bind(server)
                .bind(o.tool)
                .bind(o.hash)
                .execute(&mut *tx)
                .await?;
                ("pending", *reason)
            }
        };
        let kind = if state == "pinned" {
            Kind::ToolPinned
        } else {
            Kind::ToolQuarantined
        };
        let mut record = Record::new(kind);
        record.server = Some(server.to_string());
        record.target = Some(o.tool.to_string());
        record.definition_hash = Some(o.hash.to_string());
        if state == "pinned" {
            record.detail = Some(json!({"by": FIRST_USE}));
        } else {
            record.reason = Some(reason.explain().to_string());
            record.detail = Some(json!({
                "reason": reason.name(),
                "lint": o.lint.iter().map(|f| json!({"rule": f.rule, "severity": f.severity, "at": f.at})).collect::<Vec<_>>(),
            }));
        }
        records.push(record);
    }
    let refs: Vec<&Record> = records.iter().collect();
    crate::audit::append_in(&mut tx, &refs).await?;
    tx.commit().await?;
    Ok(Some(verdicts))
}

/// The verdict on one offered definition, given the tool's rows, and what
/// to write.
fn decide(mode: PinMode, o: &Offered<'_>, known: &[Row]) -> (Verdict, Option<Write>) {
    let this = known.iter().find(|r| r.hash == o.hash);
    let state = this.map(|r| r.state.as_str());
    let approved = state == Some("pinned");
    let reviewed = approved && this.and_then(|r| r.decided_by.as_deref()) != Some(FIRST_USE);
    if o.lint_blocks && !reviewed {
        let write = match state {
            None => Some(Write::Insert("pending", Reason::Lint)),
            Some("pending") | Some("rejected") => None,
            Some(_) => Some(Write::Pend(Reason::Lint)),
        };
        let reason = if state == Some("rejected") {
            Reason::Rejected
        } else {
            Reason::Lint
        };
        return (Verdict::Quarantined(reason), write);
    }
    if mode == PinMode::Off || approved {
        return (Verdict::Exposed, None);
    }
    match (state, this) {
        (Some("rejected"), _) => (Verdict::Quarantined(Reason::Rejected), None),
        (Some("pending"), Some(row)) => (Verdict::Quarantined(Reason::parse(&row.reason)), None),
        _ => {
            let pinned = known.iter().any(|r| r.state == "pinned");
            let (verdict, state, reason) = if pinned {
                (
                    Verdict::Quarantined(Reason::Changed),
                    "pending",
                    Reason::Changed,
                )
            } else if mode == PinMode::FirstUse {
                (Verdict::Exposed, "pinned", Reason::New)
            } else {
                (Verdict::Quarantined(Reason::New), "pending", Reason::New)
            };
            let write = if this.is_some() {
                Write::Pend(reason)
            } else {
                Write::Insert(state, reason)
            };
            (verdict, Some(write))
        }
    }
}

/// A definition as reviewers see it.
#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    pub server: String,
    pub tool: String,
    pub hash: String,
    pub state: String,
    pub reason: String,
    /// What the lint found in it.
    pub lint: Vec<StoredFinding>,
    pub first_seen_ms: i64,
    pub changed_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The definition, as the upstream declared it.
    pub definition: Value,
}

type DefinitionRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
);

/// The columns of a [`DefinitionRow`], in its order.
macro_rules! columns {
    () => {
        "SELECT server, tool, definition_hash, state, reason, lint, first_seen_ms, changed_ms, \
         decided_by, comment, definition FROM tool_definitions "
    };
}

fn definition(row: DefinitionRow) -> Definition {
    let (
        server,
        tool,
        hash,
        state,
        reason,
        lint,
        first_seen_ms,
        changed_ms,
        decided_by,
        comment,
        def,
    ) = row;
    Definition {
        server,
        tool,
        hash,
        state,
        reason,
        lint: serde_json::from_str(&lint).unwrap_or_default(),
        first_seen_ms,
        changed_ms,
        decided_by,
        comment,
        definition: serde_json::from_str(&def).unwrap_or(Value::Null),
    }
}

/// Most definitions one listing returns.
pub const MAX_LISTED: i64 = 1000;

/// The definitions waiting for a reviewer (and, with `all`, rejected and
/// pinned ones too), newest first, at most [`MAX_LISTED`].
pub async fn list(
    pool: &AnyPool,
    server: Option<&str>,
    all: bool,
) -> Result<Vec<Definition>, IntegrityError> {
    let rows: Vec<DefinitionRow> = sqlx::query_as(concat!(
        columns!(),
        "WHERE (state = 'pending' OR ($2 = 1 AND state IN ('rejected', 'pinned'))) \
         AND ($1 = '' OR server = $1) ORDER BY changed_ms DESC, server, tool LIMIT $3"
    ))
    .bind(server.unwrap_or(""))
    .bind(i64::from(all))
    .bind(MAX_LISTED)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(definition).collect())
}

/// Every definition of one tool on record, newest first.
pub async fn history(
    pool: &AnyPool,
    server: &str,
    tool: &str,
) -> Result<Vec<Definition>, IntegrityError> {
    let rows: Vec<DefinitionRow> = sqlx::query_as(concat!(
        columns!(),
        "WHERE server = $1 AND tool = $2 ORDER BY changed_ms DESC LIMIT $3"
    ))
    .bind(server)
    .bind(tool)
    .bind(MAX_LISTED)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(definition).collect())
}

/// What a reviewer compares: the pinned definition (if any) and one
/// waiting, and a unified diff of the two, pretty-printed.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Definition>,
    pub offered: Definition,
    pub diff: String,
}

/// The review of one tool's definition: `hash` (a prefix will do), or
/// the newest one waiting.
pub async fn review(
    pool: &AnyPool,
    server: &str,
    tool: &str,
    hash: Option<&str>,
) -> Result<Review, IntegrityError> {
    let history = history(pool, server, tool).await?;
    let pinned = history.iter().find(|d| d.state == "pinned").cloned();
    let offered = find(&history, server, tool, hash)?;
    let diff = diff(pinned.as_ref().map(|p| &p.definition), &offered.definition);
    Ok(Review {
        pinned,
        offered,
        diff,
    })
}

fn find(
    history: &[Definition],
    server: &str,
    tool: &str,
    hash: Option<&str>,
) -> Result<Definition, IntegrityError> {
    let found: Vec<&Definition> = match hash {
        Some(h) if !h.is_empty() => history.iter().filter(|d| d.hash.starts_with(h)).collect(),
        _ => history
            .iter()
            .filter(|d| d.state == "pending")
            .take(1)
            .collect(),
    };
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(IntegrityError::NotFound {
            server: server.to_string(),
            tool: tool.to_string(),
            hash: hash.map(str::to_string),
        }),
        _ => Err(IntegrityError::Ambiguous(
            hash.unwrap_or_default().to_string(),
        )),
    }
}

/// A unified, line-by-line diff of two definitions, pretty-printed with
/// sorted keys (everything is `+` when nothing was pinned).
pub fn diff(old: Option<&Value>, new: &Value) -> String {
    let pretty = |v: &Value| {
        let sorted: Value =
            serde_json::from_str(&crate::audit::canonical(v)).unwrap_or(Value::Null);
        serde_json::to_string_pretty(&sorted).unwrap_or_default() + "\n"
    };
    let old = old.map(pretty).unwrap_or_default();
    let new = pretty(new);
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("pinned", "offered")
        .to_string()
}

/// A reviewer's ruling on a held definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ruling {
    /// Pin it: the tool is exposed with it, and the pin it replaces is
    /// superseded. Recorded `tool_released`.
    Approve,
    /// Refuse it: the tool stays quarantined while its upstream offers
    /// it. Recorded `tool_rejected`.
    Reject,
}

impl Ruling {
    /// `approve` or `reject`, as the CLI, the admin API and the approver
    /// page say it.
    pub fn parse(word: &str) -> Option<Ruling> {
        match word {
            "approve" => Some(Ruling::Approve),
            "reject" => Some(Ruling::Reject),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Ruling::Approve => "approve",
            Ruling::Reject => "reject",
        }
    }

    /// The state it leaves the definition in.
    fn state(self) -> &'static str {
        match self {
            Ruling::Approve => "pinned",
            Ruling::Reject => "rejected",
        }
    }
}

/// Who rules on which definition: `hash` of `server`'s `tool` (a prefix
/// will do; none: the newest waiting).
pub struct RulingOn<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub hash: Option<&'a str>,
    pub by: &'a Who,
    pub comment: Option<&'a str>,
}

/// Rule on a definition (see [`Ruling`]): its state changes only if no
/// one decided it meanwhile, in one transaction with its audit record.
pub async fn rule(
    store: &Store,
    redactor: &Redactor,
    on: RulingOn<'_>,
    ruling: Ruling,
) -> Result<Definition, IntegrityError> {
    let RulingOn {
        server,
        tool,
        hash,
        by,
        comment,
    } = on;
    let pool = store.pool();
    let history = history(pool, server, tool).await?;
    let chosen = find(&history, server, tool, hash)?;
    match ruling {
        Ruling::Approve
            if chosen.state == "pinned" && chosen.decided_by.as_deref() != Some(FIRST_USE) =>
        {
            return Err(IntegrityError::AlreadyDecided(format!(
                "{server}/{tool} {} is already pinned",
                short(&chosen.hash)
            )));
        }
        Ruling::Reject if chosen.state != "pending" => {
            return Err(IntegrityError::AlreadyDecided(format!(
                "{server}/{tool} {} is {}, not waiting for review",
                short(&chosen.hash),
                chosen.state
            )));
        }
        _ => {}
    }
    let previous = history
        .iter()
        .find(|d| d.state == "pinned" && d.hash != chosen.hash);
    let now = now_ms();
    let mut tx = pool.begin().await?;
    if ruling == Ruling::Approve {
        sqlx::query(
            "UPDATE tool_definitions SET state = 'superseded', changed_ms = $1 \
             WHERE server = $2 AND tool = $3 AND state = 'pinned' AND definition_hash <> $4",
        )
        .bind(now)
        .bind(server)
        .bind(tool)
        .bind(&chosen.hash)
        .execute(&mut *tx)
        .await?;
    }
    let changed = sqlx::query(
        "UPDATE tool_definitions SET state = $1, changed_ms = $2, decided_by = $3, \
         comment = $4 WHERE server = $5 AND tool = $6 AND definition_hash = $7 AND state = $8",
    )
    .bind(ruling.state())
    .bind(now)
    .bind(&by.subject)
    .bind(comment)
    .bind(server)
    .bind(tool)
    .bind(&chosen.hash)
    .bind(&chosen.state)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Err(IntegrityError::AlreadyDecided(
            "this definition was decided meanwhile".into(),
        ));
    }
    let mut record = Record::new(match ruling {
        Ruling::Approve => Kind::ToolReleased,
        Ruling::Reject => Kind::ToolRejected,
    });
    record.caller = Some(by.clone());
    record.server = Some(server.to_string());
    record.target = Some(tool.to_string());
    record.definition_hash = Some(chosen.hash.clone());
    record.decision = Some(ruling.word());
    record.reason = comment.map(|c| redactor.text(c));
    if ruling == Ruling::Approve {
        record.detail = Some(json!({
            "was": chosen.reason,
            "replaces": previous.map(|p| p.hash.clone()),
        }));
    }
    crate::audit::append_in(&mut tx, &[&record]).await?;
    tx.commit().await?;
    let mut decided = chosen;
    decided.state = ruling.state().into();
    decided.decided_by = Some(by.subject.clone());
    Ok(decided)
}

/// A mark that changes whenever any definition's state does (replicas
/// poll it to learn of another's decisions).
pub async fn epoch(pool: &AnyPool) -> Result<(i64, i64), IntegrityError> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(CAST(SUM(changed_ms) AS BIGINT), 0) FROM tool_definitions",
    )
    .fetch_one(pool)
    .await?;
    Ok(row)
}

/// The first 12 hex digits of a hash, as shown to people.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
