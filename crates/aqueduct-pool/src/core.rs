//! The state every backend shares: the manager, the settings, counters, and each connection's slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::PoolConfig;
use crate::manager::{Manager, Terminator};

/// Why a backend could not hand out a connection.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// Connecting failed with the manager's error.
    Connect(E),
    /// Connecting took longer than `create_timeout`.
    ConnectTimeout,
    /// The pool is closed.
    Closed,
    /// The manager panicked in a task the caller does not run (bb8 connects in tasks of its own).
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    Panicked(String),
}

/// Shared by the pool handle, the backend adapter and every slot.
pub(crate) struct Core<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: PoolConfig,
    pub(crate) counters: Counters,
    pub(crate) generation: AtomicU64,
    pub(crate) closing: AtomicBool,
    /// Whether callers are queueing for connections: set when an acquire has to wait, cleared when
    /// one is served at once. While set, `acquire` queues at once instead of first trying for a
    /// free connection, a try that would fail and bounce deadpool's counters between the cores.
    pub(crate) queueing: AtomicBool,
    /// Notified whenever a checked-out connection comes back while closing.
    pub(crate) returned: Notify,
    /// Every open connection by id: its use count and terminator, for `status()` and `close`.
    registry: Mutex<HashMap<u64, Registered>>,
    next_id: AtomicU64,
    /// Connections opened ahead of demand that deadpool has not taken in yet (it only creates through
    /// its manager's `create`, which draws from here first).
    pub(crate) stash: Mutex<Vec<Slot<M>>>,
    /// The message of a panic in a connect no caller was running (bb8's spawned connects).
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) panic: Mutex<Option<String>>,
    /// bb8's spawned connects that failed (error, timeout or panic) so far. bb8 tells only its
    /// error sink, so its waiting callers compare this with its value when they began.
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) bb8_failures: AtomicU64,
    /// Notified when a spawned bb8 connect fails and when `close` begins, for callers waiting in
    /// bb8's `get`.
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) bb8_event: Notify,
    /// The last error of a connect no caller was waiting on (background top-up, bb8's spawned connects).
    last_connect_error: Mutex<Option<M::Error>>,
    /// The time settings of the checkout and return checks, and the maintenance ticks.
    pub(crate) clock: Clock,
    /// The deadlines of the callers waiting in `acquire`.
    pub(crate) expiry: Arc<crate::expiry::Expiry>,
}

/// The time settings of the checks, and the maintenance ticks that let a return skip the clock.
///
/// A checkout reads the clock once. A return usually does not: it stamps its checkout time as the
/// time it came back, which is early by the time it was held. Such a stamp is never later than the
/// real return time, so an idle time computed from it is never too short: validation may run a
/// little more often than the window says, never less often. A return reads the clock only when a
/// maintenance tick passed while it was out (it may have been held long), or when its connection
/// is within two maintenance intervals of expiring (so that an expired connection is still closed
/// when it comes back).
pub(crate) struct Clock {
    /// Maintenance ticks so far.
    ticks: AtomicU64,
    /// How close to its expiry a checkout must be for its return to read the clock.
    return_horizon: Duration,
    idle_timeout: Option<Duration>,
    validate_after_idle: Option<Duration>,
    /// The earlier of the two (`Duration::MAX` for neither): how long a returned slot stays fresh.
    fresh_for: Duration,
}

/// The counters behind [`PoolStatus`](crate::PoolStatus).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) size: AtomicUsize,
    /// With bb8: checkouts and returns so far, striped by thread (their difference is `in_use`;
    /// deadpool counts its own users).
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) cycles: Cycles,
    /// Recycled checkouts (`uses - 1`) of the connections closed so far.
    pub(crate) retired_recycles: AtomicU64,
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) waiting: AtomicUsize,
    pub(crate) created: AtomicU64,
    pub(crate) validated: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
}

