//! Pool configuration shared by the builders: the backend choice, sizing defaults and the build error.

/// Where a [`CpuPool`](crate::CpuPool) runs its jobs.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::{Backend, CpuPool};
///
/// let pool = CpuPool::builder().backend(Backend::Rayon).build()?;
/// assert_eq!(pool.backend(), Backend::Rayon);
/// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// A dedicated rayon thread pool owned by this pool, sized to the cores: the choice for CPU-bound work.
    #[default]
    Rayon,
    /// tokio's blocking thread pool (`spawn_blocking`), with at most `threads` jobs running at once.
    ///
    /// Choose it for blocking work that is not CPU-bound (blocking file or FFI calls) when you want the pool's
    /// bounded queue and cancellation but not dedicated threads. It needs a tokio runtime when the pool is built.
    SpawnBlocking,
}

pub use aqueduct_core::ConfigError;

/// The number of threads a pool gets when none is configured: `std::thread::available_parallelism()`.
///
/// On Linux this honours the process's CPU affinity mask and its cgroup v1/v2 CPU quota (a container limited to
/// 2 CPUs on a 64-core host gets 2), as the standard library documents. It falls back to 1 when the count is
/// unknown.
///
/// # Examples
///
/// ```
/// assert!(aqueduct_cpu_offload::default_threads() >= 1);
/// ```
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
