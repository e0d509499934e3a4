//! Writing JSON-RPC 2.0 messages: a response with a result or an error, a
//! request, a notification. This is for the places that write a message
//! themselves instead of going through rmcp's typed model: the fast lane
//! ([`crate::mcp::ingress::lane`], [`crate::mcp::upstream::link`]), which exists to be fast, and the refusals in
//! [`crate::mcp::ingress`].
//!
//! Each message goes into one buffer, sized before anything is written.
//! Ids and raw payloads (JSON exactly as an upstream sent it) are copied in
//! without being parsed. Strings and typed payloads are written by
//! serde_json, which escapes them, so nothing here builds JSON with
//! `format!`.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// JSON-RPC's "Internal error".
pub const INTERNAL_ERROR: i64 = -32603;

/// Opens every message.
const OPEN: &[u8] = br#"{"jsonrpc":"2.0""#;
/// A guess at how long a typed payload will be. It is only a starting
/// capacity: the buffer grows if the payload turns out longer.
const TYPED_LEN_HINT: usize = 128;

/// The id of a message.
#[derive(Debug, Clone, Copy)]
pub enum Id<'a> {
    /// An id that is already JSON (a number, a quoted string, `null`), such
    /// as a caller's id as the lane carries it. It is copied in unchanged,
    /// so it must be valid JSON.
    Json(&'a str),
    /// A string id (the gateway's own ids), written as a JSON string.
    Text(&'a str),
}

impl Id<'_> {
    fn len_hint(self) -> usize {
        match self {
            Id::Json(json) => json.len(),
            Id::Text(text) => text.len() + 2,
        }
    }

    fn write_to(self, out: &mut Vec<u8>) {
        match self {
            Id::Json(json) => out.extend_from_slice(json.as_bytes()),
            Id::Text(text) => write_str(out, text),
        }
    }
}

/// A JSON value to put into a message.
pub trait Payload {
    /// How many bytes it will likely take: exact for raw JSON, a guess
    /// otherwise.
    fn len_hint(&self) -> usize;
    /// Append it to `out`.
    fn write_to(&self, out: &mut Vec<u8>);
}

/// Raw JSON, as received: copied, not parsed.
impl Payload for RawValue {
    fn len_hint(&self) -> usize {
        self.get().len()
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.get().as_bytes());
    }
}

/// A value that serde writes directly into the message.
pub struct Typed<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Payload for Typed<'_, T> {
    fn len_hint(&self) -> usize {
        TYPED_LEN_HINT
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Serialisation fails only for a value that cannot be JSON at all
        // (a map whose keys are not strings). Such a value is written as an
        // empty object, which is what the lane wrote before this module.
        if serde_json::to_writer(&mut *out, self.0).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
    }
}

