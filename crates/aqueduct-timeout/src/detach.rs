//! The soft timeout: answer with a default at the deadline, and hand back the `JoinHandle` of the work that goes on.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::Elapsed;
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use crate::timer::{Limit, Timer};

/// Runs `future` for at most `duration`; on timeout, answers with `default` **and lets the work finish** on
/// a task of its own, handing back its [`JoinHandle`] (a "soft" timeout).
///
/// The work is never detached silently: the outcome says whether it finished in time
/// ([`DetachOutcome::Completed`]) or goes on ([`DetachOutcome::Detached`], with the handle that yields
/// its late value; drop the handle to let it finish unobserved, or call `abort()` on it).
///
/// Until the deadline the work runs inside the caller's task, polled first on every poll, so a future
/// that is ready at once completes without a spawn; it is boxed once, on the first poll, so that it can
/// be moved to `tokio::spawn` at the deadline. The rules of [`timeout`](crate::timeout) apply: the clock
/// starts at the first poll, the ambient deadline clamps, 1 ms granularity. Once detached, the work runs
/// outside the caller's [`with_deadline`](crate::with_deadline) scope: what starts in it afterwards sees
/// no ambient deadline, while a timeout already running in it keeps the deadline it clamped to.
///
/// # Cancellation
///
/// Dropping the returned future before the deadline drops the work, like a hard timeout. After the
/// deadline the work belongs to its task and its handle.
///
/// # Panics
///
/// A panic in the work before the deadline propagates to the caller, as it would without a timeout;
/// after the deadline it is reported by the handle as a `JoinError`. Reaching the deadline outside a
/// tokio runtime panics (there is nowhere to spawn).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::{timeout_or_detach, DetachOutcome};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow_refresh = async {
///     tokio::time::sleep(Duration::from_secs(3)).await;
///     "fresh"
/// };
/// match timeout_or_detach(Duration::from_secs(1), slow_refresh, "stale").await {
///     DetachOutcome::Completed(value) => unreachable!("finished early with {value}"),
///     DetachOutcome::Detached { default, handle, .. } => {
///         assert_eq!(default, "stale");
///         // The refresh went on; its value arrives later.
///         assert_eq!(handle.await.unwrap(), "fresh");
///     }
/// }
/// # }
/// ```
pub fn timeout_or_detach<F>(
    duration: Duration,
    future: F,
    default: F::Output,
) -> TimeoutOrDetach<F::IntoFuture>
where
    F: IntoFuture,
    F::IntoFuture: Send + 'static,
    F::Output: Send + 'static,
{
    TimeoutOrDetach {
        work: Work::Unstarted(future.into_future()),
        default: Some(default),
        timer: Timer::new(Limit::After(duration)),
    }
}

/// What [`timeout_or_detach`] ends with: the value in time, or the default and the work still running.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::{timeout_or_detach, DetachOutcome};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let outcome = timeout_or_detach(Duration::from_secs(1), async { 5 }, 0).await;
/// assert!(!outcome.is_detached());
/// assert_eq!(outcome.into_value(), 5);
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a detached outcome may hold the handle of work that is still running"]
pub enum DetachOutcome<T> {
    /// The work finished before the deadline; it was never spawned.
    Completed(T),
    /// The deadline passed: here is the default, and the work goes on.
    Detached {
        /// The default the caller gave.
        default: T,
        /// When and how the deadline passed.
        elapsed: Elapsed,
        /// The task now running the work; awaiting it yields the late value.
        handle: JoinHandle<T>,
    },
}

impl<T> DetachOutcome<T> {
    /// `true` when the deadline passed and the work goes on in the background.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_timeout::DetachOutcome;
    /// assert!(!DetachOutcome::Completed(1).is_detached());
    /// ```
    pub fn is_detached(&self) -> bool {
        matches!(self, Self::Detached { .. })
    }

    /// The value to use now: the work's value, or the default. A detached work goes on unobserved.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_timeout::DetachOutcome;
    /// assert_eq!(DetachOutcome::Completed(1).into_value(), 1);
    /// ```
    pub fn into_value(self) -> T {
        match self {
            Self::Completed(value) | Self::Detached { default: value, .. } => value,
        }
    }

    /// The value to use now and, when the work goes on, its handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_timeout::DetachOutcome;
    /// let (value, handle) = DetachOutcome::Completed(1).into_parts();
    /// assert_eq!(value, 1);
    /// assert!(handle.is_none());
    /// ```
    pub fn into_parts(self) -> (T, Option<JoinHandle<T>>) {
        match self {
            Self::Completed(value) => (value, None),
            Self::Detached { default, handle, .. } => (default, Some(handle)),
        }
    }
}

pin_project! {
    /// The future returned by [`timeout_or_detach`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{timeout_or_detach, TimeoutOrDetach};
    ///
    /// let stored: TimeoutOrDetach<std::future::Ready<u8>> = timeout_or_detach(Duration::from_secs(1), std::future::ready(1), 0);
    /// # drop(stored);
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TimeoutOrDetach<F>
    where
        F: Future,
    {
        work: Work<F>,
        default: Option<F::Output>,
        #[pin]
        timer: Timer,
    }
}

/// The work: not polled yet, boxed and polled in place, or handed over to its own task.
#[derive(Debug)]
enum Work<F> {
    Unstarted(F),
    Inline(Pin<Box<F>>),
    Finished,
}

impl<F> Future for TimeoutOrDetach<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = DetachOutcome<F::Output>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        this.timer.as_mut().start();
        if let Work::Unstarted(_) = this.work {
            if let Work::Unstarted(future) = std::mem::replace(this.work, Work::Finished) {
                *this.work = Work::Inline(Box::pin(future));
            }
        }
        let Work::Inline(future) = this.work else {
            panic!("`TimeoutOrDetach` polled after it returned `Poll::Ready`");
        };
        if let Poll::Ready(value) = future.as_mut().poll(context) {
            *this.work = Work::Finished;
            return Poll::Ready(DetachOutcome::Completed(value));
        }
        let Poll::Ready(elapsed) = this.timer.poll_elapsed(context) else {
            return Poll::Pending;
        };
        let Work::Inline(future) = std::mem::replace(this.work, Work::Finished) else {
            unreachable!("the work is inline until the future completes");
        };
        let handle = tokio::spawn(future);
        let default = this.default.take().expect("the default is taken only once, at the deadline");
        Poll::Ready(DetachOutcome::Detached { default, elapsed, handle })
    }
}
