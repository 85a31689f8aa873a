//! `Pool`: acquire, status, expire_all, close, and the background maintenance task.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use aqueduct_core::{Deadline, Elapsed, Error};
use tokio::time::Instant;

use crate::backend::{BackendPool, DeadpoolAdapter, Held};
use crate::config::{Backend, PoolBuilder, PoolConfig};
use crate::core::{Core, Failure, lock};
use crate::expiry::Due;
use crate::guard::PooledConnection;
use crate::manager::Manager;
use crate::status::PoolStatus;

/// The first pause between connect attempts inside one `acquire`; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between connect attempts inside one `acquire`.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long a caller waits in bb8's `get` without progress before asking bb8 anew; it doubles up
/// to [`BB8_MAX_RESTART`] (see `checkout_bb8`).
#[cfg(feature = "bb8")]
const BB8_FIRST_RESTART: Duration = Duration::from_millis(50);
/// The longest wait in bb8's `get` without progress before asking bb8 anew.
#[cfg(feature = "bb8")]
const BB8_MAX_RESTART: Duration = Duration::from_secs(30);
/// The first pause of `close` between looks at the connections still checked out; it doubles up
/// to [`MAX_CLOSE_RECHECK`] (a return normally tells `close` at once).
const FIRST_CLOSE_RECHECK: Duration = Duration::from_millis(1);
/// The longest pause of `close` between looks at the connections still checked out.
const MAX_CLOSE_RECHECK: Duration = Duration::from_millis(100);

/// deadpool's timeouts for taking a connection only if a permit is free (creation and recycling are
/// bounded by the pool's own timeouts).
const NO_WAIT: deadpool::managed::Timeouts =
    deadpool::managed::Timeouts { wait: Some(Duration::ZERO), create: None, recycle: None };

/// An async connection pool: the seed's `ConnectionPool(dsn, min_size, max_size)`.
///
/// Cheap to clone (an `Arc`); clones share the connections. Build one with [`Pool::builder`], take a
/// connection with [`acquire`](Pool::acquire), and it goes back when the guard drops.
///
/// # Examples
///
/// ```
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
/// # async fn main() -> Result<(), aqueduct_pool::Error<std::io::Error>> {
/// let pool = Pool::builder(Numbers).max_size(2).build().await?;
/// let connection = pool.acquire().await?;
/// assert_eq!(*connection, 7);
/// assert_eq!(pool.status().in_use, 1);
/// drop(connection);
/// assert_eq!(pool.status().idle, 1);
/// # Ok(())
/// # }
/// ```
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

pub(crate) struct Shared<M: Manager> {
    pub(crate) core: Arc<Core<M>>,
    backend: BackendPool<M>,
}

// ===== impl Pool =====

impl<M: Manager> Pool<M> {
    /// Starts configuring a pool around `manager`.
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
    /// let pool = Pool::builder(Numbers).min_size(1).build().await.unwrap();
    /// assert_eq!(pool.status().size, 1);
    /// # }
    /// ```
    pub fn builder(manager: M) -> PoolBuilder<M> {
        PoolBuilder::new(manager)
    }

    pub(crate) async fn start(manager: M, config: PoolConfig) -> Result<Self, Error<M::Error>> {
        let core = Arc::new(Core::new(manager, config));
        let backend = match core.config.backend {
            Backend::Deadpool => {
                let adapter = DeadpoolAdapter { core: Arc::clone(&core) };
                let pool = deadpool::managed::Pool::builder(adapter)
                    .max_size(core.max_size())
                    .build()
                    .map_err(|error| Error::ContractViolation { message: error.to_string() })?;
                BackendPool::Deadpool(pool)
            }
            #[cfg(feature = "bb8")]
            Backend::Bb8 => {
                let adapter = crate::backend::Bb8Adapter { core: Arc::clone(&core) };
                let max_size = u32::try_from(core.max_size()).unwrap_or(u32::MAX);
                let pool = bb8::Pool::builder()
                    .max_size(max_size)
                    .min_idle(None)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .test_on_check_out(true)
                    .retry_connection(false)
                    // Our own deadline bounds every wait; bb8's must only be longer.
                    .connection_timeout(Duration::from_secs(365 * 24 * 3600))
                    .build_unchecked(adapter);
                BackendPool::Bb8 {
                    pool,
                    gate: Arc::new(tokio::sync::Semaphore::new(core.max_size())),
                }
            }
        };
        let pool = Self { shared: Arc::new(Shared { core, backend }) };
        if !pool.shared.core.config.lazy {
            pool.warm_up().await?;
        }
        let weak = Arc::downgrade(&pool.shared);
        let interval = pool.shared.core.config.maintenance_interval;
        tokio::spawn(maintain(weak, interval));
        tokio::spawn(Arc::clone(&pool.shared.core.expiry).watch());
        Ok(pool)
    }

