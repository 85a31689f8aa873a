//! `timeout` and `timeout_at` around any future, and the forms that answer with a default instead of an error.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use aqueduct_core::Elapsed;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::timer::{Limit, Timer};

/// Runs `future` for at most `duration`, counted from its first poll, and at most until the ambient deadline.
///
/// The output is `Ok` with the future's output, or `Err(`[`Elapsed`]`)` carrying the configured duration,
/// the deadline, the time actually waited and whether the ambient deadline (see
/// [`with_deadline`](crate::with_deadline)) was the one that passed.
///
/// The rules, which the tests check:
/// - **The clock starts at the first poll** (when you `.await`), not at this call, as Python's
///   `asyncio.wait_for`; the ambient deadline is read at the same moment. Use [`timeout_at`] for a
///   deadline fixed in advance.
/// - **The inner future is polled first**: a future that is ready at once wins, even with a zero duration.
/// - **Timers have a 1 ms granularity**: tokio rounds deadlines up to the next millisecond, so a
///   timeout fires 0 to about 1 ms late and a sub-millisecond timeout lasts about 1 ms.
/// - **A future that never yields cannot time out**: the deadline is checked only when the inner future
///   returns `Pending`. Move CPU-bound work to `spawn_blocking` or a CPU pool.
/// - A duration too long to represent as an instant means "no deadline of its own".
///
/// No timer is registered unless the inner future returns `Pending`; a ready future costs one clock read.
/// For a future whose error should merge into [`Error<E>`](crate::Error), use [`try_timeout`](crate::try_timeout).
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future and deregisters the timer. When the deadline
/// passes, the inner future is dropped at its current `.await` before `Err` is returned; side effects it
/// already made stay made. To let the work go on instead, use [`timeout_or_detach`](crate::timeout_or_detach).
///
/// # Errors
///
/// [`Elapsed`] when the own or the ambient deadline passed before the inner future finished.
///
/// # Panics
///
/// A panic in the inner future propagates. Polling a future that waits outside a tokio runtime with the
/// time driver enabled panics when the timer is created, as with `tokio::time::sleep` (a ready future
/// needs no runtime). Polling the returned future again after it timed out panics, as for any future
/// polled after completion.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::timeout;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = tokio::time::sleep(Duration::from_secs(10));
/// let elapsed = timeout(Duration::from_secs(1), slow).await.unwrap_err();
/// assert_eq!(elapsed.timeout(), Some(Duration::from_secs(1)));
/// assert_eq!(elapsed.waited(), Duration::from_secs(1));
///
/// // A ready future wins, whatever the duration.
/// assert_eq!(timeout(Duration::ZERO, async { 7 }).await, Ok(7));
/// # }
/// ```
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    Timeout { future: Some(future.into_future()), timer: Timer::new(Limit::After(duration)) }
}

/// Runs `future` until the instant `deadline` at the latest, and at most until the ambient deadline.
///
/// The same rules as [`timeout`] apply, except that the deadline is fixed by the caller, so this form
/// reads no clock unless the inner future waits (the clock read then measures the wait for [`Elapsed::waited`]).
/// It is the form to use in a loop that shares one deadline.
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future and deregisters the timer. When the deadline
/// passes, the inner future is dropped before `Err` is returned.
///
/// # Errors
///
/// [`Elapsed`] (with [`Elapsed::timeout`] `None`) when the deadline or the ambient deadline passed first.
///
/// # Panics
///
/// A panic in the inner future propagates. Polling a future that waits outside a tokio runtime with the
/// time driver enabled panics when the timer is created.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::timeout_at;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Instant::now() + Duration::from_millis(50);
/// let first = timeout_at(deadline, tokio::time::sleep(Duration::from_millis(30))).await;
/// assert!(first.is_ok());
/// // The second call shares what is left of the same deadline: 20 ms.
/// let second = timeout_at(deadline, tokio::time::sleep(Duration::from_millis(30))).await;
/// assert_eq!(second.unwrap_err().deadline(), deadline);
/// # }
/// ```
pub fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    Timeout { future: Some(future.into_future()), timer: Timer::new(Limit::At(deadline)) }
}

/// Runs `future` for at most `duration`; on timeout, answers with `default` (Python's `with_timeout(coro, timeout, default)`).
///
/// Shorthand for `timeout(duration, future).or(default)`; the rules of [`timeout`] apply (clock from the
/// first poll, inner future first, ambient deadline clamps). Use [`timeout_or_else`] when the default is
/// costly to build.
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future and `default`. On timeout the inner future is
/// dropped before the default is returned: the work stops. [`timeout_or_detach`](crate::timeout_or_detach)
/// lets it finish instead.
///
/// # Panics
///
/// As [`timeout`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::timeout_or;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let never = std::future::pending::<&str>();
/// assert_eq!(timeout_or(Duration::from_millis(100), never, "cached").await, "cached");
/// # }
/// ```
pub fn timeout_or<F: IntoFuture>(
    duration: Duration,
    future: F,
    default: F::Output,
) -> TimeoutOr<F::IntoFuture> {
    timeout(duration, future).or(default)
}

