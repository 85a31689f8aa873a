//! The `Manager` trait: how a pool connects, checks and terminates its connections.

use std::future::Future;
use std::sync::Arc;

/// Creates, checks and tears down the connections of a [`Pool`](crate::Pool).
///
/// Implement it for your own resource; [`PgManager`](crate::postgres::PgManager) implements it for
/// PostgreSQL. Only [`connect`](Manager::connect) is required.
///
/// # Examples
///
/// ```
/// use aqueduct_pool::Manager;
///
/// #[derive(Debug)]
/// struct Numbers;
///
/// impl Manager for Numbers {
///     type Connection = u32;
///     type Error = std::io::Error;
///
///     async fn connect(&self) -> Result<u32, std::io::Error> {
///         Ok(42)
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource, handed out by [`PooledConnection`](crate::PooledConnection).
    type Connection: Send + 'static;
    /// The error of connecting and checking; it is the `E` of the pool's `Error<E>`.
    type Error: Send + 'static;

    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Checks (and resets) an idle connection before it is handed out again.
    ///
    /// `validate` is `true` when the connection sat idle longer than the pool's validation window
    /// ([`PoolBuilder::validate_after_idle`](crate::PoolBuilder::validate_after_idle)): that is the
    /// moment to spend a round trip. An error evicts the connection and the pool tries the next one.
    /// The default accepts every connection.
    fn recycle(
        &self,
        connection: &mut Self::Connection,
        validate: bool,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (connection, validate);
        std::future::ready(Ok(()))
    }

    /// A cheap synchronous test run when a connection is returned and before it is recycled:
    /// `true` evicts it. The default says no connection is ever broken.
    fn is_broken(&self, connection: &mut Self::Connection) -> bool {
        let _ = connection;
        false
    }

    /// Whether an error seen on a connection means that connection is unusable, such as PostgreSQL's
    /// SQLSTATE class 08 or 57P01–57P03. Used by
    /// [`PooledConnection::observe`](crate::PooledConnection::observe). The default says no.
    fn is_fatal(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// A handle that tears a connection down from outside, used by
    /// [`Pool::close`](crate::Pool::close) on connections still checked out when the grace period
    /// ends. The default offers none: such connections are then discarded when they come back.
    fn terminator(&self, connection: &Self::Connection) -> Option<Terminator> {
        let _ = connection;
        None
    }
}

/// Tears one connection down from outside (for example by aborting its driver task).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use aqueduct_pool::Terminator;
///
/// let stopped = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&stopped);
/// let terminator = Terminator::new(move || flag.store(true, Ordering::SeqCst));
/// terminator.terminate();
/// assert!(stopped.load(Ordering::SeqCst));
/// ```
#[derive(Clone)]
pub struct Terminator {
    terminate: Arc<dyn Fn() + Send + Sync>,
}

impl Terminator {
    /// Wraps the function that tears the connection down; it may be called more than once.
    pub fn new(terminate: impl Fn() + Send + Sync + 'static) -> Self {
        Self { terminate: Arc::new(terminate) }
    }

    /// Tears the connection down.
    pub fn terminate(&self) {
        (self.terminate)();
    }
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Terminator").finish_non_exhaustive()
    }
}
