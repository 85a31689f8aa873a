//! The pool builder: every setting with its default, validated when the pool is built.

use std::time::Duration;

use aqueduct_core::Error;

use crate::manager::Manager;
use crate::pool::Pool;

/// Which pool implementation sits under [`Pool`]; the API and the behaviour tests are the same.
///
/// # Examples
///
/// ```
/// use aqueduct_pool::Backend;
///
/// assert_eq!(Backend::default(), Backend::Deadpool);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// deadpool's managed core: fair FIFO waiters, a synchronous runtime-free `Drop`.
    #[default]
    Deadpool,
    /// bb8 (feature `bb8`), behind a FIFO gate of `max_size` permits so that waiters stay fair.
    #[cfg(feature = "bb8")]
    Bb8,
}

impl Backend {
    /// Every backend compiled in, default first: handy for tests that run once per backend.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(aqueduct_pool::Backend::all().contains(&aqueduct_pool::Backend::Deadpool));
    /// ```
    pub fn all() -> &'static [Self] {
        &[
            Self::Deadpool,
            #[cfg(feature = "bb8")]
            Self::Bb8,
        ]
    }
}

/// The largest `max_size` a pool accepts. deadpool reserves a slot for every connection when the
/// pool is built, so an unbounded value would allocate without limit (or panic on overflow).
///
/// # Examples
///
/// ```
/// assert_eq!(aqueduct_pool::MAX_POOL_SIZE, 65_536);
/// ```
pub const MAX_POOL_SIZE: usize = 65_536;

/// The settings of a pool, as validated by [`PoolBuilder::build`]; read them with [`Pool::config`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_pool::PoolConfig;
///
/// let config = PoolConfig::default();
/// assert_eq!(config.acquire_timeout, Some(Duration::from_secs(30)));
/// assert_eq!(config.max_size, 10);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Connections kept open at all times: created by `build()` and maintained in the background.
    pub min_size: usize,
    /// The most connections open at once, idle or checked out.
    pub max_size: usize,
    /// How long `acquire` waits in all (for a permit, connects and recycling); `None` waits forever.
    pub acquire_timeout: Option<Duration>,
    /// How long one connect may take.
    pub create_timeout: Option<Duration>,
    /// How long one recycle (validation or reset) may take.
    pub recycle_timeout: Option<Duration>,
    /// Connections are closed once this old (minus jitter), when idle or on return.
    pub max_lifetime: Option<Duration>,
    /// Each connection's lifetime is shortened by a random amount up to this, so they do not expire at once.
    pub lifetime_jitter: Duration,
    /// Idle connections are closed after this long, but never below `min_size`.
    pub idle_timeout: Option<Duration>,
    /// A connection idle longer than this is validated (a round trip) at checkout; `None` never validates.
    pub validate_after_idle: Option<Duration>,
    /// How often the background task reaps expired and idle connections and tops up `min_size`.
    pub maintenance_interval: Duration,
    /// When `true`, `build()` opens no connection and returns at once.
    pub lazy: bool,
    /// The pool implementation underneath.
    pub backend: Backend,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_size: 0,
            max_size: 10,
            acquire_timeout: Some(Duration::from_secs(30)),
            create_timeout: Some(Duration::from_secs(30)),
            recycle_timeout: Some(Duration::from_secs(5)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            lifetime_jitter: Duration::from_secs(45),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            validate_after_idle: Some(Duration::from_millis(500)),
            maintenance_interval: Duration::from_secs(1),
            lazy: false,
            backend: Backend::Deadpool,
        }
    }
}

impl PoolConfig {
    /// Checks the settings; the message says what to change.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_size == 0 {
            return Err("max_size is 0: a pool needs room for at least one connection; set max_size(1) or more".into());
        }
        if self.max_size > MAX_POOL_SIZE {
            return Err(format!(
                "max_size ({}) is above {MAX_POOL_SIZE}: the pool reserves room for every connection \
                 when it is built; lower max_size",
                self.max_size
            ));
        }
        if self.min_size > self.max_size {
            return Err(format!(
                "min_size ({}) exceeds max_size ({}): lower min_size or raise max_size",
                self.min_size, self.max_size
            ));
        }
        let non_zero = [
            (
                "acquire_timeout",
                self.acquire_timeout,
                "use try_acquire() to fail at once, or None to wait forever",
            ),
            ("create_timeout", self.create_timeout, "use None for no limit"),
            ("recycle_timeout", self.recycle_timeout, "use None for no limit"),
            ("max_lifetime", self.max_lifetime, "use None to keep connections forever"),
            ("idle_timeout", self.idle_timeout, "use None to keep idle connections"),
        ];
        for (name, value, advice) in non_zero {
            if value == Some(Duration::ZERO) {
                return Err(format!("{name} is zero, which would never succeed: {advice}"));
            }
        }
        if let Some(lifetime) = self.max_lifetime {
            if self.lifetime_jitter >= lifetime {
                return Err(format!(
                    "lifetime_jitter ({:?}) must be shorter than max_lifetime ({lifetime:?}): lower the jitter",
                    self.lifetime_jitter
                ));
            }
        }
        if self.maintenance_interval.is_zero() {
            return Err(
                "maintenance_interval is zero: the background task would spin; set at least 1 ms"
                    .into(),
            );
        }
        #[cfg(feature = "bb8")]
        if self.backend == Backend::Bb8 && u32::try_from(self.max_size).is_err() {
            return Err(format!(
                "max_size ({}) is too large for bb8, whose limit is u32::MAX",
                self.max_size
            ));
        }
        Ok(())
    }
}

