//! The source tasks: pull items from an iterator, a stream or the input channel and send them to stage 1.

use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;

use aqueduct_core::Error;
use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};

use crate::control::{Control, ErrorSlot, Signal};
use crate::metrics::{bump, nanos};
use crate::queue::{Message, Outlet, QueueSender, Sent, TrySendError};
use tokio::time::Instant;

/// Where the synchronous loop of [`SourceContext::iterate_into_queue`] stopped.
enum Pushed<T> {
    /// The iterator ran dry or the source was stopped.
    Ended,
    /// The queue is full: this item (with its index) waits for room.
    Full(u64, T),
    /// Every receiver is gone; the item comes back to be dropped outside the queue's lock.
    Closed(Message<T>),
}

/// What every source task needs.
pub(crate) struct SourceContext<T, E> {
    pub(crate) outlet: Outlet<T>,
    pub(crate) control: Arc<Control>,
    pub(crate) errors: Arc<ErrorSlot<E>>,
    /// In ordered mode: one permit per item allowed between the source and the reorder buffer.
    pub(crate) window: Option<Arc<Semaphore>>,
}

impl<T: Send + 'static, E: Send + 'static> SourceContext<T, E> {
    /// `false` when the source must stop (drain or abort); in ordered mode, waits for a reorder-window permit.
    ///
    /// The common case (no window) is synchronous, so no future is built per item.
    async fn admit(&self, stop: &Signal) -> bool {
        if stop.is_cancelled() {
            return false;
        }
        match &self.window {
            None => true,
            Some(window) => Box::pin(Self::acquire_window(window, stop)).await,
        }
    }

    async fn acquire_window(window: &Semaphore, stop: &Signal) -> bool {
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            permit = window.acquire() => match permit {
                Ok(permit) => {
                    permit.forget();
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// Hands one item to stage 1 (or the output). `false` when it could not, because the pipeline was cancelled.
    async fn emit(&self, index: u64, item: T) -> bool {
        bump(&self.control.source.produced, 1);
        let sent = match self.outlet.try_send(index, item) {
            Ok(sent) => sent,
            Err((index, item)) => {
                let waiting = self.outlet.send_waiting(
                    Message::Item(index, item),
                    &self.control.cancel,
                    &self.control.source.blocked_nanos,
                );
                Box::pin(waiting).await
            }
        };
        match sent {
            Sent::Delivered => true,
            Sent::Unprocessed => {
                bump(&self.control.source.unprocessed, 1);
                false
            }
        }
    }

    fn fail_with_panic(&self, payload: Box<dyn std::any::Any + Send>) {
        self.errors.fail(Error::from_panic(None, payload), &self.control);
    }

    /// Pulls from an iterator until it ends or the source is stopped (drain) or cancelled (abort).
    pub(crate) async fn iterate<I>(self, mut items: I)
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        if self.window.is_none() {
            if let Outlet::Queue(sender) = &self.outlet {
                self.iterate_into_queue(sender, items).await;
                return;
            }
        }
        let stop = self.control.stop_source.clone();
        let mut index = 0;
        while self.admit(&stop).await {
            match std::panic::catch_unwind(AssertUnwindSafe(|| items.next())) {
                Ok(Some(item)) => {
                    if !self.emit(index, item).await {
                        break;
                    }
                    index += 1;
                }
                Ok(None) => break,
                Err(payload) => {
                    self.fail_with_panic(payload);
                    break;
                }
            }
        }
    }

    /// The common case of [`iterate`](Self::iterate): unordered, into stage 1's queue. As cheap per item as
    /// a hand-written producer: the items are pulled and pushed by a synchronous loop under one
    /// `catch_unwind` (the stop flag is one atomic load per item, the push a synchronous `try_send`), left
    /// only when the queue is full, to wait (inline, no allocation, the clock read only then).
    ///
    /// A send into a stage queue is never abandoned (see [`crate::queue`]); on abort, stage 1's workers
    /// keep receiving and count what they get as unprocessed, so the send always completes.
    async fn iterate_into_queue<I>(&self, sender: &QueueSender<T>, mut items: I)
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        let stop = &*self.control.stop_source;
        let counters = &self.control.source;
        let mut index: u64 = 0;
        loop {
            let pushed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                loop {
                    if stop.is_cancelled() {
                        return Pushed::Ended;
                    }
                    let Some(item) = items.next() else { return Pushed::Ended };
                    bump(&counters.produced, 1);
                    match sender.try_send(index, item) {
                        Ok(()) => index += 1,
                        Err(TrySendError::Full(index, item)) => return Pushed::Full(index, item),
                        Err(TrySendError::Closed(message)) => return Pushed::Closed(message),
                    }
                }
            }));
            match pushed {
                Ok(Pushed::Ended) => break,
                Ok(Pushed::Full(full_index, item)) => {
                    let started = Instant::now();
                    let sent = sender.send(Message::Item(full_index, item)).await.is_ok();
                    bump(&counters.blocked_nanos, nanos(started.elapsed()));
                    if !sent {
                        bump(&counters.unprocessed, 1);
                        break;
                    }
                    index += 1;
                }
                Ok(Pushed::Closed(message)) => {
                    drop(message);
                    bump(&counters.unprocessed, 1);
                    break;
                }
                Err(payload) => {
                    self.fail_with_panic(payload);
                    break;
                }
            }
        }
    }

    /// Pulls from a stream until it ends or the source is stopped (drain) or cancelled (abort).
    pub(crate) async fn stream<S>(self, items: S)
    where
        S: Stream<Item = T> + Send + 'static,
    {
        let stop = self.control.stop_source.clone();
        let mut items = pin!(items);
        let mut index = 0;
        while self.admit(&stop).await {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = AssertUnwindSafe(items.next()).catch_unwind() => next,
            };
            match next {
                Ok(Some(item)) => {
                    if !self.emit(index, item).await {
                        break;
                    }
                    index += 1;
                }
                Ok(None) => break,
                Err(payload) => {
                    self.fail_with_panic(payload);
                    break;
                }
            }
        }
    }

    /// Forwards what the [`Input`](crate::Input) accepted. On drain the input is closed and what it already
    /// accepted is still forwarded; on abort what it accepted is counted as unprocessed.
    pub(crate) async fn channel(self, mut receiver: mpsc::Receiver<T>) {
        let cancel = self.control.cancel.clone();
        let stop = self.control.stop_source.clone();
        let mut closed = false;
        let mut index = 0;
        loop {
            if let Some(window) = &self.window {
                let permit = tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    permit = window.acquire() => permit,
                };
                match permit {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
            }
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = stop.cancelled(), if !closed => {
                    receiver.close();
                    closed = true;
                    if let Some(window) = &self.window {
                        window.add_permits(1);
                    }
                    continue;
                }
                next = receiver.recv() => next,
            };
            let Some(item) = next else { break };
            if !self.emit(index, item).await {
                break;
            }
            index += 1;
        }
        // After `close`, `recv` returns what was accepted (including sends through outstanding permits)
        // and then `None`, without waiting for the senders to be dropped.
        receiver.close();
        while let Some(_item) = receiver.recv().await {
            bump(&self.control.source.produced, 1);
            bump(&self.control.source.unprocessed, 1);
        }
    }
}