    /// Opens `min_size` connections at once and fails on the first error.
    async fn warm_up(&self) -> Result<(), Error<M::Error>> {
        let core = &self.shared.core;
        let opens = (0..core.min_size()).map(|_| core.open_slot());
        let slots = futures::future::try_join_all(opens)
            .await
            .map_err(|failure| failure_error(failure, core))?;
        self.shared.adopt(slots);
        Ok(())
    }

    /// Waits for a connection: an idle one, a new one if there is room, or the next one returned.
    ///
    /// Waiters are served first come, first served. Connect errors are retried with a short backoff
    /// until the deadline (the acquire timeout, clamped to the ambient [`Deadline`]).
    ///
    /// # Cancellation
    ///
    /// Cancel safe: dropping the future gives back its place in the queue, and a connection being
    /// created or recycled at that moment is closed. Nothing leaks; `status()` stays exact.
    ///
    /// # Errors
    ///
    /// - [`Error::Closed`] once [`close`](Pool::close) has begun;
    /// - [`Error::Elapsed`] when the deadline passes; its `last_error` is the last connect error this
    ///   call saw (or one a background connect saw), so a refused connect is not reported as a bare timeout.
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
    /// assert_eq!(*connection + 1, 8);
    /// # }
    /// ```
    pub async fn acquire(&self) -> Result<PooledConnection<M>, Error<M::Error>> {
        let core = &self.shared.core;
        if core.is_closing() {
            return Err(Error::Closed { reconnecting: false });
        }
        match &self.shared.backend {
            BackendPool::Deadpool(pool) if !core.queueing.load(Ordering::Relaxed) => {
                // First without queueing: a free permit means nobody is waiting (tokio's semaphore
                // hands a returned permit straight to the first waiter), so this never overtakes a
                // waiter, and it skips the waiter-queue machinery of a waiting `get`. Polled once
                // with the caller's own waker: an idle connection is ready at once.
                let mut taking = pin!(pool.timeout_get(&NO_WAIT));
                match std::future::poll_fn(|context| Poll::Ready(taking.as_mut().poll(context)))
                    .await
                {
                    Poll::Ready(Ok(object)) => return Ok(self.hand_out(Held::Deadpool(object))),
                    // Every permit is taken: wait in line below.
                    Poll::Ready(Err(deadpool::managed::PoolError::Timeout(_))) => {}
                    // A connect failed: retry under the deadline.
                    Poll::Ready(Err(error)) => {
                        let failed = std::future::ready(Err(deadpool_failure(error)));
                        return self.wait_for(pin!(failed)).await;
                    }
                    // Connecting or validating: finish under the deadline.
                    Poll::Pending => {
                        let finishing =
                            async { taking.await.map(Held::Deadpool).map_err(deadpool_failure) };
                        return self.wait_for(pin!(finishing)).await;
                    }
                }
            }
            // Callers are queueing: join the queue at once, polling deadpool's `get` directly (no
            // `get_once` state machine around it).
            BackendPool::Deadpool(pool) => {
                let getting = futures::FutureExt::map(pool.get(), |result| {
                    result.map(Held::Deadpool).map_err(deadpool_failure)
                });
                return self.wait_for(pin!(getting)).await;
            }
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { .. } => {}
        }
        self.wait_for(pin!(self.get_once())).await
    }

