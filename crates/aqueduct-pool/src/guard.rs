//! `PooledConnection`: the RAII guard whose `Drop` returns the connection (the seed's `__aexit__`).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::backend::Held;
use crate::manager::Manager;

/// A connection checked out of a [`Pool`](crate::Pool); dropping it gives the connection back.
///
/// The return is synchronous and needs no runtime: the connection goes back to the idle queue, or is
/// closed if it is broken, expired, retired by `expire_all`, or the pool is closing.
/// It derefs to the manager's connection.
///
/// # Examples
///
/// ```
/// # use aqueduct_pool::{Manager, Pool};
/// # #[derive(Debug)] struct Numbers;
/// # impl Manager for Numbers {
/// #     type Connection = u32;
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder(Numbers).build().await.unwrap();
/// {
///     let mut connection = pool.acquire().await.unwrap();
///     *connection += 1; // DerefMut to the connection
///     assert_eq!(connection.uses(), 1);
/// } // returned here
/// assert_eq!(pool.status().in_use, 0);
/// assert_eq!(*pool.acquire().await.unwrap(), 8);
/// # }
/// ```
#[must_use = "dropping the guard returns the connection at once"]
pub struct PooledConnection<M: Manager> {
    held: Option<Held<M>>,
}

impl<M: Manager> PooledConnection<M> {
    pub(crate) fn new(held: Held<M>) -> Self {
        Self { held: Some(held) }
    }

    fn held(&self) -> &Held<M> {
        self.held.as_ref().expect("a guard holds its connection until dropped")
    }

    fn held_mut(&mut self) -> &mut Held<M> {
        self.held.as_mut().expect("a guard holds its connection until dropped")
    }

    /// Closes the connection when the guard drops instead of returning it (for example after a
    /// protocol error the manager cannot see).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aqueduct_pool::{Manager, Pool};
    /// # #[derive(Debug)] struct Numbers;
    /// # impl Manager for Numbers {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder(Numbers).build().await.unwrap();
    /// let mut connection = pool.acquire().await.unwrap();
    /// connection.mark_broken();
    /// drop(connection);
    /// assert_eq!(pool.status().size, 0);
    /// assert_eq!(pool.status().evicted, 1);
    /// # }
    /// ```
    pub fn mark_broken(&mut self) {
        self.held_mut().slot_mut().broken = true;
    }

    /// Whether the connection will be closed instead of returned.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aqueduct_pool::{Manager, Pool};
    /// # #[derive(Debug)] struct Numbers;
    /// # impl Manager for Numbers {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder(Numbers).build().await.unwrap();
    /// let connection = pool.acquire().await.unwrap();
    /// assert!(!connection.is_marked_broken());
    /// # }
    /// ```
    pub fn is_marked_broken(&self) -> bool {
        self.held().slot().broken
    }

    /// Passes a result through, and marks the connection broken when its error is fatal by
    /// [`Manager::is_fatal`] (for PostgreSQL: SQLSTATE class 08, 57P01–57P03, a closed connection).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aqueduct_pool::{Manager, Pool};
    /// #[derive(Debug)]
    /// struct Numbers;
    ///
    /// impl Manager for Numbers {
    ///     type Connection = u32;
    ///     type Error = std::io::Error;
    ///     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    ///     fn is_fatal(&self, error: &std::io::Error) -> bool {
    ///         error.kind() == std::io::ErrorKind::ConnectionReset
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder(Numbers).build().await.unwrap();
    /// let mut connection = pool.acquire().await.unwrap();
    /// let reset: Result<(), _> = Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    /// assert!(connection.observe(reset).is_err());
    /// assert!(connection.is_marked_broken());
    /// # }
    /// ```
    pub fn observe<T>(&mut self, result: Result<T, M::Error>) -> Result<T, M::Error> {
        if let Err(error) = &result {
            let slot = self.held_mut().slot_mut();
            if slot.core.manager.is_fatal(error) {
                slot.broken = true;
            }
        }
        result
    }

    /// How long ago the connection was opened.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aqueduct_pool::{Manager, Pool};
    /// # #[derive(Debug)] struct Numbers;
    /// # impl Manager for Numbers {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let pool = Pool::builder(Numbers).build().await.unwrap();
    /// let connection = pool.acquire().await.unwrap();
    /// tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    /// assert!(connection.age() >= std::time::Duration::from_secs(3));
    /// # }
    /// ```
    pub fn age(&self) -> Duration {
        self.held().slot().created.elapsed()
    }

    /// How many times this connection was handed out, this checkout included.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aqueduct_pool::{Manager, Pool};
    /// # #[derive(Debug)] struct Numbers;
    /// # impl Manager for Numbers {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder(Numbers).max_size(1).build().await.unwrap();
    /// drop(pool.acquire().await.unwrap());
    /// assert_eq!(pool.acquire().await.unwrap().uses(), 2);
    /// # }
    /// ```
    pub fn uses(&self) -> u64 {
        self.held().slot().uses
    }
}

impl<M: Manager> Deref for PooledConnection<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.held().slot().connection
    }
}

impl<M: Manager> DerefMut for PooledConnection<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.held_mut().slot_mut().connection
    }
}

impl<M: Manager> Drop for PooledConnection<M> {
    fn drop(&mut self) {
        let Some(held) = &mut self.held else { return };
        let keep = held.slot_mut().on_return();
        if held.returns_by_drop(keep) {
            // The common case, without moving the connection out: the `held` field is dropped right
            // after this, and deadpool's `Object` puts the connection back.
            return;
        }
        if let Some(held) = self.held.take() {
            held.release(keep);
        }
    }
}

impl<M: Manager> std::fmt::Debug for PooledConnection<M>
where
    M::Connection: std::fmt::Debug,
{
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PooledConnection")
            .field("connection", &**self)
            .finish_non_exhaustive()
    }
}
