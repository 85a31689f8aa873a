//! The one error type that every aqueduct crate returns, generic over the operation's own error.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::elapsed::Elapsed;
use crate::transience::{Classify, Transience};

/// The error of every aqueduct combinator: the operation's own error `E`, or what the combinator itself observed.
///
/// Stacking combinators never nests this type: `retry(|| timeout(d, pool.acquire()))` yields
/// `Result<T, Error<E>>`, not `Error<Error<E>>`, because every combinator accepts inputs whose error is
/// `X: Into<Error<E>>` and both a plain `E` and an `Error<E>` convert (see the crate docs, "Flattening").
///
/// The enum is `#[non_exhaustive]`: match the variants you care about and keep a `_` arm, or use the
/// inspection helpers ([`is_elapsed`](Self::is_elapsed), [`retry_after`](Self::retry_after),
/// [`into_operation`](Self::into_operation), …), which keep working when variants are added.
///
/// `Display` is a short lowercase message that never repeats the text of [`source`](StdError::source);
/// print the whole chain to see the cause. [`Error::Operation`] is the exception: it is transparent,
/// showing the operation error's own message and source.
///
/// # Examples
///
/// ```
/// use aqueduct_core::Error;
///
/// fn parse(input: &str) -> Result<u32, Error<std::num::ParseIntError>> {
///     // `?` converts the operation's own error into `Error::Operation`.
///     Ok(input.parse::<u32>()?)
/// }
///
/// let error = parse("x").unwrap_err();
/// assert!(error.operation().is_some());
/// assert_eq!(error.to_string(), "invalid digit found in string");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error<E> {
    /// The operation itself failed with its own error.
    Operation(E),
    /// A deadline passed before the operation finished.
    Elapsed {
        /// When and how the deadline passed.
        elapsed: Elapsed,
        /// The last error seen while waiting, if any (for example the last connect error of a pool).
        last_error: Option<E>,
    },
    /// A rate limit refused the call; trying again after `retry_after` may succeed.
    RateLimited {
        /// How long to wait before the next attempt can be admitted, rounded up.
        retry_after: Duration,
    },
    /// A bounded queue, pool or batcher was at capacity and the caller asked not to wait.
    Full {
        /// The capacity that was reached.
        capacity: usize,
    },
    /// The resource was closed or shut down.
    Closed {
        /// `true` when the resource is reconnecting and may come back, so retrying is worthwhile.
        reconnecting: bool,
    },
    /// The operation was cancelled before it finished (for example because a sibling failed).
    Cancelled,
    /// User code panicked; the panic was caught and turned into this error.
    Panicked {
        /// The input position of the task that panicked, where the combinator has one.
        index: Option<usize>,
        /// The panic payload, when it was a string, else a placeholder.
        message: String,
    },
    /// A retry loop gave up.
    Exhausted {
        /// How many attempts were made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: Duration,
        /// Why the loop stopped.
        reason: StopReason,
        /// The error of the last attempt, if the last attempt failed with one.
        last_error: Option<Box<Self>>,
    },
    /// Several operations failed (gather, batch); each error keeps the input index it belongs to.
    Aggregate(Aggregate<E>),
    /// User code broke a documented contract (for example a batch function that returned the wrong
    /// number of outputs). Retrying does not help.
    ContractViolation {
        /// What was expected and what happened, in lowercase.
        message: String,
    },
}

/// Why a retry loop stopped, carried by [`Error::Exhausted`].
///
/// # Examples
///
/// ```
/// use aqueduct_core::StopReason;
///
/// assert_eq!(StopReason::Deadline.to_string(), "deadline reached");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The maximum number of attempts was reached.
    Attempts,
    /// The next attempt would have started (or slept) past the deadline.
    Deadline,
    /// The shared retry budget was empty.
    Budget,
    /// The last error was classified as permanent, so retrying was pointless.
    Permanent,
    /// The server asked not to retry (for example a negative retry hint).
    ServerRefused,
}

/// Several errors, each with the input index of the operation that produced it, in the order they happened.
///
/// The first entry is the first failure in time; [`Error::source`](StdError::source) of the aggregate is that error.
///
/// # Examples
///
/// ```
/// use aqueduct_core::{Aggregate, Error};
///
/// let aggregate: Aggregate<&'static str> =
///     Aggregate::new(vec![(3, Error::Operation("boom")), (0, Error::Cancelled)]);
/// assert_eq!(aggregate.first().map(|(index, _)| *index), Some(3));
/// assert_eq!(aggregate.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Aggregate<E> {
    errors: Vec<(usize, Error<E>)>,
}

