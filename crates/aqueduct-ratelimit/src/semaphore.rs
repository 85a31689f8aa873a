//! The FIFO semaphore of the concurrency limit: one atomic word, released with one read-modify-write when nobody waits.
//!
//! The word holds the free permits times two plus a flag, set while callers queue. A release is one
//! `fetch_add`; only when the flag was set does it take the queue's lock to hand the permits over in arrival
//! order. tokio's `Semaphore` takes its waiter-list lock on every release, which made it the floor we could
//! not go under while we wrapped it.
//!
//! The count is signed: lowering the limit subtracts from it at once, even below zero, and the permits
//! given back later pay the debt off before anyone is admitted again. No held permit is ever revoked.
//!
//! Invariants, all kept under the queue's lock: the flag is set exactly when the queue is not empty, and
//! with the flag set nobody takes permits but the head of the queue (a `try_acquire` never jumps it).
//! A waiter is granted by being removed from the queue with its permits taken for it, so a waiter that
//! finds its ticket gone owns its permits, and one that gives up gives them back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

/// The most permits the semaphore holds (the same bound as tokio's `Semaphore::MAX_PERMITS`).
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 3;

/// The low bit of the state word: set while callers queue.
const WAITERS: i64 = 1;

/// The counting semaphore behind `Limiter::max_concurrent`.
#[derive(Debug)]
pub(crate) struct Semaphore {
    state: State,
    queue: Mutex<Queue>,
}

/// The state word on cache lines of its own, so that releases on one core do not evict what others read.
#[derive(Debug)]
#[repr(align(128))]
struct State(AtomicI64);

#[derive(Debug, Default)]
struct Queue {
    next_ticket: u64,
    waiters: BTreeMap<u64, Waiter>,
}

#[derive(Debug)]
struct Waiter {
    permits: u32,
    waker: Waker,
}

/// The wakers of the waiters one hand-over granted, woken after the lock is released so that a woken task
/// (or an executor that polls on wake) never waits for the lock we hold. The first needs no allocation.
#[derive(Default)]
struct Granted {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Granted {
    fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    fn wake_all(self) {
        if let Some(first) = self.first {
            first.wake();
        }
        for waker in self.rest {
            waker.wake();
        }
    }
}

/// What happened to a caller that could not take its permits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enter {
    /// The permits were freed meanwhile and nobody queued: taken.
    Acquired,
    /// Queued with this ticket; it is woken when granted.
    Queued(u64),
}

/// The state word for `permits` free permits and no waiter.
fn word(permits: i64) -> i64 {
    permits << 1
}

/// A permit count as a signed number; counts are bounded by [`MAX_PERMITS`], so this never saturates in use.
fn signed(permits: usize) -> i64 {
    i64::try_from(permits).unwrap_or(i64::MAX >> 2)
}

impl Semaphore {
    /// A semaphore with `permits` free permits (at most [`MAX_PERMITS`]).
    pub(crate) fn new(permits: usize) -> Self {
        Self { state: State(AtomicI64::new(word(signed(permits)))), queue: Mutex::default() }
    }

