//! aqueduct-ratelimit: concurrency limits, GCRA rate limits, keyed limits and a rate-limited client wrapper.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod all;
mod config;
mod gcra;
mod keyed;
mod limited;
mod limiter;
mod prehashed;
mod queue;
mod semaphore;

pub use crate::all::try_acquire_all;
pub use crate::config::{ConfigError, Quota, Rate};
pub use crate::keyed::{KeyedAcquire, KeyedRateLimiter, KeyedRateLimiterBuilder, Overflow};
pub use crate::limited::Limited;
pub use crate::limiter::{Acquire, Limiter, LimiterBuilder, Peek, Permit};
pub use aqueduct_core::{Deadline, Elapsed, Error, with_deadline};
