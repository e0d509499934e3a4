//! A streamed reply on its way to the caller ([`Watched`]): stages 8 and 9
//! for a call whose [`CallKind::forward`] answered
//! [`Reply::Stream`](crate::call::Reply::Stream).
//!
//! Chunks pass through the inspectors a [`Window`] at a time: held until
//! enough text has come (or the first has waited long enough, or the
//! stream ends), then read together, each channel's text joined across
//! the window's chunks and the last text it sent, so a secret split over
//! chunks is still one secret. A rewrite is applied before any chunk of
//! the window is sent; a refusal ends the stream with the error, and the
//! window is never sent. With no inspectors nothing is held.
//!
//! Each chunk is counted as it goes by; the `completed` record is queued
//! once, when the stream ends (before the caller sees its end) or when the
//! caller drops it first (the caller went away: recorded as cancelled, and
//! the kind's stream dropped with it, which stops it). Until then the call
//! holds its in-flight slot, so shutdown waits for streams too.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::Stream;

use super::{InFlightGuard, Pipeline, record};
use crate::call::{CallContext, CallError, CallKind, Channel, NeverStreams, NoStream, Part};
use crate::config::StreamWindow;

/// A kind's stream, watched by the pipeline: what [`Pipeline::run`] hands
/// the front end for a streamed reply.
pub struct Watched<K: CallKind> {
    /// The kind's own stream, never polled again once it has ended.
    upstream: K::Stream,
    pipeline: Arc<Pipeline>,
    window: Window<K::Chunk>,
    /// How the kind's stream ended, once it has: kept while the last
    /// window goes out.
    ended: Option<Result<(), CallError>>,
    state: State<K>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "a stream spends its life Open; boxing its context would buy nothing"
)]
enum State<K: CallKind> {
    /// Chunks still coming.
    Open {
        ctx: CallContext<K>,
        admitted: InFlightGuard,
        /// When the stream was handed over (for the call's timings).
        since: Instant,
        /// The sum of the chunks' sizes, where known ([`CallKind::chunk_bytes`]).
        bytes: Option<u64>,
    },
    /// Ended: its `completed` record is being queued; then the error to
    /// give the caller, if it ended with one.
    Recording(Pin<Box<dyn Future<Output = Option<CallError>> + Send>>),
    /// Recorded; nothing more comes.
    Closed,
}

impl<K: CallKind> Watched<K> {
    pub(super) fn new(
        pipeline: Arc<Pipeline>,
        admitted: InFlightGuard,
        ctx: CallContext<K>,
        upstream: K::Stream,
    ) -> Self {
        let limits = pipeline.stream_window;
        Watched {
            upstream,
            pipeline,
            window: Window::new(limits),
            ended: None,
            state: State::Open {
                ctx,
                admitted,
                since: Instant::now(),
                bytes: None,
            },
        }
    }

    /// End the call with `outcome`: from now on its record is on its way
    /// (and the in-flight slot is released once it is queued).
    fn end(&mut self, outcome: Result<(), CallError>) {
        let State::Open {
            mut ctx,
            admitted,
            since,
            bytes,
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        ctx.mark("stream", since);
        let pipeline = self.pipeline.clone();
        self.state = State::Recording(Box::pin(async move {
            let outcome = outcome.map(|()| bytes);
            record::completed(&pipeline, &ctx, outcome.as_ref().copied()).await;
            drop(admitted);
            outcome.err()
        }));
    }
}

// No field is pinned: the kind's stream is `Unpin` and the record's future
// is boxed.
impl<K: CallKind> Unpin for Watched<K> {}

impl<K: CallKind> Stream for Watched<K> {
    type Item = Result<K::Chunk, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let State::Open { bytes, ctx, .. } = &mut this.state else {
                match &mut this.state {
                    State::Recording(recording) => {
                        let error = ready!(recording.as_mut().poll(cx));
                        this.state = State::Closed;
                        if let Some(e) = error {
                            return Poll::Ready(Some(Err(e)));
                        }
                        continue;
                    }
                    _ => return Poll::Ready(None),
                }
            };
            // What was inspected goes first, then the end, then more.
            if let Some(chunk) = this.window.ready.pop_front() {
                if let Some(n) = K::chunk_bytes(&chunk) {
                    *bytes.get_or_insert(0) += n;
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            if let Some(outcome) = this.ended.take() {
                this.end(outcome);
                continue;
            }
            let inspected = !this.pipeline.inspectors.is_empty() && ctx.inspected.is_some();
            let close = match Pin::new(&mut this.upstream).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.window.hold::<K>(chunk, inspected);
                    this.window.full() || !inspected
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = Some(Err(e));
                    true
                }
                Poll::Ready(None) => {
                    this.ended = Some(Ok(()));
                    true
                }
                Poll::Pending if this.window.waited(cx) => true,
                Poll::Pending => return Poll::Pending,
            };
            if close && let Err(e) = this.window.close(&this.pipeline.inspectors, ctx) {
                this.window.discard();
                this.ended = None;
                this.end(Err(e));
            }
        }
    }
}

