//! One deadline timer per pool: a waiting `acquire` registers with it instead of arming a timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::core::{STRIPES, stripe_index};

/// `earliest` when no deadline is published.
const NONE: u64 = u64::MAX;

/// The deadlines of the callers waiting in `acquire`, watched by one task per pool.
///
/// A waiting caller registers on `expired` (a [`Notify`], one per stripe of threads) and publishes its deadline into
/// `earliest`, the earliest deadline published since the watch last fired. The watch task sleeps
/// until `earliest`, then wakes every registered caller at once; each compares the clock with its
/// own deadline, and one not due yet registers and publishes again.
///
/// Why: a timer of its own costs each waiting caller the runtime-wide timer lock twice (to insert
/// and to cancel it) and a handle clone; registering here takes a lock of this pool only, and a
/// caller served before its deadline (nearly all of them) publishes nothing beyond a load of
/// `earliest`. Measured with callgrind, a contended checkout went from about 4,400 to 4,150
/// instructions. Waking all callers at once costs each one spurious poll, at most once per
/// deadline that passes while callers wait.
pub(crate) struct Expiry {
    /// The time `earliest` counts from.
    origin: Instant,
    /// The earliest published deadline, in nanoseconds since `origin` ([`NONE`] for none).
    earliest: AtomicU64,
    /// Where waiting callers register, each on the stripe of the thread it runs on (see
    /// [`stripe_index`]); the watch wakes them all when `earliest` passes. Striped so that callers
    /// registering on different cores do not take the same lock: measured on the contended bench
    /// (32 tasks, pool of 4, 2 cores), one shared `Notify` cost each waiting acquire two cache-line
    /// transfers.
    expired: [Stripe; STRIPES],
    /// Wakes the watch to sleep until an earlier deadline, or to stop.
    rearm: Notify,
    /// Whether the watch task runs; without it, callers arm timers of their own.
    running: AtomicBool,
    /// Set when the pool is dropped: the watch ends.
    stopped: AtomicBool,
}

/// What a waiting caller's registration says.
pub(crate) enum Due {
    /// Registered, not due: the watch will wake the caller.
    Waiting,
    /// The deadline has passed.
    Elapsed,
    /// No watch runs (its runtime is gone): the caller must arm a timer of its own.
    Unwatched,
}

impl Expiry {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            earliest: AtomicU64::new(NONE),
            expired: std::array::from_fn(|_| Stripe(Notify::new())),
            rearm: Notify::new(),
            running: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// Polls the registration of a caller due at `deadline`, registering it (again) when it is not
    /// registered or the watch woke it before its deadline.
    pub(crate) fn poll_due<'a>(
        &'a self,
        mut registration: Pin<&mut Option<Notified<'a>>>,
        deadline: Instant,
        context: &mut Context<'_>,
    ) -> Due {
        loop {
            if let Some(notified) = registration.as_mut().as_pin_mut() {
                if notified.poll(context).is_pending() {
                    return Due::Waiting;
                }
                registration.set(None);
                if Instant::now() >= deadline {
                    return Due::Elapsed;
                }
            }
            if !self.running.load(Ordering::Acquire) {
                return Due::Unwatched;
            }
            // Registered first, published second: a watch that clears `earliest` before waking the
            // registered callers cannot lose this deadline.
            registration.set(Some(self.expired[stripe_index()].0.notified()));
            let notified = registration.as_mut().as_pin_mut().expect("registered just above");
            if notified.poll(context).is_pending() {
                self.publish(deadline);
                return Due::Waiting;
            }
            // The watch fired between the two lines above: look at the clock again.
        }
    }

    /// Makes sure the watch wakes the registered callers no later than `deadline`.
    fn publish(&self, deadline: Instant) {
        let at = nanos(deadline.saturating_duration_since(self.origin));
        // Nearly always a plain load: callers queue in order, so a later one's deadline is later.
        if at < self.earliest.load(Ordering::Acquire)
            && at < self.earliest.fetch_min(at, Ordering::AcqRel)
        {
            self.rearm.notify_one();
        }
    }

    /// Wakes every registered caller, on every stripe.
    fn wake_all(&self) {
        for stripe in &self.expired {
            stripe.0.notify_waiters();
        }
    }

    /// Ends the watch (the pool is dropped).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.rearm.notify_one();
    }

    /// The watch task: sleeps until the earliest published deadline, then wakes every registered
    /// caller; ends when the pool is dropped. Counts as running from this call until the future
    /// ends or is dropped, even unpolled (its runtime may go away before it ever runs).
    pub(crate) fn watch(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        self.running.store(true, Ordering::Release);
        let running = Running(self);
        async move {
            let _running = &running;
            running.0.watch_until_stopped().await;
        }
    }

    async fn watch_until_stopped(&self) {
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(self.origin));
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            let mut rearm = std::pin::pin!(self.rearm.notified());
            let earliest = self.earliest.load(Ordering::Acquire);
            if earliest == NONE {
                rearm.await;
                continue;
            }
            sleep.as_mut().reset(self.origin + Duration::from_nanos(earliest));
            let fired = std::future::poll_fn(|context| {
                if rearm.as_mut().poll(context).is_ready() {
                    return Poll::Ready(false);
                }
                sleep.as_mut().poll(context).map(|()| true)
            })
            .await;
            let now = nanos(Instant::now().saturating_duration_since(self.origin));
            if fired && self.earliest.load(Ordering::Acquire) <= now {
                // Cleared before the wake-up: callers not due yet publish their deadlines again.
                self.earliest.store(NONE, Ordering::Release);
                self.wake_all();
            }
        }
    }
}

/// One stripe of [`Expiry::expired`], alone on its cache lines (two, for the adjacent-line prefetcher).
#[repr(align(128))]
struct Stripe(Notify);

/// Marks the watch as gone when its task ends or is dropped with its runtime, and wakes the
/// registered callers so that they arm timers of their own.
struct Running(Arc<Expiry>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
        self.0.wake_all();
    }
}

/// A duration in nanoseconds, saturating below [`NONE`].
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(NONE - 1).min(NONE - 1)
}
