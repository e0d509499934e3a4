//! Reading an upstream's JSON-RPC messages from a streamable HTTP response:
//! a JSON body, or the `data` of each server-sent event.

use bytes::{Bytes, BytesMut};
use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::link::LinkResult;

/// Largest single message accepted from an upstream on the fast lane.
pub const MAX_UPSTREAM_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The JSON-RPC messages of one upstream response: its JSON body, or the
/// `data` of each SSE event (events without data, such as the priming
/// event, are skipped).
pub(super) struct MessageReader {
    body: Incoming,
    sse: bool,
    buffer: BytesMut,
    ended: bool,
}

impl MessageReader {
    pub(super) fn new(response: Response<Incoming>) -> Self {
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        Self {
            body: response.into_body(),
            sse,
            buffer: BytesMut::new(),
            ended: false,
        }
    }

    pub(super) async fn next(&mut self) -> LinkResult<Option<Bytes>> {
        loop {
            if self.sse {
                while let Some(event) = take_event(&mut self.buffer) {
                    if let Some(data) = event_data(&event) {
                        return Ok(Some(data));
                    }
                }
            } else if self.ended {
                return Ok((!self.buffer.is_empty()).then(|| self.buffer.split().freeze()));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.buffer.extend_from_slice(data);
                    }
                    if self.buffer.len() > MAX_UPSTREAM_MESSAGE_BYTES {
                        return Err(format!(
                            "a message over {} MiB",
                            MAX_UPSTREAM_MESSAGE_BYTES / (1024 * 1024)
                        ));
                    }
                }
                Some(Err(e)) => return Err(format!("reading the response: {e}")),
                None => self.ended = true,
            }
        }
    }
}

/// Split the first complete SSE event (up to a blank line) off `buffer`.
fn take_event(buffer: &mut BytesMut) -> Option<BytesMut> {
    let lf = find(buffer, b"\n\n").map(|i| (i, 2));
    let crlf = find(buffer, b"\r\n\r\n").map(|i| (i, 4));
    let (at, len) = match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let event = buffer.split_to(at);
    let _ = buffer.split_to(len);
    Some(event)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The event's `data` lines, joined; `None` if it has none.
fn event_data(event: &[u8]) -> Option<Bytes> {
    let mut data: Option<BytesMut> = None;
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let data = data.get_or_insert_with(BytesMut::new);
            if !data.is_empty() {
                data.extend_from_slice(b"\n");
            }
            data.extend_from_slice(value);
        }
    }
    data.filter(|d| !d.is_empty()).map(BytesMut::freeze)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_on_blank_lines_and_skip_priming() {
        let mut buffer = BytesMut::from(
            &b"id: 0\nretry: 3000\ndata:\n\nevent: message\r\ndata: {\"a\":1}\r\n\r\ndata: {\"b\"\ndata: :2}\n\npartial"[..],
        );
        let events: Vec<_> = std::iter::from_fn(|| take_event(&mut buffer)).collect();
        let data: Vec<_> = events.iter().filter_map(|e| event_data(e)).collect();
        assert_eq!(
            data,
            vec![Bytes::from("{\"a\":1}"), Bytes::from("{\"b\"\n:2}")]
        );
        assert_eq!(&buffer[..], b"partial");
    }
}
