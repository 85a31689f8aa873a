//! The PostgreSQL manager on tokio-postgres: recycling methods, an `on_connect` hook, a bounded
//! statement cache, fatal-error eviction, and `with_connection`, the seed's `managed_connection`.

mod cache;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aqueduct_core::Error;
use tokio::task::AbortHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, SimpleQueryMessage, Statement};

use crate::manager::{Manager, Terminator};

pub use self::cache::StatementCache;
pub use tokio_postgres;

/// The default capacity of each connection's statement cache.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 100;

/// What a connection goes through at checkout, like deadpool-postgres' `RecyclingMethod`.
///
/// Every method first checks, for free, that the client is not closed and saw no fatal error.
///
/// # Examples
///
/// ```
/// use aqueduct_pool::postgres::RecyclingMethod;
///
/// assert_eq!(RecyclingMethod::default(), RecyclingMethod::Verified);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecyclingMethod {
    /// No round trip: trust the connection.
    Fast,
    /// An empty query, but only when the pool asks for validation (the connection was idle longer
    /// than [`validate_after_idle`](crate::PoolBuilder::validate_after_idle)).
    #[default]
    Verified,
    /// Reset the session on every checkout ([`CLEAN_SQL`]); prepared statements are kept.
    Clean,
    /// Run this SQL on every checkout.
    Custom(String),
}

/// The session reset of [`RecyclingMethod::Clean`]: deadpool-postgres' statements after a `ROLLBACK`.
///
/// It starts with a `ROLLBACK`, so a transaction left open by a cancelled task is not reused either.
pub const CLEAN_SQL: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
                             SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;";

type OnConnect = Arc<
    dyn for<'a> Fn(
            &'a PgConnection,
        )
            -> Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>>
        + Send
        + Sync,
>;

/// Connects to PostgreSQL with tokio-postgres (without TLS) for a [`Pool`](crate::Pool).
///
/// # Examples
///
/// ```
/// use aqueduct_pool::postgres::{PgManager, RecyclingMethod};
///
/// let manager = PgManager::from_url("postgres://postgres@127.0.0.1:5432/postgres")
///     .unwrap()
///     .recycling_method(RecyclingMethod::Fast)
///     .statement_cache_capacity(50)
///     .on_connect(|connection| Box::pin(async move {
///         connection.batch_execute("SET search_path TO public").await
///     }));
/// assert_eq!(manager.config().get_dbname(), Some("postgres"));
/// ```
#[derive(Clone)]
pub struct PgManager {
    config: tokio_postgres::Config,
    recycling_method: RecyclingMethod,
    statement_cache_capacity: usize,
    on_connect: Option<OnConnect>,
}

impl PgManager {
    /// A manager for this tokio-postgres configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut config = aqueduct_pool::postgres::tokio_postgres::Config::new();
    /// config.host("127.0.0.1").user("postgres").dbname("test");
    /// let _manager = aqueduct_pool::postgres::PgManager::new(config);
    /// ```
    pub fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            recycling_method: RecyclingMethod::default(),
            statement_cache_capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
            on_connect: None,
        }
    }

    /// A manager for a URL (`postgres://user@host:port/db`) or a `key=value` string.
    ///
    /// # Errors
    ///
    /// [`Error::Operation`] when tokio-postgres cannot parse it.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pool::postgres::PgManager;
    ///
    /// assert!(PgManager::from_url("host=127.0.0.1 user=postgres").is_ok());
    /// assert!(PgManager::from_url("postgres://[bad").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, Error<tokio_postgres::Error>> {
        Ok(Self::new(url.parse()?))
    }

    /// What checkout does to a connection (default [`RecyclingMethod::Verified`]).
    #[must_use]
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.recycling_method = method;
        self
    }

    /// How many prepared statements each connection keeps (default 100, least recently used evicted
    /// first); 0 disables the cache, as pgbouncer's transaction mode before 1.21 requires.
    #[must_use]
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// A hook run on each new connection before the pool hands it out (`SET search_path`, …); its
    /// error fails the connect. With [`RecyclingMethod::Clean`] or `Custom` it runs again after each
    /// reset, since `RESET ALL` reverts the `SET`s it made.
    #[must_use]
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(
                &'a PgConnection,
            ) -> Pin<
                Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>,
            > + Send
            + Sync
            + 'static,
    {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Sets `application_name`, which shows in `pg_stat_activity`.
    #[must_use]
    pub fn application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// The tokio-postgres configuration.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Opens one connection and spawns its driver task; the pool calls this through [`Manager`].
    ///
    /// # Errors
    ///
    /// The connect error, or the `on_connect` hook's error.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the driver task is spawned on it).
    pub async fn open(&self) -> Result<PgConnection, tokio_postgres::Error> {
        let (client, driver) = self.config.connect(NoTls).await?;
        let driver = tokio::spawn(async move {
            // The driver ends when the client is dropped or the socket fails; the client reports it.
            let _ = driver.await;
        });
        let connection = PgConnection {
            client,
            driver: driver.abort_handle(),
            fatal: AtomicBool::new(false),
            cache: StatementCache::new(self.statement_cache_capacity),
        };
        if let Some(hook) = &self.on_connect {
            hook(&connection).await?;
        }
        Ok(connection)
    }
}

