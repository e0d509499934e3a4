//! Strict JSON: how toolgate reads a message it will act on.
//!
//! Policies, approvals, guardrails and the audit trail decide on a call's
//! payload, and the upstream receives the serialisation of that same value
//! (DESIGN: "what is forwarded is what was decided"). That only holds if
//! every reader of the bytes sees one value, so a message is parsed once,
//! here, and refused when readers could disagree about it:
//!
//! - a key that appears twice in one object (one parser keeps the first,
//!   another the last: RFC 8259 §4 leaves it open, I-JSON, RFC 7493 §2.3,
//!   forbids it);
//! - a string with a lone surrogate escape or invalid UTF-8 (RFC 7493 §2.1);
//! - a number outside IEEE 754 double range, such as `1e400` (RFC 7493
//!   §2.2; read as infinity by some parsers, as an error by others);
//! - nesting deeper than [`MAX_DEPTH`] (parsers' recursion limits differ:
//!   the same value is one reader's input and another's error);
//! - anything after the value.
//!
//! The parser is serde_json's; this module only adds the duplicate-key and
//! depth rules, which serde_json's own `Value` does not check, through a
//! visitor. A refused message says what was wrong and where (a JSON path
//! and serde_json's line and column).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// How deep a message may nest (objects and arrays, the message itself
/// being level 1). MCP's own structure takes 3 to 4 levels; 64 leaves the
/// rest to arguments, well inside every common parser's limit (serde_json
/// 128, Python 1000, V8 far more).
pub const MAX_DEPTH: usize = 64;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What is wrong, and how to send it instead.
    pub what: String,
    /// Where: a JSON path (`$.params.arguments.cmd`), empty when the
    /// problem is not inside a value (an empty body, bytes after the value).
    pub path: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        if !self.path.is_empty() {
            write!(f, " at {}", self.path)?;
        }
        write!(f, " (line {}, column {})", self.line, self.column)
    }
}

impl std::error::Error for Refused {}