// ===== impl Error =====

impl<E> From<E> for Error<E> {
    fn from(error: E) -> Self {
        Self::Operation(error)
    }
}

impl<E> Error<E> {
    /// Builds an [`Error::Elapsed`] without a last error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::{Elapsed, Error};
    /// use tokio::time::Instant;
    ///
    /// let now = Instant::now();
    /// let error: Error<()> = Error::elapsed(Elapsed::new(Some(Duration::from_secs(1)), now, Duration::from_secs(1)));
    /// assert!(error.is_elapsed());
    /// ```
    pub fn elapsed(elapsed: Elapsed) -> Self {
        Self::Elapsed { elapsed, last_error: None }
    }

    /// Builds an [`Error::Panicked`] from a caught panic payload, extracting its message.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    ///
    /// let payload = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
    /// let error: Error<String> = Error::from_panic(Some(2), payload);
    /// assert_eq!(error.to_string(), "task 2 panicked: boom");
    /// ```
    pub fn from_panic(index: Option<usize>, payload: Box<dyn std::any::Any + Send>) -> Self {
        Self::Panicked { index, message: panic_message(payload.as_ref()) }
    }

    /// Returns `true` if a deadline passed ([`Error::Elapsed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// assert!(!Error::Operation("x").is_elapsed());
    /// ```
    pub fn is_elapsed(&self) -> bool {
        matches!(self, Self::Elapsed { .. })
    }

    /// Returns `true` if the resource was closed ([`Error::Closed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// assert!(Error::<()>::Closed { reconnecting: false }.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }

    /// Returns `true` if the operation was cancelled ([`Error::Cancelled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// assert!(Error::<()>::Cancelled.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }

    /// Returns `true` if a queue or pool was at capacity ([`Error::Full`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// assert!(Error::<()>::Full { capacity: 8 }.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }

