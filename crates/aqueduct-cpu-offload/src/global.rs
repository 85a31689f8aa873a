//! The free-function door: `run(job)` on the process-wide default pool.

use crate::pool::{CpuPool, Run};

/// Runs `job` on the process-wide default pool ([`CpuPool::global`]) and yields its value: Python's
/// `await loop.run_in_executor(None, f)`, without blocking the runtime.
///
/// # Cancellation
///
/// As [`CpuPool::run`]: dropping the future before the job starts means it never runs.
///
/// # Errors
///
/// [`Error::Panicked`](crate::Error::Panicked) when the job panics.
///
/// # Panics
///
/// On first use, when the operating system refuses to start the default pool's threads.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::Error;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let digest: Result<u64, Error<()>> =
///     aqueduct_cpu_offload::run(|| b"hello".iter().map(|&byte| u64::from(byte)).sum()).await;
/// assert_eq!(digest.unwrap(), 532);
/// # }
/// ```
pub fn run<F, T, E>(job: F) -> Run<F, T, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    CpuPool::global().run(job)
}