/// Parse `bytes` as one JSON value under the rules above.
pub fn parse(bytes: &[u8]) -> Result<Value, Refused> {
    let path = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict {
        depth: 1,
        path: &path,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    parsed.map_err(|e| refused(&e, &path.into_inner()))
}

/// One step of a JSON path, recorded only on the way out of a failure (so
/// a message that parses pays nothing for it).
enum Step {
    Key(String),
    Index(usize),
}

fn refused(e: &serde_json::Error, steps: &[Step]) -> Refused {
    // Steps were pushed innermost first, as the failure unwound.
    let mut path = String::from("$");
    for step in steps.iter().rev().take(MAX_PATH_STEPS) {
        match step {
            Step::Key(key) if is_plain(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Key(key) => {
                path.push('[');
                path.push_str(&Value::from(key.as_str()).to_string());
                path.push(']');
            }
            Step::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    if steps.len() > MAX_PATH_STEPS {
        path.push('…');
    }
    // serde_json appends " at line L column C" to messages; it is said
    // once, in our own words.
    let message = e.to_string();
    let what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what);
    let what = match e.classify() {
        serde_json::error::Category::Eof => format!("the JSON ends early: {what}"),
        _ if what.contains("number out of range") => {
            format!("{what}: numbers must fit an IEEE 754 double (RFC 7493 §2.2)")
        }
        _ if what.contains("surrogate") || what.contains("escape") => format!(
            "{what}: strings must be valid Unicode, surrogate escapes in pairs (RFC 7493 §2.1)"
        ),
        _ => what.to_string(),
    };
    Refused {
        what,
        path: if steps.is_empty() {
            String::new()
        } else {
            path
        },
        line: e.line(),
        column: e.column(),
    }
}

/// Longest path shown (a message at the depth limit has a long one).
const MAX_PATH_STEPS: usize = 16;

fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A value at `depth`, with the failure path shared by the whole parse.
#[derive(Clone, Copy)]
struct Strict<'p> {
    depth: usize,
    path: &'p RefCell<Vec<Step>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Strict<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format!(
                "nested deeper than {MAX_DEPTH} levels: flatten the value"
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
            path: self.path,
        })
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json refuses out-of-range literals itself; a non-finite
        // value from anywhere else is refused the same way.
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            match seq.next_element_seed(inner) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.path.borrow_mut().push(Step::Index(items.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match object.entry(key) {
                serde_json::map::Entry::Occupied(seen) => {
                    self.path.borrow_mut().push(Step::Key(seen.key().clone()));
                    return Err(de::Error::custom(
                        "duplicate key: send each key once in an object (RFC 7493 §2.3)",
                    ));
                }
                serde_json::map::Entry::Vacant(slot) => match map.next_value_seed(inner) {
                    Ok(value) => {
                        slot.insert(value);
                    }
                    Err(e) => {
                        self.path.borrow_mut().push(Step::Key(slot.key().clone()));
                        return Err(e);
                    }
                },
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Refused {
        match parse(text.as_bytes()) {
            Ok(v) => panic!("{text} was accepted as {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn ordinary_messages_parse_to_what_serde_json_reads() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2.5,-3,true,null,"\u00e9\ud83d\ude00"]}}}"#,
            r#"[]"#,
            r#""just a string""#,
            r#"{"big":18446744073709551615,"neg":-9223372036854775808,"f":1e300,"tiny":5e-324}"#,
            " { \"a\" : { \"a\" : 1 } } ",
        ] {
            let strict = parse(text.as_bytes()).expect(text);
            let plain: Value = serde_json::from_str(text).expect(text);
            assert_eq!(strict, plain, "{text}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_with_their_path() {
        let e = refused(r#"{"params":{"arguments":{"cmd":"ls","cmd":"rm -rf /"}},"id":1}"#);
        assert!(e.what.contains("duplicate key"), "{e}");
        assert_eq!(e.path, "$.params.arguments.cmd");
        let e = refused(r#"{"id":1,"id":2}"#);
        assert_eq!(e.path, "$.id");
        let e = refused(r#"{"a":[{"x":1},{"y":1,"y":2}]}"#);
        assert_eq!(e.path, "$.a[1].y");
        // Keys that differ only by an escape are the same key.
        let e = refused(r#"{"a":{"cmd":1,"c\u006dd":2}}"#);
        assert_eq!(e.path, "$.a.cmd");
        let e = refused(r#"{"a":{"odd key":1,"odd key":2}}"#);
        assert_eq!(e.path, r#"$.a["odd key"]"#);
    }

    #[test]
    fn numbers_that_do_not_fit_a_double_are_refused() {
        for n in ["1e400", "-1e400", "1E309", &format!("1{}", "0".repeat(400))] {
            let e = refused(&format!(r#"{{"a":{{"n":{n}}}}}"#));
            assert!(e.what.contains("out of range"), "{n}: {e}");
            assert_eq!(e.path, "$.a.n", "{n}");
        }
    }

    #[test]
    fn lone_surrogates_and_invalid_utf8_are_refused() {
        for s in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""a\ud83dz""#,
            r#""\ud83d\u0041""#,
        ] {
            let e = refused(&format!(r#"{{"a":{s}}}"#));
            assert!(e.what.contains("valid Unicode"), "{s}: {e}");
            assert_eq!(e.path, "$.a");
        }
        let e = refused(r#"{"\udfff":1}"#);
        assert!(e.what.contains("valid Unicode"), "{e}");
        assert!(parse(b"{\"a\":\"\xff\"}").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(at_limit.as_bytes()).is_ok());
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = refused(&over);
        assert!(e.what.contains("nested deeper than 64"), "{e}");
        assert!(e.path.ends_with('…'), "{e}");
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(refused(&objects).what.contains("nested deeper"));
        // Far past serde_json's own limit: still our error, no stack trouble.
        let deep = "[".repeat(100_000);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn anything_after_the_value_and_broken_json_are_refused() {
        assert!(refused(r#"{"a":1} {"a":2}"#).what.contains("trailing"));
        assert!(refused(r#"{"a":1"#).what.contains("ends early"));
        assert!(refused("").what.contains("ends early"));
        assert!(parse(b"{\"a\":NaN}").is_err());
        assert!(parse(b"\xef\xbb\xbf{}").is_err(), "a BOM is not JSON");
    }
}
