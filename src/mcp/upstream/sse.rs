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
/// event, are skipped). Nothing over [`MAX_UPSTREAM_MESSAGE_BYTES`] is
/// buffered.
pub(crate) struct MessageReader<B = Incoming> {
    body: B,
    sse: bool,
    buffer: BytesMut,
    /// How far `buffer` has been searched for the end of an event.
    scanned: usize,
    ended: bool,
}

impl<B> MessageReader<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    pub(crate) fn new(response: Response<B>) -> Self {
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        Self {
            body: response.into_body(),
            sse,
            buffer: BytesMut::new(),
            scanned: 0,
            ended: false,
        }
    }

    /// The next message; `None` once the response has ended.
    pub(crate) async fn next(&mut self) -> LinkResult<Option<Bytes>> {
        loop {
            if self.sse {
                while let Some(event) = take_event(&mut self.buffer, &mut self.scanned) {
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
                        if self.buffer.len() + data.len() > MAX_UPSTREAM_MESSAGE_BYTES {
                            return Err(format!(
                                "the upstream sent a message over {} MiB (the fast lane's limit)",
                                MAX_UPSTREAM_MESSAGE_BYTES / (1024 * 1024)
                            ));
                        }
                        self.buffer.extend_from_slice(data);
                    }
                }
                Some(Err(e)) => return Err(format!("reading the response: {e}")),
                None => self.ended = true,
            }
        }
    }
}

/// Split the first complete SSE event (up to a blank line) off `buffer`;
/// `scanned` keeps the search from starting over with each new frame.
fn take_event(buffer: &mut BytesMut, scanned: &mut usize) -> Option<BytesMut> {
    let mut at = scanned.saturating_sub(2);
    while let Some(p) = buffer[at..].iter().position(|&b| b == b'\n') {
        let newline = at + p;
        let terminator = match (buffer.get(newline + 1), buffer.get(newline + 2)) {
            (Some(b'\n'), _) => Some(2),
            (Some(b'\r'), Some(b'\n')) => Some(3),
            // Not known yet whether a blank line follows.
            (None, _) | (Some(b'\r'), None) => break,
            _ => None,
        };
        if let Some(len) = terminator {
            let event = buffer.split_to(newline);
            let _ = buffer.split_to(len);
            *scanned = 0;
            return Some(event);
        }
        at = newline + 1;
    }
    *scanned = buffer.len();
    None
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
        let mut scanned = 0;
        let events: Vec<_> = std::iter::from_fn(|| take_event(&mut buffer, &mut scanned)).collect();
        let data: Vec<_> = events.iter().filter_map(|e| event_data(e)).collect();
        assert_eq!(
            data,
            vec![Bytes::from("{\"a\":1}"), Bytes::from("{\"b\"\n:2}")]
        );
        assert_eq!(&buffer[..], b"partial");
    }

    fn sse_response(body: Vec<u8>) -> Response<http_body_util::Full<Bytes>> {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .expect("valid response")
    }

    #[tokio::test]
    async fn messages_up_to_the_limit_pass_and_larger_ones_are_refused() {
        // An event whose data is exactly at the limit, with its framing.
        let framing = b"data: \n\n".len();
        let fits = MAX_UPSTREAM_MESSAGE_BYTES - framing;
        let mut body = b"data: ".to_vec();
        body.resize(6 + fits, b'x');
        body.extend_from_slice(b"\n\n");
        let mut reader = MessageReader::new(sse_response(body.clone()));
        let message = reader
            .next()
            .await
            .expect("within the limit")
            .expect("a message");
        assert_eq!(message.len(), fits);
        assert!(reader.next().await.expect("ends cleanly").is_none());

        body.insert(6, b'x');
        let mut reader = MessageReader::new(sse_response(body));
        let refused = reader.next().await.expect_err("one byte over");
        assert!(refused.contains("over 32 MiB"), "{refused}");
    }
}
