//! An in-process stand-in for a database server: connects with latency, refuses, kills connections.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A fake database server for pool tests: connections are counted, can be slow to open, refused,
/// or killed all at once (a restart), and all of it runs on tokio time.
///
/// Clones share the server.
///
/// # Examples
///
/// ```
/// use aqueduct_testkit::FakeDatabase;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let database = FakeDatabase::new();
/// let connection = database.connect().await.unwrap();
/// assert_eq!(database.open(), 1);
/// assert!(connection.ping().await.is_ok());
///
/// database.kill_all();
/// assert!(!connection.is_alive());
/// database.set_refusing(true);
/// assert!(database.connect().await.is_err());
/// drop(connection);
/// assert_eq!(database.open(), 0);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FakeDatabase {
    state: Arc<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    refusing: AtomicBool,
    latency: Mutex<Duration>,
    epoch: AtomicU64,
    next_id: AtomicU64,
    open: AtomicUsize,
    opened: AtomicUsize,
    attempts: AtomicUsize,
    pings: AtomicUsize,
}

/// One connection to a [`FakeDatabase`]; dropping it closes it.
#[derive(Debug)]
pub struct FakeConnection {
    id: u64,
    epoch: u64,
    state: Arc<FakeState>,
}

/// The error of a [`FakeDatabase`]: a refused connect or a dead connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeError {
    /// The server refused the connect.
    Refused,
    /// The connection was killed.
    Dead,
}

impl FakeDatabase {
    /// A server that accepts every connect at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a connection after the configured latency (a tokio sleep).
    ///
    /// # Errors
    ///
    /// [`FakeError::Refused`] while refusing.
    pub async fn connect(&self) -> Result<FakeConnection, FakeError> {
        self.state.attempts.fetch_add(1, Ordering::SeqCst);
        let latency = *lock(&self.state.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.state.refusing.load(Ordering::SeqCst) {
            return Err(FakeError::Refused);
        }
        self.state.open.fetch_add(1, Ordering::SeqCst);
        self.state.opened.fetch_add(1, Ordering::SeqCst);
        Ok(FakeConnection {
            id: self.state.next_id.fetch_add(1, Ordering::SeqCst),
            epoch: self.state.epoch.load(Ordering::SeqCst),
            state: Arc::clone(&self.state),
        })
    }

    /// While `true`, connects fail with [`FakeError::Refused`].
    pub fn set_refusing(&self, refusing: bool) {
        self.state.refusing.store(refusing, Ordering::SeqCst);
    }

    /// How long each connect takes.
    pub fn set_connect_latency(&self, latency: Duration) {
        *lock(&self.state.latency) = latency;
    }

    /// Kills every connection open now, as a server restart does.
    pub fn kill_all(&self) {
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections open now (made and not yet dropped), dead or alive.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections made since the start.
    pub fn opened(&self) -> usize {
        self.state.opened.load(Ordering::SeqCst)
    }

    /// Connect attempts since the start, refused ones included.
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    /// Pings answered or refused since the start.
    pub fn pings(&self) -> usize {
        self.state.pings.load(Ordering::SeqCst)
    }
}

impl FakeConnection {
    /// A number unique to this connection, in connect order.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether it survived every `kill_all` since it was opened.
    pub fn is_alive(&self) -> bool {
        self.epoch == self.state.epoch.load(Ordering::SeqCst)
    }

    /// A round trip: counted, and an error on a dead connection.
    ///
    /// # Errors
    ///
    /// [`FakeError::Dead`] after `kill_all`.
    pub async fn ping(&self) -> Result<(), FakeError> {
        self.state.pings.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if self.is_alive() { Ok(()) } else { Err(FakeError::Dead) }
    }
}

impl Drop for FakeConnection {
    fn drop(&mut self) {
        self.state.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Display for FakeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Refused => "connection refused",
            Self::Dead => "connection is dead",
        })
    }
}

impl std::error::Error for FakeError {}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