/// How many stripes [`Cycles`] and the deadline watch ([`Expiry`](crate::expiry::Expiry)) spread
/// their writes over.
pub(crate) const STRIPES: usize = 8;

/// The stripe of the calling thread: threads numbered in the order they first ask, modulo [`STRIPES`].
#[inline]
pub(crate) fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialised (no lazy registration on every access); `STRIPES` means unassigned.
        static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(STRIPES) };
    }
    let mut index = INDEX.get();
    if index == STRIPES {
        index = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        INDEX.set(index);
    }
    index
}

/// Checkout and return counts, one stripe per thread (modulo [`STRIPES`]): the threads that acquire
/// and release at once each write a cache line of their own instead of fighting over one.
#[derive(Debug, Default)]
pub(crate) struct Cycles([Stripe; STRIPES]);

/// One thread's checkout and return counts, alone on their cache lines (two, for the adjacent-line
/// prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    handed_out: AtomicU64,
    returned: AtomicU64,
}

impl Cycles {
    /// The stripe of the calling thread.
    fn stripe(&self) -> &Stripe {
        &self.0[stripe_index()]
    }

    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) fn count_handout(&self) {
        self.stripe().handed_out.fetch_add(1, Ordering::AcqRel);
    }

    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) fn count_return(&self) {
        self.stripe().returned.fetch_add(1, Ordering::AcqRel);
    }

    /// Checkouts so far.
    pub(crate) fn handed_out(&self) -> u64 {
        self.0.iter().map(|stripe| stripe.handed_out.load(Ordering::Acquire)).sum()
    }

    /// Connections checked out now.
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) fn in_use(&self) -> usize {
        // Every `returned` first: a return always follows its checkout, and a return seen here makes
        // its checkout visible to the loads below, so this never underflows.
        let returned: u64 =
            self.0.iter().map(|stripe| stripe.returned.load(Ordering::Acquire)).sum();
        usize::try_from(self.handed_out().saturating_sub(returned)).unwrap_or(usize::MAX)
    }
}

impl Counters {
    /// Connections checked out now (bb8: deadpool counts its own).
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) fn in_use(&self) -> usize {
        self.cycles.in_use()
    }
}

/// What the pool keeps of each open connection outside its slot.
struct Registered {
    uses: Arc<AtomicU64>,
    terminator: Option<Terminator>,
}

/// One open connection and what the pool knows about it.
pub(crate) struct Slot<M: Manager> {
    pub(crate) connection: M::Connection,
    id: u64,
    pub(crate) created: Instant,
    /// When it expires (far in the future without `max_lifetime`).
    expires_at: Instant,
    /// A checkout at or after this reads the clock on return, since the connection may expire while
    /// out: two maintenance intervals before `expires_at`.
    read_clock_from: Instant,
    /// When it was last returned (no later than the real time, see [`Clock`]), or opened.
    last_used: Instant,
    /// When it was last checked out (read from the clock), or opened.
    checked_out: Instant,
    /// The maintenance tick count at that checkout.
    checkout_tick: u64,
    /// Until when a checkout needs no time-based check: the earliest of its expiry, the end of the
    /// validation window and the idle timeout, counted from `last_used`.
    fresh_until: Instant,
    generation: u64,
    /// Set by `mark_broken`, a fatal error, or a failed return check: the slot must not be reused.
    pub(crate) broken: bool,
    /// How many times it was handed out.
    pub(crate) uses: u64,
    /// `uses` again, for `status()`: written only by the caller that holds the slot.
    shared_uses: Arc<AtomicU64>,
    pub(crate) core: Arc<Core<M>>,
}

// ===== impl Core =====

