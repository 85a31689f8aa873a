//! `TaskGroup`: spawned children that fail fast together, with `cancel`, `join`, `shutdown` and abort on drop.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use aqueduct_core::{Aggregate, Error};
use pin_project_lite::pin_project;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::spawn_with_deadline;
use crate::options::{GatherOptions, PanicPolicy};

/// A group of spawned tasks that succeed together or fail fast together: Python's `asyncio.TaskGroup`.
///
/// - [`spawn`](Self::spawn) starts a child at once as a tokio task (parallel, `Send + 'static`).
/// - The first child to fail (or panic) cancels every sibling *immediately*, even while nobody awaits the
///   group: the siblings' futures are dropped inside their tasks at their next poll.
/// - [`join`](Self::join) waits until every child has stopped, then returns the values in spawn order or an
///   [`Error::Aggregate`] whose first entry is the first failure in time, followed by the siblings it
///   cancelled.
/// - [`cancel`](Self::cancel) cancels every child without an error of their own (Python 3.15's
///   `TaskGroup.cancel()`); [`shutdown`](Self::shutdown) cancels and waits until they have stopped.
/// - Dropping the group (or its [`Join`] future) aborts every child still running. `Drop` cannot wait, so use
///   `shutdown().await` when you need to know they have stopped.
///
/// With [`GatherOptions`], at most `limit` children run at once (the others wait for a permit before their
/// future is first polled) and panics can be resumed in the task that joins.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_gather::{Error, TaskGroup};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut group: TaskGroup<u32, String> = TaskGroup::new();
/// group.spawn(async { Ok::<_, String>(1) });
/// group.spawn(async {
///     tokio::time::sleep(Duration::from_millis(5)).await;
///     Err::<u32, _>("lost the connection".to_owned())
/// });
/// group.spawn(async {
///     tokio::time::sleep(Duration::from_secs(3600)).await; // cancelled by the failure above
///     Ok::<_, String>(3)
/// });
/// let Err(Error::Aggregate(failures)) = group.join().await else { panic!("the second child failed") };
/// let (index, first) = failures.first().unwrap();
/// assert_eq!((*index, first.operation().map(String::as_str)), (1, Some("lost the connection")));
/// assert!(failures.iter().any(|(index, error)| *index == 2 && error.is_cancelled()));
/// # }
/// ```
pub struct TaskGroup<T, E> {
    children: Vec<JoinHandle<Report<T, E>>>,
    state: Arc<GroupState>,
    panics: PanicPolicy,
    permits: Option<Arc<Semaphore>>,
}

/// The future of [`TaskGroup::join`]: waits until every child has stopped.
///
/// # Cancellation
///
/// Dropping it aborts every child still running.
#[must_use = "futures do nothing unless awaited"]
pub struct Join<T, E> {
    children: Vec<Option<JoinHandle<Report<T, E>>>>,
    next: usize,
    values: Vec<T>,
    failures: Vec<(usize, usize, Error<E>)>,
    cancelled: Vec<usize>,
    first_panic: Option<(usize, Box<dyn Any + Send + 'static>)>,
    state: Arc<GroupState>,
    panics: PanicPolicy,
}

/// The future of [`TaskGroup::shutdown`]: cancels every child and waits until they have stopped.
///
/// # Cancellation
///
/// Dropping it aborts every child still running.
#[must_use = "futures do nothing unless awaited"]
pub struct Shutdown<T, E> {
    children: Vec<Option<JoinHandle<Report<T, E>>>>,
    next: usize,
}

struct GroupState {
    token: CancellationToken,
    // Orders failures in time: each failing child takes the next number.
    failure_sequence: AtomicUsize,
    cancelled_by_user: AtomicBool,
}

/// What a child task reports to [`Join`].
enum Report<T, E> {
    Value(T),
    Failed { sequence: usize, error: Error<E> },
    Panicked { sequence: usize, payload: Box<dyn Any + Send + 'static> },
    Cancelled,
}

// ===== impl TaskGroup =====

impl<T, E> TaskGroup<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// An empty group: no limit, panics captured as [`Error::Panicked`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    /// let group: TaskGroup<(), std::io::Error> = TaskGroup::new();
    /// assert!(group.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_options(GatherOptions::default())
    }

