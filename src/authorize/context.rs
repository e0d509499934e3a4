//! Request context for policies: arguments, tool annotations, time, the
//! client's address; and which of its parts the policies read, so the
//! others are never built (stage 3, authorize).

use std::collections::HashSet;
use std::net::IpAddr;

use cedar_policy::{Context, RestrictedExpression};
use serde_json::{Map, Value};

use super::{AuthorizeError, Query, Target};
use crate::call::Annotations;

/// Deepest argument nesting turned into a Cedar record; deeper values are
/// refused (the call is denied, not guessed).
pub const MAX_ARG_DEPTH: usize = 16;

/// Which arguments policies read: the policies' text names every
/// attribute they read (Cedar has no computed attribute names), so an
/// argument none of them names cannot change a decision and is neither
/// converted nor remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsUse {
    /// Some policy uses `context.args` as a whole.
    All,
    /// Only these top-level arguments (`context.args.X`, `context.args has X`).
    Only(std::collections::BTreeSet<String>),
}

impl ArgsUse {
    pub fn reads(&self, name: &str) -> bool {
        match self {
            ArgsUse::All => true,
            ArgsUse::Only(names) => names.contains(name),
        }
    }
}

/// The arguments policies read (JSON `null`s are absent, as for policies).
pub fn read_args<'a>(
    args: &'a Map<String, Value>,
    uses: &'a ArgsUse,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    args.iter().filter(|(k, v)| !v.is_null() && uses.reads(k))
}

/// The call's arguments that policies read, as a Cedar record (`{}` when
/// listing).
pub fn args(
    args: Option<&Map<String, Value>>,
    uses: &ArgsUse,
) -> Result<RestrictedExpression, AuthorizeError> {
    let fields = match args {
        Some(map) => read_args(map, uses)
            .map(|(k, v)| Ok((k.clone(), to_cedar_at(v, 1)?)))
            .collect::<Result<Vec<_>, AuthorizeError>>()?,
        None => Vec::new(),
    };
    Ok(RestrictedExpression::new_record(fields)?)
}

fn record(map: &Map<String, Value>, depth: usize) -> Result<RestrictedExpression, AuthorizeError> {
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        // JSON null: the argument is absent for policies (`has` is false).
        if v.is_null() {
            continue;
        }
        fields.push((k.clone(), to_cedar_at(v, depth + 1)?));
    }
    Ok(RestrictedExpression::new_record(fields)?)
}

/// A JSON value as a Cedar value, built directly (never through Cedar's
/// JSON format, so `__entity` / `__extn` keys in arguments stay plain
/// data). Numbers that are not 64-bit integers become strings.
pub fn to_cedar(value: &Value) -> Result<RestrictedExpression, AuthorizeError> {
    to_cedar_at(value, 0)
}

fn to_cedar_at(value: &Value, depth: usize) -> Result<RestrictedExpression, AuthorizeError> {
    if depth > MAX_ARG_DEPTH {
        return Err(AuthorizeError::TooDeep);
    }
    Ok(match value {
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| to_cedar_at(v, depth + 1))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => record(map, depth)?,
        // Only reachable at the top level: an absent value.
        Value::Null => RestrictedExpression::new_string(String::new()),
    })
}

/// `{unix, hour, weekday}` (UTC; weekday 0 = Sunday … 6 = Saturday).
pub fn time(unix: i64) -> RestrictedExpression {
    let days = unix.div_euclid(86_400);
    let hour = unix.rem_euclid(86_400) / 3600;
    // 1970-01-01 was a Thursday (4).
    let weekday = (days + 4).rem_euclid(7);
    RestrictedExpression::new_record([
        ("unix".to_string(), RestrictedExpression::new_long(unix)),
        ("hour".to_string(), RestrictedExpression::new_long(hour)),
        (
            "weekday".to_string(),
            RestrictedExpression::new_long(weekday),
        ),
    ])
    .unwrap_or_else(|_| unreachable!("distinct keys"))
}

