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
    /// Notified whenever a checked-out connection comes back while closing.
    pub(crate) returned: Notify,
    terminators: Mutex<HashMap<u64, Terminator>>,
    next_id: AtomicU64,
    /// Connections opened ahead of demand that deadpool has not taken in yet (it only creates through
    /// its manager's `create`, which draws from here first).
    pub(crate) stash: Mutex<Vec<Slot<M>>>,
    /// The message of a panic in a connect no caller was running (bb8's spawned connects).
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) panic: Mutex<Option<String>>,
    /// The last error of a connect no caller was waiting on (background top-up, bb8's spawned connects).
    last_connect_error: Mutex<Option<M::Error>>,
}

/// The counters behind [`PoolStatus`](crate::PoolStatus).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) size: AtomicUsize,
    /// Checkouts and returns so far, striped by thread: their difference is `in_use`.
    pub(crate) cycles: Cycles,
    /// Checkouts of a connection never handed out before (so `recycled = handed_out - fresh`).
    pub(crate) fresh_handouts: AtomicU64,
    #[cfg_attr(not(feature = "bb8"), allow(dead_code))]
    pub(crate) waiting: AtomicUsize,
    pub(crate) created: AtomicU64,
    pub(crate) validated: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
}

/// How many stripes [`Cycles`] spreads its counts over.
const STRIPES: usize = 8;

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
        &self.0[index]
    }

    pub(crate) fn count_handout(&self) {
        self.stripe().handed_out.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn count_return(&self) {
        self.stripe().returned.fetch_add(1, Ordering::AcqRel);
    }

    /// Checkouts so far.
    pub(crate) fn handed_out(&self) -> u64 {
        self.0.iter().map(|stripe| stripe.handed_out.load(Ordering::Acquire)).sum()
    }

    /// Connections checked out now.
    pub(crate) fn in_use(&self) -> usize {
        // Every `returned` first: a return always follows its checkout, and a return seen here makes
        // its checkout visible to the loads below, so this never underflows.
        let returned: u64 =
            self.0.iter().map(|stripe| stripe.returned.load(Ordering::Acquire)).sum();
        usize::try_from(self.handed_out().saturating_sub(returned)).unwrap_or(usize::MAX)
    }
}

impl Counters {
    /// Connections checked out now.
    pub(crate) fn in_use(&self) -> usize {
        self.cycles.in_use()
    }
}

/// One open connection and what the pool knows about it.
pub(crate) struct Slot<M: Manager> {
    pub(crate) connection: M::Connection,
    id: u64,
    pub(crate) created: Instant,
    expires_at: Option<Instant>,
    pub(crate) last_used: Instant,
    generation: u64,
    /// Set by `mark_broken`, a fatal error, or a failed return check: the slot must not be reused.
    pub(crate) broken: bool,
    /// How many times it was handed out.
    pub(crate) uses: u64,
    has_terminator: bool,
    pub(crate) core: Arc<Core<M>>,
}

// ===== impl Core =====

