//! aqueduct: the facade over every aqueduct crate, each behind a feature of its name.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use aqueduct_core::{
    Aggregate, Classify, Deadline, Elapsed, Error, Result, StopReason, Transience, WithDeadline,
    current_deadline, remaining, with_deadline,
};

/// Timeouts with defaults, nesting deadlines and stream idle timeouts: [`aqueduct_timeout`].
#[cfg(feature = "timeout")]
pub use aqueduct_timeout as timeout;

/// gather in three policies, `as_completed`, `race` and a `TaskGroup`: [`aqueduct_gather`].
#[cfg(feature = "gather")]
pub use aqueduct_gather as gather;

/// Concurrency limits, GCRA rate limits and keyed limits: [`aqueduct_ratelimit`].
#[cfg(feature = "ratelimit")]
pub use aqueduct_ratelimit as ratelimit;

/// Typed multi-stage pipelines over bounded queues: [`aqueduct_pipeline`].
#[cfg(feature = "pipeline")]
pub use aqueduct_pipeline as pipeline;

/// Retry with backoff, jitter, deadlines, budgets and server hints: [`aqueduct_retry`].
#[cfg(feature = "retry")]
pub use aqueduct_retry as retry;

/// A connection pool with a PostgreSQL manager: [`aqueduct_pool`].
#[cfg(feature = "pool")]
pub use aqueduct_pool as pool;

/// Ordered chunked batches and DataLoader-style auto-batching: [`aqueduct_batch`].
#[cfg(feature = "batch")]
pub use aqueduct_batch as batch;

/// A bounded CPU pool that keeps the runtime responsive: [`aqueduct_cpu_offload`].
#[cfg(feature = "cpu-offload")]
pub use aqueduct_cpu_offload as cpu_offload;

/// One page per pattern of the Python asyncio guide: the Python, the Rust with aqueduct, what differs.
///
/// The code blocks of every page are compiled and run as doc tests.
#[cfg(feature = "full")]
pub mod guides {
    #[doc = include_str!("../../../docs/guides/timeout.md")]
    pub mod timeout {}
    #[doc = include_str!("../../../docs/guides/context-manager.md")]
    pub mod context_manager {}
    #[doc = include_str!("../../../docs/guides/gather.md")]
    pub mod gather {}
    #[doc = include_str!("../../../docs/guides/ratelimit.md")]
    pub mod ratelimit {}
    #[doc = include_str!("../../../docs/guides/pipeline.md")]
    pub mod pipeline {}
    #[doc = include_str!("../../../docs/guides/retry.md")]
    pub mod retry {}
    #[doc = include_str!("../../../docs/guides/pool.md")]
    pub mod pool {}
    #[doc = include_str!("../../../docs/guides/batch.md")]
    pub mod batch {}
    #[doc = include_str!("../../../docs/guides/cpu-offload.md")]
    pub mod cpu_offload {}
}

/// The workspace README's examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../../../README.md")]
pub struct WorkspaceReadme;