    /// An empty group with a concurrency limit and a panic policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{GatherOptions, TaskGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aqueduct_gather::ConfigError> {
    /// let mut group: TaskGroup<u8, ()> = TaskGroup::with_options(GatherOptions::builder().limit(2).build()?);
    /// for n in 0..5 {
    ///     group.spawn(async move { Ok::<_, ()>(n) });
    /// }
    /// assert_eq!(group.join().await.ok(), Some(vec![0, 1, 2, 3, 4]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(options: GatherOptions) -> Self {
        Self {
            children: Vec::new(),
            state: Arc::new(GroupState {
                token: CancellationToken::new(),
                failure_sequence: AtomicUsize::new(0),
                cancelled_by_user: AtomicBool::new(false),
            }),
            panics: options.panics(),
            permits: options
                .limit()
                .map(|limit| Arc::new(Semaphore::new(limit.get().min(Semaphore::MAX_PERMITS)))),
        }
    }

    /// Spawns `future` as a child task and returns its index (its position in [`join`](Self::join)'s output).
    ///
    /// The child starts at once (after a permit, with a limit). If it fails or panics, every sibling is
    /// cancelled. A child spawned after the group was cancelled is cancelled before its first poll. The
    /// ambient deadline in force now is carried into the task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group: TaskGroup<&str, ()> = TaskGroup::new();
    /// assert_eq!(group.spawn(async { Ok::<_, ()>("first") }), 0);
    /// assert_eq!(group.spawn(async { Ok::<_, ()>("second") }), 1);
    /// assert_eq!(group.join().await.ok(), Some(vec!["first", "second"]));
    /// # }
    /// ```
    pub fn spawn<F, X>(&mut self, future: F) -> usize
    where
        F: Future<Output = Result<T, X>> + Send + 'static,
        X: Into<Error<E>> + 'static,
    {
        let state = Arc::clone(&self.state);
        let permits = self.permits.clone();
        let child = async move {
            let token = state.token.clone();
            let run = async move {
                let _permit = match permits {
                    Some(permits) => Some(permits.acquire_owned().await),
                    None => None,
                };
                CatchUnwind { future }.await
            };
            let outcome = tokio::select! {
                biased;
                () = token.cancelled() => return Report::Cancelled,
                outcome = run => outcome,
            };
            let report = match outcome {
                Ok(Ok(value)) => return Report::Value(value),
                Ok(Err(error)) => Report::Failed {
                    sequence: state.failure_sequence.fetch_add(1, Ordering::SeqCst),
                    error: error.into(),
                },
                Err(payload) => Report::Panicked {
                    sequence: state.failure_sequence.fetch_add(1, Ordering::SeqCst),
                    payload,
                },
            };
            // Fail fast, in time: the siblings stop at their next poll, whoever awaits the group.
            state.token.cancel();
            report
        };
        self.children.push(spawn_with_deadline(child));
        self.children.len() - 1
    }

    /// Cancels every child: each one's future is dropped at its next poll and reported as cancelled.
    ///
    /// This is an early exit without an error of the children's own; [`join`](Self::join) then returns
    /// [`Error::Cancelled`] unless every child had already finished, or a child had failed first.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{Error, TaskGroup};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group: TaskGroup<(), ()> = TaskGroup::new();
    /// group.spawn(std::future::pending::<Result<(), ()>>());
    /// group.cancel();
    /// assert!(matches!(group.join().await, Err(Error::Cancelled)));
    /// # }
    /// ```
    pub fn cancel(&self) {
        self.state.cancelled_by_user.store(true, Ordering::SeqCst);
        self.state.token.cancel();
    }

    /// Returns `true` once the group is cancelled, by [`cancel`](Self::cancel) or by a failing child.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    /// let group: TaskGroup<(), ()> = TaskGroup::new();
    /// group.cancel();
    /// assert!(group.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.state.token.is_cancelled()
    }

    /// How many children were spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    /// assert_eq!(TaskGroup::<(), ()>::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Returns `true` when no child was spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    /// assert!(TaskGroup::<(), ()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Waits until every child has stopped and returns their values in spawn order.
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future aborts every child still running.
    ///
    /// # Errors
    ///
    /// - [`Error::Aggregate`] when a child failed or panicked: the first failure in time first (with its spawn
    ///   index), then any other failures in the order they happened, then the cancelled siblings
    ///   ([`Error::Cancelled`]) in spawn order.
    /// - [`Error::Cancelled`] when [`cancel`](Self::cancel) stopped a child and none failed.
    ///
    /// # Panics
    ///
    /// With [`PanicPolicy::Resume`], the first child panic is resumed here once every child has stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group: TaskGroup<u8, ()> = TaskGroup::new();
    /// group.spawn(async { Ok::<_, ()>(7) });
    /// assert_eq!(group.join().await.ok(), Some(vec![7]));
    /// # }
    /// ```
    pub fn join(mut self) -> Join<T, E> {
        let children: Vec<_> = std::mem::take(&mut self.children).into_iter().map(Some).collect();
        Join {
            values: Vec::with_capacity(children.len()),
            children,
            next: 0,
            failures: Vec::new(),
            cancelled: Vec::new(),
            first_panic: None,
            state: Arc::clone(&self.state),
            panics: self.panics,
        }
    }

    /// Cancels every child and waits until all have stopped (their futures dropped), discarding results.
    ///
    /// Use it where dropping the group would do, but you need to know the children are gone.
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future aborts every child still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::TaskGroup;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group: TaskGroup<(), ()> = TaskGroup::new();
    /// group.spawn(std::future::pending::<Result<(), ()>>());
    /// group.shutdown().await; // returns once the pending child was dropped
    /// # }
    /// ```
    pub fn shutdown(mut self) -> Shutdown<T, E> {
        self.cancel();
        let children = std::mem::take(&mut self.children)
            .into_iter()
            .map(|handle| {
                handle.abort();
                Some(handle)
            })
            .collect();
        Shutdown { children, next: 0 }
    }
}

