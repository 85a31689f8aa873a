//! The output end of a spawned pipeline: a stream of outputs with an optional reorder buffer, and `finish`.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aqueduct_core::Error;
use futures_core::Stream;
use tokio::sync::{Semaphore, mpsc};

use crate::control::{Control, ErrorSlot, PipelineHandle};
use crate::metrics::{Metrics, bump};
use crate::queue::Envelope;

/// A running pipeline: a [`Stream`] of its outputs, plus [`finish`](Self::finish) for the final report.
///
/// The stream ends when the pipeline ends: the source ran dry (or was drained) and every stage
/// finished, or the pipeline was cancelled. Then call [`finish`](Self::finish) to learn whether it
/// ended well. Dropping a `Running` before the end cancels the pipeline, so no producer stays blocked
/// on a full queue; outputs that were waiting are counted in [`Metrics::output_unprocessed`].
///
/// # Examples
///
/// ```
/// use futures_util::StreamExt;
/// use aqueduct_pipeline::PipelineBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut running = PipelineBuilder::<u32, ()>::from_items(0..100u32)
///     .stage(4, |item| async move { Ok::<_, ()>(item + 1) })
///     .build()
///     .unwrap()
///     .spawn();
/// let mut total = 0;
/// while let Some(item) = running.next().await {
///     total += item;
/// }
/// let metrics = running.finish().await.unwrap();
/// assert_eq!(total, 5050);
/// assert_eq!(metrics.delivered, 100);
/// # }
/// ```
#[must_use = "dropping a running pipeline cancels it"]
pub struct Running<T: Send + 'static, E> {
    output: Option<mpsc::Receiver<Envelope<T>>>,
    reorder: Option<Reorder<T>>,
    control: Arc<Control>,
    errors: Arc<ErrorSlot<E>>,
    runtime: tokio::runtime::Handle,
    ended: bool,
    /// `true` inside `finish`: what is read is counted as discarded, not delivered.
    discarding: bool,
}

struct Reorder<T> {
    next: u64,
    pending: BTreeMap<u64, Option<T>>,
    window: Arc<Semaphore>,
}

impl<T: Send + 'static, E> fmt::Debug for Running<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Running")
            .field("ordered", &self.reorder.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static, E> Unpin for Running<T, E> {}

impl<T: Send + 'static, E> Running<T, E> {
    pub(crate) fn new(
        output: mpsc::Receiver<Envelope<T>>,
        window: Option<Arc<Semaphore>>,
        control: Arc<Control>,
        errors: Arc<ErrorSlot<E>>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            output: Some(output),
            reorder: window.map(|window| Reorder { next: 0, pending: BTreeMap::new(), window }),
            control,
            errors,
            runtime,
            ended: false,
            discarding: false,
        }
    }

    /// A handle to drain, abort or observe this pipeline.
    ///
    /// # Examples
    ///
    /// See [`PipelineHandle`].
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle { control: self.control.clone() }
    }

    /// The next output, or `None` once the pipeline ended (the same as `StreamExt::next`).
    ///
    /// # Cancellation
    ///
    /// Cancel safe: if the future is dropped, no output is lost; it is returned by the next call.
    ///
    /// # Examples
    ///
    /// See [`Pipeline::spawn`](crate::Pipeline::spawn).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|context| Pin::new(&mut *self).poll_next(context)).await
    }

    /// Reads every remaining output into a vector, then returns as [`finish`](Self::finish) does.
    ///
    /// # Cancellation
    ///
    /// Dropping the future cancels the pipeline (the `Running` is dropped with it).
    ///
    /// # Errors
    ///
    /// The pipeline's first fatal error, as for [`finish`](Self::finish).
    ///
    /// # Examples
    ///
    /// See [`PipelineHandle`].
    pub async fn collect_all(mut self) -> Result<Vec<T>, Error<E>> {
        let mut outputs = Vec::new();
        while let Some(item) = self.recv().await {
            outputs.push(item);
        }
        self.finish().await.map(|_| outputs)
    }

    /// Waits for the pipeline to end and returns its final [`Metrics`], or its first fatal error.
    ///
    /// Outputs not read yet are read and dropped (counted in `delivered`, since they were processed and
    /// handed over); the pipeline is not cancelled. To stop it instead, call
    /// [`PipelineHandle::abort`] first, or simply drop the `Running`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future cancels the pipeline (the `Running` is dropped with it).
    ///
    /// # Errors
    ///
    /// The first fatal error: a fail-fast stage's error (possibly [`Error::Exhausted`] after retries),
    /// or [`Error::Panicked`] from the source or a callback.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub async fn finish(mut self) -> Result<Metrics, Error<E>> {
        self.discarding = true;
        while self.recv().await.is_some() {}
        self.control.tracker.wait().await;
        match self.errors.take() {
            Some(error) => Err(error),
            None => Ok(self.control.metrics()),
        }
    }

    fn count_delivered(&self) {
        if self.discarding {
            bump(&self.control.output.discarded, 1);
        } else {
            bump(&self.control.output.delivered, 1);
        }
    }

    /// Stops reading: closes the output, counts what waits there as unprocessed, and hands the receiver to a
    /// tracked task that counts what the workers still commit until every outstanding permit is used.
    fn stop_output(&mut self) {
        self.ended = true;
        if let Some(reorder) = &mut self.reorder {
            let waiting = reorder.pending.values().filter(|entry| entry.is_some()).count();
            bump(&self.control.output.unprocessed, waiting as u64);
            reorder.pending.clear();
        }
        let Some(mut output) = self.output.take() else { return };
        output.close();
        let control = self.control.clone();
        // The task is tracked, so `finished()` waits for it; its handle is not needed.
        drop(self.control.tracker.spawn_on(
            async move {
                while let Some(envelope) = output.recv().await {
                    if envelope.item.is_some() {
                        control
                            .output
                            .unprocessed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            },
            &self.runtime,
        ));
    }
}

impl<T: Send + 'static, E> Stream for Running<T, E> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        loop {
            if let Some(reorder) = &mut this.reorder {
                if let Some(entry) = reorder.pending.remove(&reorder.next) {
                    reorder.next += 1;
                    reorder.window.add_permits(1);
                    match entry {
                        Some(item) => {
                            this.count_delivered();
                            return Poll::Ready(Some(item));
                        }
                        None => continue,
                    }
                }
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.control.cancel.is_cancelled() {
                this.stop_output();
                return Poll::Ready(None);
            }
            let Some(output) = &mut this.output else { return Poll::Ready(None) };
            match output.poll_recv(context) {
                Poll::Ready(Some(envelope)) => match &mut this.reorder {
                    Some(reorder) => {
                        reorder.pending.insert(envelope.index, envelope.item);
                    }
                    None => {
                        if let Some(item) = envelope.item {
                            this.count_delivered();
                            return Poll::Ready(Some(item));
                        }
                    }
                },
                Poll::Ready(None) => {
                    // Every producer has ended; whatever still waits in the reorder buffer comes out in order.
                    if let Some(reorder) = &mut this.reorder {
                        if let Some((&index, _)) = reorder.pending.first_key_value() {
                            reorder.next = index;
                            continue;
                        }
                    }
                    this.ended = true;
                    this.output = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: Send + 'static, E> Drop for Running<T, E> {
    fn drop(&mut self) {
        if !self.ended {
            // The consumer stopped early: cancel upstream so no producer stays blocked.
            self.control.cancel.cancel();
        }
        if self.output.is_some()
            || self.reorder.as_ref().is_some_and(|reorder| !reorder.pending.is_empty())
        {
            self.stop_output();
        }
    }
}