/// Most chunks a window holds, however little text they carry.
const MAX_HELD_CHUNKS: usize = 64;
/// Most channels whose last text is kept to read with the next window;
/// more are read window by window.
const MAX_CHANNELS: usize = 64;

/// A stream's chunks between the kind and the caller: held, read by the
/// inspectors, then ready to send.
struct Window<C> {
    limits: StreamWindow,
    /// Chunks read and not inspected yet.
    held: Vec<C>,
    /// Bytes of channel text they carry.
    held_text: usize,
    /// When the held chunks are inspected however few they are.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Inspected chunks, to send in order.
    ready: VecDeque<C>,
    /// The last text (up to `limits.overlap` bytes) each channel sent.
    sent: Vec<(Channel, String)>,
}

/// One channel's text in a window: the end of what it sent, then what the
/// window's chunks hold.
struct Joined {
    channel: Channel,
    /// Bytes of `text` the caller already has.
    sent: usize,
    text: String,
}

impl<C> Window<C> {
    fn new(limits: StreamWindow) -> Self {
        Window {
            limits,
            held: Vec::new(),
            held_text: 0,
            deadline: None,
            ready: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    /// Hold one chunk (measuring its text when it is to be inspected).
    fn hold<K: CallKind<Chunk = C>>(&mut self, mut chunk: C, inspected: bool) {
        if inspected {
            let mut text = 0;
            K::chunk_parts(&mut chunk, &mut |channel, part| {
                if let (Some(_), Part::Text(t)) = (channel, part) {
                    text += t.len();
                }
            });
            self.held_text += text;
            if self.held.is_empty() && !self.limits.wait.is_zero() {
                let at = tokio::time::Instant::now() + self.limits.wait;
                match &mut self.deadline {
                    Some(deadline) => deadline.as_mut().reset(at),
                    None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
        }
        self.held.push(chunk);
    }

    fn full(&self) -> bool {
        self.held_text >= self.limits.bytes || self.held.len() >= MAX_HELD_CHUNKS
    }

    /// Whether held chunks have waited long enough (with no wait: as soon
    /// as the kind has nothing more at hand).
    fn waited(&mut self, cx: &mut Context<'_>) -> bool {
        if self.held.is_empty() {
            return false;
        }
        match &mut self.deadline {
            Some(deadline) if !self.limits.wait.is_zero() => deadline.as_mut().poll(cx).is_ready(),
            _ => true,
        }
    }

    /// Drop what is held (the call was refused).
    fn discard(&mut self) {
        self.held.clear();
        self.held_text = 0;
    }

    /// Inspect the held chunks as one window and make them ready to send.
    fn close<K: CallKind<Chunk = C>>(
        &mut self,
        inspectors: &[Arc<dyn crate::call::Inspect>],
        ctx: &mut CallContext<K>,
    ) -> Result<(), CallError> {
        self.held_text = 0;
        if self.held.is_empty() {
            return Ok(());
        }
        if !inspectors.is_empty() && ctx.inspected.is_some() {
            self.inspect(inspectors, ctx)?;
        }
        self.ready.extend(self.held.drain(..));
        Ok(())
    }

    fn inspect<K: CallKind<Chunk = C>>(
        &mut self,
        inspectors: &[Arc<dyn crate::call::Inspect>],
        ctx: &mut CallContext<K>,
    ) -> Result<(), CallError> {
        // Each channel's text: its last sent, then the window's pieces.
        let mut joined: Vec<Joined> = Vec::new();
        for chunk in &mut self.held {
            K::chunk_parts(chunk, &mut |channel, part| {
                let (Some(channel), Part::Text(piece)) = (channel, part) else {
                    return;
                };
                let at = match joined.iter().position(|j| j.channel == channel) {
                    Some(at) => at,
                    None => {
                        let sent = self
                            .sent
                            .iter()
                            .find(|(c, _)| *c == channel)
                            .map(|(_, t)| t.as_str())
                            .unwrap_or_default();
                        joined.push(Joined {
                            channel,
                            sent: sent.len(),
                            text: sent.to_string(),
                        });
                        joined.len() - 1
                    }
                };
                joined[at].text.push_str(piece);
            });
        }
        let before: Vec<String> = joined.iter().map(|j| j.text.clone()).collect();
        // The overlap was read with the last window: it does not count
        // toward an inspector's bound again.
        let reread: usize = joined.iter().map(|j| j.sent).sum();
        super::inspect_output(inspectors, ctx, |visit| {
            for j in &mut joined {
                visit(Part::Text(&mut j.text));
            }
            for chunk in &mut self.held {
                K::chunk_parts(chunk, &mut |channel, part| {
                    if channel.is_none() || !matches!(part, Part::Text(_)) {
                        visit(part);
                    }
                });
            }
        })?;
        ctx.report.scanned_output = ctx.report.scanned_output.saturating_sub(reread);
        for (j, before) in joined.iter().zip(&before) {
            let seen = if j.text == *before {
                j.text.clone()
            } else {
                let unsent = unsent_part(&j.text, &before[..j.sent]);
                self.rewrite::<K>(j.channel, unsent);
                format!("{}{unsent}", &before[..j.sent])
            };
            self.remember(j.channel, &seen);
        }
        Ok(())
    }

    /// Put a channel's rewritten text in its first piece in the window and
    /// empty the others.
    fn rewrite<K: CallKind<Chunk = C>>(&mut self, channel: Channel, text: &str) {
        let mut first = true;
        for chunk in &mut self.held {
            K::chunk_parts(chunk, &mut |c, part| {
                if c == Some(channel)
                    && let Part::Text(piece) = part
                {
                    piece.clear();
                    if first {
                        piece.push_str(text);
                        first = false;
                    }
                }
            });
        }
    }

    /// Keep the end of what `channel` has sent, to read with the next window.
    fn remember(&mut self, channel: Channel, seen: &str) {
        let mut from = seen.len().saturating_sub(self.limits.overlap);
        while !seen.is_char_boundary(from) {
            from += 1;
        }
        let tail = &seen[from..];
        if let Some((_, kept)) = self.sent.iter_mut().find(|(c, _)| *c == channel) {
            kept.clear();
            kept.push_str(tail);
        } else if self.sent.len() < MAX_CHANNELS && !tail.is_empty() {
            self.sent.push((channel, tail.to_string()));
        }
    }
}

/// Of a channel's rewritten text, what goes to the caller: all after what
/// it was already sent (`sent`). A rewrite that reaches back into sent
/// text (a secret that began in the last window) cannot take that back:
/// the caller gets the rewrite from where the texts part.
fn unsent_part<'a>(rewritten: &'a str, sent: &str) -> &'a str {
    let common = rewritten
        .char_indices()
        .zip(sent.chars())
        .find(|((_, a), b)| a != b)
        .map_or(sent.len().min(rewritten.len()), |((at, _), _)| at);
    &rewritten[common..]
}

impl<K: CallKind> Drop for Watched<K> {
    /// The caller went away before the end: the call is recorded as
    /// cancelled (a record already on its way is finished); the kind's
    /// stream is dropped after this, which stops it.
    fn drop(&mut self) {
        self.end(Err(CallError::Cancelled));
        let State::Recording(recording) = std::mem::replace(&mut self.state, State::Closed) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(recording);
            }
            Err(_) => tracing::error!(
                "a streamed call's completed record was lost: its stream was dropped outside the runtime"
            ),
        }
    }
}

/// A kind that never streams never hands the front end a stream:
/// [`Reply::done`](crate::call::Reply::done) is its result, with no arm for what cannot happen.
impl<K: CallKind<Stream = NoStream>> NeverStreams for Watched<K> {
    fn absurd<T>(self) -> T {
        match self.upstream {}
    }
}
