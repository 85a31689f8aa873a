//! `PoolStatus`: a snapshot of what the pool holds and what it has done.

/// A snapshot of a pool: its connections now, and its counters since it was built.
///
/// # Examples
///
/// ```
/// let status = aqueduct_pool::PoolStatus::default();
/// assert_eq!(status.size, status.idle + status.in_use);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The configured maximum number of connections.
    pub max_size: usize,
    /// Connections open now, idle or checked out.
    pub size: usize,
    /// Connections open and not checked out.
    pub idle: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Callers waiting in `acquire`.
    pub waiters: usize,
    /// Connections opened since the pool was built.
    pub created: u64,
    /// Checkouts of a connection that had been handed out before (it passed the checkout checks).
    pub recycled: u64,
    /// Checkouts that spent a validation round trip (the connection was idle past the window).
    pub validated: u64,
    /// Connections closed by the pool: broken, fatal error, expired, idle, `expire_all`, failed checks, close.
    pub evicted: u64,
    /// Acquires that ended with `Error::Elapsed`.
    pub timeouts: u64,
    /// Failed connects.
    pub connect_errors: u64,
    /// Whether `close` has begun.
    pub closed: bool,
}
