//! `as_completed`: a stream of `(input index, result)` in completion order that keeps no finished output.

use std::fmt;
use std::future::IntoFuture;
use std::marker::PhantomData;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::task::{Context, Poll};

use aqueduct_core::Error;
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::engine::sealed::{Child, ChildSource, FutureSource};
use crate::engine::{
    ChildOutcome, Engine, InPlace, IntoGatherResult, IterSource, Spawned, StreamSource,
};
use crate::options::{GatherOptions, PanicPolicy};

/// Runs `futures` concurrently in place and yields `(input index, result)` as each one finishes.
///
/// The port of Python's `asyncio.as_completed`, with the index attached. Nothing is kept once yielded, so
/// memory stays flat however many futures go through (with a limit, see [`AsCompleted::with_options`]).
/// [`AsCompleted::spawned`] runs the futures as tokio tasks instead.
///
/// In place, children make progress only while the stream is polled (the `buffer_unordered` caveat): do
/// not hold a long await between two `next()` calls, or spawn.
///
/// # Cancellation
///
/// Dropping the stream drops every in-place child still running and aborts every spawned one.
///
/// # Errors
///
/// Each item carries its child's result: the child's error, [`Error::Panicked`] for a panic (with
/// [`PanicPolicy::Capture`]), or [`Error::Cancelled`] for a spawned task aborted from outside.
///
/// # Panics
///
/// With [`PanicPolicy::Resume`], a child's panic is resumed from `poll_next` after the siblings were
/// dropped (in place) or aborted (spawned; not awaited).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_gather::{as_completed, Error};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let delays = [30_u64, 10, 20];
/// let mut finished = as_completed(delays.map(|ms| async move {
///     tokio::time::sleep(Duration::from_millis(ms)).await;
///     Ok::<u64, ()>(ms)
/// }));
/// let mut order = Vec::new();
/// while let Some((index, result)) = finished.next().await {
///     order.push((index, result.ok()));
/// }
/// assert_eq!(order, [(1, Some(10)), (2, Some(20)), (0, Some(30))]);
/// # }
/// ```
pub fn as_completed<I, T, X, E>(futures: I) -> AsCompleted<InPlace<IterSource<I::IntoIter>>, T, E>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    AsCompleted::new(InPlace::new(IterSource::new(futures.into_iter())))
}

/// Like [`as_completed`], but reads the futures from a stream, pulling the next one only when a slot is free.
///
/// # Cancellation
///
/// Dropping the returned stream drops the source stream and every child still running.
///
/// # Errors
///
/// As [`as_completed`].
///
/// # Examples
///
/// ```
/// use aqueduct_gather::{as_completed_stream, Error, GatherOptions};
/// use futures::{stream, StreamExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aqueduct_gather::ConfigError> {
/// let jobs = stream::iter(0..100_u32).map(|n| async move { Ok::<_, ()>(n) });
/// let options = GatherOptions::builder().limit(4).build()?;
/// let total: u32 = as_completed_stream(jobs)
///     .with_options(options)
///     .map(|(_, result)| result.unwrap_or(0))
///     .fold(0, |sum, n| async move { sum + n })
///     .await;
/// assert_eq!(total, 4950);
/// # Ok(())
/// # }
/// ```
pub fn as_completed_stream<St, T, X, E>(futures: St) -> AsCompleted<InPlace<StreamSource<St>>, T, E>
where
    St: Stream,
    St::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    AsCompleted::new(InPlace::new(StreamSource::new(futures)))
}

pin_project! {
    /// The stream of [`as_completed`]: `(input index, result)` in completion order.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops every in-place child and aborts every spawned one.
    #[must_use = "streams do nothing unless polled"]
    pub struct AsCompleted<S, T, E>
    where
        S: ChildSource,
    {
        #[pin]
        engine: Engine<S>,
        panics: PanicPolicy,
        marker: PhantomData<fn() -> (T, E)>,
    }
}

impl<S: ChildSource, T, E> fmt::Debug for AsCompleted<S, T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AsCompleted")
            .field("created", &self.engine.created())
            .field("panics", &self.panics)
            .finish_non_exhaustive()
    }
}

impl<S: ChildSource, T, E> AsCompleted<S, T, E> {
    fn new(source: S) -> Self {
        Self {
            engine: Engine::new(source, usize::MAX),
            panics: PanicPolicy::Capture,
            marker: PhantomData,
        }
    }

    /// Applies `options`: a concurrency limit (futures are created lazily, at most `limit` alive at once) and
    /// the panic policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{as_completed, Error, GatherOptions};
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aqueduct_gather::ConfigError> {
    /// let options = GatherOptions::builder().limit(1).build()?;
    /// let items: Vec<_> = as_completed((0..3).map(|n| async move { Ok::<_, ()>(n) }))
    ///     .with_options(options)
    ///     .map(|(index, _)| index)
    ///     .collect()
    ///     .await;
    /// assert_eq!(items, [0, 1, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(mut self, options: GatherOptions) -> Self {
        self.engine.set_limit(options.limit_or_max());
        self.panics = options.panics();
        self
    }
}

impl<R: FutureSource, T, E> AsCompleted<InPlace<R>, T, E> {
    /// Runs each child as a tokio task, so the children progress in parallel even between two `next()` calls.
    ///
    /// # Panics
    ///
    /// Polling the stream outside a tokio runtime panics, as `tokio::spawn` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{as_completed, Error};
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let count = as_completed((0..8).map(|n| async move { Ok::<_, ()>(n) })).spawned().count().await;
    /// assert_eq!(count, 8);
    /// # }
    /// ```
    pub fn spawned(self) -> AsCompleted<Spawned<R>, T, E>
    where
        Spawned<R>: ChildSource,
    {
        AsCompleted {
            engine: self.engine.map_source(InPlace::into_spawned),
            panics: self.panics,
            marker: PhantomData,
        }
    }
}

impl<S, T, E> Stream for AsCompleted<S, T, E>
where
    S: ChildSource,
    <S::Child as Child>::Output: IntoGatherResult<T, E>,
{
    type Item = (usize, Result<T, Error<E>>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let Some((index, outcome)) = std::task::ready!(this.engine.as_mut().poll_next(cx)) else {
            return Poll::Ready(None);
        };
        let result = match outcome {
            ChildOutcome::Value(output) => output.into_gather_result(),
            ChildOutcome::Cancelled => Err(Error::Cancelled),
            ChildOutcome::Panicked(payload) => match this.panics {
                PanicPolicy::Capture => Err(Error::from_panic(Some(index), payload)),
                PanicPolicy::Resume => {
                    this.engine.as_mut().abort_all();
                    resume_unwind(payload);
                }
            },
        };
        Poll::Ready(Some((index, result)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}