/// Runs `future` for at most `duration`; on timeout, answers with `fallback(elapsed)`.
///
/// Shorthand for `timeout(duration, future).or_else(fallback)`. `fallback` runs only on timeout, so a
/// costly default is built only when needed; it receives the [`Elapsed`] describing the timeout, as
/// `Result::unwrap_or_else` receives the error.
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future and `fallback` without calling it. On timeout the
/// inner future is dropped before `fallback` runs.
///
/// # Panics
///
/// As [`timeout`]; a panic in `fallback` propagates.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::timeout_or_else;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let never = std::future::pending::<String>();
/// let answer = timeout_or_else(Duration::from_millis(100), never, |elapsed| format!("gave up after {:?}", elapsed.waited())).await;
/// assert_eq!(answer, "gave up after 100ms");
/// # }
/// ```
pub fn timeout_or_else<F, G>(
    duration: Duration,
    future: F,
    fallback: G,
) -> TimeoutOrElse<F::IntoFuture, G>
where
    F: IntoFuture,
    G: FnOnce(Elapsed) -> F::Output,
{
    timeout(duration, future).or_else(fallback)
}

/// Runs `future` for at most `duration`; on timeout, answers with `Default::default()`.
///
/// Shorthand for `timeout(duration, future).or_default()`.
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future. On timeout the inner future is dropped before
/// the default is built.
///
/// # Panics
///
/// As [`timeout`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::timeout_or_default;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let never = std::future::pending::<Vec<u8>>();
/// assert!(timeout_or_default(Duration::from_millis(100), never).await.is_empty());
/// # }
/// ```
pub fn timeout_or_default<F>(duration: Duration, future: F) -> TimeoutOrDefault<F::IntoFuture>
where
    F: IntoFuture,
    F::Output: Default,
{
    timeout(duration, future).or_default()
}

pin_project! {
    /// The future returned by [`timeout`], [`timeout_at`] and [`TimeoutExt`](crate::TimeoutExt):
    /// `Result<F::Output, Elapsed>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{timeout, Timeout};
    ///
    /// // A named type, so it can be stored in a struct.
    /// struct Request {
    ///     response: Timeout<std::future::Ready<u16>>,
    /// }
    /// let request = Request { response: timeout(Duration::from_secs(1), std::future::ready(200)) };
    /// assert_eq!(request.response.into_inner().map(|ready| ready.into_inner()), Some(200));
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Timeout<F> {
        // `None` once the deadline passed: the future is dropped at that moment, before `Err` is returned.
        #[pin]
        future: Option<F>,
        #[pin]
        timer: Timer,
    }
}

impl<F> Timeout<F> {
    /// The inner future, or `None` once the deadline passed and it was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::timeout;
    ///
    /// let guarded = timeout(Duration::from_secs(1), std::future::ready(1));
    /// assert_eq!(guarded.get_ref().cloned().map(|ready| ready.into_inner()), Some(1));
    /// ```
    pub fn get_ref(&self) -> Option<&F> {
        self.future.as_ref()
    }

    /// The inner future, mutably, or `None` once the deadline passed and it was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::timeout;
    ///
    /// let mut guarded = timeout(Duration::from_secs(1), std::future::ready(1));
    /// if let Some(inner) = guarded.get_mut() {
    ///     *inner = std::future::ready(2);
    /// }
    /// assert_eq!(guarded.into_inner().map(|ready| ready.into_inner()), Some(2));
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut F> {
        self.future.as_mut()
    }

    /// The inner future without the timeout (possible before the first poll, or for an `Unpin` future),
    /// or `None` once the deadline passed and it was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::timeout;
    ///
    /// let inner = timeout(Duration::from_secs(1), std::future::ready(1)).into_inner();
    /// assert_eq!(inner.map(|ready| ready.into_inner()), Some(1));
    /// ```
    pub fn into_inner(self) -> Option<F> {
        self.future
    }

