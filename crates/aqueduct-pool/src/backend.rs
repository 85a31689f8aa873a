//! The adapters that put our slots into deadpool's managed core and, with feature `bb8`, into bb8.

use std::sync::Arc;
#[cfg(feature = "bb8")]
use std::sync::atomic::Ordering;

use crate::core::{Core, Failure, Slot};
use crate::manager::Manager;

/// The pool underneath a [`Pool`](crate::Pool).
pub(crate) enum BackendPool<M: Manager> {
    Deadpool(deadpool::managed::Pool<DeadpoolAdapter<M>>),
    #[cfg(feature = "bb8")]
    Bb8 {
        pool: bb8::Pool<Bb8Adapter<M>>,
        /// A FIFO gate of `max_size` permits: bb8's own waiters can barge, the gate's cannot.
        gate: Arc<tokio::sync::Semaphore>,
    },
}

/// A connection checked out of a backend.
pub(crate) enum Held<M: Manager> {
    Deadpool(deadpool::managed::Object<DeadpoolAdapter<M>>),
    #[cfg(feature = "bb8")]
    Bb8(bb8::PooledConnection<'static, Bb8Adapter<M>>, tokio::sync::OwnedSemaphorePermit),
}

impl<M: Manager> Held<M> {
    pub(crate) fn slot(&self) -> &Slot<M> {
        match self {
            Self::Deadpool(object) => object,
            #[cfg(feature = "bb8")]
            Self::Bb8(connection, _) => connection,
        }
    }

    pub(crate) fn slot_mut(&mut self) -> &mut Slot<M> {
        match self {
            Self::Deadpool(object) => object,
            #[cfg(feature = "bb8")]
            Self::Bb8(connection, _) => connection,
        }
    }

    /// Whether the connection goes back by simply dropping this (deadpool's `Object` puts it back),
    /// given the verdict of the return checks: yes unless it is to be closed or a `close` waits.
    #[inline]
    pub(crate) fn returns_by_drop(&self, keep: bool) -> bool {
        match self {
            Self::Deadpool(object) => keep && !object.core.is_closing(),
            #[cfg(feature = "bb8")]
            Self::Bb8(..) => false,
        }
    }

    /// Returns the connection to its backend, or closes it when the return checks failed (`keep`
    /// false); then tells a waiting `close`.
    ///
    /// `close` is told only after the connection no longer counts as in use, so that it cannot
    /// check in between and miss the return.
    pub(crate) fn release(self, keep: bool) {
        match self {
            Self::Deadpool(object) if keep => {
                let core = Arc::clone(&object.core);
                drop(object);
                core.after_return();
            }
            Self::Deadpool(object) => {
                let slot = deadpool::managed::Object::take(object);
                slot.core.after_return();
            }
            // bb8 asks `has_broken` on return, which reads the `broken` flag `on_return` set.
            #[cfg(feature = "bb8")]
            Self::Bb8(connection, permit) => {
                connection.core.counters.cycles.count_return();
                connection.core.after_return();
                drop(connection);
                drop(permit);
            }
        }
    }
}

// ===== impl DeadpoolAdapter =====

/// deadpool's `Manager` over our slots: creation and recycling go through [`Core`].
pub(crate) struct DeadpoolAdapter<M: Manager> {
    pub(crate) core: Arc<Core<M>>,
}

impl<M: Manager> deadpool::managed::Manager for DeadpoolAdapter<M> {
    // Boxed: deadpool moves its objects around by value, and a pointer moves faster than a slot.
    type Type = Box<Slot<M>>;
    type Error = Failure<M::Error>;

    // Boxed: deadpool keeps the create future inside every `get` future, so unboxed it sat in every
    // waiting `acquire` (9.5 kB with the PostgreSQL manager, 2.6 kB boxed). A create is rare and
    // connects, so the allocation costs nothing measurable.
    fn create(&self) -> impl Future<Output = Result<Box<Slot<M>>, Failure<M::Error>>> + Send {
        Box::pin(async move {
            // Connections opened ahead of demand pass the same checkout checks as idle ones.
            while let Some(mut slot) = self.core.pop_stashed() {
                if self.core.recycle(&mut slot).await {
                    return Ok(Box::new(slot));
                }
            }
            let slot = self.core.open_slot().await?;
            self.core.trim_stash();
            Ok(Box::new(slot))
        })
    }

    async fn recycle(
        &self,
        slot: &mut Box<Slot<M>>,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Failure<M::Error>> {
        if self.core.recycle(slot).await {
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message("evicted by the pool's checkout checks"))
        }
    }
}

// ===== impl Bb8Adapter =====

/// bb8's `ManageConnection` over our slots. Lifetime, idleness and validation are ours, so bb8 runs
/// with no reaper, no `min_idle` and no connect retry: its `Drop` then never spawns.
#[cfg(feature = "bb8")]
pub(crate) struct Bb8Adapter<M: Manager> {
    pub(crate) core: Arc<Core<M>>,
}

#[cfg(feature = "bb8")]
impl<M: Manager> std::fmt::Debug for Bb8Adapter<M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Bb8Adapter").finish_non_exhaustive()
    }
}