    /// Returns `true` if user code panicked ([`Error::Panicked`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// let error: Error<()> = Error::Panicked { index: None, message: "boom".into() };
    /// assert!(error.is_panicked());
    /// ```
    pub fn is_panicked(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Returns `true` if a retry loop gave up ([`Error::Exhausted`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::{Error, StopReason};
    ///
    /// let error: Error<()> = Error::Exhausted {
    ///     attempts: 3,
    ///     elapsed: Duration::from_millis(30),
    ///     reason: StopReason::Attempts,
    ///     last_error: None,
    /// };
    /// assert!(error.is_exhausted());
    /// ```
    pub fn is_exhausted(&self) -> bool {
        matches!(self, Self::Exhausted { .. })
    }

    /// Returns `true` if a rate limit refused the call ([`Error::RateLimited`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Error;
    /// assert!(Error::<()>::RateLimited { retry_after: Duration::from_millis(5) }.is_rate_limited());
    /// ```
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }

    /// How long to wait before trying again, when the error says so.
    ///
    /// [`Error::RateLimited`] carries it; an [`Error::Operation`] never does here (use
    /// [`Classify::retry_after`] for operation errors that carry a server hint).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_core::Error;
    ///
    /// let error: Error<()> = Error::RateLimited { retry_after: Duration::from_millis(40) };
    /// assert_eq!(error.retry_after(), Some(Duration::from_millis(40)));
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// A reference to the operation's own error, if this is one.
    ///
    /// Looks through [`Error::Exhausted`] to its last error, so a retried operation's error is found too.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// assert_eq!(Error::Operation(7).operation(), Some(&7));
    /// assert_eq!(Error::<i32>::Cancelled.operation(), None);
    /// ```
    pub fn operation(&self) -> Option<&E> {
        match self {
            Self::Operation(error) => Some(error),
            Self::Exhausted { last_error: Some(last), .. } => last.operation(),
            _ => None,
        }
    }

    /// The operation's own error, if this is one (looking through [`Error::Exhausted`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    /// assert_eq!(Error::Operation("refused").into_operation(), Some("refused"));
    /// ```
    pub fn into_operation(self) -> Option<E> {
        match self {
            Self::Operation(error) => Some(error),
            Self::Exhausted { last_error: Some(last), .. } => last.into_operation(),
            _ => None,
        }
    }

    /// Maps the operation's error type, keeping every other variant (recursively) as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Error;
    ///
    /// let error: Error<i32> = Error::Operation(4);
    /// let mapped: Error<String> = error.map_operation(|code| format!("code {code}"));
    /// assert_eq!(mapped.operation().map(String::as_str), Some("code 4"));
    /// ```
    pub fn map_operation<F, M>(self, mut map: M) -> Error<F>
    where
        M: FnMut(E) -> F,
    {
        self.map_with(&mut map)
    }

    fn map_with<F, M>(self, map: &mut M) -> Error<F>
    where
        M: FnMut(E) -> F,
    {
        match self {
            Self::Operation(error) => Error::Operation(map(error)),
            Self::Elapsed { elapsed, last_error } => {
                Error::Elapsed { elapsed, last_error: last_error.map(&mut *map) }
            }
            Self::RateLimited { retry_after } => Error::RateLimited { retry_after },
            Self::Full { capacity } => Error::Full { capacity },
            Self::Closed { reconnecting } => Error::Closed { reconnecting },
            Self::Cancelled => Error::Cancelled,
            Self::Panicked { index, message } => Error::Panicked { index, message },
            Self::Exhausted { attempts, elapsed, reason, last_error } => Error::Exhausted {
                attempts,
                elapsed,
                reason,
                last_error: last_error.map(|last| Box::new(last.map_with(map))),
            },
            Self::Aggregate(aggregate) => Error::Aggregate(Aggregate {
                errors: aggregate
                    .errors
                    .into_iter()
                    .map(|(index, error)| (index, error.map_with(map)))
                    .collect(),
            }),
            Self::ContractViolation { message } => Error::ContractViolation { message },
        }
    }

    /// Classifies this error as worth retrying or not, asking `classify_operation` about operation errors.
    ///
    /// The combinator's own errors are classified here, once, for every crate:
    ///
    /// | variant | transience |
    /// |---|---|
    /// | `Operation` | what `classify_operation` says |
    /// | `Elapsed`, `RateLimited`, `Full` | transient |
    /// | `Closed { reconnecting: true }` | transient |
    /// | `Closed { reconnecting: false }`, `Cancelled`, `Panicked`, `Exhausted`, `ContractViolation` | permanent |
    /// | `Aggregate` | transient only if every error in it is |
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::{Error, Transience};
    ///
    /// let error: Error<&str> = Error::Operation("bad request");
    /// assert_eq!(error.transience_with(|_| Transience::Permanent), Transience::Permanent);
    /// let error: Error<&str> = Error::Full { capacity: 4 };
    /// assert_eq!(error.transience_with(|_| Transience::Permanent), Transience::Transient);
    /// ```
    pub fn transience_with(
        &self,
        mut classify_operation: impl FnMut(&E) -> Transience,
    ) -> Transience {
        self.transience_by(&mut classify_operation)
    }

    fn transience_by(&self, classify_operation: &mut impl FnMut(&E) -> Transience) -> Transience {
        match self {
            Self::Operation(error) => classify_operation(error),
            Self::Elapsed { .. } | Self::RateLimited { .. } | Self::Full { .. } => {
                Transience::Transient
            }
            Self::Closed { reconnecting: true } => Transience::Transient,
            Self::Closed { reconnecting: false }
            | Self::Cancelled
            | Self::Panicked { .. }
            | Self::Exhausted { .. }
            | Self::ContractViolation { .. } => Transience::Permanent,
            Self::Aggregate(aggregate) => {
                let all_transient = !aggregate.is_empty()
                    && aggregate
                        .iter()
                        .all(|(_, error)| error.transience_by(classify_operation).is_transient());
                if all_transient { Transience::Transient } else { Transience::Permanent }
            }
        }
    }
}

impl<E: Classify> Classify for Error<E> {
    fn transience(&self) -> Transience {
        self.transience_with(Classify::transience)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Operation(error) => error.retry_after(),
            // Inherent methods take precedence over trait methods: this reads the combinator's own hint.
            other => Self::retry_after(other),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operation(error) => fmt::Display::fmt(error, formatter),
            Self::Elapsed { elapsed, .. } => fmt::Display::fmt(elapsed, formatter),
            Self::RateLimited { retry_after } => {
                write!(formatter, "rate limited, retry after {retry_after:?}")
            }
            Self::Full { capacity } => write!(formatter, "rejected, at capacity of {capacity}"),
            Self::Closed { reconnecting: false } => formatter.write_str("closed"),
            Self::Closed { reconnecting: true } => formatter.write_str("closed while reconnecting"),
            Self::Cancelled => formatter.write_str("cancelled"),
            Self::Panicked { index: Some(index), message } => {
                write!(formatter, "task {index} panicked: {message}")
            }
            Self::Panicked { index: None, message } => {
                write!(formatter, "task panicked: {message}")
            }
            Self::Exhausted { attempts, elapsed, reason, .. } => {
                let plural = if *attempts == 1 { "" } else { "s" };
                write!(
                    formatter,
                    "gave up after {attempts} attempt{plural} in {elapsed:?}: {reason}"
                )
            }
            Self::Aggregate(aggregate) => fmt::Display::fmt(aggregate, formatter),
            Self::ContractViolation { message } => {
                write!(formatter, "contract violation: {message}")
            }
        }
    }
}

impl<E> StdError for Error<E>
where
    E: StdError + 'static,
{
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            // Transparent: the operation error's own message is our Display, so its source is ours.
            Self::Operation(error) => error.source(),
            Self::Elapsed { last_error: Some(last), .. } => Some(last),
            Self::Exhausted { last_error: Some(last), .. } => Some(last.as_ref()),
            Self::Aggregate(aggregate) => {
                aggregate.first().map(|(_, error)| error as &(dyn StdError + 'static))
            }
            _ => None,
        }
    }
}

// ===== impl StopReason =====

impl fmt::Display for StopReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Attempts => "attempts exhausted",
            Self::Deadline => "deadline reached",
            Self::Budget => "retry budget empty",
            Self::Permanent => "permanent error",
            Self::ServerRefused => "server asked not to retry",
        })
    }
}

