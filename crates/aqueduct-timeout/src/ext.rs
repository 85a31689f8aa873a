//! `TimeoutExt`: the method forms `fut.timeout(d)`, `fut.timeout_at(at)`, `fut.try_timeout(d)`, `fut.try_timeout_at(at)`.

use std::future::IntoFuture;
use std::time::Duration;

use aqueduct_core::Error;
use tokio::time::Instant;

use crate::timeout::{Timeout, timeout, timeout_at};
use crate::try_timeout::{TryTimeout, try_timeout, try_timeout_at};

/// Timeouts as methods on every future (anything `IntoFuture`).
///
/// Each method is the free function of the same name; see [`timeout`] for the rules (clock from the
/// first poll, inner future polled first, ambient deadline clamps, 1 ms granularity). Chain
/// [`Timeout::or`], [`Timeout::or_else`] or [`Timeout::or_default`] for a default instead of an error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::{Error, TimeoutExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// assert_eq!(async { 1 }.timeout(Duration::from_secs(1)).await, Ok(1));
/// assert_eq!(std::future::pending::<u8>().timeout(Duration::from_millis(10)).or(2).await, 2);
///
/// let fetched: Result<u8, Error<std::io::Error>> =
///     async { Ok::<u8, std::io::Error>(3) }.try_timeout(Duration::from_secs(1)).await;
/// assert_eq!(fetched.unwrap(), 3);
/// # }
/// ```
pub trait TimeoutExt: IntoFuture + Sized {
    /// Runs `self` for at most `duration`; see [`timeout`](crate::timeout).
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future drops `self`; on timeout `self` is dropped before `Err` is returned.
    ///
    /// # Errors
    ///
    /// [`Elapsed`](crate::Elapsed) when the own or the ambient deadline passed first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::TimeoutExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let result = tokio::time::sleep(Duration::from_secs(2)).timeout(Duration::from_secs(1)).await;
    /// assert!(result.is_err());
    /// # }
    /// ```
    fn timeout(self, duration: Duration) -> Timeout<Self::IntoFuture> {
        timeout(duration, self)
    }

    /// Runs `self` until `deadline` at the latest; see [`timeout_at`](crate::timeout_at).
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future drops `self`; on timeout `self` is dropped before `Err` is returned.
    ///
    /// # Errors
    ///
    /// [`Elapsed`](crate::Elapsed) when the deadline or the ambient deadline passed first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::TimeoutExt;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// assert_eq!(async { "fast" }.timeout_at(deadline).await, Ok("fast"));
    /// # }
    /// ```
    fn timeout_at(self, deadline: Instant) -> Timeout<Self::IntoFuture> {
        timeout_at(deadline, self)
    }

    /// Runs a fallible `self` for at most `duration`, flattening into `Result<T, Error<E>>`; see [`try_timeout`](crate::try_timeout).
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future drops `self`; on timeout `self` is dropped before the error is returned.
    ///
    /// # Errors
    ///
    /// [`Error::Elapsed`] on timeout; `self`'s error converted with `Into<Error<E>>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{Error, TimeoutExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let failing = async { Err::<(), &str>("no route") };
    /// let result: Result<(), Error<&str>> = failing.try_timeout(Duration::from_secs(1)).await;
    /// assert_eq!(result.unwrap_err().into_operation(), Some("no route"));
    /// # }
    /// ```
    fn try_timeout<T, X, E>(self, duration: Duration) -> TryTimeout<Self::IntoFuture, E>
    where
        Self: IntoFuture<Output = Result<T, X>>,
        X: Into<Error<E>>,
    {
        try_timeout(duration, self)
    }

    /// Runs a fallible `self` until `deadline`, flattening into `Result<T, Error<E>>`; see [`try_timeout_at`](crate::try_timeout_at).
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future drops `self`; on timeout `self` is dropped before the error is returned.
    ///
    /// # Errors
    ///
    /// [`Error::Elapsed`] on timeout; `self`'s error converted with `Into<Error<E>>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{Error, TimeoutExt};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// let result: Result<(), Error<&str>> = std::future::pending::<Result<(), &str>>().try_timeout_at(deadline).await;
    /// assert!(result.unwrap_err().is_elapsed());
    /// # }
    /// ```
    fn try_timeout_at<T, X, E>(self, deadline: Instant) -> TryTimeout<Self::IntoFuture, E>
    where
        Self: IntoFuture<Output = Result<T, X>>,
        X: Into<Error<E>>,
    {
        try_timeout_at(deadline, self)
    }
}

impl<F: IntoFuture> TimeoutExt for F {}
