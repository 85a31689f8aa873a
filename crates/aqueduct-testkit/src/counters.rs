//! Counters that prove what ran, what is in flight and what was dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live and dropped [`DropGuard`]s; clone it freely, clones share the counts.
///
/// Move a guard into a future, item or resource: when the test ends, `dropped() == created()`
/// proves nothing leaked.
///
/// # Examples
///
/// ```
/// use aqueduct_testkit::DropCounter;
///
/// let counter = DropCounter::new();
/// let guard = counter.guard();
/// assert_eq!(counter.alive(), 1);
/// drop(guard);
/// assert_eq!(counter.dropped(), 1);
/// assert_eq!(counter.alive(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DropCounter {
    inner: Arc<DropCounts>,
}

#[derive(Debug, Default)]
struct DropCounts {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

/// A token that records its own drop in the [`DropCounter`] that made it.
#[derive(Debug)]
pub struct DropGuard {
    counts: Arc<DropCounts>,
}

impl DropCounter {
    /// A counter with no guards yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a guard; its drop is counted.
    pub fn guard(&self) -> DropGuard {
        self.inner.created.fetch_add(1, Ordering::SeqCst);
        DropGuard { counts: Arc::clone(&self.inner) }
    }

    /// How many guards were made.
    pub fn created(&self) -> usize {
        self.inner.created.load(Ordering::SeqCst)
    }

    /// How many guards were dropped.
    pub fn dropped(&self) -> usize {
        self.inner.dropped.load(Ordering::SeqCst)
    }

    /// How many guards are still alive.
    pub fn alive(&self) -> usize {
        // Drops first: a guard made and dropped between the two loads then counts as alive for this one
        // reading, whereas reading `created` first could see its drop without its creation and underflow.
        let dropped = self.dropped();
        self.created() - dropped
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts calls and how many are in flight at once, with the peak; clones share the counts.
///
/// # Examples
///
/// ```
/// use aqueduct_testkit::CallCounter;
///
/// let counter = CallCounter::new();
/// let first = counter.enter();
/// let second = counter.enter();
/// assert_eq!(counter.in_flight(), 2);
/// drop((first, second));
/// assert_eq!(counter.calls(), 2);
/// assert_eq!(counter.peak(), 2);
/// assert_eq!(counter.in_flight(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    inner: Arc<CallCounts>,
}

#[derive(Debug, Default)]
struct CallCounts {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// Marks one call in flight until dropped; made by [`CallCounter::enter`].
#[derive(Debug)]
pub struct InFlight {
    counts: Arc<CallCounts>,
}

impl CallCounter {
    /// A counter with no calls yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a call and marks it in flight until the returned token is dropped.
    pub fn enter(&self) -> InFlight {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.peak.fetch_max(now, Ordering::SeqCst);
        InFlight { counts: Arc::clone(&self.inner) }
    }

    /// Counts a call that is over at once.
    pub fn record(&self) {
        drop(self.enter());
    }

    /// How many calls were counted.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// How many calls are in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that were in flight at once.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counts.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::DropCounter;

    #[test]
    fn alive_never_underflows_while_other_threads_make_and_drop_guards() {
        let counter = DropCounter::new();
        let churn = {
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..200_000 {
                    drop(counter.guard());
                }
            })
        };
        while !churn.is_finished() {
            // Reading `created` before `dropped` underflows here: a panic in debug builds, a huge
            // count in release builds.
            assert!(counter.alive() <= 200_000);
        }
        churn.join().expect("the churning thread does not panic");
        assert_eq!(counter.alive(), 0);
    }
}