impl<M: Manager> Core<M> {
    pub(crate) fn new(manager: M, config: PoolConfig) -> Self {
        Self {
            manager,
            counters: Counters::default(),
            generation: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            queueing: AtomicBool::new(false),
            returned: Notify::new(),
            registry: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stash: Mutex::new(Vec::new()),
            panic: Mutex::new(None),
            bb8_failures: AtomicU64::new(0),
            bb8_event: Notify::new(),
            last_connect_error: Mutex::new(None),
            clock: Clock::new(&config),
            expiry: Arc::new(crate::expiry::Expiry::new()),
            config,
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Tells a `close` waiting for checked-out connections that one no longer counts as in use.
    pub(crate) fn after_return(&self) {
        if self.is_closing() {
            self.returned.notify_waiters();
        }
    }

    /// Connects within `create_timeout` and wraps the connection in a slot.
    pub(crate) async fn open_slot(self: &Arc<Self>) -> Result<Slot<M>, Failure<M::Error>> {
        if self.is_closing() {
            return Err(Failure::Closed);
        }
        let connected = match self.config.create_timeout {
            Some(limit) => match tokio::time::timeout(limit, self.manager.connect()).await {
                Ok(result) => result,
                Err(_) => {
                    self.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(Failure::ConnectTimeout);
                }
            },
            None => self.manager.connect().await,
        };
        let connection = connected.map_err(|error| {
            self.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
            Failure::Connect(error)
        })?;
        if self.is_closing() {
            // `close` began while connecting: it may already have waited for the connections in
            // use and reaped the idle ones, so this one must not join the pool. Closed at once,
            // and never counted as created.
            drop(connection);
            return Err(Failure::Closed);
        }
        let now = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let terminator = self.manager.terminator(&connection);
        let shared_uses = Arc::new(AtomicU64::new(0));
        let registered = Registered { uses: Arc::clone(&shared_uses), terminator };
        lock(&self.registry).insert(id, registered);
        self.counters.size.fetch_add(1, Ordering::AcqRel);
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        let expires_at = self
            .config
            .max_lifetime
            .and_then(|lifetime| now.checked_add(jittered(lifetime, self.config.lifetime_jitter)))
            .unwrap_or_else(|| far_future(now));
        let read_clock_from = if self.config.max_lifetime.is_some() {
            expires_at.checked_sub(self.clock.return_horizon).unwrap_or(now).max(now)
        } else {
            expires_at
        };
        Ok(Slot {
            connection,
            id,
            created: now,
            expires_at,
            read_clock_from,
            last_used: now,
            checked_out: now,
            checkout_tick: self.clock.ticks(),
            fresh_until: self.clock.fresh_until(expires_at, now),
            generation: self.generation.load(Ordering::Acquire),
            broken: false,
            uses: 0,
            shared_uses,
            core: Arc::clone(self),
        })
    }

    /// Whether an idle slot may stay, by the checks that need no access to the connection.
    pub(crate) fn keeps_idle(&self, slot: &Slot<M>, now: Instant) -> bool {
        !slot.broken
            && !self.is_closing()
            && slot.generation == self.generation.load(Ordering::Acquire)
            && now < slot.expires_at
    }

    /// Whether a slot sat idle longer than `idle_timeout`.
    pub(crate) fn idle_too_long(&self, slot: &Slot<M>, now: Instant) -> bool {
        self.clock
            .idle_timeout
            .is_some_and(|limit| now.saturating_duration_since(slot.last_used) >= limit)
    }

    /// Whether an idle slot may be closed for idleness without going below `min_size`.
    pub(crate) fn idled_out(&self, slot: &Slot<M>, now: Instant) -> bool {
        self.idle_too_long(slot, now)
            && self.counters.size.load(Ordering::Acquire) > self.config.min_size
    }

    /// Judges idle slots, one after the other, for closing for idleness at `now` without going below
    /// `min_size`, `closing` connections being about to close anyway: true for a slot idle too long
    /// while the budget lasts. Reaping of both backends judges through this.
    pub(crate) fn idleness_budget(
        &self,
        now: Instant,
        closing: usize,
    ) -> impl FnMut(&Slot<M>) -> bool + '_ {
        let mut removable = self
            .counters
            .size
            .load(Ordering::Acquire)
            .saturating_sub(closing)
            .saturating_sub(self.min_size());
        move |slot| {
            let idled_out = removable > 0 && self.idle_too_long(slot, now);
            removable -= usize::from(idled_out);
            idled_out
        }
    }

    /// A connection opened ahead of demand (warm start, background top-up), if any is left.
    pub(crate) fn pop_stashed(&self) -> Option<Slot<M>> {
        lock(&self.stash).pop()
    }

    /// Closes stashed connections while more than `max_size` are open.
    ///
    /// deadpool's permits bound the connections it holds, but not the stash: a background top-up
    /// and callers' own connects can finish together and open one more than `max_size`. Whoever
    /// opens a connection calls this (a top-up's own connection is refused in `adopt` instead), so
    /// the excess is closed as soon as the connect that made it finishes.
    pub(crate) fn trim_stash(&self) {
        if self.counters.size.load(Ordering::Acquire) <= self.config.max_size {
            return;
        }
        let mut stash = lock(&self.stash);
        while self.counters.size.load(Ordering::Acquire) > self.config.max_size {
            let Some(slot) = stash.pop() else { break };
            drop(slot);
        }
    }

    /// The checkout check of an idle slot: cheap checks, then (only once the slot is no longer
    /// fresh) expiry, idleness and the validation window, then the manager's recycle.
    pub(crate) async fn recycle(&self, slot: &mut Slot<M>) -> bool {
        let now = Instant::now();
        let mut keep = !slot.broken
            && !self.is_closing()
            && slot.generation == self.generation.load(Ordering::Acquire)
            && !self.manager.is_broken(&mut slot.connection);
        let mut validate = false;
        // Most checkouts stop at this comparison: not expired, not idle long, not due for validation.
        if keep && now >= slot.fresh_until {
            keep = now < slot.expires_at && !self.idled_out(slot, now);
            validate = self
                .clock
                .validate_after_idle
                .is_some_and(|window| now.saturating_duration_since(slot.last_used) >= window);
        }
        if !keep {
            return false;
        }
        slot.checked_out = now;
        slot.checkout_tick = self.clock.ticks();
        if slot.uses == 0 && !validate {
            // Never handed out and not idle long: fresh from connect (and its hook), nothing to reset.
            return true;
        }
        if validate {
            self.counters.validated.fetch_add(1, Ordering::Relaxed);
        }
        let mut recycling = std::pin::pin!(self.manager.recycle(&mut slot.connection, validate));
        // Most recycles finish at once (no round trip): only arm the timer for one that waits.
        match recycling.as_mut().now_or_never() {
            Some(result) => result.is_ok(),
            // Boxed, so the timer does not bloat every checkout's future.
            None => match self.config.recycle_timeout {
                Some(limit) => {
                    matches!(Box::pin(tokio::time::timeout(limit, recycling)).await, Ok(Ok(())))
                }
                None => recycling.await.is_ok(),
            },
        }
    }

    /// Checkouts of a connection that had been handed out before, over every connection so far.
    pub(crate) fn recycled(&self) -> u64 {
        let live: u64 = lock(&self.registry)
            .values()
            .map(|registered| registered.uses.load(Ordering::Relaxed).saturating_sub(1))
            .sum();
        live + self.counters.retired_recycles.load(Ordering::Relaxed)
    }

    /// Tears down every connection that registered a terminator; returns how many.
    pub(crate) fn terminate_all(&self) -> usize {
        let terminators: Vec<Terminator> = lock(&self.registry)
            .values()
            .filter_map(|registered| registered.terminator.clone())
            .collect();
        for terminator in &terminators {
            terminator.terminate();
        }
        terminators.len()
    }

    pub(crate) fn store_connect_error(&self, error: M::Error) {
        *lock(&self.last_connect_error) = Some(error);
    }

    pub(crate) fn take_connect_error(&self) -> Option<M::Error> {
        lock(&self.last_connect_error).take()
    }

    pub(crate) fn min_size(&self) -> usize {
        self.config.min_size
    }

    pub(crate) fn max_size(&self) -> usize {
        self.config.max_size
    }
}

impl<M: Manager> Slot<M> {
    /// Counts a checkout: a plain store for `status()`, no read-modify-write, since only the caller
    /// holding the slot writes.
    #[inline]
    pub(crate) fn count_use(&mut self) {
        self.uses += 1;
        self.shared_uses.store(self.uses, Ordering::Relaxed);
    }