/// `ip("…")` for an address. Building one parses the extension's name,
/// so they are remembered (at most [`MAX_IPS`] addresses).
fn ip_expression(addr: IpAddr) -> RestrictedExpression {
    static IPS: std::sync::LazyLock<quick_cache::sync::Cache<IpAddr, RestrictedExpression>> =
        std::sync::LazyLock::new(|| quick_cache::sync::Cache::new(MAX_IPS));
    if let Some(e) = IPS.get(&addr) {
        return e;
    }
    let e = RestrictedExpression::new_ip(addr.to_string());
    IPS.insert(addr, e.clone());
    e
}

/// Most client addresses whose `ip(…)` expression is remembered.
const MAX_IPS: usize = 4096;

/// The parts of the context policies read; the others are not built (the
/// `ip` extension, the clock and large arguments are not free).
#[derive(Debug, Clone)]
pub(super) struct ContextUse {
    pub(super) time: bool,
    pub(super) client_ip: bool,
    pub(super) request_id: bool,
    pub(super) findings: bool,
    /// `context.labels` (a tool's flow labels).
    pub(super) labels: bool,
    /// `context.session` (what the call's session has touched).
    pub(super) session: bool,
    pub(super) args: ArgsUse,
}

impl ContextUse {
    /// Read off each policy's JSON form: `context.X` and `context has X`
    /// name what they read; `context` used whole reads everything.
    /// From what every policy reads (see [`Index`](super::index::Index)).
    pub(super) fn of(found: &ContextReads) -> ContextUse {
        let reads = |name: &str| found.whole || found.attrs.contains(name);
        ContextUse {
            time: reads("time"),
            client_ip: reads("client_ip"),
            request_id: reads("request_id"),
            findings: reads("findings"),
            labels: reads("labels"),
            session: reads("session"),
            args: if found.whole || found.whole_args {
                ArgsUse::All
            } else {
                ArgsUse::Only(found.args.clone())
            },
        }
    }
}

/// What [`ContextUse::of`] gathers from policies' JSON (Cedar's EST:
/// `{".": {"left": L, "attr": A}}`, `{"has": {"left": L, "attr": A}}`,
/// `{"Var": "context"}`).
#[derive(Default)]
pub(super) struct ContextReads {
    /// Context attributes read.
    attrs: HashSet<String>,
    /// Top-level arguments read.
    args: std::collections::BTreeSet<String>,
    /// `context` used other than through an attribute.
    whole: bool,
    /// `context.args` used other than through an attribute.
    whole_args: bool,
}

impl ContextReads {
    /// What a policy reads, from its JSON form (`None`: it has none, so
    /// assume it reads everything).
    pub(super) fn of(json: Option<&Value>) -> ContextReads {
        let mut found = ContextReads::default();
        match json {
            Some(json) => found.visit(json),
            None => found.whole = true,
        }
        found
    }

    pub(super) fn add(&mut self, other: ContextReads) {
        self.attrs.extend(other.attrs);
        self.args.extend(other.args);
        self.whole |= other.whole;
        self.whole_args |= other.whole_args;
    }

    /// Whether it reads what changes from one call to the next for the
    /// same caller and target: the arguments (an LLM request's facts), the
    /// clock, the request id, the guardrails' findings, the session's flow
    /// (and the flow labels, which policy tests vary for one tool).
    pub(super) fn varies(&self) -> bool {
        self.whole
            || [
                "args",
                "request",
                "time",
                "request_id",
                "findings",
                "session",
                "labels",
            ]
            .iter()
            .any(|a| self.attrs.contains(*a))
    }

