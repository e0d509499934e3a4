//! The first rule of both MCP front ends (streamable HTTP in `app`, and
//! `toolgate stdio` here): a message is parsed strictly ([`crate::util::json`])
//! before anything acts on it, and one that fails is answered with a
//! JSON-RPC parse error and goes no further: no stage sees it, no upstream
//! receives it.
//!
//! On HTTP the endpoint checks each POST body. On stdio rmcp's own line
//! transport would read a message leniently (keeping the last of two equal
//! keys) and drop unparsable lines without an answer, so [`stdio`] is a
//! transport of our own: lines are read with a bound, parsed strictly, and
//! handed to rmcp as typed messages; what rmcp sends and our error answers
//! share one writer, so lines never interleave.

use futures::SinkExt;
use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::util::json::Refused;

/// JSON-RPC's "Parse error".
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's "Invalid Request".
pub const INVALID_REQUEST: i64 = -32600;

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

/// JSON-RPC's "Invalid params".
pub const INVALID_PARAMS: i64 = -32602;

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

/// Lines rmcp's answers and our error answers may queue for stdout.
const STDOUT_QUEUE: usize = 64;

/// Errors of the stdio transport's outgoing side.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("stdout is closed")]
    Closed,
    #[error("a message could not be serialised: {0}")]
    Json(#[from] serde_json::Error),
}

impl<T> From<tokio_util::sync::PollSendError<T>> for StdioError {
    fn from(_: tokio_util::sync::PollSendError<T>) -> Self {
        StdioError::Closed
    }
}

/// The stdio transport: `(sink, stream)` for rmcp's `serve`. Lines longer
/// than `max_line` bytes are answered with an error and skipped.
pub fn stdio(
    max_line: usize,
) -> (
    impl futures::Sink<TxJsonRpcMessage<RoleServer>, Error = StdioError> + Send + Unpin + 'static,
    impl futures::Stream<Item = RxJsonRpcMessage<RoleServer>> + Send + Unpin + 'static,
) {
    let (lines, mut queued) = mpsc::channel::<String>(STDOUT_QUEUE);
    tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(mut line) = queued.recv().await {
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                return;
            }
        }
    });
    let sink = PollSender::new(lines.clone())
        .sink_err_into::<StdioError>()
        .with(|message: TxJsonRpcMessage<RoleServer>| {
            futures::future::ready(serde_json::to_string(&message).map_err(StdioError::from))
        });
    let reader = Lines {
        stdin: tokio::io::BufReader::new(tokio::io::stdin()),
        line: Vec::new(),
        max: max_line,
    };
    let stream =
        futures::stream::unfold((reader, lines), move |(mut reader, answers)| async move {
            loop {
                match read_line(reader.next().await, max_line) {
                    Line::Message(message) => return Some((*message, (reader, answers))),
                    Line::Skip(None) => {}
                    // A closed stdout ends the session.
                    Line::Skip(Some(answer)) => answers.send(answer).await.ok()?,
                    Line::End => return None,
                }
            }
        });
    (sink, Box::pin(stream))
}

/// What one line of input is.
enum Line {
    /// A message for rmcp.
    Message(Box<RxJsonRpcMessage<RoleServer>>),
    /// Nothing for rmcp; perhaps an answer to write back.
    Skip(Option<String>),
    /// Stop reading (stdin failed).
    End,
}

/// Lines of stdin, each at most `max` bytes; a longer one is skipped to
/// its end (tokio-util's `LinesCodec` would end the stream there).
struct Lines {
    stdin: tokio::io::BufReader<tokio::io::Stdin>,
    line: Vec<u8>,
    max: usize,
}

/// What reading a line found.
enum Read<'a> {
    Line(&'a [u8]),
    TooLong,
    End,
}

impl Lines {
    async fn next(&mut self) -> Read<'_> {
        use tokio::io::AsyncBufReadExt;
        self.line.clear();
        let mut too_long = false;
        loop {
            let available = match self.stdin.fill_buf().await {
                Ok([]) => return Read::End,
                Ok(available) => available,
                Err(e) => {
                    tracing::error!(error = %e, "reading stdin");
                    return Read::End;
                }
            };
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(available.len());
            if !too_long && self.line.len() + take > self.max {
                too_long = true;
                self.line = Vec::new();
            }
            if !too_long {
                self.line.extend_from_slice(&available[..take]);
            }
            self.stdin.consume(take + usize::from(newline.is_some()));
            if newline.is_some() {
                return if too_long {
                    Read::TooLong
                } else {
                    Read::Line(&self.line)
                };
            }
        }
    }
}

fn read_line(line: Read<'_>, max_line: usize) -> Line {
    let line = match line {
        Read::Line(line) => line,
        Read::TooLong => {
            let answer = error_response(
                Value::Null,
                INVALID_REQUEST,
                &format!("message over the limit of {max_line} bytes (http.max_body_bytes)"),
            );
            return Line::Skip(Some(answer));
        }
        Read::End => return Line::End,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    if line.trim_ascii().is_empty() {
        return Line::Skip(None);
    }
    let value = match crate::util::json::parse(line) {
        Ok(value) => value,
        Err(refused) => {
            tracing::info!(error = %refused, "refused a message on stdin");
            return Line::Skip(Some(parse_error(&refused)));
        }
    };
    if let Some(answer) = misshapen(&value) {
        return Line::Skip(Some(answer));
    }
    let id = value.get("id").cloned();
    let is_notification = id.is_none() && value.get("method").is_some();
    match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
        Ok(message) => Line::Message(Box::new(message)),
        // Notifications are never answered (JSON-RPC); unknown ones are
        // ignored, as rmcp does.
        Err(e) if is_notification => {
            tracing::debug!(error = %e, "ignored a notification on stdin");
            Line::Skip(None)
        }
        Err(e) => {
            let answer = error_response(
                id.unwrap_or(Value::Null),
                INVALID_REQUEST,
                &format!("Invalid request: {e}"),
            );
            Line::Skip(Some(answer))
        }
    }
}