    /// Runs when its guard is dropped: stamps the return time and says whether to keep the slot.
    #[inline]
    pub(crate) fn on_return(&mut self) -> bool {
        // Field by field, so the core is borrowed while the connection is mutated: no `Arc` clone.
        let core = &*self.core;
        let now = if self.checked_out >= self.read_clock_from
            || core.clock.ticks() != self.checkout_tick
        {
            Instant::now()
        } else {
            self.checked_out
        };
        self.last_used = now;
        self.fresh_until = core.clock.fresh_until(self.expires_at, now);
        let keep = !self.broken
            && !core.is_closing()
            && self.generation == core.generation.load(Ordering::Acquire)
            && now < self.expires_at
            && !core.manager.is_broken(&mut self.connection);
        if !keep {
            self.broken = true;
        }
        keep
    }
}

// ===== impl Clock =====

impl Clock {
    fn new(config: &PoolConfig) -> Self {
        let fresh_for = config
            .validate_after_idle
            .unwrap_or(Duration::MAX)
            .min(config.idle_timeout.unwrap_or(Duration::MAX));
        Self {
            ticks: AtomicU64::new(0),
            return_horizon: config.maintenance_interval.saturating_mul(2),
            idle_timeout: config.idle_timeout,
            validate_after_idle: config.validate_after_idle,
            fresh_for,
        }
    }

