//! The ambient deadline: a task-local "finish by" instant that every aqueduct combinator clamps to.

use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

thread_local! {
    // The deadline of the `WithDeadline` being polled on this thread, if any. It is set only for the
    // duration of a poll, so it follows the task, not the thread.
    static AMBIENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `future` with an ambient deadline of `at`, or the enclosing one when that is earlier.
///
/// Every aqueduct combinator polled inside (`timeout`, `retry`, `pool.acquire`, …) clamps its own deadline
/// to the ambient one, as Go's `context` and gRPC's call deadline do. Nesting never extends a deadline:
/// the effective deadline is the earliest of all enclosing ones, computed at every poll.
///
/// The deadline is ambient, not enforced: `with_deadline` alone never interrupts `future`; the combinators
/// inside read it. Wrap the whole thing in `aqueduct_timeout::timeout_at` to enforce it as well.
///
/// The deadline follows the future, not the task: work moved to `tokio::spawn` does not see it unless
/// wrapped again.
///
/// # Cancellation
///
/// Dropping the returned future drops `future`; no state outlives it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_core::{remaining, with_deadline};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let outer = Instant::now() + Duration::from_secs(1);
/// let left = with_deadline(outer, async {
///     // A later inner deadline does not extend the outer one.
///     with_deadline(outer + Duration::from_secs(60), async { remaining() }).await
/// })
/// .await;
/// assert_eq!(left, Some(Duration::from_secs(1)));
/// # }
/// ```
pub fn with_deadline<F: IntoFuture>(at: Instant, future: F) -> WithDeadline<F::IntoFuture> {
    WithDeadline { future: future.into_future(), deadline: at }
}

/// The ambient deadline in force for the code being polled now, if any.
///
/// # Examples
///
/// ```
/// use aqueduct_core::current_deadline;
/// assert_eq!(current_deadline(), None);
/// ```
#[inline]
pub fn current_deadline() -> Option<Instant> {
    AMBIENT.with(Cell::get)
}

/// How long is left until the ambient deadline (zero once it passed), or `None` without one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_core::{remaining, with_deadline};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// assert_eq!(remaining(), None);
/// let at = Instant::now() + Duration::from_millis(250);
/// assert_eq!(with_deadline(at, async { remaining() }).await, Some(Duration::from_millis(250)));
/// # }
/// ```
pub fn remaining() -> Option<Duration> {
    current_deadline().map(|at| at.saturating_duration_since(Instant::now()))
}

/// An effective deadline: the earlier of a caller's own deadline and the ambient one, and which it was.
///
/// Combinators call [`Deadline::clamp`] once when they start and arm their timer at [`Deadline::at`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_core::{with_deadline, Deadline};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let now = Instant::now();
/// let own = now + Duration::from_secs(5);
/// let clamped = with_deadline(now + Duration::from_secs(1), async { Deadline::clamp(Some(own)) }).await;
/// let clamped = clamped.expect("a deadline is in force");
/// assert_eq!(clamped.at(), now + Duration::from_secs(1));
/// assert!(clamped.is_ambient());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    ambient: bool,
}

impl Deadline {
    /// A deadline the caller set itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Deadline;
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now();
    /// assert!(!Deadline::own(at).is_ambient());
    /// ```
    pub fn own(at: Instant) -> Self {
        Self { at, ambient: false }
    }

    /// The ambient deadline in force now, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Deadline;
    /// assert_eq!(Deadline::ambient(), None);
    /// ```
    pub fn ambient() -> Option<Self> {
        current_deadline().map(|at| Self { at, ambient: true })
    }

    /// The earlier of `own` and the ambient deadline; `None` when neither exists.
    ///
    /// When both are equal the caller's own deadline wins, so [`is_ambient`](Self::is_ambient) is `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Deadline;
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now();
    /// assert_eq!(Deadline::clamp(Some(at)), Some(Deadline::own(at)));
    /// assert_eq!(Deadline::clamp(None), None);
    /// ```
    #[inline]
    pub fn clamp(own: Option<Instant>) -> Option<Self> {
        match (own, current_deadline()) {
            (Some(own), Some(ambient)) if ambient < own => {
                Some(Self { at: ambient, ambient: true })
            }
            (Some(own), _) => Some(Self::own(own)),
            (None, Some(ambient)) => Some(Self { at: ambient, ambient: true }),
            (None, None) => None,
        }
    }

    /// The instant of the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Deadline;
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now();
    /// assert_eq!(Deadline::own(at).at(), at);
    /// ```
    pub fn at(&self) -> Instant {
        self.at
    }

    /// `true` when this is the ambient deadline rather than the caller's own.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Deadline;
    /// use tokio::time::Instant;
    ///
    /// assert!(!Deadline::own(Instant::now()).is_ambient());
    /// ```
    pub fn is_ambient(&self) -> bool {
        self.ambient
    }

    /// Time left until the deadline, zero once it passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Deadline;
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Deadline::own(Instant::now() + Duration::from_secs(2));
    /// assert_eq!(deadline.remaining(), Duration::from_secs(2));
    /// # }
    /// ```
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

pin_project! {
    /// The future returned by [`with_deadline`]: polls the inner future with the ambient deadline set.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct WithDeadline<F> {
        #[pin]
        future: F,
        deadline: Instant,
    }
}

impl<F> WithDeadline<F> {
    /// The deadline this future sets (before clamping to an enclosing one).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::with_deadline;
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now();
    /// assert_eq!(with_deadline(at, async {}).deadline(), at);
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Consumes the wrapper, returning the inner future.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::with_deadline;
    /// use tokio::time::Instant;
    ///
    /// let inner = with_deadline(Instant::now(), std::future::ready(1)).into_inner();
    /// # let _ = inner;
    /// ```
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for WithDeadline<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let enclosing = current_deadline();
        let effective = match enclosing {
            Some(enclosing) if enclosing < *this.deadline => enclosing,
            _ => *this.deadline,
        };
        let _restore = RestoreOnDrop(enclosing);
        AMBIENT.with(|ambient| ambient.set(Some(effective)));
        this.future.poll(context)
    }
}

/// Puts the enclosing deadline back after a poll, even when the poll panics.
struct RestoreOnDrop(Option<Instant>);

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        AMBIENT.with(|ambient| ambient.set(self.0));
    }
}