    /// The deadline: the one requested before the first poll (`None` for a duration, which starts
    /// counting at the first poll), the effective one after it (clamped to the ambient deadline; `None`
    /// when there is none at all).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{timeout, timeout_at};
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now() + Duration::from_secs(1);
    /// assert_eq!(timeout_at(at, std::future::ready(1)).deadline(), Some(at));
    /// assert_eq!(timeout(Duration::from_secs(1), std::future::ready(1)).deadline(), None);
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.timer.deadline()
    }

    /// Answers with `default` on timeout instead of an error; see [`timeout_or`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::TimeoutExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let value = std::future::pending::<u8>().timeout(Duration::from_millis(5)).or(9).await;
    /// assert_eq!(value, 9);
    /// # }
    /// ```
    pub fn or(self, default: F::Output) -> TimeoutOr<F>
    where
        F: Future,
    {
        TimeoutOr { timeout: self, default: Some(default) }
    }

    /// Answers with `fallback(elapsed)` on timeout instead of an error; see [`timeout_or_else`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::TimeoutExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let value = std::future::pending::<bool>().timeout(Duration::from_millis(5)).or_else(|elapsed| elapsed.is_ambient()).await;
    /// assert!(!value);
    /// # }
    /// ```
    pub fn or_else<G>(self, fallback: G) -> TimeoutOrElse<F, G>
    where
        F: Future,
        G: FnOnce(Elapsed) -> F::Output,
    {
        TimeoutOrElse { timeout: self, fallback: Some(fallback) }
    }

    /// Answers with `Default::default()` on timeout instead of an error; see [`timeout_or_default`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::TimeoutExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let value = std::future::pending::<u32>().timeout(Duration::from_millis(5)).or_default().await;
    /// assert_eq!(value, 0);
    /// # }
    /// ```
    pub fn or_default(self) -> TimeoutOrDefault<F>
    where
        F: Future,
        F::Output: Default,
    {
        TimeoutOrDefault { timeout: self }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        this.timer.as_mut().start();
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            panic!("`Timeout` polled after it returned `Poll::Ready`");
        };
        if let Poll::Ready(output) = future.poll(context) {
            return Poll::Ready(Ok(output));
        }
        let elapsed = ready!(this.timer.poll_elapsed(context));
        // Drop the work now, so that nothing it holds outlives the deadline, not even until the caller
        // drops this `Timeout` (a fallback runs after this point).
        this.future.set(None);
        Poll::Ready(Err(elapsed))
    }
}

pin_project! {
    /// The future returned by [`timeout_or`] and [`Timeout::or`]: the inner output, or the default on timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{timeout_or, TimeoutOr};
    ///
    /// let stored: TimeoutOr<std::future::Ready<u8>> = timeout_or(Duration::from_secs(1), std::future::ready(1), 0);
    /// # drop(stored);
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TimeoutOr<F>
    where
        F: Future,
    {
        #[pin]
        timeout: Timeout<F>,
        default: Option<F::Output>,
    }
}

impl<F: Future> Future for TimeoutOr<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.timeout.poll(context) {
            Poll::Ready(Ok(output)) => Poll::Ready(output),
            Poll::Ready(Err(_)) => Poll::Ready(
                this.default.take().expect("`TimeoutOr` polled after it returned `Poll::Ready`"),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// The future returned by [`timeout_or_else`] and [`Timeout::or_else`]: the inner output, or `fallback(elapsed)` on timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{timeout_or_else, Elapsed, TimeoutOrElse};
    ///
    /// let stored: TimeoutOrElse<std::future::Ready<u8>, fn(Elapsed) -> u8> =
    ///     timeout_or_else(Duration::from_secs(1), std::future::ready(1), |_| 0);
    /// # drop(stored);
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TimeoutOrElse<F, G> {
        #[pin]
        timeout: Timeout<F>,
        fallback: Option<G>,
    }
}

impl<F, G> Future for TimeoutOrElse<F, G>
where
    F: Future,
    G: FnOnce(Elapsed) -> F::Output,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.timeout.poll(context) {
            Poll::Ready(Ok(output)) => Poll::Ready(output),
            Poll::Ready(Err(elapsed)) => {
                let fallback = this
                    .fallback
                    .take()
                    .expect("`TimeoutOrElse` polled after it returned `Poll::Ready`");
                Poll::Ready(fallback(elapsed))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// The future returned by [`timeout_or_default`] and [`Timeout::or_default`]: the inner output, or `Default::default()` on timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{timeout_or_default, TimeoutOrDefault};
    ///
    /// let stored: TimeoutOrDefault<std::future::Ready<u8>> = timeout_or_default(Duration::from_secs(1), std::future::ready(1));
    /// # drop(stored);
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TimeoutOrDefault<F> {
        #[pin]
        timeout: Timeout<F>,
    }
}

impl<F> Future for TimeoutOrDefault<F>
where
    F: Future,
    F::Output: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().timeout.poll(context) {
            Poll::Ready(result) => Poll::Ready(result.unwrap_or_default()),
            Poll::Pending => Poll::Pending,
        }
    }
}
