//! `Elapsed`: what a passed deadline looked like (configured timeout, deadline, measured time).

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// A deadline passed: the configured timeout (if any), the deadline, and the time actually waited.
///
/// Unlike `tokio::time::error::Elapsed`, it carries the numbers and can be built in tests with [`Elapsed::new`].
/// It converts into an [`io::Error`] of kind [`io::ErrorKind::TimedOut`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_core::Elapsed;
/// use tokio::time::Instant;
///
/// let start = Instant::now();
/// let elapsed = Elapsed::new(Some(Duration::from_millis(100)), start + Duration::from_millis(100), Duration::from_millis(101));
/// assert_eq!(elapsed.timeout(), Some(Duration::from_millis(100)));
/// assert_eq!(elapsed.to_string(), "deadline elapsed after 101ms (timeout 100ms)");
///
/// let io_error: std::io::Error = elapsed.into();
/// assert_eq!(io_error.kind(), std::io::ErrorKind::TimedOut);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    timeout: Option<Duration>,
    deadline: Instant,
    waited: Duration,
    ambient: bool,
}

impl Elapsed {
    /// Describes a deadline that passed.
    ///
    /// `timeout` is the configured duration when the caller gave one (it is `None` for an absolute deadline),
    /// `deadline` the instant that passed, `waited` the time measured from the start to the moment the
    /// deadline was noticed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Elapsed;
    /// use tokio::time::Instant;
    ///
    /// let deadline = Instant::now();
    /// let elapsed = Elapsed::new(None, deadline, Duration::ZERO);
    /// assert_eq!(elapsed.deadline(), deadline);
    /// ```
    pub fn new(timeout: Option<Duration>, deadline: Instant, waited: Duration) -> Self {
        Self { timeout, deadline, waited, ambient: false }
    }

    /// Marks that the ambient deadline (see [`with_deadline`](crate::with_deadline)), earlier than the
    /// caller's own, is the one that passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Elapsed;
    /// use tokio::time::Instant;
    ///
    /// let elapsed = Elapsed::new(None, Instant::now(), Duration::ZERO).with_ambient(true);
    /// assert!(elapsed.is_ambient());
    /// ```
    #[must_use]
    pub fn with_ambient(mut self, ambient: bool) -> Self {
        self.ambient = ambient;
        self
    }

    /// The configured duration, when the deadline was given as one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Elapsed;
    /// use tokio::time::Instant;
    ///
    /// assert_eq!(Elapsed::new(None, Instant::now(), Duration::ZERO).timeout(), None);
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The instant that passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Elapsed;
    /// use tokio::time::Instant;
    ///
    /// let at = Instant::now();
    /// assert_eq!(Elapsed::new(None, at, Duration::ZERO).deadline(), at);
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How long the caller actually waited, measured (tokio rounds timers up to the millisecond).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Elapsed;
    /// use tokio::time::Instant;
    ///
    /// let elapsed = Elapsed::new(None, Instant::now(), Duration::from_millis(3));
    /// assert_eq!(elapsed.waited(), Duration::from_millis(3));
    /// ```
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// `true` when the ambient deadline, not the caller's own, was the one that passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Elapsed;
    /// use tokio::time::Instant;
    ///
    /// assert!(!Elapsed::new(None, Instant::now(), Duration::ZERO).is_ambient());
    /// ```
    pub fn is_ambient(&self) -> bool {
        self.ambient
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "deadline elapsed after {:?}", self.waited)?;
        match (self.timeout, self.ambient) {
            (_, true) => formatter.write_str(" (ambient deadline)"),
            (Some(timeout), false) => write!(formatter, " (timeout {timeout:?})"),
            (None, false) => Ok(()),
        }
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(elapsed: Elapsed) -> Self {
        Self::new(io::ErrorKind::TimedOut, elapsed)
    }
}
