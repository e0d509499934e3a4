//! A streamed reply on its way to the caller ([`Watched`]): stages 8 and 9
//! for a call whose [`CallKind::forward`] answered
//! [`Reply::Stream`](crate::call::Reply::Stream). Each
//! chunk passes through the inspectors and is counted as it goes by; the
//! `completed` record is queued once, when the stream ends (before the
//! caller sees its end) or when the caller drops it first (the caller went
//! away: recorded as cancelled, and the kind's stream dropped with it, which
//! stops it). Until then the call holds its in-flight slot, so shutdown
//! waits for streams too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::Stream;

use super::{InFlightGuard, Pipeline, record};
use crate::call::{CallContext, CallError, CallKind, NeverStreams, NoStream};

/// A kind's stream, watched by the pipeline: what [`Pipeline::run`] hands
/// the front end for a streamed reply.
pub struct Watched<K: CallKind> {
    /// The kind's own stream, never polled again once it has ended.
    upstream: K::Stream,
    pipeline: Arc<Pipeline>,
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
        Watched {
            upstream,
            pipeline,
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
            match &mut this.state {
                State::Open { bytes, ctx, .. } => {
                    match ready!(Pin::new(&mut this.upstream).poll_next(cx)) {
                        Some(Ok(mut chunk)) => {
                            let inspected =
                                super::inspect_output(&this.pipeline.inspectors, ctx, |visit| {
                                    K::chunk_parts(&mut chunk, visit)
                                });
                            match inspected {
                                Ok(()) => {
                                    if let Some(n) = K::chunk_bytes(&chunk) {
                                        *bytes.get_or_insert(0) += n;
                                    }
                                    return Poll::Ready(Some(Ok(chunk)));
                                }
                                Err(e) => this.end(Err(e)),
                            }
                        }
                        Some(Err(e)) => this.end(Err(e)),
                        None => this.end(Ok(())),
                    }
                }
                State::Recording(recording) => {
                    let error = ready!(recording.as_mut().poll(cx));
                    this.state = State::Closed;
                    if let Some(e) = error {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                State::Closed => return Poll::Ready(None),
            }
        }
    }
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
