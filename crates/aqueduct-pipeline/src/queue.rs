//! The queues between stages (kanal, chosen by benchmark) and the cancel-safe sends into them.
//!
//! Two kinds of queue exist. Between stages: a bounded kanal MPMC queue. Sends into it are never
//! cancelled: a worker finishes every send it starts, and cancellation works by draining instead (every
//! worker of a cancelled pipeline keeps receiving and counting items until its upstream closes), so no
//! item is ever lost inside a dropped send future. Into the output: a tokio `mpsc` queue (one consumer),
//! sent with reserve-then-commit so that a send racing cancellation never owns the item.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::task::Poll;

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

/// What became of a send.
pub(crate) enum Sent {
    /// Handed over (or, for a discarding outlet, dropped as delivered).
    Delivered,
    /// Not handed over because the pipeline was cancelled or the receiving side is gone.
    Unprocessed,
}

impl<T: Send + 'static> Outlet<T> {
    /// Hands `envelope` over if there is room now: `Ok` with what became of it, or `Err` with the envelope
    /// when the queue is full and the caller must wait with [`send_waiting`](Self::send_waiting).
    ///
    /// Synchronous on purpose: the hot path builds no future at all (a future of the size of kanal's send
    /// future, built and moved on every item, cost more than the send itself in the benchmark).
    #[inline]
    pub(crate) fn try_send(&self, envelope: Envelope<T>) -> Result<Sent, Envelope<T>> {
        match self {
            Self::Queue(sender) => {
                let mut slot = Some(envelope);
                match sender.try_send_option(&mut slot) {
                    Ok(true) => Ok(Sent::Delivered),
                    Ok(false) => slot.map_or(Ok(Sent::Delivered), Err),
                    Err(_) => Ok(Sent::Unprocessed),
                }
            }
            Self::Output(sender) => match sender.try_reserve() {
                Ok(permit) => {
                    permit.send(envelope);
                    Ok(Sent::Delivered)
                }
                Err(mpsc::error::TrySendError::Closed(())) => Ok(Sent::Unprocessed),
                Err(mpsc::error::TrySendError::Full(())) => Err(envelope),
            },
            Self::Discard => Ok(Sent::Delivered),
        }
    }

    /// [`try_send`](Self::try_send), then, when the queue is full, [`send_waiting`](Self::send_waiting) on the heap.
    pub(crate) async fn send(
        &self,
        envelope: Envelope<T>,
        cancel: &Signal,
        blocked_nanos: &AtomicU64,
    ) -> Sent {
        match self.try_send(envelope) {
            Ok(sent) => sent,
            Err(envelope) => Box::pin(self.send_waiting(envelope, cancel, blocked_nanos)).await,
        }
    }

    /// Waits for room and sends `envelope`; the time spent waiting is added to `blocked_nanos`.
    ///
    /// Into a stage queue the send is never abandoned (see the module docs). Into the output, the wait for
    /// room races `cancel`, with reserve-then-commit: the item stays here until a slot is reserved.
    pub(crate) async fn send_waiting(
        &self,
        envelope: Envelope<T>,
        cancel: &Signal,
        blocked_nanos: &AtomicU64,
    ) -> Sent {
        let started = Instant::now();
        let sent = match self {
            Self::Queue(sender) => {
                if sender.send(envelope).await.is_ok() {
                    Sent::Delivered
                } else {
                    Sent::Unprocessed
                }
            }
            Self::Output(sender) => {
                let permit = tokio::select! {
                    biased;
                    () = cancel.cancelled() => None,
                    permit = sender.reserve() => permit.ok(),
                };
                match permit {
                    Some(permit) => {
                        permit.send(envelope);
                        Sent::Delivered
                    }
                    None => Sent::Unprocessed,
                }
            }
            Self::Discard => Sent::Delivered,
        };
        bump(blocked_nanos, nanos(started.elapsed()));
        sent
    }
}

/// Sends `envelope` into a stage queue, adding the time spent waiting for room (if any) to `blocked_nanos`.
///
/// The clock is read only when the send has to wait, so a send that finds room costs exactly kanal's own.
/// `false` when the receiving side is gone.
pub(crate) async fn send_timed<T>(
    sender: &QueueSender<T>,
    envelope: Envelope<T>,
    blocked_nanos: &AtomicU64,
) -> bool {
    let mut send = pin!(sender.send(envelope));
    let mut started: Option<Instant> = None;
    let sent = std::future::poll_fn(|context| match send.as_mut().poll(context) {
        Poll::Pending => {
            started.get_or_insert_with(Instant::now);
            Poll::Pending
        }
        Poll::Ready(result) => Poll::Ready(result.is_ok()),
    })
    .await;
    if let Some(started) = started {
        bump(blocked_nanos, nanos(started.elapsed()));
    }
    sent
}