    fn visit(&mut self, node: &Value) {
        match node {
            Value::Object(map) => {
                if map.get("Var").and_then(Value::as_str) == Some("context") {
                    self.whole = true;
                    return;
                }
                for op in [".", "has"] {
                    let Some(access) = map.get(op) else { continue };
                    let (Some(left), Some(attr)) = (
                        access.get("left"),
                        access.get("attr").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    if is_context(left) {
                        self.attrs.insert(attr.to_string());
                        if attr == "args" && op == "." {
                            // `context.args` on its own.
                            self.whole_args = true;
                        }
                        return;
                    }
                    if let Some(Value::Object(inner)) = left.get(".")
                        && inner.get("attr").and_then(Value::as_str) == Some("args")
                        && inner.get("left").is_some_and(is_context)
                    {
                        self.attrs.insert("args".into());
                        self.args.insert(attr.to_string());
                        return;
                    }
                }
                map.values().for_each(|v| self.visit(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.visit(v)),
            _ => {}
        }
    }
}

fn is_context(node: &Value) -> bool {
    node.get("Var").and_then(Value::as_str) == Some("context")
}

/// The request context of a query (attributes no policy mentions are
/// left out: policies were validated, requests are not).
pub(super) fn context(
    query: &Query<'_>,
    uses: &ContextUse,
    with_args: bool,
) -> Result<Context, AuthorizeError> {
    let args = if with_args { query.args } else { None };
    let mut context = vec![(
        "listing".to_string(),
        RestrictedExpression::new_bool(query.args.is_none()),
    )];
    if uses.request_id {
        context.push((
            "request_id".to_string(),
            RestrictedExpression::new_string(query.request_id.to_string()),
        ));
    }
    if uses.client_ip {
        context.push((
            "client_ip".to_string(),
            ip_expression(
                query
                    .caller
                    .address
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]))
                    // `::ffff:10.1.2.3` (an IPv4 client of a dual-stack
                    // listener) is 10.1.2.3 to policies.
                    .to_canonical(),
            ),
        ));
    }
    if uses.time {
        context.push(("time".to_string(), time(crate::storage::now_unix())));
    }
    match &query.target {
        Target::Tool {
            server,
            annotations,
            labels,
            ..
        } => {
            let believed = annotations.believed(server.trusted);
            context.push(("annotations".into(), self::annotations(believed)));
            context.push(("args".into(), self::args(args, &uses.args)?));
            if uses.findings {
                context.push(("findings".into(), findings(query.findings)));
            }
            if uses.labels {
                context.push(("labels".into(), self::labels(*labels)));
            }
            if uses.session {
                let touched = RestrictedExpression::new_record([(
                    "touched".to_string(),
                    self::labels(query.touched),
                )])
                .unwrap_or_else(|_| unreachable!("one key"));
                context.push(("session".into(), touched));
            }
        }
        Target::Prompt { .. } => {
            context.push(("args".into(), self::args(args, &uses.args)?));
            if uses.findings {
                context.push(("findings".into(), findings(query.findings)));
            }
        }
        Target::Model { request, .. } => {
            // Whether the caller may see the model is decided without it.
            if let (Some(request), Some(_)) = (request, args) {
                context.push(("request".into(), self::request(request)));
            }
            if uses.findings {
                context.push(("findings".into(), findings(query.findings)));
            }
        }
        Target::Resource { .. } | Target::Admin { .. } => {}
    }
    Ok(Context::from_pairs(context)?)
}

/// An LLM request's facts (`context.request`: `max_tokens` only when it
/// says, `tools`, `stream`).
fn request(request: &crate::call::ModelRequest) -> RestrictedExpression {
    let mut fields = vec![
        (
            "tools".to_string(),
            RestrictedExpression::new_bool(request.tools),
        ),
        (
            "stream".to_string(),
            RestrictedExpression::new_bool(request.stream),
        ),
    ];
    if let Some(n) = request.max_tokens {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        fields.push(("max_tokens".to_string(), RestrictedExpression::new_long(n)));
    }
    RestrictedExpression::new_record(fields).unwrap_or_else(|_| unreachable!("distinct keys"))
}

/// What the guardrails found, as a Cedar set of strings
/// (`context.findings`; empty when nothing was found or before
/// inspection).
fn findings(found: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        found
            .iter()
            .map(|f| RestrictedExpression::new_string(f.clone())),
    )
}

/// Flow labels as a Cedar set of their names (`context.labels`,
/// `context.session.touched`).
fn labels(labels: crate::config::Labels) -> RestrictedExpression {
    RestrictedExpression::new_set(
        labels
            .names()
            .map(|n| RestrictedExpression::new_string(n.to_string())),
    )
}

/// A tool's hints as a Cedar record (`context.annotations`).
pub fn annotations(a: Annotations) -> RestrictedExpression {
    let b = RestrictedExpression::new_bool;
    RestrictedExpression::new_record([
        ("read_only".to_string(), b(a.read_only)),
        ("destructive".to_string(), b(a.destructive)),
        ("idempotent".to_string(), b(a.idempotent)),
        ("open_world".to_string(), b(a.open_world)),
    ])
    .unwrap_or_else(|_| unreachable!("distinct keys"))
}