impl<M: Manager> Core<M> {
    pub(crate) fn new(manager: M, config: PoolConfig) -> Self {
        Self {
            manager,
            config,
            counters: Counters::default(),
            generation: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            returned: Notify::new(),
            terminators: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stash: Mutex::new(Vec::new()),
            panic: Mutex::new(None),
            last_connect_error: Mutex::new(None),
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
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
        let now = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let terminator = self.manager.terminator(&connection);
        let has_terminator = terminator.is_some();
        if let Some(terminator) = terminator {
            lock(&self.terminators).insert(id, terminator);
        }
        self.counters.size.fetch_add(1, Ordering::AcqRel);
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            connection,
            id,
            created: now,
            expires_at: self
                .config
                .max_lifetime
                .map(|lifetime| now + jittered(lifetime, self.config.lifetime_jitter)),
            last_used: now,
            generation: self.generation.load(Ordering::Acquire),
            broken: false,
            uses: 0,
            has_terminator,
            core: Arc::clone(self),
        })
    }

    /// Whether an idle slot may stay, by the checks that need no access to the connection.
    pub(crate) fn keeps_idle(&self, slot: &Slot<M>, now: Instant) -> bool {
        !slot.broken
            && !self.is_closing()
            && slot.generation == self.generation.load(Ordering::Acquire)
            && slot.expires_at.is_none_or(|at| now < at)
    }

    /// Whether an idle or returning slot may stay in the pool, by the checks that cost no round trip.
    pub(crate) fn keeps(&self, slot: &mut Slot<M>, now: Instant) -> bool {
        self.keeps_idle(slot, now) && !self.manager.is_broken(&mut slot.connection)
    }

    /// Whether a slot sat idle longer than `idle_timeout`.
    pub(crate) fn idle_too_long(&self, slot: &Slot<M>, now: Instant) -> bool {
        self.config
            .idle_timeout
            .is_some_and(|limit| now.saturating_duration_since(slot.last_used) >= limit)
    }

    /// Whether an idle slot may be closed for idleness without going below `min_size`.
    pub(crate) fn idled_out(&self, slot: &Slot<M>, now: Instant) -> bool {
        self.idle_too_long(slot, now)
            && self.counters.size.load(Ordering::Acquire) > self.config.min_size
    }

    /// A connection opened ahead of demand (warm start, background top-up), if any is left.
    pub(crate) fn pop_stashed(&self) -> Option<Slot<M>> {
        lock(&self.stash).pop()
    }

    /// The checkout check of an idle slot: cheap checks, idleness, then the manager's recycle.
    pub(crate) async fn recycle(&self, slot: &mut Slot<M>) -> bool {
        let now = Instant::now();
        if !self.keeps(slot, now) || self.idled_out(slot, now) {
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let validate = self
            .config
            .validate_after_idle
            .is_some_and(|window| now.saturating_duration_since(slot.last_used) >= window);
        if slot.uses == 0 && !validate {
            // Never handed out and not idle long: fresh from connect (and its hook), nothing to reset.
            return true;
        }
        if validate {
            self.counters.validated.fetch_add(1, Ordering::Relaxed);
        }
        let mut recycling = std::pin::pin!(self.manager.recycle(&mut slot.connection, validate));
        // Most recycles finish at once (no round trip): only arm the timer for one that waits.
        let recycled = match recycling.as_mut().now_or_never() {
            Some(result) => result.is_ok(),
            // Boxed, so the timer does not bloat every checkout's future.
            None => match self.config.recycle_timeout {
                Some(limit) => {
                    matches!(Box::pin(tokio::time::timeout(limit, recycling)).await, Ok(Ok(())))
                }
                None => recycling.await.is_ok(),
            },
        };
        if !recycled {
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        recycled
    }

    /// Tears down every connection that registered a terminator; returns how many.
    pub(crate) fn terminate_all(&self) -> usize {
        let terminators: Vec<Terminator> = lock(&self.terminators).values().cloned().collect();
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
    /// Runs when its guard is dropped: stamps the return time and says whether to keep the slot.
    pub(crate) fn on_return(&mut self) -> bool {
        // Field by field, so the core is borrowed while the connection is mutated: no `Arc` clone.
        let core = &*self.core;
        let now = Instant::now();
        self.last_used = now;
        let keep = !self.broken
            && !core.is_closing()
            && self.generation == core.generation.load(Ordering::Acquire)
            && self.expires_at.is_none_or(|at| now < at)
            && !core.manager.is_broken(&mut self.connection);
        if !keep {
            self.broken = true;
            core.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        core.counters.cycles.count_return();
        if core.is_closing() {
            core.returned.notify_waiters();
        }
        keep
    }
}

impl<M: Manager> Drop for Slot<M> {
    fn drop(&mut self) {
        self.core.counters.size.fetch_sub(1, Ordering::AcqRel);
        if self.has_terminator {
            lock(&self.core.terminators).remove(&self.id);
        }
    }
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