/// Configures and builds a [`Pool`]; made by [`Pool::builder`].
///
/// Every setting has a default (see [`PoolConfig`]); `build()` rejects invalid combinations with an
/// [`Error::ContractViolation`] whose message says what to change.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_pool::{Manager, Pool};
///
/// #[derive(Debug)]
/// struct Numbers;
///
/// impl Manager for Numbers {
///     type Connection = u32;
///     type Error = std::io::Error;
///     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder(Numbers)
///     .min_size(2)
///     .max_size(4)
///     .acquire_timeout(Duration::from_secs(5))
///     .build()
///     .await
///     .unwrap();
/// assert_eq!(pool.status().size, 2);
///
/// let invalid = Pool::builder(Numbers).min_size(5).max_size(2).build().await;
/// assert!(invalid.unwrap_err().to_string().contains("lower min_size"));
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until you call `build().await`"]
pub struct PoolBuilder<M> {
    manager: M,
    config: PoolConfig,
}

impl<M: Manager> PoolBuilder<M> {
    pub(crate) fn new(manager: M) -> Self {
        Self { manager, config: PoolConfig::default() }
    }

    /// Connections kept open at all times (default 0); `build()` opens them unless lazy.
    pub fn min_size(mut self, min_size: usize) -> Self {
        self.config.min_size = min_size;
        self
    }

    /// The most connections open at once (default 10, at most [`MAX_POOL_SIZE`]).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// How long `acquire` waits in all (default 30 s); `None` waits forever.
    pub fn acquire_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.acquire_timeout = timeout.into();
        self
    }

    /// How long one connect may take (default 30 s); `None` for no limit.
    pub fn create_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.create_timeout = timeout.into();
        self
    }

    /// How long one recycle may take (default 5 s); `None` for no limit.
    pub fn recycle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.recycle_timeout = timeout.into();
        self
    }

    /// Close connections this old (default 30 min), each shortened by a random jitter; `None` keeps them.
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = lifetime.into();
        self
    }

    /// The most a connection's lifetime is shortened at random (default 45 s, 2.5 % of 30 min).
    pub fn lifetime_jitter(mut self, jitter: Duration) -> Self {
        self.config.lifetime_jitter = jitter;
        self
    }

    /// Close connections idle this long (default 10 min), never going below `min_size`; `None` keeps them.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// Validate a connection at checkout only when it was idle at least this long (default 500 ms,
    /// HikariCP's bypass window); `Some(Duration::ZERO)` validates every checkout, `None` never does.
    ///
    /// To spare each return a clock read, a return is stamped with its checkout time unless a
    /// maintenance tick passed meanwhile: after a long hold in a quiet pool a connection may be
    /// validated sooner than the window says, never later.
    pub fn validate_after_idle(mut self, window: impl Into<Option<Duration>>) -> Self {
        self.config.validate_after_idle = window.into();
        self
    }

    /// How often the background task runs (default 1 s): it reaps and tops up `min_size`, and a
    /// connection returned after one of its ticks is stamped with the exact time.
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.config.maintenance_interval = interval;
        self
    }

    /// When `true`, `build()` opens no connection and never fails on connecting (default `false`).
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.config.lazy = lazy;
        self
    }

    /// The pool implementation underneath (default [`Backend::Deadpool`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend;
        self
    }

    /// Validates the settings, starts the pool and, unless lazy, opens `min_size` connections.
    ///
    /// # Cancellation
    ///
    /// Dropping the future closes the connections opened so far.
    ///
    /// # Errors
    ///
    /// [`Error::ContractViolation`] for invalid settings, with a message saying what to change;
    /// [`Error::Operation`] with the first connect error while warming up (fail fast);
    /// [`Error::Elapsed`] when a warm-up connect exceeds `create_timeout`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the background task is spawned on it).
    pub async fn build(self) -> Result<Pool<M>, Error<M::Error>> {
        self.config.validate().map_err(|message| Error::ContractViolation { message })?;
        Pool::start(self.manager, self.config).await
    }
}
