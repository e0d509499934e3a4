//! Progress from an upstream reaches its caller in the order it was sent,
//! and before the result it preceded.
//!
//! rmcp hands each incoming notification to the handler in a task of its
//! own, so two progress notifications read back to back from one upstream
//! could be handled, and forwarded, in either order; and the response that
//! followed them could overtake both, after which a client has stopped
//! listening for that progress token (steps went missing). Only the
//! transport's `receive` runs in order, so this wraps every upstream link's
//! transport ([`InOrder`]):
//!
//! - a progress notification is taken off the link there and queued for
//!   the link's one forwarder, which sends each on to its caller and waits
//!   until it is out (rmcp's `notify_progress` resolves once the message is
//!   handed to the caller's transport) before the next: so the caller gets
//!   them in order, whichever front end it uses;
//! - a response (or error) is handed to rmcp only once every progress
//!   notification read before it has been sent on.
//!
//! `receive` must be cancel-safe (rmcp polls it in a `select!`): what has
//! been read but not yet passed on is kept in the wrapper, never in the
//! future.

use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{JsonRpcMessage, ProgressNotificationParam, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::{mpsc, watch};

use super::hub::Hub;

/// Progress notifications one link may have queued for its forwarder; the
/// link is not read further while it is full.
const QUEUE: usize = 64;
/// Longest one notification may take to hand to its caller (a caller not
/// reading its stream); past that it is dropped, so one stuck caller
/// cannot hold up the link's other calls for long.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// An upstream link's transport, with its progress kept in order.
pub struct InOrder<T> {
    inner: T,
    progress: mpsc::Sender<ProgressNotificationParam>,
    /// Progress notifications queued so far, and how many the forwarder has
    /// sent on.
    queued: u64,
    forwarded: watch::Receiver<u64>,
    /// A message read from the link and not yet passed on.
    held: Option<RxJsonRpcMessage<RoleClient>>,
}

impl<T> InOrder<T> {
    /// Wrap `inner`, the transport of a link whose requests are routed by
    /// `hub` under `route` (the upstream's name, or its modern link's).
    pub fn new(inner: T, hub: Arc<Hub>, route: Arc<str>) -> Self {
        let (progress, mut queue) = mpsc::channel(QUEUE);
        let (done, forwarded) = watch::channel(0);
        tokio::spawn(async move {
            let mut sent = 0;
            while let Some(params) = queue.recv().await {
                forward(&hub, &route, params).await;
                sent += 1;
                let _ = done.send(sent);
            }
        });
        Self {
            inner,
            progress,
            queued: 0,
            forwarded,
            held: None,
        }
    }
}

/// Send an upstream's progress on to the caller of the call it is about,
/// under the caller's own token.
async fn forward(hub: &Hub, route: &Arc<str>, mut params: ProgressNotificationParam) {
    let Some(target) = hub.progress_target(route, &params.progress_token) else {
        return;
    };
    let Some(token) = target.progress_token else {
        return;
    };
    params.progress_token = token;
    match tokio::time::timeout(SEND_TIMEOUT, target.peer.notify_progress(params)).await {
        Ok(_) => {}
        Err(_) => tracing::info!(
            server = %route,
            "a caller did not take a progress notification within {SEND_TIMEOUT:?}; dropped it"
        ),
    }
}

fn is_progress(message: &RxJsonRpcMessage<RoleClient>) -> bool {
    matches!(
        message,
        JsonRpcMessage::Notification(n)
            if matches!(n.notification, ServerNotification::ProgressNotification(_))
    )
}

impl<T> Transport<RoleClient> for InOrder<T>
where
    T: Transport<RoleClient> + Send,
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            if self.held.is_none() {
                self.held = Some(self.inner.receive().await?);
            }
            if self.held.as_ref().is_some_and(is_progress) {
                let Ok(permit) = self.progress.reserve().await else {
                    // The forwarder is gone (shutting down): nothing to route.
                    self.held = None;
                    continue;
                };
                if let Some(JsonRpcMessage::Notification(n)) = self.held.take()
                    && let ServerNotification::ProgressNotification(p) = n.notification
                {
                    permit.send(p.params);
                    self.queued += 1;
                }
                continue;
            }
            if matches!(
                self.held,
                Some(JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_))
            ) {
                let queued = self.queued;
                // Err: the forwarder is gone, so nothing is left to wait for.
                let _ = self.forwarded.wait_for(|sent| *sent >= queued).await;
            }
            return self.held.take();
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