    /// Waits for `attempt` until the deadline, retrying failed connects with a backoff.
    async fn wait_for<F>(
        &self,
        mut attempt: Pin<&mut F>,
    ) -> Result<PooledConnection<M>, Error<M::Error>>
    where
        F: Future<Output = Result<Held<M>, Failure<M::Error>>>,
    {
        let core = &self.shared.core;
        // Polled with the caller's own waker from the start, so a waiter is queued exactly once (a
        // throw-away first poll would take the waiter queue's lock twice). The clock is read and
        // the deadline timer armed only after the first `Pending`.
        // The deadline is watched by the pool's expiry task (see `Expiry`), or by a timer of this
        // call's own when that task is gone.
        let mut registration = pin!(None::<tokio::sync::futures::Notified<'_>>);
        let mut timer = pin!(None::<tokio::time::Sleep>);
        let mut waiting: Option<(Instant, Option<Deadline>)> = None;
        let outcome = std::future::poll_fn(|context| {
            if let Poll::Ready(result) = attempt.as_mut().poll(context) {
                return Poll::Ready(Some(result));
            }
            let &mut (started, deadline) = waiting.get_or_insert_with(|| {
                if !core.queueing.load(Ordering::Relaxed) {
                    core.queueing.store(true, Ordering::Relaxed);
                }
                let started = Instant::now();
                let deadline = own_deadline(core, started);
                (started, deadline)
            });
            let Some(deadline) = deadline else { return Poll::Pending };
            if let Some(sleep) = timer.as_mut().as_pin_mut() {
                return sleep.poll(context).map(|()| None);
            }
            if deadline.at() <= started {
                return Poll::Ready(None);
            }
            match core.expiry.poll_due(registration.as_mut(), deadline.at(), context) {
                Due::Waiting => Poll::Pending,
                Due::Elapsed => Poll::Ready(None),
                Due::Unwatched => {
                    timer.set(Some(tokio::time::sleep_until(deadline.at())));
                    let sleep = timer.as_mut().as_pin_mut().expect("armed just above");
                    sleep.poll(context).map(|()| None)
                }
            }
        })
        .await;
        match outcome {
            Some(Ok(held)) => {
                if waiting.is_none() && core.queueing.load(Ordering::Relaxed) {
                    // Served at once: the queue has drained.
                    core.queueing.store(false, Ordering::Relaxed);
                }
                Ok(self.hand_out(held))
            }
            Some(Err(failure)) => {
                let (started, deadline) = waiting.unwrap_or_else(|| {
                    let started = Instant::now();
                    let deadline = own_deadline(core, started);
                    (started, deadline)
                });
                // Rare (a failed connect): boxed so that its timers do not bloat every acquire.
                Box::pin(self.acquire_slow(failure, started, deadline)).await
            }
            None => {
                let (started, deadline) = waiting.expect("the timer is armed only while waiting");
                let deadline = deadline.expect("the timer fires only for a deadline");
                Err(self.elapsed(deadline, started, None))
            }
        }
    }

    /// After a failed attempt: backs off, then tries again, until the deadline.
    async fn acquire_slow(
        &self,
        first_failure: Failure<M::Error>,
        started: Instant,
        deadline: Option<Deadline>,
    ) -> Result<PooledConnection<M>, Error<M::Error>> {
        let core = &self.shared.core;
        let mut last_error = None;
        let mut pause = FIRST_RETRY_PAUSE;
        let mut failure = first_failure;
        loop {
            match failure {
                Failure::Closed => return Err(Error::Closed { reconnecting: false }),
                Failure::Panicked(message) => {
                    return Err(Error::Panicked { index: None, message });
                }
                Failure::Connect(error) => last_error = Some(error),
                Failure::ConnectTimeout => {}
            }
            // Back off before the next connect, but never past the deadline.
            let wake = Instant::now() + pause;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
            match deadline {
                Some(deadline) if deadline.at() <= wake => {
                    tokio::time::sleep_until(deadline.at()).await;
                    return Err(self.elapsed(deadline, started, last_error));
                }
                _ => tokio::time::sleep_until(wake).await,
            }
            if core.is_closing() {
                return Err(Error::Closed { reconnecting: false });
            }
            let result = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.at(), self.get_once()).await {
                        Ok(result) => result,
                        Err(_) => return Err(self.elapsed(deadline, started, last_error)),
                    }
                }
                None => self.get_once().await,
            };
            match result {
                Ok(held) => return Ok(self.hand_out(held)),
                Err(next) => failure = next,
            }
        }
    }

    /// Takes a connection only if one is idle or can be created without waiting for another caller.
    ///
    /// # Cancellation
    ///
    /// As [`acquire`](Pool::acquire): cancel safe.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when all `max_size` connections are checked out; [`Error::Closed`] after close;
    /// [`Error::Operation`] with the connect error when a new connection fails.
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
    /// let held = pool.try_acquire().await.unwrap();
    /// assert!(pool.try_acquire().await.unwrap_err().is_full());
    /// # drop(held);
    /// # }
    /// ```
    pub async fn try_acquire(&self) -> Result<PooledConnection<M>, Error<M::Error>> {
        let core = &self.shared.core;
        if core.is_closing() {
            return Err(Error::Closed { reconnecting: false });
        }
        let full = Error::Full { capacity: core.max_size() };
        let held = match &self.shared.backend {
            BackendPool::Deadpool(pool) => match pool.timeout_get(&NO_WAIT).await {
                Ok(object) => Held::Deadpool(object),
                Err(deadpool::managed::PoolError::Timeout(_)) => return Err(full),
                Err(error) => return Err(deadpool_error(error)),
            },
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { pool, gate } => {
                let permit = Arc::clone(gate).try_acquire_owned().map_err(|_| full)?;
                self.checkout_bb8(pool, permit)
                    .await
                    .map_err(|failure| failure_error(failure, core))?
            }
        };
        Ok(self.hand_out(held))
    }

    async fn get_once(&self) -> Result<Held<M>, Failure<M::Error>> {
        match &self.shared.backend {
            BackendPool::Deadpool(pool) => {
                pool.get().await.map(Held::Deadpool).map_err(deadpool_failure)
            }
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { pool, gate } => {
                let core = &self.shared.core;
                core.counters.waiting.fetch_add(1, Ordering::AcqRel);
                let waiting = WaitingGuard(&core.counters.waiting);
                let permit = Arc::clone(gate).acquire_owned().await.map_err(|_| Failure::Closed)?;
                drop(waiting);
                self.checkout_bb8(pool, permit).await
            }
        }
    }

    /// Takes a connection from bb8 for a caller holding a gate permit.
    ///
    /// bb8 reports a failed connect only to its error sink and keeps the caller waiting for the
    /// next connection, so the adapter counts each failure of bb8's spawned connects and wakes the
    /// waiting callers: a caller returns what failed since it began (a panic, a connect error, or a
    /// timeout), or `Closed` once `close` has begun.
    ///
    /// bb8 gives a waiter a connect of its own only when it finds fewer connects pending than
    /// waiters, so a caller that arrives as a failed connect is still being counted can be left with
    /// none and nothing to wake it. As a safety net, a `get` that has made no progress for a while
    /// (50 ms, doubling up to 30 s) is started again, which asks bb8 anew; never while its own
    /// validation runs, which would be cut off and started over.
    #[cfg(feature = "bb8")]
    async fn checkout_bb8(
        &self,
        pool: &bb8::Pool<crate::backend::Bb8Adapter<M>>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Held<M>, Failure<M::Error>> {
        let core = &self.shared.core;
        let failures_before = core.bb8_failures.load(Ordering::Acquire);
        let mut getting = pin!(pool.get_owned());
        let mut pause = BB8_FIRST_RESTART;
        // Armed only once the `get` waits.
        let mut restart: Option<Pin<Box<tokio::time::Sleep>>> = None;
        // Whether the last poll of `getting` left it inside its own validation.
        let mut validating = false;
        loop {
            // Registered before the looks below, so that no event between them is missed.
            let mut event = pin!(core.bb8_event.notified());
            event.as_mut().enable();
            if core.is_closing() {
                return Err(Failure::Closed);
            }
            if core.bb8_failures.load(Ordering::Acquire) != failures_before {
                if let Some(message) = lock(&core.panic).take() {
                    return Err(Failure::Panicked(message));
                }
                return Err(match core.take_connect_error() {
                    Some(error) => Failure::Connect(error),
                    None => Failure::ConnectTimeout,
                });
            }
            let woken = std::future::poll_fn(|context| {
                let (polled, in_validation) =
                    crate::backend::poll_own_get(getting.as_mut(), context);
                validating = in_validation;
                if let Poll::Ready(got) = polled {
                    return Poll::Ready(Some(got));
                }
                if event.as_mut().poll(context).is_ready() {
                    return Poll::Ready(None);
                }
                let timer = restart.get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
                timer.as_mut().poll(context).map(|()| None)
            })
            .await;
            if let Some(got) = woken {
                // bb8 errs only when its own (one-year) connection timeout passes.
                return got
                    .map(|connection| Held::Bb8(connection, permit))
                    .map_err(|_| Failure::ConnectTimeout);
            }
            if restart.as_ref().is_some_and(|timer| timer.is_elapsed()) {
                if !validating {
                    getting.set(pool.get_owned());
                }
                pause = (pause * 2).min(BB8_MAX_RESTART);
                restart = None;
            }
        }
    }

    fn hand_out(&self, mut held: Held<M>) -> PooledConnection<M> {
        held.slot_mut().count_use();
        #[cfg(feature = "bb8")]
        if matches!(held, Held::Bb8(..)) {
            self.shared.core.counters.cycles.count_handout();
        }
        PooledConnection::new(held)
    }

    fn elapsed(
        &self,
        deadline: Deadline,
        started: Instant,
        last_error: Option<M::Error>,
    ) -> Error<M::Error> {
        let core = &self.shared.core;
        core.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        let timeout = if deadline.is_ambient() { None } else { core.config.acquire_timeout };
        let elapsed = Elapsed::new(timeout, deadline.at(), started.elapsed())
            .with_ambient(deadline.is_ambient());
        Error::Elapsed { elapsed, last_error: last_error.or_else(|| core.take_connect_error()) }
    }

    /// What the pool holds now, and its counters since it was built.
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
    /// let pool = Pool::builder(Numbers).min_size(3).max_size(5).build().await.unwrap();
    /// let status = pool.status();
    /// assert_eq!((status.size, status.idle, status.in_use, status.max_size), (3, 3, 0, 5));
    /// assert_eq!(status.created, 3);
    /// # }
    /// ```
    pub fn status(&self) -> PoolStatus {
        let core = &self.shared.core;
        let counters = &core.counters;
        let size = counters.size.load(Ordering::Acquire);
        let in_use = self.shared.in_use();
        let waiters = match &self.shared.backend {
            BackendPool::Deadpool(pool) => pool.status().waiting,
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { .. } => counters.waiting.load(Ordering::Acquire),
        };
        PoolStatus {
            max_size: core.max_size(),
            size,
            idle: size.saturating_sub(in_use),
            in_use,
            waiters,
            created: counters.created.load(Ordering::Relaxed),
            recycled: core.recycled(),
            validated: counters.validated.load(Ordering::Relaxed),
            evicted: counters.evicted.load(Ordering::Relaxed),
            timeouts: counters.timeouts.load(Ordering::Relaxed),
            connect_errors: counters.connect_errors.load(Ordering::Relaxed),
            closed: core.is_closing(),
        }
    }

    /// The settings the pool was built with.
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
    /// let pool = Pool::builder(Numbers).max_size(3).build().await.unwrap();
    /// assert_eq!(pool.config().max_size, 3);
    /// # }
    /// ```
    pub fn config(&self) -> &PoolConfig {
        &self.shared.core.config
    }

    /// The manager the pool connects with.
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
    /// let _manager: &Numbers = pool.manager();
    /// # }
    /// ```
    pub fn manager(&self) -> &M {
        &self.shared.core.manager
    }

    /// Retires every connection open now: idle ones are closed at once, checked-out ones when they
    /// come back (asyncpg's `expire_connections`, for credential rotation or a failover).
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
    /// let pool = Pool::builder(Numbers).min_size(2).build().await.unwrap();
    /// pool.expire_all();
    /// assert_eq!(pool.status().size, 0);
    /// assert_eq!(pool.status().evicted, 2);
    /// # }
    /// ```
    pub fn expire_all(&self) {
        self.shared.core.generation.fetch_add(1, Ordering::AcqRel);
        self.shared.reap_idle();
    }

    /// Closes the pool gracefully: the seed's `await pool.close()`.
    ///
    /// At once, new acquires fail with [`Error::Closed`] and idle connections are closed. Then it
    /// waits up to `grace` for checked-out connections to come back (each is closed on return);
    /// when `grace` ends, those still out are terminated through the manager's
    /// [`Terminator`](crate::Terminator) and the rest are closed whenever their guard drops.
    /// Returns how many connections were terminated.
    ///
    /// # Cancellation
    ///
    /// The pool stays closed; dropping the future only stops waiting for checked-out connections.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use aqueduct_pool::{Manager, Pool};
    /// # #[derive(Debug)] struct Numbers;
    /// # impl Manager for Numbers {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = Pool::builder(Numbers).min_size(2).build().await.unwrap();
    /// let terminated = pool.close(Duration::from_secs(1)).await;
    /// assert_eq!(terminated, 0);
    /// assert!(pool.acquire().await.unwrap_err().is_closed());
    /// assert_eq!(pool.status().size, 0);
    /// # }
    /// ```
    pub async fn close(&self, grace: Duration) -> usize {
        let core = &self.shared.core;
        core.closing.store(true, Ordering::Release);
        // Waiters fail at once; connections that come back from now on are closed.
        match &self.shared.backend {
            BackendPool::Deadpool(pool) => pool.close(),
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { gate, .. } => {
                gate.close();
                core.bb8_event.notify_waiters();
            }
        }
        self.shared.reap_idle();
        let all_back = async {
            // A guard dropped just as `close` began may have read `closing` before it was set and
            // so return its connection without telling: look again now and then, not only when told.
            let mut pause = FIRST_CLOSE_RECHECK;
            loop {
                let notified = core.returned.notified();
                if self.shared.in_use() == 0 {
                    return;
                }
                let _ = tokio::time::timeout(pause, notified).await;
                pause = (pause * 2).min(MAX_CLOSE_RECHECK);
            }
        };
        let terminated = match tokio::time::timeout(grace, all_back).await {
            Ok(()) => 0,
            Err(_) => core.terminate_all(),
        };
        self.shared.reap_idle();
        terminated
    }

    /// Whether [`close`](Pool::close) has begun.
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
    /// assert!(!pool.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.core.is_closing()
    }
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Pool").field("status", &self.status()).finish_non_exhaustive()
    }
}