/// A response carrying `result`.
pub fn result<P: Payload + ?Sized>(id: Id<'_>, result: &P) -> Vec<u8> {
    let mut out = open(id.len_hint() + result.len_hint() + 17);
    write_id(&mut out, id);
    out.extend_from_slice(br#","result":"#);
    result.write_to(&mut out);
    close(out)
}

/// An error response with `code`, `message` and, if given, `data`.
pub fn error(id: Id<'_>, code: i64, message: &str, data: Option<&Value>) -> Vec<u8> {
    /// JSON-RPC's error object, in the order the specification lists its
    /// members.
    #[derive(Serialize)]
    struct ErrorObject<'a> {
        code: i64,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a Value>,
    }
    let data_hint = data.map_or(0, |_| TYPED_LEN_HINT);
    let mut out = open(id.len_hint() + message.len() + data_hint + 64);
    write_id(&mut out, id);
    out.extend_from_slice(br#","error":"#);
    Typed(&ErrorObject {
        code,
        message,
        data,
    })
    .write_to(&mut out);
    close(out)
}

/// An error response whose error object is already whole: an upstream's,
/// passed on as it was sent.
pub fn error_object<P: Payload + ?Sized>(id: Id<'_>, error: &P) -> Vec<u8> {
    let mut out = open(id.len_hint() + error.len_hint() + 16);
    write_id(&mut out, id);
    out.extend_from_slice(br#","error":"#);
    error.write_to(&mut out);
    close(out)
}

/// A request for `method` with `params`.
pub fn request<P: Payload + ?Sized>(id: Id<'_>, method: &str, params: &P) -> Vec<u8> {
    let mut out = open(id.len_hint() + method.len() + params.len_hint() + 32);
    write_id(&mut out, id);
    write_method(&mut out, method, params);
    close(out)
}

/// A notification (a message without an id) for `method` with `params`.
pub fn notification<P: Payload + ?Sized>(method: &str, params: &P) -> Vec<u8> {
    let mut out = open(method.len() + params.len_hint() + 32);
    write_method(&mut out, method, params);
    close(out)
}

/// A buffer with room for `members` more bytes, holding `{"jsonrpc":"2.0"`.
fn open(members: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(OPEN.len() + members);
    out.extend_from_slice(OPEN);
    out
}

fn close(mut out: Vec<u8>) -> Vec<u8> {
    out.push(b'}');
    out
}

fn write_id(out: &mut Vec<u8>, id: Id<'_>) {
    out.extend_from_slice(br#","id":"#);
    id.write_to(out);
}

fn write_method<P: Payload + ?Sized>(out: &mut Vec<u8>, method: &str, params: &P) {
    out.extend_from_slice(br#","method":"#);
    write_str(out, method);
    out.extend_from_slice(br#","params":"#);
    params.write_to(out);
}

/// `text` as a JSON string, escaped by serde_json.
fn write_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail, and a str always serialises.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the writer writes JSON")
    }

    const AWKWARD: &str = "say \"hi\"\nthen \\ leave\t\u{1} — naïve 🦀";

    #[test]
    fn results_splice_raw_json_with_number_and_string_ids() {
        let raw = RawValue::from_string(r#"{"content":[{"type":"text","text":"x"}]}"#.into())
            .expect("valid");
        let out = result(Id::Json("7"), &*raw);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf-8"),
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}]}}"#
        );
        let out = result(Id::Json(r#""abc""#), &*raw);
        assert_eq!(
            parsed(&out),
            json!({"jsonrpc":"2.0","id":"abc","result":{"content":[{"type":"text","text":"x"}]}})
        );
        let out = result(Id::Text(AWKWARD), &Typed(&json!({"ok": true})));
        assert_eq!(
            parsed(&out),
            json!({"jsonrpc":"2.0","id":AWKWARD,"result":{"ok":true}})
        );
    }

    #[test]
    fn a_large_raw_result_is_written_without_growing_the_buffer() {
        let big = format!(r#""{}""#, "x".repeat(1 << 20));
        let raw = RawValue::from_string(big).expect("valid");
        let out = result(Id::Json("1"), &*raw);
        assert!(out.capacity() < out.len() + 64, "{}", out.capacity());
    }

    #[test]
    fn errors_escape_their_message_and_carry_data_only_when_given() {
        let out = error(Id::Json("null"), -32700, AWKWARD, None);
        let v = parsed(&out);
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":AWKWARD}})
        );
        assert!(v["error"].get("data").is_none());

        let data = json!({"why": AWKWARD, "n": [1, 2]});
        let out = error(Id::Json("3"), INTERNAL_ERROR, "boom", Some(&data));
        assert_eq!(
            parsed(&out),
            json!({"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"boom","data":data}})
        );
    }

    #[test]
    fn whole_error_objects_are_passed_on_as_sent() {
        let raw = RawValue::from_string(r#"{"code":-1,"message":"no"}"#.into()).expect("valid");
        let out = error_object(Id::Text("toolgate-1"), &*raw);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf-8"),
            r#"{"jsonrpc":"2.0","id":"toolgate-1","error":{"code":-1,"message":"no"}}"#
        );
    }

    #[test]
    fn requests_and_notifications_differ_only_by_the_id() {
        let params = json!({"message": AWKWARD});
        let v = parsed(&request(
            Id::Text("r-1"),
            "elicitation/create",
            &Typed(&params),
        ));
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"r-1","method":"elicitation/create","params":params})
        );
        let v = parsed(&notification("notifications/message", &Typed(&params)));
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","method":"notifications/message","params":params})
        );
        assert!(v.get("id").is_none());
    }

    #[test]
    fn a_value_that_cannot_be_json_is_written_as_an_empty_object() {
        let bad: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let out = notification("x", &Typed(&bad));
        assert_eq!(
            parsed(&out),
            json!({"jsonrpc":"2.0","method":"x","params":{}})
        );
    }
}