impl<T, E> Default for TaskGroup<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Drop for TaskGroup<T, E> {
    fn drop(&mut self) {
        for child in &self.children {
            child.abort();
        }
    }
}

impl<T, E> fmt::Debug for TaskGroup<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TaskGroup")
            .field("children", &self.children.len())
            .field("cancelled", &self.state.token.is_cancelled())
            .field("panics", &self.panics)
            .finish_non_exhaustive()
    }
}

// ===== impl Join =====

// No field of `Join` is ever pinned: it only stores values and polls `JoinHandle`s, which are `Unpin`.
impl<T, E> Unpin for Join<T, E> {}

impl<T, E> Future for Join<T, E> {
    type Output = Result<Vec<T>, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        while let Some(slot) = this.children.get_mut(this.next) {
            let index = this.next;
            if let Some(handle) = slot.as_mut() {
                let joined = std::task::ready!(Pin::new(handle).poll(cx));
                *slot = None;
                match joined {
                    Ok(Report::Value(value)) => this.values.push(value),
                    Ok(Report::Failed { sequence, error }) => {
                        this.failures.push((sequence, index, error))
                    }
                    Ok(Report::Panicked { sequence, payload }) => match this.panics {
                        PanicPolicy::Capture => {
                            this.failures.push((
                                sequence,
                                index,
                                Error::from_panic(Some(index), payload),
                            ));
                        }
                        PanicPolicy::Resume => {
                            if this.first_panic.as_ref().is_none_or(|(first, _)| sequence < *first)
                            {
                                this.first_panic = Some((sequence, payload));
                            }
                        }
                    },
                    // Panics are caught inside the task, so a join error means the task was aborted.
                    Ok(Report::Cancelled) | Err(_) => this.cancelled.push(index),
                }
            }
            this.next += 1;
        }
        if let Some((_, payload)) = this.first_panic.take() {
            resume_unwind(payload);
        }
        if !this.failures.is_empty() {
            this.failures.sort_by_key(|(sequence, _, _)| *sequence);
            let mut errors: Vec<(usize, Error<E>)> =
                this.failures.drain(..).map(|(_, index, error)| (index, error)).collect();
            errors.extend(this.cancelled.drain(..).map(|index| (index, Error::Cancelled)));
            return Poll::Ready(Err(Error::Aggregate(Aggregate::new(errors))));
        }
        if !this.cancelled.is_empty() && this.state.cancelled_by_user.load(Ordering::SeqCst) {
            return Poll::Ready(Err(Error::Cancelled));
        }
        if !this.cancelled.is_empty() {
            // Aborted from outside the group (the runtime is shutting down).
            let errors = this.cancelled.drain(..).map(|index| (index, Error::Cancelled)).collect();
            return Poll::Ready(Err(Error::Aggregate(Aggregate::new(errors))));
        }
        Poll::Ready(Ok(std::mem::take(&mut this.values)))
    }
}

impl<T, E> Drop for Join<T, E> {
    fn drop(&mut self) {
        for handle in self.children.iter().flatten() {
            handle.abort();
        }
    }
}

impl<T, E> fmt::Debug for Join<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Join")
            .field("children", &self.children.len())
            .field("joined", &self.next)
            .finish_non_exhaustive()
    }
}

// ===== impl Shutdown =====

impl<T, E> Future for Shutdown<T, E> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        while let Some(slot) = this.children.get_mut(this.next) {
            if let Some(handle) = slot.as_mut() {
                let _ = std::task::ready!(Pin::new(handle).poll(cx));
                *slot = None;
            }
            this.next += 1;
        }
        Poll::Ready(())
    }
}

impl<T, E> Drop for Shutdown<T, E> {
    fn drop(&mut self) {
        for handle in self.children.iter().flatten() {
            handle.abort();
        }
    }
}

impl<T, E> fmt::Debug for Shutdown<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Shutdown")
            .field("children", &self.children.len())
            .field("stopped", &self.next)
            .finish()
    }
}

// ===== CatchUnwind =====

pin_project! {
    /// Polls a future, turning a panic into `Err(payload)`.
    struct CatchUnwind<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send + 'static>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