// ===== impl Shared =====

impl<M: Manager> Drop for Shared<M> {
    fn drop(&mut self) {
        self.core.expiry.stop();
        // Stashed slots hold the core, which holds the stash: without this they would keep each
        // other, and their connections, alive for good.
        lock(&self.core.stash).clear();
    }
}

impl<M: Manager> Shared<M> {
    /// Connections checked out now (with deadpool, also one being recycled for a caller right now).
    fn in_use(&self) -> usize {
        match &self.backend {
            // deadpool counts its users (holders, and callers inside `get`); as many of them as it
            // has objects that are not idle hold one. Its count spares a checkout a counter of ours.
            BackendPool::Deadpool(pool) => {
                let status = pool.status();
                status.size.saturating_sub(status.available)
            }
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { .. } => self.core.counters.in_use(),
        }
    }

    /// Closes idle connections that are broken, expired, retired by `expire_all`, or idle too long
    /// (never going below `min_size` for idleness).
    fn reap_idle(&self) {
        let core = &self.core;
        let now = Instant::now();
        // Every slot dropped here counts itself as evicted.
        lock(&core.stash).retain(|slot| core.keeps_idle(slot, now));
        match &self.backend {
            BackendPool::Deadpool(pool) => {
                drop(pool.retain(|slot, _| core.keeps_idle(slot, now)));
                // The removed slots are dropped by now, so the size is exact: idleness may close only
                // the connections above `min_size`.
                let mut idled_out = core.idleness_budget(now, 0);
                lock(&core.stash).retain(|slot| !idled_out(slot));
                drop(pool.retain(|slot, _| !idled_out(slot)));
            }
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { pool, .. } => crate::backend::reap_bb8(pool, core),
        }
    }

