//! The one place an MCP call's context is opened, for both transports
//! (rmcp's server and the fast lane): who calls, what they asked, the
//! session it belongs to and the caller's trace.

use http::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::call::{CallContext, CallKind, Caller};

/// A new call's context. `session` is the client's MCP session id over
/// HTTP (none for a stateless request), or this process's session number
/// over stdio; `headers` are the request's, when it came over HTTP (for
/// its `traceparent`).
pub fn open<K: CallKind>(
    caller: Caller,
    input: K::Input,
    cancel: CancellationToken,
    session: Option<String>,
    headers: Option<&HeaderMap>,
) -> CallContext<K> {
    let mut call = CallContext::new(caller, input, cancel);
    call.session = session;
    call.trace = headers.and_then(crate::util::trace::trace_id);
    call
}
