//! The stream idle timeout: the stream fails when the consumer waits longer than `idle` for its next item.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::{Deadline, Elapsed, Error};
use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::timer::poll_sleep;

/// Ends `stream` with `Err(`[`Elapsed`]`)` when the consumer waits longer than `idle` for one item.
///
/// Items pass through as `Ok(item)`. The clock of each wait starts when the consumer asks for an item
/// and none is ready (the inner stream returns `Pending`), and stops when an item arrives; time the
/// consumer spends between items does not count, so a slow consumer never makes a healthy producer
/// time out. Every wait is also clamped to the ambient deadline (see [`with_deadline`](crate::with_deadline)).
///
/// After the `Err`, the inner stream is dropped at once (releasing its connection, say) and the stream
/// ends: the next poll yields `None`. A stream that ends on its own ends as usual.
///
/// One `Sleep` serves every wait: it is created on the first wait and moved with `reset` afterwards.
/// The inner stream is polled first; the rules of [`timeout`](crate::timeout) apply (1 ms granularity,
/// a stream that never yields cannot time out). A zero `idle` fails the first wait at once.
///
/// # Cancellation
///
/// Dropping the returned stream drops the inner stream and the timer. Between items nothing is pending.
///
/// # Errors
///
/// One `Err(Elapsed)` item, with [`Elapsed::timeout`] `Some(idle)`, when a wait passed `idle` or the ambient deadline.
///
/// # Panics
///
/// A panic in the inner stream propagates. Waiting outside a tokio runtime with the time driver panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::idle_timeout;
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Ticks every 10 ms, then goes silent.
/// let ticks = futures::stream::unfold(0, |n| async move {
///     let pause = if n < 3 { 10 } else { 1_000 };
///     tokio::time::sleep(Duration::from_millis(pause)).await;
///     Some((n, n + 1))
/// });
/// let items: Vec<_> = idle_timeout(Duration::from_millis(50), ticks).collect().await;
/// assert_eq!(items.len(), 4);
/// assert!(items[..3].iter().all(Result::is_ok));
/// assert_eq!(items[3].unwrap_err().waited(), Duration::from_millis(50));
/// # }
/// ```
pub fn idle_timeout<S: Stream>(idle: Duration, stream: S) -> IdleTimeout<S> {
    IdleTimeout { stream: Some(stream), idle, sleep: None, wait: None }
}

/// Ends a fallible `stream` with [`Error::Elapsed`] when the consumer waits longer than `idle` for one
/// item, flattening every item into `Result<T, Error<E>>`.
///
/// The flattening form of [`idle_timeout`], for streams of `Result<T, X>` with `X: Into<Error<E>>`: the
/// stream's own errors pass as they convert (a plain `E` becomes [`Error::Operation`], an `Error<E>` stays
/// as it is) and the stream goes on after them; a timeout yields one `Err(Error::Elapsed { .. })` and ends
/// the stream. The rules of [`idle_timeout`] apply.
///
/// # Cancellation
///
/// Dropping the returned stream drops the inner stream and the timer.
///
/// # Errors
///
/// The stream's own errors, converted; one [`Error::Elapsed`] when a wait passed `idle` or the ambient deadline.
///
/// # Panics
///
/// As [`idle_timeout`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::{try_idle_timeout, Error};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let lines = futures::stream::iter([Ok("a"), Err(std::io::Error::other("bad line"))])
///     .chain(futures::stream::pending());
/// let items: Vec<Result<&str, Error<std::io::Error>>> =
///     try_idle_timeout(Duration::from_secs(5), lines).collect().await;
/// assert_eq!(items.len(), 3);
/// assert!(items[1].as_ref().unwrap_err().operation().is_some());
/// assert!(items[2].as_ref().unwrap_err().is_elapsed());
/// # }
/// ```
pub fn try_idle_timeout<S, T, X, E>(idle: Duration, stream: S) -> TryIdleTimeout<S, E>
where
    S: Stream<Item = Result<T, X>>,
    X: Into<Error<E>>,
{
    TryIdleTimeout { inner: idle_timeout(idle, stream), error: PhantomData }
}

/// The idle timeout as a method on every stream.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_timeout::IdleTimeoutExt;
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let items: Vec<_> = futures::stream::iter([1, 2]).idle_timeout(Duration::from_secs(1)).collect().await;
/// assert_eq!(items, vec![Ok(1), Ok(2)]);
/// # }
/// ```
pub trait IdleTimeoutExt: Stream + Sized {
    /// Ends the stream with an error when the consumer waits longer than `idle` for one item; see [`idle_timeout`].
    ///
    /// # Cancellation
    ///
    /// Dropping the returned stream drops `self` and the timer.
    ///
    /// # Errors
    ///
    /// One `Err(Elapsed)` item when a wait passed `idle` or the ambient deadline; the stream then ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::IdleTimeoutExt;
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut silent = std::pin::pin!(futures::stream::pending::<u8>().idle_timeout(Duration::from_millis(5)));
    /// assert!(silent.next().await.unwrap().is_err());
    /// assert!(silent.next().await.is_none());
    /// # }
    /// ```
    fn idle_timeout(self, idle: Duration) -> IdleTimeout<Self> {
        idle_timeout(idle, self)
    }
}

impl<S: Stream> IdleTimeoutExt for S {}

