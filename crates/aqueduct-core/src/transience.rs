//! Whether an error is worth retrying: the `Transience` verdict and the `Classify` trait.

use std::io;
use std::time::Duration;

/// Whether retrying the failed operation may succeed.
///
/// # Examples
///
/// ```
/// use aqueduct_core::Transience;
/// assert!(Transience::Transient.is_transient());
/// assert!(!Transience::Permanent.is_transient());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transience {
    /// The failure may go away: retrying is worthwhile (timeouts, overload, a reconnecting resource).
    Transient,
    /// The failure will happen again: retrying wastes work (bad input, a broken contract, a closed resource).
    Permanent,
}

impl Transience {
    /// Returns `true` for [`Transience::Transient`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::Transience;
    /// assert!(Transience::Transient.is_transient());
    /// ```
    pub fn is_transient(self) -> bool {
        self == Self::Transient
    }
}

/// An error that knows whether it is worth retrying, and whether the server said when.
///
/// Retry uses it as the default classification; implement it for your own error types, or pass a
/// classifier closure instead. [`Error`](crate::Error) implements it whenever `E` does, classifying its own
/// variants as documented on [`Error::transience_with`](crate::Error::transience_with).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_core::{Classify, Transience};
///
/// #[derive(Debug)]
/// enum HttpError {
///     Status(u16),
///     TooManyRequests { retry_after: Duration },
/// }
///
/// impl Classify for HttpError {
///     fn transience(&self) -> Transience {
///         match self {
///             HttpError::Status(code) if *code >= 500 => Transience::Transient,
///             HttpError::Status(_) => Transience::Permanent,
///             HttpError::TooManyRequests { .. } => Transience::Transient,
///         }
///     }
///
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             HttpError::TooManyRequests { retry_after } => Some(*retry_after),
///             _ => None,
///         }
///     }
/// }
///
/// assert_eq!(HttpError::Status(404).transience(), Transience::Permanent);
/// assert_eq!(HttpError::TooManyRequests { retry_after: Duration::from_secs(2) }.retry_after(), Some(Duration::from_secs(2)));
/// ```
pub trait Classify {
    /// Whether retrying may succeed.
    fn transience(&self) -> Transience;

    /// How long the server asked the caller to wait before retrying, if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// I/O errors that come from a flaky network or a busy peer are transient; the rest are permanent.
///
/// # Examples
///
/// ```
/// use std::io;
/// use aqueduct_core::{Classify, Transience};
///
/// assert_eq!(io::Error::from(io::ErrorKind::ConnectionReset).transience(), Transience::Transient);
/// assert_eq!(io::Error::from(io::ErrorKind::PermissionDenied).transience(), Transience::Permanent);
/// ```
impl Classify for io::Error {
    fn transience(&self) -> Transience {
        use io::ErrorKind::{
            ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted, NotConnected,
            TimedOut, UnexpectedEof, WouldBlock,
        };
        match self.kind() {
            ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
            | NotConnected | TimedOut | UnexpectedEof | WouldBlock => Transience::Transient,
            _ => Transience::Permanent,
        }
    }
}
