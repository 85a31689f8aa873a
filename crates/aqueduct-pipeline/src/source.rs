//! The source tasks: pull items from an iterator, a stream or the input channel and send them to stage 1.

use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use aqueduct_core::Error;
use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};

use crate::control::{Control, ErrorSlot, Signal};
use crate::metrics::{bump, nanos};
use crate::queue::{Message, Outlet, QueueSender, Sent, TrySendError};

/// How many items the stream source moves in one poll before it yields to the other tasks of its thread.
const ITEMS_PER_POLL: u32 = 128;

/// Where the synchronous loop of [`SourceContext::stream_into_queue`] stopped.
enum Pushed<T> {
    /// The stream ended, or the source was stopped.
    Ended,
    /// The queue is full: this item (with its index) waits for room.
    Full(u64, T),
    /// Every receiver is gone; the item comes back to be dropped outside the queue's lock.
    Closed(Message<T>),
    /// This poll moved [`ITEMS_PER_POLL`] items.
    Yield,
    /// Polling the stream panicked.
    Panicked(Box<dyn std::any::Any + Send>),
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

    /// The common case of an iterator source: unordered, into stage 1's queue. Then no task pulls the
    /// iterator: stage 1's workers do, one item at a time, through the queue's feeder
    /// ([`feed_from`](crate::queue::QueueSender::feed_from)). `Err` gives the context and the iterator
    /// back for [`iterate`](Self::iterate) otherwise (ordered output, or no stage).
    ///
    /// The feeder stops (returns `None`) once the source is stopped (drain) or cancelled (abort), and when
    /// the iterator ends or panics (a fatal error, as in `iterate`); then it drops the iterator, catching
    /// a panic of its `Drop` as a fatal error too.
    pub(crate) fn feed_stage_queue<I>(self, items: I) -> Result<(), (Self, I)>
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        let Self { outlet, control, errors, window } = self;
        let sender = match outlet {
            Outlet::Queue(sender) if window.is_none() => sender,
            outlet => return Err((Self { outlet, control, errors, window }, items)),
        };
        // `None` once ended: the iterator is dropped here, at its end, with a panic in its `Drop` caught
        // as one in `next` is (not in a worker, whose task it would end).
        let mut items = Some(items);
        let mut produced: u64 = 0;
        sender.feed_from(Box::new(move || {
            let iterator = items.as_mut()?;
            let next = if control.stop_source.is_cancelled() {
                Ok(None)
            } else {
                std::panic::catch_unwind(AssertUnwindSafe(|| iterator.next()))
            };
            let panic = match next {
                Ok(Some(item)) => {
                    // One caller at a time (under the feeder's lock), so a store suffices.
                    produced += 1;
                    control.source.produced.store(produced, Ordering::Relaxed);
                    return Some(item);
                }
                Ok(None) => std::panic::catch_unwind(AssertUnwindSafe(|| items = None)).err(),
                Err(payload) => {
                    // Dropped after a panic: a second panic adds nothing to the first.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| items = None));
                    Some(payload)
                }
            };
            if let Some(payload) = panic {
                errors.fail(Error::from_panic(None, payload), &control);
            }
            None
        }));
        Ok(())
    }

    /// Pulls from an iterator until it ends or the source is stopped (drain) or cancelled (abort).
    pub(crate) async fn iterate<I>(self, mut items: I)
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        let stop = self.control.stop_source.clone();
        let mut index = 0;
        while self.admit(&stop).await {
            let next = std::panic::catch_unwind(AssertUnwindSafe(|| items.next()));
            if !self.forward(next, &mut index).await {
                break;
            }
        }
        // A panic in the iterator's `Drop` is a fatal error too (after one in `next`, only the first counts).
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| drop(items))) {
            self.fail_with_panic(payload);
        }
    }

    /// What the item-by-item loops do with what they pulled: emit an item (`true`: go on), or stop at
    /// the end, at a panic (a fatal error) or when the item could not be handed over.
    async fn forward(&self, next: std::thread::Result<Option<T>>, index: &mut u64) -> bool {
        match next {
            Ok(Some(item)) => {
                if !self.emit(*index, item).await {
                    return false;
                }
                *index += 1;
                true
            }
            Ok(None) => false,
            Err(payload) => {
                self.fail_with_panic(payload);
                false
            }
        }
    }

    /// Pulls from a stream until it ends or the source is stopped (drain) or cancelled (abort).
    pub(crate) async fn stream<S>(self, items: S)
    where
        S: Stream<Item = T> + Send + 'static,
    {
        let mut items = pin!(items);
        if self.window.is_none()
            && let Outlet::Queue(sender) = &self.outlet
        {
            self.stream_into_queue(sender, items).await;
            return;
        }
        let stop = self.control.stop_source.clone();
        let mut index = 0;
        while self.admit(&stop).await {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = AssertUnwindSafe(items.next()).catch_unwind() => next,
            };
            if !self.forward(next, &mut index).await {
                break;
            }
        }
    }

    /// The common case of [`stream`](Self::stream): unordered, into stage 1's queue. The stream is polled
    /// and the items pushed by a synchronous loop inside one poll, for as long as both are ready: no future
    /// per item, and the stop signal's waiter is registered once, and only polled when the stream waits.
    /// The loop leaves to wait for room (inline, the clock read only then) and to yield every
    /// [`ITEMS_PER_POLL`] items.
    ///
    /// A send into a stage queue is never abandoned (see [`crate::queue`]); on abort, stage 1's workers
    /// keep receiving and count what they get as unprocessed, so the send always completes.
    async fn stream_into_queue<S>(&self, sender: &QueueSender<T>, mut items: Pin<&mut S>)
    where
        S: Stream<Item = T>,
    {
        let stop = &*self.control.stop_source;
        let counters = &self.control.source;
        let mut stopped = pin!(stop.cancelled());
        let mut index: u64 = 0;
        loop {
            let pushed = std::future::poll_fn(|context| {
                for _ in 0..ITEMS_PER_POLL {
                    if stop.is_cancelled() {
                        return Poll::Ready(Pushed::Ended);
                    }
                    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        items.as_mut().poll_next(context)
                    }));
                    let item = match polled {
                        Ok(Poll::Ready(Some(item))) => item,
                        Ok(Poll::Ready(None)) => return Poll::Ready(Pushed::Ended),
                        Ok(Poll::Pending) => {
                            // The stream waits: wait for it or for the stop signal, whichever comes first.
                            return match stopped.as_mut().poll(context) {
                                Poll::Ready(()) => Poll::Ready(Pushed::Ended),
                                Poll::Pending => Poll::Pending,
                            };
                        }
                        Err(payload) => return Poll::Ready(Pushed::Panicked(payload)),
                    };
                    bump(&counters.produced, 1);
                    match sender.try_send(index, item) {
                        Ok(()) => index += 1,
                        Err(TrySendError::Full(index, item)) => {
                            return Poll::Ready(Pushed::Full(index, item));
                        }
                        Err(TrySendError::Closed(message)) => {
                            return Poll::Ready(Pushed::Closed(message));
                        }
                    }
                }
                Poll::Ready(Pushed::Yield)
            })
            .await;
            match pushed {
                Pushed::Ended => break,
                Pushed::Yield => tokio::task::yield_now().await,
                Pushed::Full(full_index, item) => {
                    let started = tokio::time::Instant::now();
                    let sent = sender.send(Message::Item(full_index, item)).await.is_ok();
                    bump(&counters.blocked_nanos, nanos(started.elapsed()));
                    if !sent {
                        bump(&counters.unprocessed, 1);
                        break;
                    }
                    index += 1;
                }
                Pushed::Closed(message) => {
                    drop(message);
                    bump(&counters.unprocessed, 1);
                    break;
                }
                Pushed::Panicked(payload) => {
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
