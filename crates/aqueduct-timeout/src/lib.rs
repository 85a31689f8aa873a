//! aqueduct-timeout: timeouts for tokio futures and streams, with defaults, nesting ambient deadlines and one flat error type.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod detach;
mod ext;
mod idle;
mod timeout;
mod timer;
mod try_timeout;

pub use aqueduct_core::{
    Deadline, Elapsed, Error, WithDeadline, current_deadline, remaining, with_deadline,
};

pub use crate::detach::{DetachOutcome, TimeoutOrDetach, timeout_or_detach};
pub use crate::ext::TimeoutExt;
pub use crate::idle::{
    IdleTimeout, IdleTimeoutExt, TryIdleTimeout, idle_timeout, try_idle_timeout,
};
pub use crate::timeout::{
    Timeout, TimeoutOr, TimeoutOrDefault, TimeoutOrElse, timeout, timeout_at, timeout_or,
    timeout_or_default, timeout_or_else,
};
pub use crate::try_timeout::{TryTimeout, try_timeout, try_timeout_at};