pin_project! {
    /// The stream returned by [`try_idle_timeout`]: items as `Result<T, Error<E>>`, ended by at most one [`Error::Elapsed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{try_idle_timeout, TryIdleTimeout};
    ///
    /// type Lines = futures::stream::Iter<std::vec::IntoIter<Result<u8, std::io::Error>>>;
    /// let stored: TryIdleTimeout<Lines, std::io::Error> = try_idle_timeout(Duration::from_secs(1), futures::stream::iter(vec![Ok(1)]));
    /// assert_eq!(stored.idle(), Duration::from_secs(1));
    /// ```
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TryIdleTimeout<S, E> {
        #[pin]
        inner: IdleTimeout<S>,
        // `fn() -> E` keeps the auto traits independent of `E`: no `E` is stored.
        error: PhantomData<fn() -> E>,
    }
}

impl<S, E> TryIdleTimeout<S, E> {
    /// The longest wait allowed for one item.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{try_idle_timeout, TryIdleTimeout};
    ///
    /// let stream: TryIdleTimeout<_, ()> = try_idle_timeout(Duration::from_secs(2), futures::stream::empty::<Result<u8, ()>>());
    /// assert_eq!(stream.idle(), Duration::from_secs(2));
    /// ```
    pub fn idle(&self) -> Duration {
        self.inner.idle()
    }
}

impl<S, T, X, E> Stream for TryIdleTimeout<S, E>
where
    S: Stream<Item = Result<T, X>>,
    X: Into<Error<E>>,
{
    type Item = Result<T, Error<E>>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project().inner.poll_next(context) {
            Poll::Ready(Some(Ok(Ok(item)))) => Poll::Ready(Some(Ok(item))),
            Poll::Ready(Some(Ok(Err(error)))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(Some(Err(elapsed))) => Poll::Ready(Some(Err(Error::elapsed(elapsed)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<S, T, X, E> FusedStream for TryIdleTimeout<S, E>
where
    S: Stream<Item = Result<T, X>>,
    X: Into<Error<E>>,
{
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

pin_project! {
    /// The stream returned by [`idle_timeout`]: items as `Ok`, then at most one `Err(Elapsed)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::{idle_timeout, IdleTimeout};
    ///
    /// let stored: IdleTimeout<futures::stream::Iter<std::vec::IntoIter<u8>>> =
    ///     idle_timeout(Duration::from_secs(1), futures::stream::iter(vec![1, 2]));
    /// assert_eq!(stored.idle(), Duration::from_secs(1));
    /// ```
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct IdleTimeout<S> {
        // `None` once the stream ended or timed out.
        #[pin]
        stream: Option<S>,
        idle: Duration,
        // Created on the first wait, then reset for each later one.
        #[pin]
        sleep: Option<Sleep>,
        // The wait in progress: when it started and whether its deadline is the ambient one.
        wait: Option<Wait>,
    }
}

#[derive(Debug, Clone, Copy)]
struct Wait {
    start: Instant,
    ambient: bool,
}

impl<S> IdleTimeout<S> {
    /// The longest wait allowed for one item.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::idle_timeout;
    ///
    /// assert_eq!(idle_timeout(Duration::from_secs(2), futures::stream::empty::<u8>()).idle(), Duration::from_secs(2));
    /// ```
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The inner stream, unless it already ended or timed out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_timeout::idle_timeout;
    ///
    /// let guarded = idle_timeout(Duration::from_secs(2), futures::stream::empty::<u8>());
    /// assert!(guarded.get_ref().is_some());
    /// ```
    pub fn get_ref(&self) -> Option<&S> {
        self.stream.as_ref()
    }
}

impl<S: Stream> Stream for IdleTimeout<S> {
    type Item = Result<S::Item, Elapsed>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let Some(stream) = this.stream.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        match stream.poll_next(context) {
            Poll::Ready(Some(item)) => {
                // The wait is over; the next one gets a fresh deadline. The old `Sleep` stays as it is
                // until then (a reset costs a timer-wheel operation).
                *this.wait = None;
                return Poll::Ready(Some(Ok(item)));
            }
            Poll::Ready(None) => {
                this.stream.set(None);
                this.sleep.set(None);
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let wait = match *this.wait {
            Some(wait) => wait,
            None => {
                let start = Instant::now();
                let Some(deadline) = Deadline::clamp(start.checked_add(*this.idle)) else {
                    // No deadline can be represented and none is ambient: this wait cannot time out.
                    return Poll::Pending;
                };
                if deadline.at() <= start {
                    // Already passed (a zero `idle`, an expired ambient deadline): fail now, as the
                    // future timeouts do, rather than a timer tick (about 1 ms) later.
                    this.stream.set(None);
                    this.sleep.set(None);
                    let elapsed = Elapsed::new(Some(*this.idle), deadline.at(), Duration::ZERO);
                    return Poll::Ready(Some(Err(elapsed.with_ambient(deadline.is_ambient()))));
                }
                match this.sleep.as_mut().as_pin_mut() {
                    Some(sleep) => sleep.reset(deadline.at()),
                    None => this.sleep.set(Some(sleep_until(deadline.at()))),
                }
                let wait = Wait { start, ambient: deadline.is_ambient() };
                *this.wait = Some(wait);
                wait
            }
        };
        let Some(sleep) = this.sleep.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let at = sleep.deadline();
        match poll_sleep(sleep, context) {
            Poll::Ready(()) => {
                let waited = Instant::now().saturating_duration_since(wait.start);
                this.stream.set(None);
                this.sleep.set(None);
                *this.wait = None;
                Poll::Ready(Some(Err(
                    Elapsed::new(Some(*this.idle), at, waited).with_ambient(wait.ambient)
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.stream {
            // At most one more item: the timeout error.
            Some(stream) => {
                let (lower, upper) = stream.size_hint();
                (lower, upper.and_then(|upper| upper.checked_add(1)))
            }
            None => (0, Some(0)),
        }
    }
}

impl<S: Stream> FusedStream for IdleTimeout<S> {
    fn is_terminated(&self) -> bool {
        self.stream.is_none()
    }
}