impl fmt::Debug for PgManager {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PgManager")
            .field("config", &self.config)
            .field("recycling_method", &self.recycling_method)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("on_connect", &self.on_connect.is_some())
            .finish()
    }
}

impl Manager for PgManager {
    type Connection = PgConnection;
    type Error = tokio_postgres::Error;

    fn connect(&self) -> impl Future<Output = Result<PgConnection, tokio_postgres::Error>> + Send {
        self.open()
    }

    async fn recycle(
        &self,
        connection: &mut PgConnection,
        validate: bool,
    ) -> Result<(), tokio_postgres::Error> {
        let sql = match &self.recycling_method {
            RecyclingMethod::Fast => return Ok(()),
            RecyclingMethod::Verified if validate => return connection.batch_execute("").await,
            RecyclingMethod::Verified => return Ok(()),
            RecyclingMethod::Clean => CLEAN_SQL,
            RecyclingMethod::Custom(sql) => sql.as_str(),
        };
        connection.batch_execute(sql).await?;
        // A reset undoes what the hook set up (`RESET ALL` reverts its `SET`s): set it up again.
        match &self.on_connect {
            Some(hook) => hook(connection).await,
            None => Ok(()),
        }
    }

    fn is_broken(&self, connection: &mut PgConnection) -> bool {
        connection.is_broken()
    }

    fn is_fatal(&self, error: &tokio_postgres::Error) -> bool {
        is_fatal(error)
    }

    fn terminator(&self, connection: &PgConnection) -> Option<Terminator> {
        let driver = connection.driver.clone();
        Some(Terminator::new(move || driver.abort()))
    }
}

