//! The flattening form: a timeout around a future of `Result<T, X>` that yields `Result<T, Error<E>>`, never a nested result.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::Error;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::timeout::{Timeout, timeout, timeout_at};

/// Runs a fallible `future` for at most `duration` and flattens the result into `Result<T, Error<E>>`.
///
/// The future's error `X` may be the operation's own error `E` or an `Error<E>` from another aqueduct
/// combinator (anything `X: Into<Error<E>>`), so stacking never nests: `retry(|| try_timeout(d, op()))`
/// and `try_timeout(d, pool.acquire())` both yield `Error<E>`. The outermost type annotation picks `E`.
///
/// A timeout becomes [`Error::Elapsed`] with `last_error: None`; check it with [`Error::is_elapsed`].
/// The rules of [`timeout`] apply: the clock starts at the first poll, the inner future is polled first,
/// the ambient deadline clamps, a future that never yields cannot time out, 1 ms granularity.
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future and deregisters the timer. On timeout the inner
/// future is dropped before the error is returned.
///
/// # Errors
///
/// - [`Error::Elapsed`] when the own or the ambient deadline passed first.
/// - The inner future's error, converted with `Into<Error<E>>` (a plain `E` becomes [`Error::Operation`]).
///
/// # Panics
///
/// As [`timeout`]: a panic in the inner future propagates; a waiting future outside a tokio runtime
/// with the time driver panics when the timer is created.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::{try_timeout, Error};
///
/// async fn fetch(fail: bool) -> Result<u32, std::io::Error> {
///     if fail { Err(std::io::Error::other("refused")) } else { Ok(200) }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let ok: Result<u32, Error<std::io::Error>> = try_timeout(Duration::from_secs(1), fetch(false)).await;
/// assert_eq!(ok.unwrap(), 200);
///
/// // Two layers, one error type: no `Error<Error<_>>`.
/// let layered: Result<u32, Error<std::io::Error>> =
///     try_timeout(Duration::from_secs(2), try_timeout(Duration::from_secs(1), fetch(true))).await;
/// assert!(layered.unwrap_err().operation().is_some());
///
/// let slow = async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<u32, std::io::Error>(1)
/// };
/// let late: Result<u32, Error<std::io::Error>> = try_timeout(Duration::from_secs(1), slow).await;
/// assert!(late.unwrap_err().is_elapsed());
/// # }
/// ```
pub fn try_timeout<F, T, X, E>(duration: Duration, future: F) -> TryTimeout<F::IntoFuture, E>
where
    F: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    TryTimeout { timeout: timeout(duration, future), error: PhantomData }
}

/// Runs a fallible `future` until `deadline` at the latest and flattens the result into `Result<T, Error<E>>`.
///
/// As [`try_timeout`], with an absolute deadline (no clock read unless the future waits).
///
/// # Cancellation
///
/// Dropping the returned future drops the inner future and deregisters the timer. On timeout the inner
/// future is dropped before the error is returned.
///
/// # Errors
///
/// - [`Error::Elapsed`] when the deadline or the ambient deadline passed first.
/// - The inner future's error, converted with `Into<Error<E>>`.
///
/// # Panics
///
/// As [`timeout_at`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::{try_timeout_at, Error};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Instant::now() + Duration::from_millis(10);
/// let pending = std::future::pending::<Result<(), std::num::ParseIntError>>();
/// let result: Result<(), Error<std::num::ParseIntError>> = try_timeout_at(deadline, pending).await;
/// assert!(result.unwrap_err().is_elapsed());
/// # }
/// ```
pub fn try_timeout_at<F, T, X, E>(deadline: Instant, future: F) -> TryTimeout<F::IntoFuture, E>
where
    F: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    TryTimeout { timeout: timeout_at(deadline, future), error: PhantomData }
}

pin_project! {
    /// The future returned by [`try_timeout`] and [`try_timeout_at`]: `Result<T, Error<E>>`.
    ///
    /// `E` is the operation error the result speaks of; it is a type parameter of the future so that
    /// the outermost annotation can choose it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{try_timeout, TryTimeout};
    ///
    /// type Fetch = std::future::Ready<Result<u8, std::io::Error>>;
    /// let stored: TryTimeout<Fetch, std::io::Error> = try_timeout(Duration::from_secs(1), std::future::ready(Ok(1)));
    /// # drop(stored);
    /// ```
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct TryTimeout<F, E> {
        #[pin]
        timeout: Timeout<F>,
        // `fn() -> E` keeps `Send`, `Sync` and `Unpin` independent of `E`: no `E` is stored.
        error: PhantomData<fn() -> E>,
    }
}

impl<F, E> TryTimeout<F, E> {
    /// The inner future, or `None` once the deadline passed and it was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{try_timeout, TryTimeout};
    ///
    /// let guarded: TryTimeout<_, ()> = try_timeout(Duration::from_secs(1), std::future::ready(Ok::<u8, ()>(1)));
    /// assert_eq!(guarded.get_ref().cloned().map(|ready| ready.into_inner()), Some(Ok(1)));
    /// ```
    pub fn get_ref(&self) -> Option<&F> {
        self.timeout.get_ref()
    }

    /// The inner future without the timeout, or `None` once the deadline passed and it was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{try_timeout, TryTimeout};
    ///
    /// let guarded: TryTimeout<_, ()> = try_timeout(Duration::from_secs(1), std::future::ready(Ok::<u8, ()>(1)));
    /// assert_eq!(guarded.into_inner().map(|ready| ready.into_inner()), Some(Ok(1)));
    /// ```
    pub fn into_inner(self) -> Option<F> {
        self.timeout.into_inner()
    }

    /// The deadline, as [`Timeout::deadline`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{try_timeout_at, TryTimeout};
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now();
    /// let guarded: TryTimeout<_, ()> = try_timeout_at(at, std::future::ready(Ok::<u8, ()>(1)));
    /// assert_eq!(guarded.deadline(), Some(at));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.deadline()
    }
}

impl<F, T, X, E> Future for TryTimeout<F, E>
where
    F: Future<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().timeout.poll(context) {
            Poll::Ready(Ok(Ok(value))) => Poll::Ready(Ok(value)),
            Poll::Ready(Ok(Err(error))) => Poll::Ready(Err(error.into())),
            Poll::Ready(Err(elapsed)) => Poll::Ready(Err(Error::elapsed(elapsed))),
            Poll::Pending => Poll::Pending,
        }
    }
}