    /// Puts freshly opened connections into the pool: bb8 takes them directly; for deadpool, which
    /// creates only through its manager, they wait in the stash its `create` draws from first.
    ///
    /// A slot is closed instead when `close` has begun (its reaping may be over) or when more than
    /// `max_size` connections are open (callers' own connects finished meanwhile). For deadpool the
    /// check runs under the stash's lock, which `close` takes to reap after setting `closing`.
    fn adopt(&self, slots: Vec<crate::core::Slot<M>>) {
        match &self.backend {
            BackendPool::Deadpool(_) => {
                let core = &self.core;
                let mut stash = lock(&core.stash);
                for slot in slots {
                    let room = core.counters.size.load(Ordering::Acquire) <= core.max_size();
                    if room && !core.is_closing() {
                        stash.push(slot);
                    }
                }
            }
            // bb8 refuses a connection past `max_size`; a refused or late one is dropped (closed).
            // `close` reaps after setting `closing`, and both reaping and `add` take bb8's lock.
            #[cfg(feature = "bb8")]
            BackendPool::Bb8 { pool, .. } => {
                for slot in slots {
                    if !self.core.is_closing() {
                        drop(pool.add(Box::new(slot)));
                    }
                }
                // `close` may have begun after the look above and reaped before the `add`: then
                // the look below sees it (bb8's lock orders the two), and this reaps instead.
                if self.core.is_closing() {
                    crate::backend::reap_bb8(pool, &self.core);
                }
            }
        }
    }