/// Whether an error means the connection is unusable: a closed connection, an I/O failure, SQLSTATE
/// class 08 (connection exception), or 57P01–57P03 (admin shutdown, crash shutdown, cannot connect now).
///
/// # Examples
///
/// ```
/// use aqueduct_pool::postgres::is_fatal_sqlstate;
///
/// assert!(is_fatal_sqlstate("08006"));
/// assert!(is_fatal_sqlstate("57P01"));
/// assert!(!is_fatal_sqlstate("23505")); // unique violation: the connection is fine
/// ```
pub fn is_fatal(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(state) => is_fatal_sqlstate(state.code()),
        None => std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// Whether a SQLSTATE code means the connection is unusable (see [`is_fatal`]).
pub fn is_fatal_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// One PostgreSQL connection: a tokio-postgres [`Client`] (through `Deref`) with a bounded statement
/// cache, query helpers that remember fatal errors, and a driver task aborted when it drops.
///
/// Use the helpers (`query`, `execute`, `simple_query`, …) where you can: a fatal error seen through
/// them evicts the connection when it goes back to the pool. Through `Deref`, use
/// [`PooledConnection::observe`](crate::PooledConnection::observe) for the same effect.
pub struct PgConnection {
    client: Client,
    driver: AbortHandle,
    fatal: AtomicBool,
    cache: StatementCache,
}

impl PgConnection {
    /// Whether the client is closed or saw a fatal error; the pool closes such a connection on return.
    pub fn is_broken(&self) -> bool {
        self.fatal.load(Ordering::Acquire) || self.client.is_closed()
    }

    /// The tokio-postgres client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This connection's statement cache.
    pub fn statement_cache(&self) -> &StatementCache {
        &self.cache
    }

    fn note<T>(
        &self,
        result: Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        if let Err(error) = &result {
            if is_fatal(error) {
                self.fatal.store(true, Ordering::Release);
            }
        }
        result
    }

    /// Prepares `sql` once per connection and returns the cached statement afterwards.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before the statement is prepared caches nothing.
    ///
    /// # Errors
    ///
    /// The prepare error.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.cache.get(sql) {
            return Ok(statement);
        }
        let statement = self.note(self.client.prepare(sql).await)?;
        self.cache.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared through the cache) and returns its rows.
    ///
    /// # Cancellation
    ///
    /// Dropping the future abandons the query; the connection stays usable.
    ///
    /// # Errors
    ///
    /// The query error; a fatal one also marks the connection broken.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.note(self.client.query(&statement, params).await)
    }

    /// Runs `sql` (prepared through the cache) and returns exactly one row.
    ///
    /// # Cancellation
    ///
    /// As [`query`](Self::query).
    ///
    /// # Errors
    ///
    /// The query error, or an error when the query returns no row or several.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.note(self.client.query_one(&statement, params).await)
    }

    /// Runs `sql` (prepared through the cache) and returns the number of rows it changed.
    ///
    /// # Cancellation
    ///
    /// As [`query`](Self::query).
    ///
    /// # Errors
    ///
    /// The query error; a fatal one also marks the connection broken.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.note(self.client.execute(&statement, params).await)
    }

    /// Runs one or more statements with the simple query protocol and returns their messages.
    ///
    /// # Cancellation
    ///
    /// As [`query`](Self::query).
    ///
    /// # Errors
    ///
    /// The query error; a fatal one also marks the connection broken.
    pub async fn simple_query(
        &self,
        sql: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        self.note(self.client.simple_query(sql).await)
    }

    /// Runs one or more statements with the simple query protocol, discarding their rows.
    ///
    /// # Cancellation
    ///
    /// As [`query`](Self::query).
    ///
    /// # Errors
    ///
    /// The query error; a fatal one also marks the connection broken.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.note(self.client.batch_execute(sql).await)
    }
}

impl std::ops::Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // The driver is aborted before the client is dropped, so it stops even with a query in
        // flight, and the socket closes without a Terminate message: the server sees the client
        // disconnect and rolls back any transaction left open.
        self.driver.abort();
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PgConnection")
            .field("closed", &self.client.is_closed())
            .field("fatal", &self.fatal.load(Ordering::Relaxed))
            .field("cached_statements", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Opens one connection, runs `work` with it, and always closes it afterwards, also when `work`
/// fails, panics or is cancelled: the seed's `async with managed_connection(url) as conn`.
///
/// # Cancellation
///
/// Dropping the future closes the connection.
///
/// # Errors
///
/// [`Error::Operation`] with the parse or connect error; otherwise whatever `work` returns,
/// converted into `Error<tokio_postgres::Error>`.
///
/// # Panics
///
/// Outside a tokio runtime; a panic in `work` propagates after the connection is closed.
///
/// # Examples
///
/// ```no_run
/// use aqueduct_pool::postgres::with_connection;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aqueduct_pool::Error<tokio_postgres::Error>> {
/// let one: i32 = with_connection("postgres://postgres@127.0.0.1/test", async |connection| {
///     connection.query_one("SELECT 1", &[]).await.map(|row| row.get(0))
/// })
/// .await?;
/// assert_eq!(one, 1);
/// # Ok(())
/// # }
/// ```
pub async fn with_connection<T, X, F>(url: &str, work: F) -> Result<T, Error<tokio_postgres::Error>>
where
    F: AsyncFnOnce(&mut PgConnection) -> Result<T, X>,
    X: Into<Error<tokio_postgres::Error>>,
{
    let manager = PgManager::from_url(url)?;
    let mut connection = manager.open().await?;
    let result = work(&mut connection).await.map_err(Into::into);
    drop(connection);
    result
}