    /// Maintenance ticks so far.
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Counts a maintenance tick: returns of connections checked out before it read the clock.
    pub(crate) fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// Until when a slot last used at `last_used` needs no time-based check at checkout.
    #[inline]
    fn fresh_until(&self, expires_at: Instant, last_used: Instant) -> Instant {
        match last_used.checked_add(self.fresh_for) {
            Some(end) if end < expires_at => end,
            _ => expires_at,
        }
    }
}

/// A slot is dropped exactly when its connection is closed, whatever closed it: a failed check, a
/// cancelled validation, reaping, `close`, a full pool refusing it, or the pool itself being dropped.
/// So `evicted` is counted here and nowhere else, and `created - evicted == size` holds whenever
/// the pool is at rest (`status()` reads the counters one by one).
impl<M: Manager> Drop for Slot<M> {
    fn drop(&mut self) {
        self.core.counters.evicted.fetch_add(1, Ordering::Relaxed);
        self.core.counters.size.fetch_sub(1, Ordering::AcqRel);
        lock(&self.core.registry).remove(&self.id);
        let recycles = self.uses.saturating_sub(1);
        self.core.counters.retired_recycles.fetch_add(recycles, Ordering::Relaxed);
    }
}

/// An instant that stands for "never": about thirty years after `now` (as tokio's own far future).
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

/// A lifetime shortened by a random amount up to `jitter`, so connections made together expire apart.
pub(crate) fn jittered(lifetime: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return lifetime;
    }
    let cut = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    lifetime.saturating_sub(Duration::from_nanos(fastrand::u64(0..=cut)))
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical section is one
/// insert, remove or swap).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn jittered_lifetime_stays_within_bounds(lifetime_ms in 1u64..10_000_000, jitter_ms in 0u64..10_000_000) {
            let lifetime = Duration::from_millis(lifetime_ms);
            let jitter = Duration::from_millis(jitter_ms.min(lifetime_ms - 1));
            let value = jittered(lifetime, jitter);
            prop_assert!(value <= lifetime);
            prop_assert!(value >= lifetime - jitter);
            prop_assert!(!value.is_zero());
        }
    }
}