/// The error bb8 sees; the real connect error is kept in [`Core`] for the caller's timeout error.
#[cfg(feature = "bb8")]
#[derive(Debug)]
pub(crate) struct Bb8Failure;

#[cfg(feature = "bb8")]
impl<M: Manager> bb8::ManageConnection for Bb8Adapter<M> {
    type Connection = Box<Slot<M>>;
    type Error = Bb8Failure;

    async fn connect(&self) -> Result<Box<Slot<M>>, Bb8Failure> {
        use futures::FutureExt;
        // bb8 runs this in a task of its own and leaks its reservation if it panics, which would
        // shrink the pool for good: catch the panic and hand it to a waiting caller instead.
        let opened = std::panic::AssertUnwindSafe(self.core.open_slot()).catch_unwind().await;
        match opened {
            Ok(Ok(slot)) => return Ok(Box::new(slot)),
            Ok(Err(Failure::Connect(error))) => self.core.store_connect_error(error),
            // The last connect failed by timing out: an older stored error no longer describes it.
            Ok(Err(Failure::ConnectTimeout)) => drop(self.core.take_connect_error()),
            Ok(Err(_)) => {}
            Err(payload) => {
                let error = aqueduct_core::Error::<()>::from_panic(None, payload);
                if let aqueduct_core::Error::Panicked { message, .. } = error {
                    *crate::core::lock(&self.core.panic) = Some(message);
                }
            }
        }
        self.core.bb8_failures.fetch_add(1, Ordering::AcqRel);
        self.core.bb8_event.notify_waiters();
        Err(Bb8Failure)
    }

    async fn is_valid(&self, slot: &mut Box<Slot<M>>) -> Result<(), Bb8Failure> {
        if REAPING.get() {
            // The maintenance reaper is taking idle connections out to judge them itself.
            return Ok(());
        }
        let mut checking = std::pin::pin!(self.core.recycle(slot));
        let kept = std::future::poll_fn(|context| {
            let polled = checking.as_mut().poll(context);
            VALIDATING.set(polled.is_pending());
            polled
        })
        .await;
        if kept { Ok(()) } else { Err(Bb8Failure) }
    }

    fn has_broken(&self, slot: &mut Box<Slot<M>>) -> bool {
        slot.broken || self.core.closing.load(Ordering::Acquire)
    }
}

#[cfg(feature = "bb8")]
thread_local! {
    /// Whether the checkout this thread polled last was left waiting inside `is_valid`. bb8 runs
    /// `is_valid` inside the caller's `get`, on the caller's thread, so a caller that clears this
    /// before polling its `get` learns afterwards whether its own checkout is validating (see
    /// [`poll_own_get`]).
    static VALIDATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };

    /// Set while this thread's maintenance takes bb8's idle connections out (see [`reap_bb8`]):
    /// `is_valid` then passes them without a check. Per thread, so that a caller's checkout on
    /// another thread meanwhile still runs its full checks.
    static REAPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Polls a caller's bb8 `get` and says whether that poll left it inside a validation, so that the
/// caller does not restart a `get` that is validating (which would cut the round trip off).
#[cfg(feature = "bb8")]
pub(crate) fn poll_own_get<F: Future>(
    getting: std::pin::Pin<&mut F>,
    context: &mut std::task::Context<'_>,
) -> (std::task::Poll<F::Output>, bool) {
    VALIDATING.set(false);
    let polled = getting.poll(context);
    (polled, VALIDATING.replace(false))
}

/// Closes bb8's idle connections that are broken, expired, retired or idle too long (never going
/// below `min_size` for idleness).
///
/// bb8 has no `retain`, so every idle connection is taken out, without waiting and without a check
/// (see [`REAPING`]), judged here as deadpool's `retain` is (what must close first, then idleness
/// within what `min_size` allows), and given back; bb8 closes the ones marked broken as they come
/// back. A validation round trip would be cancelled mid-flight here, and a failed check would
/// make bb8 open a replacement.
#[cfg(feature = "bb8")]
pub(crate) fn reap_bb8<M: Manager>(pool: &bb8::Pool<Bb8Adapter<M>>, core: &Core<M>) {
    use futures::FutureExt;

    /// Leaves reaping mode even if a checkout panics.
    struct Reaping;
    impl Drop for Reaping {
        fn drop(&mut self) {
            REAPING.set(false);
        }
    }

    REAPING.set(true);
    let reaping = Reaping;
    let mut taken = Vec::new();
    // Only while bb8 still has an idle connection: a `get` that finds none would open one.
    while pool.state().idle_connections > 0 {
        match pool.get().now_or_never() {
            Some(Ok(connection)) => taken.push(connection),
            _ => break,
        }
    }
    drop(reaping);
    let now = tokio::time::Instant::now();
    for connection in &mut taken {
        connection.broken |= !core.keeps_idle(connection, now);
    }
    let closing = taken.iter().filter(|connection| connection.broken).count();
    let mut idled_out = core.idleness_budget(now, closing);
    for connection in &mut taken {
        if !connection.broken && idled_out(connection) {
            connection.broken = true;
        }
    }
    drop(taken);
}
