//! aqueduct-core: the error vocabulary and the ambient deadline shared by every aqueduct crate.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod deadline;
mod elapsed;
mod error;
mod transience;

pub use crate::config::ConfigError;
pub use crate::deadline::{Deadline, WithDeadline, current_deadline, remaining, with_deadline};
pub use crate::elapsed::Elapsed;
pub use crate::error::{Aggregate, Error, StopReason};
pub use crate::transience::{Classify, Transience};

/// The result type of every aqueduct combinator: the value, or an [`Error`] around the operation's error `E`.
///
/// # Examples
///
/// ```
/// fn half(value: u32) -> aqueduct_core::Result<u32, &'static str> {
///     if value % 2 == 0 { Ok(value / 2) } else { Err("odd".into()) }
/// }
/// assert_eq!(half(4).ok(), Some(2));
/// ```
pub type Result<T, E> = std::result::Result<T, Error<E>>;