    /// Opens connections until `min_size` is reached, in the background so that no caller waits on
    /// them; connect errors are kept for timeout errors.
    async fn top_up(&self) {
        let core = &self.core;
        while core.counters.size.load(Ordering::Acquire) < core.min_size() && !core.is_closing() {
            match core.open_slot().await {
                Ok(slot) => self.adopt(vec![slot]),
                Err(Failure::Connect(error)) => {
                    core.store_connect_error(error);
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

/// The background task: reaps, then tops up to `min_size`, every `interval`, until the pool is
/// dropped or closed.
async fn maintain<M: Manager>(shared: Weak<Shared<M>>, interval: Duration) {
    let Some(first) = Instant::now().checked_add(interval) else {
        // An interval past the end of time: maintenance never runs.
        return;
    };
    let mut ticks = tokio::time::interval_at(first, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        if shared.core.is_closing() {
            return;
        }
        shared.core.clock.tick();
        shared.reap_idle();
        shared.top_up().await;
    }
}

#[cfg(feature = "bb8")]
struct WaitingGuard<'a>(&'a std::sync::atomic::AtomicUsize);

#[cfg(feature = "bb8")]
impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The deadline of an acquire that starts waiting at `started`: its acquire timeout from then,
/// clamped to the ambient [`Deadline`]. A timeout so long that it passes the end of time is no
/// deadline of its own.
fn own_deadline<M: Manager>(core: &Core<M>, started: Instant) -> Option<Deadline> {
    Deadline::clamp(core.config.acquire_timeout.and_then(|timeout| started.checked_add(timeout)))
}

/// What a failed deadpool `get` means for an acquire.
fn deadpool_failure<E>(error: deadpool::managed::PoolError<Failure<E>>) -> Failure<E> {
    match error {
        deadpool::managed::PoolError::Backend(failure) => failure,
        deadpool::managed::PoolError::Closed => Failure::Closed,
        _ => Failure::ConnectTimeout,
    }
}

fn deadpool_error<E>(error: deadpool::managed::PoolError<Failure<E>>) -> Error<E> {
    match error {
        deadpool::managed::PoolError::Backend(Failure::Connect(error)) => Error::Operation(error),
        deadpool::managed::PoolError::Closed
        | deadpool::managed::PoolError::Backend(Failure::Closed) => {
            Error::Closed { reconnecting: false }
        }
        _ => Error::Elapsed {
            elapsed: Elapsed::new(None, Instant::now(), Duration::ZERO),
            last_error: None,
        },
    }
}

fn failure_error<M: Manager>(failure: Failure<M::Error>, core: &Core<M>) -> Error<M::Error> {
    match failure {
        Failure::Panicked(message) => Error::Panicked { index: None, message },
        Failure::Connect(error) => Error::Operation(error),
        Failure::Closed => Error::Closed { reconnecting: false },
        Failure::ConnectTimeout => Error::Elapsed {
            elapsed: Elapsed::new(
                core.config.create_timeout,
                Instant::now(),
                core.config.create_timeout.unwrap_or_default(),
            ),
            last_error: None,
        },
    }
}