    /// Takes `permits` if they are free and nobody queues; one load and one compare-and-swap.
    #[inline]
    pub(crate) fn try_acquire(&self, permits: u32) -> bool {
        let needed = word(i64::from(permits));
        let mut current = self.state.0.load(Ordering::Relaxed);
        // With the flag set, the permits in the word are the head's to take: never jump the queue.
        while current & WAITERS == 0 && current >= needed {
            match self.state.0.compare_exchange_weak(
                current,
                current - needed,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        false
    }

    /// Gives `permits` back: one `fetch_add`, and the queue's lock only when callers wait.
    #[inline]
    pub(crate) fn release(&self, permits: u32) {
        self.add(i64::from(permits));
    }

    /// Adds `permits` (a release or a raised limit) and hands them to the queue if callers wait.
    #[inline]
    fn add(&self, permits: i64) {
        let previous = self.state.0.fetch_add(word(permits), Ordering::Release);
        if previous & WAITERS != 0 {
            self.hand_over_locked();
        }
    }

    /// Raises the limit by `permits`.
    pub(crate) fn add_permits(&self, permits: usize) {
        self.add(signed(permits));
    }

    /// Lowers the limit by `permits`: free permits go at once, held ones are retired as they come back.
    pub(crate) fn remove_permits(&self, permits: usize) {
        self.state.0.fetch_sub(word(signed(permits)), Ordering::AcqRel);
    }

    /// How many permits are free now (0 while a lowered limit is still being paid off).
    pub(crate) fn available_permits(&self) -> usize {
        let permits = self.state.0.load(Ordering::Acquire) >> 1;
        usize::try_from(permits).unwrap_or(0)
    }

    /// Whether a `try_acquire` of `permits` would succeed now (nobody queues and they are free).
    pub(crate) fn would_admit(&self, permits: u32) -> bool {
        let current = self.state.0.load(Ordering::Acquire);
        current & WAITERS == 0 && current >= word(i64::from(permits))
    }

    /// Takes `permits` if nobody queues and they are free, or queues the caller at the back.
    #[cold]
    pub(crate) fn enter(&self, permits: u32, waker: &Waker) -> Enter {
        let mut queue = self.lock();
        let needed = word(i64::from(permits));
        let mut current = self.state.0.load(Ordering::Acquire);
        loop {
            let (next, acquired) = if current & WAITERS == 0 && current >= needed {
                (current - needed, true)
            } else {
                (current | WAITERS, false)
            };
            match self.state.0.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if acquired => return Enter::Acquired,
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiters.insert(ticket, Waiter { permits, waker: waker.clone() });
        Enter::Queued(ticket)
    }

    /// Whether the waiter holding `ticket` was granted its permits; if not, it will be woken through `waker`.
    pub(crate) fn poll_waiter(&self, ticket: u64, waker: &Waker) -> bool {
        let mut queue = self.lock();
        match queue.waiters.get_mut(&ticket) {
            Some(waiter) => {
                if !waiter.waker.will_wake(waker) {
                    waiter.waker.clone_from(waker);
                }
                false
            }
            None => true,
        }
    }

    /// The waiter holding `ticket` gives up: it leaves the queue, or gives back the permits it was granted.
    /// Either way the callers behind it move up at once.
    pub(crate) fn leave(&self, ticket: u64, permits: u32) {
        let mut queue = self.lock();
        if queue.waiters.remove(&ticket).is_none() {
            // Granted while it gave up: the permits are its own to give back.
            self.state.0.fetch_add(word(i64::from(permits)), Ordering::Release);
        }
        let granted = self.hand_over(&mut queue);
        drop(queue);
        granted.wake_all();
    }

    #[cold]
    #[inline(never)]
    fn hand_over_locked(&self) {
        let mut queue = self.lock();
        let granted = self.hand_over(&mut queue);
        drop(queue);
        granted.wake_all();
    }

    /// Grants the head of the queue while its permits are free, in order; clears the flag once it is empty.
    /// Returns the wakers of the granted waiters, to be woken once the lock is released.
    fn hand_over(&self, queue: &mut Queue) -> Granted {
        let mut granted = Granted::default();
        loop {
            let Some(entry) = queue.waiters.first_entry() else {
                self.state.0.fetch_and(!WAITERS, Ordering::AcqRel);
                return granted;
            };
            let needed = word(i64::from(entry.get().permits));
            let mut current = self.state.0.load(Ordering::Acquire);
            loop {
                // The flag is set (the queue is not empty), so the count is `current >> 1`.
                if current - WAITERS < needed {
                    return granted;
                }
                match self.state.0.compare_exchange_weak(
                    current,
                    current - needed,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => current = actual,
                }
            }
            granted.push(entry.remove().waker);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No critical section panics midway through an update, so a poisoned lock holds valid data.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountWakes>, Waker) {
        let count = Arc::new(CountWakes::default());
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn release_gives_back_exactly_what_was_taken() {
        let semaphore = Semaphore::new(3);
        assert!(semaphore.try_acquire(2));
        assert!(!semaphore.try_acquire(2));
        assert_eq!(semaphore.available_permits(), 1);
        semaphore.release(2);
        assert_eq!(semaphore.available_permits(), 3);
    }

    #[test]
    fn waiters_are_granted_in_order_and_a_queue_is_never_jumped() {
        let semaphore = Semaphore::new(2);
        assert!(semaphore.try_acquire(2));
        let (big_wakes, big_waker) = waker();
        let (small_wakes, small_waker) = waker();
        let Enter::Queued(big) = semaphore.enter(2, &big_waker) else {
            panic!("no permit is free")
        };
        let Enter::Queued(small) = semaphore.enter(1, &small_waker) else {
            panic!("a waiter queues")
        };
        semaphore.release(1);
        // One permit is free, but the head needs two: nobody else may take it.
        assert!(!semaphore.try_acquire(1));
        assert!(!semaphore.would_admit(1));
        assert!(!semaphore.poll_waiter(small, &small_waker));
        assert_eq!(small_wakes.0.load(Ordering::SeqCst), 0);
        semaphore.release(1);
        assert_eq!(big_wakes.0.load(Ordering::SeqCst), 1);
        assert!(semaphore.poll_waiter(big, &big_waker));
        semaphore.release(2);
        assert_eq!(small_wakes.0.load(Ordering::SeqCst), 1);
        assert!(semaphore.poll_waiter(small, &small_waker));
        // The queue is empty again: the flag is clear and the last permit can be taken directly.
        assert!(semaphore.try_acquire(1));
    }

    #[test]
    fn one_release_grants_as_many_waiters_as_it_frees_slots_for() {
        let semaphore = Semaphore::new(3);
        assert!(semaphore.try_acquire(3));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (wakes, waker) = waker();
                let Enter::Queued(ticket) = semaphore.enter(1, &waker) else {
                    panic!("no permit is free")
                };
                (wakes, waker, ticket)
            })
            .collect();
        semaphore.release(3);
        for (index, (wakes, waker, ticket)) in waiters.iter().enumerate() {
            let granted = index < 3;
            assert_eq!(wakes.0.load(Ordering::SeqCst), usize::from(granted));
            assert_eq!(semaphore.poll_waiter(*ticket, waker), granted);
        }
        assert_eq!(semaphore.available_permits(), 0);
    }

    #[test]
    fn a_head_that_leaves_lets_the_next_one_in() {
        let semaphore = Semaphore::new(2);
        assert!(semaphore.try_acquire(2));
        let (_, big_waker) = waker();
        let (small_wakes, small_waker) = waker();
        let Enter::Queued(big) = semaphore.enter(2, &big_waker) else {
            panic!("no permit is free")
        };
        let Enter::Queued(small) = semaphore.enter(1, &small_waker) else {
            panic!("a waiter queues")
        };
        semaphore.release(1);
        semaphore.leave(big, 2);
        assert_eq!(small_wakes.0.load(Ordering::SeqCst), 1);
        assert!(semaphore.poll_waiter(small, &small_waker));
        assert_eq!(semaphore.available_permits(), 0);
    }

    #[test]
    fn a_granted_waiter_that_leaves_gives_its_permits_back() {
        let semaphore = Semaphore::new(1);
        assert!(semaphore.try_acquire(1));
        let (_, waker) = waker();
        let Enter::Queued(ticket) = semaphore.enter(1, &waker) else { panic!("no permit is free") };
        semaphore.release(1);
        semaphore.leave(ticket, 1);
        assert_eq!(semaphore.available_permits(), 1);
        assert!(semaphore.try_acquire(1));
    }

    #[test]
    fn a_lowered_limit_is_paid_off_by_releases_before_anyone_is_admitted() {
        let semaphore = Semaphore::new(3);
        assert!(semaphore.try_acquire(3));
        semaphore.remove_permits(2);
        assert_eq!(semaphore.available_permits(), 0);
        semaphore.release(1);
        semaphore.release(1);
        assert!(!semaphore.try_acquire(1));
        semaphore.release(1);
        assert!(semaphore.try_acquire(1));
        assert!(!semaphore.try_acquire(1));
        semaphore.add_permits(1);
        assert!(semaphore.try_acquire(1));
    }

    #[test]
    fn racing_threads_conserve_every_permit() {
        let semaphore = Semaphore::new(3);
        let held = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let (_, waker) = waker();
                    for round in 0..20_000_u32 {
                        let granted = if round % 2 == 0 {
                            semaphore.try_acquire(1)
                        } else {
                            match semaphore.enter(1, &waker) {
                                Enter::Acquired => true,
                                Enter::Queued(ticket) => {
                                    // Spin until granted, or give up half of the time.
                                    if round % 4 == 1 {
                                        semaphore.leave(ticket, 1);
                                        false
                                    } else {
                                        while !semaphore.poll_waiter(ticket, &waker) {
                                            std::thread::yield_now();
                                        }
                                        true
                                    }
                                }
                            }
                        };
                        if granted {
                            assert!(held.fetch_add(1, Ordering::SeqCst) < 3);
                            held.fetch_sub(1, Ordering::SeqCst);
                            semaphore.release(1);
                        }
                    }
                });
            }
        });
        assert_eq!(semaphore.available_permits(), 3);
        assert!(semaphore.try_acquire(3));
    }
}
