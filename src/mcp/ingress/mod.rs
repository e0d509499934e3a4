//! The first rule of both MCP front ends (streamable HTTP at `/mcp`, in
//! [`endpoint()`], and `toolgate stdio`, in [`stdio()`]): a message is parsed
//! strictly ([`crate::util::json`]) before anything acts on it, and one
//! that fails is answered with a JSON-RPC parse error and goes no further:
//! no stage sees it, no upstream receives it.
//!
//! On HTTP the endpoint checks each POST body before the fast lane or rmcp
//! sees it. On stdio rmcp's own line transport would read a message
//! leniently (keeping the last of two equal keys) and drop unparsable lines
//! without an answer, so [`stdio()`] is a transport of our own: lines are
//! read with a bound, parsed strictly, and handed to rmcp as typed
//! messages; what rmcp sends and our error answers share one writer, so
//! lines never interleave.
//!
//! This file holds the JSON-RPC error answers both share. The route table
//! (`crate::app`, the floor above) mounts [`endpoint()`] at `/mcp`.

pub mod confirm;
pub mod context;
mod endpoint;
pub mod errors;
pub mod lane;
pub mod server;
mod stdio;

use serde_json::Value;

use crate::util::json::Refused;

pub use endpoint::{endpoint, is_json};
pub use stdio::{StdioError, stdio};

/// JSON-RPC's "Parse error".
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's "Invalid Request".
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's "Invalid params".
pub const INVALID_PARAMS: i64 = -32602;

/// The JSON-RPC error response to a message that was refused, for `id`
/// (null when the message's id cannot be known).
pub fn error_response(id: Value, code: i64, message: &str) -> String {
    let id = id.to_string();
    let bytes = crate::mcp::jsonrpc::error(crate::mcp::jsonrpc::Id::Json(&id), code, message, None);
    // serde_json writes nothing but UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

/// The answer to a message that did not parse strictly. JSON-RPC answers
/// a parse error with a null id: nothing in such a message can be trusted,
/// its id included.
pub fn parse_error(refused: &Refused) -> String {
    error_response(Value::Null, PARSE_ERROR, &format!("Parse error: {refused}"))
}

/// The answer to a request whose `arguments` are not an object (or
/// absent): MCP's schema makes them one for `tools/call` and
/// `prompts/get`, and policies decide on them as one. rmcp would answer
/// such a request as an unknown method; this says what is wrong.
pub fn misshapen(message: &Value) -> Option<String> {
    let method = message.get("method")?.as_str()?;
    if !matches!(method, "tools/call" | "prompts/get") {
        return None;
    }
    match message.get("params")?.get("arguments") {
        None | Some(Value::Null | Value::Object(_)) => None,
        Some(_) => Some(error_response(
            message.get("id").cloned().unwrap_or(Value::Null),
            INVALID_PARAMS,
            &format!("Invalid params: `params.arguments` of {method} must be an object"),
        )),
    }
}