// ===== impl Aggregate =====

impl<E> Aggregate<E> {
    /// Builds an aggregate from `(input index, error)` pairs, first failure in time first.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::{Aggregate, Error};
    /// let aggregate = Aggregate::new(vec![(1, Error::Operation(()))]);
    /// assert!(!aggregate.is_empty());
    /// ```
    pub fn new(errors: Vec<(usize, Error<E>)>) -> Self {
        Self { errors }
    }

    /// The first failure in time, with its input index.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::{Aggregate, Error};
    /// let aggregate: Aggregate<()> = Aggregate::new(vec![(5, Error::Cancelled)]);
    /// assert!(aggregate.first().is_some_and(|(index, error)| *index == 5 && error.is_cancelled()));
    /// ```
    pub fn first(&self) -> Option<&(usize, Error<E>)> {
        self.errors.first()
    }

    /// How many errors the aggregate holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Aggregate;
    /// assert_eq!(Aggregate::<()>::new(Vec::new()).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Returns `true` if the aggregate holds no error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Aggregate;
    /// assert!(Aggregate::<()>::new(Vec::new()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Iterates over `(input index, error)` pairs in the order the failures happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::{Aggregate, Error};
    /// let aggregate: Aggregate<()> = Aggregate::new(vec![(2, Error::Cancelled), (0, Error::Cancelled)]);
    /// let indices: Vec<usize> = aggregate.iter().map(|(index, _)| *index).collect();
    /// assert_eq!(indices, [2, 0]);
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, (usize, Error<E>)> {
        self.errors.iter()
    }

    /// The `(input index, error)` pairs, in the order the failures happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::{Aggregate, Error};
    /// let aggregate: Aggregate<()> = Aggregate::new(vec![(2, Error::Cancelled)]);
    /// assert_eq!(aggregate.into_vec().len(), 1);
    /// ```
    pub fn into_vec(self) -> Vec<(usize, Error<E>)> {
        self.errors
    }
}

impl<E> IntoIterator for Aggregate<E> {
    type Item = (usize, Error<E>);
    type IntoIter = std::vec::IntoIter<(usize, Error<E>)>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a, E> IntoIterator for &'a Aggregate<E> {
    type Item = &'a (usize, Error<E>);
    type IntoIter = std::slice::Iter<'a, (usize, Error<E>)>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl<E> fmt::Display for Aggregate<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        let plural = if count == 1 { "" } else { "s" };
        match self.errors.first() {
            Some((index, _)) => {
                write!(formatter, "{count} operation{plural} failed, first at index {index}")
            }
            None => formatter.write_str("no operation failed"),
        }
    }
}

/// Extracts the message of a panic payload (`&str` or `String`), or a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&'static str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
