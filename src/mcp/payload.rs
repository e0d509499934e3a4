//! What inspectors (guardrails) see of an MCP call: its arguments and the
//! text and structured values of its result, as protocol-neutral
//! [`Part`]s ([`crate::call::payload`]). The kinds in [`super::calls`]
//! show their payloads through these.
//!
//! Shown: text blocks, the text of embedded resources, structured content,
//! prompt messages' text, resource text, completion values. Not shown:
//! images, audio and blobs (binary; nothing reads them yet) and `_meta`.

use rmcp::model::{ContentBlock, ResourceContents};
use serde_json::value::RawValue;

use super::upstream::link::RawReply;
use crate::call::Part;

/// The text parts of content blocks (a tool result, a prompt message).
pub fn blocks<'a>(
    blocks: impl IntoIterator<Item = &'a mut ContentBlock>,
    visit: &mut dyn FnMut(Part<'_>),
) {
    for block in blocks {
        match block {
            ContentBlock::Text(text) => visit(Part::Text(&mut text.text)),
            ContentBlock::Resource(embedded) => resource(&mut embedded.resource, visit),
            _ => {}
        }
    }
}

/// The text of a resource's contents.
pub fn resource(contents: &mut ResourceContents, visit: &mut dyn FnMut(Part<'_>)) {
    if let ResourceContents::TextResourceContents { text, .. } = contents {
        visit(Part::Text(text));
    }
}

/// An answer kept as the upstream sent it (the fast lane), shown whole as
/// one JSON value and written back only if an inspector changed it. A
/// result that is not JSON cannot be shown: it is replaced by an error,
/// so nothing unread reaches the caller.
pub fn raw(reply: &mut RawReply, visit: &mut dyn FnMut(Part<'_>)) {
    let raw = match reply {
        RawReply::Result(raw) | RawReply::Error(raw) => raw,
    };
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(raw.get()) else {
        *reply = RawReply::Error(unreadable());
        return;
    };
    let before = value.clone();
    visit(Part::Value(&mut value));
    if value != before {
        match serde_json::value::to_raw_value(&value) {
            Ok(rewritten) => *raw = rewritten,
            Err(_) => *reply = RawReply::Error(unreadable()),
        }
    }
}

/// The JSON-RPC error that stands in for an answer that could not be read.
fn unreadable() -> Box<RawValue> {
    let error = serde_json::json!({
        "code": crate::mcp::jsonrpc::INTERNAL_ERROR,
        "message": "toolgate: the upstream's answer could not be inspected"
    });
    serde_json::value::to_raw_value(&error).unwrap_or_else(|_| Box::default())
}
