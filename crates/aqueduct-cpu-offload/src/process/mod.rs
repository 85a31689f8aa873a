//! The process backend: worker processes for crash isolation and hard-kill timeouts (Unix only).
//!
//! Threads already run in parallel in Rust, so unlike Python's `ProcessPoolExecutor` this backend is not about
//! speed: it is for work that may crash the process (a segfaulting native library, `abort`, running out of
//! memory) or that must be stoppable by force. Jobs are named [`Entry`] points registered in a [`Registry`];
//! arguments and values cross the process boundary as JSON.
//!
//! The worker program is the current binary by default: its `main` calls [`serve_if_worker`] first, which turns
//! the process into a worker when a pool started it (the [`WORKER_ENV`] variable is set) and returns at once
//! otherwise. Integration tests use [`ProcessPoolBuilder::libtest_worker`] to run one dedicated test as the worker.

mod pool;
mod protocol;
mod worker;

pub use self::pool::{DEFAULT_START_TIMEOUT, ProcessPool, ProcessPoolBuilder, ProcessStatus};
pub use self::protocol::WORKER_ENV;
pub use self::worker::{Entry, Registry, is_worker, serve_if_worker};
