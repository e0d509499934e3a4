//! What a forwarded call gives back ([`Reply`]): its whole result at once,
//! or a stream of chunks (a streamed chat completion) that the pipeline
//! inspects chunk by chunk and records when it ends. [`NoStream`] is the
//! stream of the kinds that never stream (every MCP kind).

use std::pin::Pin;
use std::task::{Context, Poll};

use super::CallError;

/// A forwarded call's result: all of it (`Done`), or a stream of chunks
/// still to come (`Stream`).
#[derive(Debug)]
pub enum Reply<T, S> {
    Done(T),
    Stream(S),
}

/// The stream of a kind that never streams: no value of it exists, so a
/// `Reply::Stream` of it cannot be built and matching on one needs no arm.
#[derive(Debug)]
pub enum NoStream {}

impl futures::Stream for NoStream {
    type Item = Result<NoStream, CallError>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match *self {}
    }
}

/// A stream type no value of which can exist: [`NoStream`], and what
/// wraps one (the pipeline's watched stream of a kind that never streams).
pub trait NeverStreams {
    /// What a value of it would turn into: there is none to turn.
    fn absurd<T>(self) -> T;
}

impl NeverStreams for NoStream {
    fn absurd<T>(self) -> T {
        match self {}
    }
}

impl<T, S: NeverStreams> Reply<T, S> {
    /// The result of a kind that never streams.
    pub fn done(self) -> T {
        match self {
            Reply::Done(output) => output,
            Reply::Stream(never) => never.absurd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_that_never_streams_has_its_result_without_a_panic_path() {
        let reply: Reply<u32, NoStream> = Reply::Done(7);
        assert_eq!(reply.done(), 7);
    }
}
