//! Request context for policies: arguments, tool annotations, time.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value};

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
) -> Result<RestrictedExpression, String> {
    let fields = match args {
        Some(map) => read_args(map, uses)
            .map(|(k, v)| Ok((k.clone(), to_cedar_at(v, 1)?)))
            .collect::<Result<Vec<_>, String>>()?,
        None => Vec::new(),
    };
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

fn record(map: &Map<String, Value>, depth: usize) -> Result<RestrictedExpression, String> {
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        // JSON null: the argument is absent for policies (`has` is false).
        if v.is_null() {
            continue;
        }
        fields.push((k.clone(), to_cedar_at(v, depth + 1)?));
    }
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

/// A JSON value as a Cedar value, built directly (never through Cedar's
/// JSON format, so `__entity` / `__extn` keys in arguments stay plain
/// data). Numbers that are not 64-bit integers become strings.
pub fn to_cedar(value: &Value) -> Result<RestrictedExpression, String> {
    to_cedar_at(value, 0)
}

fn to_cedar_at(value: &Value, depth: usize) -> Result<RestrictedExpression, String> {
    if depth > MAX_ARG_DEPTH {
        return Err(format!(
            "arguments nested deeper than {MAX_ARG_DEPTH} levels"
        ));
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
