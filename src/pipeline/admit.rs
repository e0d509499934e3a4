//! Stage 0, admit: the in-flight limit, and no new calls once shutdown has
//! begun (the drain waits for the calls admitted before it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::call::NotAdmitted;

/// Counts calls in flight, up to a limit; once closed, admits no more.
pub struct InFlight {
    count: AtomicUsize,
    limit: usize,
    closed: AtomicBool,
    idle: Notify,
}

/// Held for the duration of one call: owned, so a streamed reply that
/// outlives [`super::Pipeline::run`] holds it until the stream ends.
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            limit,
            closed: AtomicBool::new(false),
            idle: Notify::new(),
        }
    }

    /// Admit one call, unless shutdown has begun or the limit is reached.
    pub fn enter(self: &Arc<Self>) -> Result<InFlightGuard, NotAdmitted> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(self.clone());
        if self.closed.load(Ordering::Acquire) {
            return Err(NotAdmitted::ShuttingDown);
        }
        if before >= self.limit {
            return Err(NotAdmitted::Full(self.limit));
        }
        Ok(guard)
    }

    /// Refuse new calls and wait up to `grace` for the rest; returns how many
    /// were still running at the deadline.
    pub async fn close_and_wait(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.idle.notified();
            let n = self.count.load(Ordering::Acquire);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count.load(Ordering::Acquire);
            }
        }
    }
}
