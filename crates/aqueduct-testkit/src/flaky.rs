//! `Flaky`: an operation that fails a set number of times, then succeeds.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aqueduct_core::{Classify, Transience};

/// An operation that fails its first `failures` calls with a [`FlakyError`], then returns `Ok(attempt)`.
///
/// Clones share the attempt count, so a closure can own one clone and the test inspect another.
///
/// # Examples
///
/// ```
/// use aqueduct_testkit::Flaky;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let flaky = Flaky::new(2);
/// assert!(flaky.call().await.is_err());
/// assert!(flaky.call().await.is_err());
/// assert_eq!(flaky.call().await, Ok(3));
/// assert_eq!(flaky.attempts(), 3);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Flaky {
    failures: u32,
    error: FlakyError,
    attempts: Arc<AtomicU32>,
}

/// The error a [`Flaky`] operation fails with; its classification and retry hint are configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakyError {
    /// The 1-based attempt that failed.
    pub attempt: u32,
    /// Whether the failure claims to be transient.
    pub transient: bool,
    /// The server hint the failure carries.
    pub retry_after: Option<Duration>,
}

impl Flaky {
    /// Fails the first `failures` calls with a transient error, then succeeds.
    pub fn new(failures: u32) -> Self {
        Self {
            failures,
            error: FlakyError { attempt: 0, transient: true, retry_after: None },
            attempts: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Makes the failures permanent.
    #[must_use]
    pub fn permanent(mut self) -> Self {
        self.error.transient = false;
        self
    }

    /// Makes the failures carry a server hint.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.error.retry_after = Some(retry_after);
        self
    }

    /// Makes one call: `Err` for the first `failures` calls, then `Ok` with the 1-based attempt number.
    ///
    /// # Errors
    ///
    /// A [`FlakyError`] for each of the first `failures` calls.
    pub async fn call(&self) -> Result<u32, FlakyError> {
        self.call_now()
    }

    /// The synchronous form of [`call`](Self::call).
    ///
    /// # Errors
    ///
    /// A [`FlakyError`] for each of the first `failures` calls.
    pub fn call_now(&self) -> Result<u32, FlakyError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt <= self.failures {
            Err(FlakyError { attempt, ..self.error.clone() })
        } else {
            Ok(attempt)
        }
    }

    /// How many calls were made.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl fmt::Display for FlakyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "flaky failure on attempt {}", self.attempt)
    }
}

impl std::error::Error for FlakyError {}

impl Classify for FlakyError {
    fn transience(&self) -> Transience {
        if self.transient { Transience::Transient } else { Transience::Permanent }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}
