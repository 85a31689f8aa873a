//! The queues between stages (kanal, chosen by benchmark) and the cancel-safe sends into them.
//!
//! Two kinds of queue exist. Between stages: a bounded kanal MPMC queue. Sends into it are never
//! cancelled: a worker finishes every send it starts, and cancellation works by draining instead (every
//! worker of a cancelled pipeline keeps receiving and counting items until its upstream closes), so no
//! item is ever lost inside a dropped send future. Into the output: a tokio `mpsc` queue (one consumer),
//! sent with reserve-then-commit so that a send racing cancellation never owns the item.

use std::sync::atomic::AtomicU64;

use crate::control::Signal;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::{bump, nanos};

/// An item with its position in the source. `item` is `None` for a gap: in ordered mode, a stage that
/// fails or skips an item sends a gap so that the reorder buffer does not wait for it.
#[derive(Debug)]
pub(crate) struct Envelope<T> {
    pub(crate) index: u64,
    pub(crate) item: Option<T>,
}

pub(crate) type QueueSender<T> = kanal::AsyncSender<Envelope<T>>;
pub(crate) type QueueReceiver<T> = kanal::AsyncReceiver<Envelope<T>>;

pub(crate) fn bounded<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    kanal::bounded_async(capacity)
}

/// Where a stage (or the source) sends what it produced.
#[derive(Debug)]
pub(crate) enum Outlet<T> {
    /// The next stage's input queue.
    Queue(QueueSender<T>),
    /// The output consumed by [`Running`](crate::Running).
    Output(mpsc::Sender<Envelope<T>>),
    /// Nobody consumes the outputs ([`Pipeline::run`](crate::Pipeline::run)): they are dropped, and the
    /// last stage's `items_out` counts them as delivered (no shared counter on the hot path).
    Discard,
}

impl<T> Clone for Outlet<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Queue(sender) => Self::Queue(sender.clone()),
            Self::Output(sender) => Self::Output(sender.clone()),
            Self::Discard => Self::Discard,
        }
    }
}

/// Awaits `future`, adding to `waited_nanos` the time from its first `Pending` to its completion; a future
/// that is ready at once costs no clock read.
pub(crate) async fn timed<F: std::future::Future>(
    future: F,
    waited_nanos: &AtomicU64,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut waiting_since: Option<Instant> = None;
    let output = std::future::poll_fn(|context| match future.as_mut().poll(context) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(output),
        std::task::Poll::Pending => {
            if waiting_since.is_none() {
                waiting_since = Some(Instant::now());
            }
            std::task::Poll::Pending
        }
    })
    .await;
    if let Some(since) = waiting_since {
        bump(waited_nanos, nanos(since.elapsed()));
    }
    output
}

/// What became of a send.
pub(crate) enum Sent {
    /// Handed over (or, for a discarding outlet, dropped as delivered).
    Delivered,
    /// Not handed over because the pipeline was cancelled or the receiving side is gone.
    Unprocessed,
}

impl<T: Send + 'static> Outlet<T> {
    /// Hands `envelope` over, waiting for room; the time spent waiting is added to `blocked_nanos`.
    ///
    /// Into a stage queue the send is never abandoned (see the module docs): it is kanal's own send future,
    /// one lock per item when there is room. Into the output, the fast path is a synchronous `try_reserve`;
    /// the wait for room races `cancel`, with reserve-then-commit: the item stays here until a slot is reserved.
    #[inline]
    pub(crate) async fn send(
        &self,
        envelope: Envelope<T>,
        cancel: &Signal,
        blocked_nanos: &AtomicU64,
    ) -> Sent {
        match self {
            Self::Queue(sender) => {
                if timed(sender.send(envelope), blocked_nanos).await.is_ok() {
                    Sent::Delivered
                } else {
                    Sent::Unprocessed
                }
            }
            Self::Output(sender) => match sender.try_reserve() {
                Ok(permit) => {
                    permit.send(envelope);
                    Sent::Delivered
                }
                Err(mpsc::error::TrySendError::Closed(())) => Sent::Unprocessed,
                Err(mpsc::error::TrySendError::Full(())) => {
                    Box::pin(self.send_waiting(envelope, cancel, blocked_nanos)).await
                }
            },
            Self::Discard => Sent::Delivered,
        }
    }

    /// Waits for room in the output and sends `envelope`; the time spent waiting is added to `blocked_nanos`.
    async fn send_waiting(
        &self,
        envelope: Envelope<T>,
        cancel: &Signal,
        blocked_nanos: &AtomicU64,
    ) -> Sent {
        let Self::Output(sender) = self else { return self.send_other(envelope) };
        let started = Instant::now();
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            permit = sender.reserve() => permit.ok(),
        };
        bump(blocked_nanos, nanos(started.elapsed()));
        match permit {
            Some(permit) => {
                permit.send(envelope);
                Sent::Delivered
            }
            None => Sent::Unprocessed,
        }
    }

    fn send_other(&self, envelope: Envelope<T>) -> Sent {
        match self {
            Self::Queue(sender) => match sender.try_send(envelope) {
                Ok(true) => Sent::Delivered,
                _ => Sent::Unprocessed,
            },
            Self::Output(_) | Self::Discard => Sent::Delivered,
        }
    }
}
