//! aqueduct-retry: retry with correct jitter, real deadlines, per-attempt timeouts, retry budgets and server hints.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod blocking;
mod borrowed;
mod budget;
mod builders;
mod engine;
mod future;
mod hooks;
mod http;
mod policy;

pub use aqueduct_core::{
    Classify, Deadline, Elapsed, Error, StopReason, Transience, with_deadline,
};

pub use crate::blocking::{RetryBlocking, retry_blocking};
pub use crate::borrowed::{RetryMut, retry_mut};
pub use crate::budget::RetryBudget;
pub use crate::future::{Retry, retry};
pub use crate::hooks::{
    AcceptAll, AcceptValue, Classified, ClassifyWith, DefaultHint, DefaultRetryIf, HintSource,
    Hooks, NoHook, OnRetry, RetryAfterFn, RetryIf, RetryState, ServerHint,
};
pub use crate::http::parse_retry_after;
pub use crate::policy::{Backoff, ConfigError, HintMode, Jitter, RetryPolicy, RetryPolicyBuilder};
