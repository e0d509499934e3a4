//! Approval requests as the admin API and the approver page show them:
//! pages of them ([`list`], read back with [`cursor`]) and one ([`get`]).
//! A pending request past its expiry shows as expired.

use serde_json::{Value, json};
use sqlx::AnyPool;

use super::ApprovalsError;
use crate::audit::now_ms;

/// Which requests [`list`] returns.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// `pending`, `approved`, `denied`, `expired` or `used`; all when `None`.
    pub state: Option<String>,
    /// Only requests these groups decide; every request when `None`.
    pub groups: Option<Vec<String>>,
    /// The tool as callers named it.
    pub tool: Option<String>,
    /// The caller's subject.
    pub subject: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// The page after this [`Page::next`] (see [`cursor`]).
    pub before: Option<(i64, String)>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: i64,
}

/// The states a request can be in.
pub const STATES: &[&str] = &[
    "pending",
    "approved",
    "denied",
    "expired",
    "used",
    "withdrawn",
];
/// The largest page [`list`] returns.
pub const MAX_PAGE: i64 = 1000;

/// A page of requests, newest first; `next` is the `before` of the
/// following page (absent at the end).
#[derive(Debug)]
pub struct Page {
    pub approvals: Vec<Value>,
    pub next: Option<String>,
}

const COLUMNS: &str = "SELECT id, state, caller, tool, server, args, gate, approver_group, \
    approvers_needed, reason, created_ms, expires_ms, decided_ms, decided_by, comment, \
    (SELECT COUNT(*) FROM approval_votes v WHERE v.approval_id = approvals.id AND v.approve = 1) \
    FROM approvals";

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
);

/// Requests matching `filter`, newest first, with the group filter and
/// paging done by the store (a member's page is full even when other
/// groups' requests are newer).
pub async fn list(pool: &AnyPool, filter: &ListFilter) -> Result<Page, ApprovalsError> {
    enum Arg<'a> {
        Text(&'a str),
        Int(i64),
    }
    /// Binds `a` as the next placeholder, which it returns.
    fn arg<'a>(args: &mut Vec<Arg<'a>>, a: Arg<'a>) -> String {
        args.push(a);
        format!("${}", args.len())
    }
    let now = now_ms();
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<Arg<'_>> = Vec::new();
    // A pending request past its expiry is expired, whether or not a
    // waiting call has marked it so yet.
    match filter.state.as_deref() {
        None => {}
        Some("pending") => {
            let n = arg(&mut args, Arg::Int(now));
            conditions.push(format!("state = 'pending' AND expires_ms > {n}"));
        }
        Some("expired") => {
            let n = arg(&mut args, Arg::Int(now));
            conditions.push(format!(
                "(state = 'expired' OR (state = 'pending' AND expires_ms <= {n}))"
            ));
        }
        Some(state) => {
            let n = arg(&mut args, Arg::Text(state));
            conditions.push(format!("state = {n}"));
        }
    }
    if let Some(groups) = &filter.groups {
        if groups.is_empty() {
            return Ok(Page {
                approvals: Vec::new(),
                next: None,
            });
        }
        let list: Vec<String> = groups
            .iter()
            .map(|g| arg(&mut args, Arg::Text(g)))
            .collect();
        conditions.push(format!("approver_group IN ({})", list.join(", ")));
    }
    if let Some(tool) = &filter.tool {
        let n = arg(&mut args, Arg::Text(tool));
        conditions.push(format!("tool = {n}"));
    }
    if let Some(subject) = &filter.subject {
        let n = arg(&mut args, Arg::Text(subject));
        conditions.push(format!("subject = {n}"));
    }
    if let Some(since) = filter.since_ms {
        let n = arg(&mut args, Arg::Int(since));
        conditions.push(format!("created_ms >= {n}"));
    }
    if let Some((ms, id)) = &filter.before {
        let (a, b) = (arg(&mut args, Arg::Int(*ms)), arg(&mut args, Arg::Text(id)));
        conditions.push(format!(
            "(created_ms < {a} OR (created_ms = {a} AND id < {b}))"
        ));
    }
    let limit = arg(&mut args, Arg::Int(filter.limit.clamp(1, MAX_PAGE)));
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!("{COLUMNS}{clause} ORDER BY created_ms DESC, id DESC LIMIT {limit}");
    let mut query = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
    for a in &args {
        query = match a {
            Arg::Text(t) => query.bind(*t),
            Arg::Int(i) => query.bind(*i),
        };
    }
    let rows = query.fetch_all(pool).await.map_err(ApprovalsError::List)?;
    let next = (rows.len() as i64 == filter.limit)
        .then(|| rows.last().map(|r| format!("{}-{}", r.10, r.0)))
        .flatten();
    Ok(Page {
        approvals: rows.into_iter().map(|r| view(r, now)).collect(),
        next,
    })
}

/// A [`Page::next`] read back.
pub fn cursor(next: &str) -> Result<(i64, String), ApprovalsError> {
    next.split_once('-')
        .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())))
        .filter(|(_, id)| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| ApprovalsError::BadCursor(next.to_string()))
}

/// Request `id`, as [`list`] shows it.
pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<Value>, ApprovalsError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|source| ApprovalsError::Get {
            id: id.to_string(),
            source,
        })?;
    Ok(row.map(|r| view(r, now_ms())))
}

/// A request row as the API shows it.
fn view(row: Row, now: i64) -> Value {
    let (
        id,
        state,
        caller,
        tool,
        server,
        args,
        gate,
        group,
        needed,
        reason,
        created,
        expires,
        decided,
        by,
        comment,
        votes,
    ) = row;
    let state = if state == "pending" && expires <= now {
        "expired".to_string()
    } else {
        state
    };
    json!({
        "id": id,
        "state": state,
        "caller": serde_json::from_str::<Value>(&caller).unwrap_or(Value::Null),
        "tool": tool,
        "server": server,
        "args": serde_json::from_str::<Value>(&args).unwrap_or(Value::Null),
        "gate": gate,
        "approver_group": group,
        "approvers": needed,
        "approvals": votes,
        "reason": reason,
        "created_ms": created,
        "expires_ms": expires,
        "decided_ms": decided,
        "decided_by": by,
        "comment": comment,
    })
}
