//! Dynamic batching: `Batcher::submit(item).await` coalesces single calls into batches, DataLoader style.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::Error;
use futures::future::BoxFuture;
use tokio::sync::{
    AcquireError, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, oneshot,
};
use tokio::time::Instant;

use crate::config::ConfigError;
use crate::metrics::{BatcherMetrics, DispatchCounters};
use crate::outputs::{BatchOutputs, Outcome, clone_result, finish, start};

/// When a [`Batcher`] dispatches a batch that is not full yet.
///
/// A full batch (`max_batch_size` items) is always dispatched as soon as a concurrency slot is free, and
/// [`Batcher::flush`] and shutdown always dispatch what is queued. The policy decides about partial batches.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_batch::Flush;
///
/// assert_eq!(Flush::default(), Flush::Immediate);
/// let window = Flush::MaxWait(Duration::from_millis(2));
/// assert_ne!(window, Flush::Size);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Flush {
    /// Dispatch whatever is queued as soon as a concurrency slot is free (the default). No latency floor:
    /// a lone item goes out at once, and under load items pile up while every slot is busy, so batches fill
    /// to their size by themselves (batch-aint-one's `Immediate`).
    #[default]
    Immediate,
    /// Dispatch only full batches (plus [`Batcher::flush`] and shutdown). For callers that flush themselves.
    Size,
    /// Dispatch a partial batch once its oldest item has waited this long; the timer is armed by the first
    /// item of a batch, as in tokio-stream's `chunks_timeout`, so an idle batcher arms no timer.
    MaxWait(Duration),
}

/// What [`Batcher::submit`] does when `max_pending` items are already queued.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::WhenFull;
/// assert_eq!(WhenFull::default(), WhenFull::Wait);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait for room, in arrival order (backpressure; the default).
    #[default]
    Wait,
    /// Fail at once with `Error::Full { capacity: max_pending }` (the 503 pattern).
    Reject,
}

/// Coalesces single-item [`submit`](Self::submit) calls into batch calls, DataLoader style.
///
/// Items queue until a batch is dispatched: when `max_batch_size` items are queued, when the [`Flush`] policy
/// says so, on [`flush`](Self::flush) and on shutdown. At most `max_concurrent_batches` batch calls run at
/// once, each on its own tokio task; at most `max_pending` items wait in the queue, after which submitters
/// wait or are rejected ([`WhenFull`]). Each submitter receives its own item's result.
///
/// The batch function receives a `Vec<T>` and must return one output per input, in input order
/// (`Vec<O>`, or [`PerItem`](crate::PerItem) for per-item errors). A wrong count fails every item of that
/// batch with `Error::ContractViolation`; an `Err` or a panic reaches every item (so `E: Clone`).
///
/// `Batcher` is a cheap handle: clone it to share. When the last handle is dropped the batcher shuts down:
/// it rejects new items and dispatches the queued ones.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{Batcher, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let batcher: Batcher<u64, String, String> = Batcher::builder(|ids: Vec<u64>| async move {
///     // One query for the whole batch instead of one per caller.
///     Ok::<_, String>(ids.into_iter().map(|id| format!("user {id}")).collect::<Vec<_>>())
/// })
/// .max_batch_size(100)
/// .build()?;
///
/// let (a, b) = tokio::join!(batcher.submit(1), batcher.submit(2));
/// assert_eq!(a.unwrap(), "user 1");
/// assert_eq!(b.unwrap(), "user 2");
/// # Ok(())
/// # }
/// ```
pub struct Batcher<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    handle: Arc<Handle<T, O, E>>,
}

/// Builds a [`Batcher`]; made by [`Batcher::builder`].
///
/// Defaults: `max_batch_size` 100, `max_concurrent_batches` 5 (the seed's values), `max_pending` 10 000,
/// [`Flush::Immediate`], [`WhenFull::Wait`], no dedup.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_batch::{Batcher, Flush, WhenFull};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher: Batcher<u32, u32, String> = Batcher::builder(|items: Vec<u32>| async move { Ok::<_, String>(items) })
///     .max_batch_size(50)
///     .max_concurrent_batches(2)
///     .max_pending(1_000)
///     .flush(Flush::MaxWait(Duration::from_millis(5)))
///     .when_full(WhenFull::Reject)
///     .build()
///     .unwrap();
/// assert_eq!(batcher.submit(7).await.unwrap(), 7);
/// # }
/// ```
pub struct BatcherBuilder<T, O, E> {
    call: Box<BatchCall<T, O, E>>,
    settings: Settings,
    dedup: Option<Dedup<T, O>>,
}

/// The future of one [`Batcher::submit`]: resolves to this item's result.
///
/// The item is queued on the first poll.
///
/// # Cancellation
///
/// Dropping it before its batch is dispatched removes the item from the queue (it is dropped, never sent)
/// and frees its place; dropping it after dispatch discards the result.
///
/// # Panics
///
/// When polled again after it returned `Ready`.
#[must_use = "futures do nothing unless polled; the item is queued on the first poll"]
pub struct Submit<T, O, E> {
    shared: Arc<Shared<T, O, E>>,
    state: SubmitState<T, O, E>,
}

type BatchCall<T, O, E> = dyn Fn(Vec<T>) -> BoxFuture<'static, Collected<O, E>> + Send + Sync;
type Collected<O, E> = Outcome<Vec<Result<O, Error<E>>>, E>;
type Reply<O, E> = oneshot::Sender<Result<O, Error<E>>>;
type AcquireRoom = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    max_batch_size: usize,
    max_concurrent_batches: usize,
    max_pending: usize,
    flush: Flush,
    when_full: WhenFull,
}

/// Dedup support, type-erased so that `Batcher` needs `Hash + Eq` only when dedup is asked for.
struct Dedup<T, O> {
    new_set: fn() -> Box<dyn DedupSet<T>>,
    clone_output: fn(&O) -> O,
}

trait DedupSet<T>: Send {
    /// The batch index of an equal item already in the batch, or `None` after recording `item` at `next`.
    fn index_of(&mut self, item: &T, next: usize) -> Option<usize>;
}

struct HashDedup<T>(HashMap<T, usize>);

/// The last handle's drop shuts the batcher down.
struct Handle<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    shared: Arc<Shared<T, O, E>>,
}

struct Shared<T, O, E> {
    state: Mutex<State<T, O, E>>,
    call: Box<BatchCall<T, O, E>>,
    room: Arc<Semaphore>,
    idle: Notify,
    runtime: tokio::runtime::Handle,
    settings: Settings,
    dedup: Option<Dedup<T, O>>,
}

struct State<T, O, E> {
    /// Queued items; `None` marks an item whose caller went away. The front is never `None`.
    queue: VecDeque<Option<Entry<T, O, E>>>,
    /// The id of `queue[0]`; ids grow by one per queued item.
    head_id: u64,
    /// Queued items that are still wanted.
    live: usize,
    in_flight: usize,
    /// Items with a smaller id were asked to be flushed.
    flush_until: u64,
    /// The oldest queued item has waited `MaxWait` or longer.
    expired: bool,
    timer_armed: bool,
    closed: bool,
    counters: DispatchCounters,
}

struct Entry<T, O, E> {
    item: T,
    reply: Reply<O, E>,
    enqueued_at: Instant,
}

/// A batch taken from the queue, ready to run.
struct Taken<T, O, E> {
    items: Vec<T>,
    replies: Vec<Reply<O, E>>,
    /// With dedup: for each reply, the index of its item in `items`.
    targets: Option<Vec<usize>>,
}

/// What to do once the lock is released.
struct Actions<T, O, E> {
    batches: Vec<Taken<T, O, E>>,
    arm_timer_at: Option<Instant>,
    freed: usize,
}

enum SubmitState<T, O, E> {
    Start(T),
    Waiting { item: T, acquire: AcquireRoom },
    Queued { id: u64, reply: oneshot::Receiver<Result<O, Error<E>>> },
    Done,
}

// ===== impl Batcher =====

impl<T, O, E> Batcher<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    /// The default number of items per batch, the seed's `batch_size=100`.
    pub const DEFAULT_MAX_BATCH_SIZE: usize = 100;
    /// The default number of batch calls in flight, the seed's `max_concurrent=5`.
    pub const DEFAULT_MAX_CONCURRENT_BATCHES: usize = 5;
    /// The default queue capacity.
    pub const DEFAULT_MAX_PENDING: usize = 10_000;

    /// Starts a builder around the batch function `f`.
    ///
    /// `f` receives up to `max_batch_size` items and returns `Ok` with one output per input in input order
    /// (`Vec<O>` or [`PerItem`](crate::PerItem)), or `Err` for a whole-batch failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: Batcher<&'static str, usize, ()> =
    ///     Batcher::builder(|words: Vec<&'static str>| async move { Ok::<_, ()>(words.iter().map(|w| w.len()).collect::<Vec<_>>()) })
    ///         .build()
    ///         .unwrap();
    /// assert_eq!(batcher.submit("four").await.unwrap(), 4);
    /// # }
    /// ```
    pub fn builder<F, Fut, R, X>(f: F) -> BatcherBuilder<T, O, E>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, X>> + Send + 'static,
        R: BatchOutputs<E, Output = O> + 'static,
        X: Into<Error<E>> + 'static,
    {
        let call = move |items: Vec<T>| -> BoxFuture<'static, Collected<O, E>> {
            let expected = items.len();
            match start(&f, items) {
                Ok(future) => Box::pin(finish(future, expected)),
                Err(error) => Box::pin(std::future::ready(Outcome::Failed(error))),
            }
        };
        BatcherBuilder { call: Box::new(call), settings: Settings::new(), dedup: None }
    }

    /// Queues `item` for the next batch and resolves to its own result.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before dispatch removes the item from the queue; after dispatch the result is
    /// discarded. A submitter waiting for room leaves the line without taking any.
    ///
    /// # Errors
    ///
    /// - `Error::Full { capacity }` when the queue is full and the batcher rejects ([`WhenFull::Reject`]);
    /// - `Error::Closed` when the batcher is shut down (before the item was queued);
    /// - the batch's error, copied to every item, when the batch failed as a whole; this item's own error
    ///   from a [`PerItem`](crate::PerItem);
    /// - `Error::ContractViolation` when the batch function returned the wrong number of outputs;
    /// - `Error::Panicked` when it panicked; `Error::Cancelled` when its task was aborted (runtime shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batcher, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: Batcher<u8, u8, &'static str> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Err::<Vec<u8>, _>("database down") }).build().unwrap();
    /// let error = batcher.submit(1).await.unwrap_err();
    /// assert_eq!(error.operation(), Some(&"database down"));
    /// # }
    /// ```
    pub fn submit(&self, item: T) -> Submit<T, O, E> {
        Submit { shared: Arc::clone(&self.handle.shared), state: SubmitState::Start(item) }
    }

    /// Dispatches every item queued now, in partial batches if need be, as concurrency slots allow.
    ///
    /// Items queued after the call wait for the usual rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batcher, Flush};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let batcher: Batcher<u8, u8, ()> = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) })
    ///     .flush(Flush::Size)
    ///     .build()
    ///     .unwrap();
    /// let submit = tokio::spawn(batcher.submit(1));
    /// tokio::task::yield_now().await; // the item is queued, but a batch of 1 is not full
    /// batcher.flush();
    /// assert_eq!(submit.await.unwrap().unwrap(), 1);
    /// # }
    /// ```
    pub fn flush(&self) {
        let shared = &self.handle.shared;
        let actions = {
            let mut state = shared.lock();
            state.flush_until = state.head_id + state.queue.len() as u64;
            shared.pump(&mut state, None)
        };
        shared.act(actions);
    }

    /// Stops accepting items (new and waiting submitters get `Error::Closed`), dispatches what is queued, and
    /// resolves once every queued item was dispatched and every batch call finished.
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops the waiting only: the batcher stays shut down and its batches still run.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: Batcher<u8, u8, ()> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// batcher.shutdown().await;
    /// assert!(batcher.submit(1).await.unwrap_err().is_closed());
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        let shared = &self.handle.shared;
        shared.close();
        loop {
            let notified = shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = shared.lock();
                if state.live == 0 && state.in_flight == 0 {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Returns `true` once the batcher was shut down.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: Batcher<u8, u8, ()> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// assert!(!batcher.is_closed());
    /// batcher.shutdown().await;
    /// assert!(batcher.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.handle.shared.lock().closed
    }

    /// A snapshot of the counters: batch sizes, fill ratio, queue wait, batches in flight, rejections.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: Batcher<u8, u8, ()> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// batcher.submit(1).await.unwrap();
    /// let metrics = batcher.metrics();
    /// assert_eq!((metrics.batches, metrics.items), (1, 1));
    /// # }
    /// ```
    pub fn metrics(&self) -> BatcherMetrics {
        let shared = &self.handle.shared;
        let state = shared.lock();
        state.counters.snapshot(shared.settings.max_batch_size, state.in_flight, state.live)
    }

    /// Shuts the batcher down without waiting.
    pub(crate) fn close(&self) {
        self.handle.shared.close();
    }

    /// How many handles and futures refer to this batcher's state (for idle-key eviction).
    pub(crate) fn references(&self) -> (usize, usize) {
        (Arc::strong_count(&self.handle), Arc::strong_count(&self.handle.shared))
    }
}

impl<T, O, E> Clone for Batcher<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn clone(&self) -> Self {
        Self { handle: Arc::clone(&self.handle) }
    }
}

impl<T, O, E> fmt::Debug for Batcher<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Batcher")
            .field("settings", &self.handle.shared.settings)
            .finish_non_exhaustive()
    }
}

// ===== impl BatcherBuilder =====

impl<T, O, E> BatcherBuilder<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    /// Sets the most items per batch call; must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let built: Result<Batcher<u8, u8, ()>, _> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) }).max_batch_size(0).build();
    /// assert!(built.unwrap_err().to_string().contains("max_batch_size"));
    /// # }
    /// ```
    #[must_use]
    pub fn max_batch_size(mut self, max_batch_size: usize) -> Self {
        self.settings.max_batch_size = max_batch_size;
        self
    }

    /// Sets the most batch calls running at once; must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let built: Result<Batcher<u8, u8, ()>, _> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) }).max_concurrent_batches(1).build();
    /// assert!(built.is_ok());
    /// # }
    /// ```
    #[must_use]
    pub fn max_concurrent_batches(mut self, max_concurrent_batches: usize) -> Self {
        self.settings.max_concurrent_batches = max_concurrent_batches;
        self
    }

    /// Sets the queue capacity: how many items may wait for dispatch; at least `max_batch_size`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let built: Result<Batcher<u8, u8, ()>, _> = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) })
    ///     .max_batch_size(10)
    ///     .max_pending(5)
    ///     .build();
    /// assert!(built.unwrap_err().to_string().contains("max_pending"));
    /// # }
    /// ```
    #[must_use]
    pub fn max_pending(mut self, max_pending: usize) -> Self {
        self.settings.max_pending = max_pending;
        self
    }

    /// Sets when a partial batch is dispatched (see [`Flush`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batcher, Flush};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let built: Result<Batcher<u8, u8, ()>, _> = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) })
    ///     .flush(Flush::MaxWait(std::time::Duration::ZERO))
    ///     .build();
    /// assert!(built.unwrap_err().to_string().contains("Flush::Immediate"));
    /// # }
    /// ```
    #[must_use]
    pub fn flush(mut self, flush: Flush) -> Self {
        self.settings.flush = flush;
        self
    }

    /// Sets what a submitter does when the queue is full (see [`WhenFull`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batcher, WhenFull};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let built: Result<Batcher<u8, u8, ()>, _> = Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) })
    ///     .when_full(WhenFull::Reject)
    ///     .build();
    /// assert!(built.is_ok());
    /// # }
    /// ```
    #[must_use]
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.settings.when_full = when_full;
        self
    }

    /// Validates the settings and starts the batcher on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying what to change when `max_batch_size` or `max_concurrent_batches` is zero,
    /// `max_pending` is below `max_batch_size`, `Flush::MaxWait` is zero, or no tokio runtime is running.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batcher;
    ///
    /// // Outside a runtime there is nowhere to run the batches.
    /// let built: Result<Batcher<u8, u8, ()>, _> =
    ///     Batcher::builder(|items: Vec<u8>| async move { Ok::<_, ()>(items) }).build();
    /// assert!(built.unwrap_err().to_string().contains("tokio runtime"));
    /// ```
    pub fn build(self) -> Result<Batcher<T, O, E>, ConfigError> {
        self.settings.validate()?;
        let runtime = current_runtime()?;
        Ok(self.build_on(runtime))
    }

    /// The settings, for builders that wrap this one.
    pub(crate) fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Starts the batcher on `runtime`; the settings were validated.
    pub(crate) fn build_on(self, runtime: tokio::runtime::Handle) -> Batcher<T, O, E> {
        let settings = self.settings;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                head_id: 0,
                live: 0,
                in_flight: 0,
                flush_until: 0,
                expired: false,
                timer_armed: false,
                closed: false,
                counters: DispatchCounters::new(settings.max_batch_size),
            }),
            call: self.call,
            room: Arc::new(Semaphore::new(settings.max_pending.min(Semaphore::MAX_PERMITS))),
            idle: Notify::new(),
            runtime,
            settings,
            dedup: self.dedup,
        });
        Batcher { handle: Arc::new(Handle { shared }) }
    }
}

/// The runtime the batches will run on, or a clear error outside one.
pub(crate) fn current_runtime() -> Result<tokio::runtime::Handle, ConfigError> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        ConfigError::new("no tokio runtime is running; build the batcher inside a tokio runtime, which runs its batches")
    })
}

impl Settings {
    pub(crate) fn new() -> Self {
        Self {
            max_batch_size: 100,
            max_concurrent_batches: 5,
            max_pending: 10_000,
            flush: Flush::Immediate,
            when_full: WhenFull::Wait,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch_size == 0 {
            return Err(ConfigError::new("max_batch_size must be at least 1 item, got 0"));
        }
        if self.max_concurrent_batches == 0 {
            return Err(ConfigError::new(
                "max_concurrent_batches must be at least 1 batch in flight, got 0",
            ));
        }
        if self.max_pending < self.max_batch_size {
            return Err(ConfigError::new(format!(
                "max_pending ({}) must be at least max_batch_size ({}), or no batch could ever fill",
                self.max_pending, self.max_batch_size
            )));
        }
        if self.flush == Flush::MaxWait(Duration::ZERO) {
            return Err(ConfigError::new(
                "Flush::MaxWait must be longer than zero; use Flush::Immediate to dispatch without waiting",
            ));
        }
        Ok(())
    }

    pub(crate) fn set_max_batch_size(&mut self, value: usize) {
        self.max_batch_size = value;
    }

    pub(crate) fn set_max_concurrent_batches(&mut self, value: usize) {
        self.max_concurrent_batches = value;
    }

    pub(crate) fn set_max_pending(&mut self, value: usize) {
        self.max_pending = value;
    }

    pub(crate) fn set_flush(&mut self, value: Flush) {
        self.flush = value;
    }

    pub(crate) fn set_when_full(&mut self, value: WhenFull) {
        self.when_full = value;
    }
}

impl<T, O, E> BatcherBuilder<T, O, E>
where
    T: Hash + Eq + Clone + Send + 'static,
    O: Clone,
{
    /// Sends equal items once per batch and gives each submitter a copy of the result.
    ///
    /// Dedup happens when a batch is taken from the queue: the batch takes queued items in order until it holds
    /// `max_batch_size` distinct ones, so duplicates never crowd out other items (graphql/dataloader#294).
    /// When a batch is due still counts queued items, duplicates included, so a due batch may carry fewer than
    /// `max_batch_size` distinct items.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use aqueduct_batch::{Batcher, Flush};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let sent = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&sent);
    /// let batcher: Batcher<u32, u32, ()> = Batcher::builder(move |ids: Vec<u32>| {
    ///     counter.fetch_add(ids.len(), Ordering::SeqCst);
    ///     async move { Ok::<_, ()>(ids) }
    /// })
    /// .flush(Flush::Size)
    /// .max_batch_size(3)
    /// .dedup()
    /// .build()
    /// .unwrap();
    /// let (a, b, c) = tokio::join!(batcher.submit(7), batcher.submit(7), batcher.submit(8));
    /// assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (7, 7, 8));
    /// assert_eq!(sent.load(Ordering::SeqCst), 2);
    /// # }
    /// ```
    #[must_use]
    pub fn dedup(mut self) -> Self {
        self.dedup =
            Some(Dedup { new_set: || Box::new(HashDedup(HashMap::new())), clone_output: O::clone });
        self
    }
}

impl<T, O, E> fmt::Debug for BatcherBuilder<T, O, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BatcherBuilder")
            .field("settings", &self.settings)
            .field("dedup", &self.dedup.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Hash + Eq + Clone + Send> DedupSet<T> for HashDedup<T> {
    fn index_of(&mut self, item: &T, next: usize) -> Option<usize> {
        match self.0.get(item) {
            Some(index) => Some(*index),
            None => {
                self.0.insert(item.clone(), next);
                None
            }
        }
    }
}

// ===== impl Submit =====

impl<T, O, E> Future for Submit<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    type Output = Result<O, Error<E>>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, SubmitState::Done) {
                SubmitState::Start(item) => match this.shared.room.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        this.state = this.shared.enqueue(item)?;
                    }
                    Err(TryAcquireError::NoPermits) => match this.shared.settings.when_full {
                        WhenFull::Reject => {
                            this.shared.lock().counters.rejections += 1;
                            return Poll::Ready(Err(Error::Full {
                                capacity: this.shared.settings.max_pending,
                            }));
                        }
                        WhenFull::Wait => {
                            let acquire = Box::pin(Arc::clone(&this.shared.room).acquire_owned());
                            this.state = SubmitState::Waiting { item, acquire };
                        }
                    },
                    Err(TryAcquireError::Closed) => {
                        return Poll::Ready(Err(Error::Closed { reconnecting: false }));
                    }
                },
                SubmitState::Waiting { item, mut acquire } => {
                    match acquire.as_mut().poll(context) {
                        Poll::Pending => {
                            this.state = SubmitState::Waiting { item, acquire };
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(permit)) => {
                            permit.forget();
                            this.state = this.shared.enqueue(item)?;
                        }
                        Poll::Ready(Err(_closed)) => {
                            return Poll::Ready(Err(Error::Closed { reconnecting: false }));
                        }
                    }
                }
                SubmitState::Queued { id, mut reply } => match Pin::new(&mut reply).poll(context) {
                    Poll::Pending => {
                        this.state = SubmitState::Queued { id, reply };
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(result)) => return Poll::Ready(result),
                    // The batch task was dropped without answering: its runtime shut down.
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Error::Cancelled)),
                },
                SubmitState::Done => panic!("`Submit` polled after it returned `Ready`"),
            }
        }
    }
}

// `Submit` never pins its item or its receiver in place; it moves them between states.
impl<T, O, E> Unpin for Submit<T, O, E> {}

impl<T, O, E> Drop for Submit<T, O, E> {
    fn drop(&mut self) {
        if let SubmitState::Queued { id, .. } = self.state {
            self.shared.cancel(id);
        }
    }
}

impl<T, O, E> fmt::Debug for Submit<T, O, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            SubmitState::Start(_) => "start",
            SubmitState::Waiting { .. } => "waiting for room",
            SubmitState::Queued { .. } => "queued",
            SubmitState::Done => "done",
        };
        formatter.debug_struct("Submit").field("state", &state).finish_non_exhaustive()
    }
}

// ===== impl Shared =====

impl<T, O, E> Shared<T, O, E> {
    fn lock(&self) -> MutexGuard<'_, State<T, O, E>> {
        // No user code runs under the lock except item drops; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a cancelled caller's item if it is still queued.
    fn cancel(&self, id: u64) {
        let (removed, idle) = {
            let mut state = self.lock();
            let removed = state.remove(id);
            if removed.is_some() {
                state.counters.cancelled_before_dispatch += 1;
            }
            (removed, state.live == 0 && state.in_flight == 0)
        };
        if removed.is_some() {
            self.room.add_permits(1);
        }
        drop(removed);
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Takes every batch that is ready and decides about the timer; called under the lock after any change.
    fn pump(&self, state: &mut State<T, O, E>, now: Option<Instant>) -> Actions<T, O, E> {
        let settings = &self.settings;
        let mut actions = Actions { batches: Vec::new(), arm_timer_at: None, freed: 0 };
        let mut now = now;
        loop {
            while state.ready(settings) {
                let taken_at = *now.get_or_insert_with(Instant::now);
                let (taken, count) = state.take(settings, self.dedup.as_ref(), taken_at);
                actions.freed += count;
                actions.batches.push(taken);
            }
            let Flush::MaxWait(max_wait) = settings.flush else { break };
            if state.live == 0 || state.expired || state.timer_armed {
                break;
            }
            let Some(Some(oldest)) = state.queue.front() else { break };
            let deadline = oldest.enqueued_at + max_wait;
            let current = *now.get_or_insert_with(Instant::now);
            if deadline <= current {
                state.expired = true;
                // Loop: a slot may be free for the now-expired partial batch.
            } else {
                state.timer_armed = true;
                actions.arm_timer_at = Some(deadline);
                break;
            }
        }
        actions
    }
}

impl<T, O, E> Shared<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn close(self: &Arc<Self>) {
        self.room.close();
        let actions = {
            let mut state = self.lock();
            state.closed = true;
            self.pump(&mut state, None)
        };
        self.act(actions);
    }

    /// Queues an item whose place was already reserved; returns the next state of its `Submit`.
    fn enqueue(self: &Arc<Self>, item: T) -> Result<SubmitState<T, O, E>, Error<E>> {
        let (reply, receiver) = oneshot::channel();
        let now = Instant::now();
        let (id, actions) = {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                self.room.add_permits(1);
                return Err(Error::Closed { reconnecting: false });
            }
            let id = state.head_id + state.queue.len() as u64;
            state.queue.push_back(Some(Entry { item, reply, enqueued_at: now }));
            state.live += 1;
            (id, self.pump(&mut state, Some(now)))
        };
        self.act(actions);
        Ok(SubmitState::Queued { id, reply: receiver })
    }

    /// Carries out what `pump` decided, outside the lock.
    fn act(self: &Arc<Self>, actions: Actions<T, O, E>) {
        if actions.freed > 0 {
            self.room.add_permits(actions.freed);
        }
        for taken in actions.batches {
            let slot = Slot { shared: Arc::clone(self) };
            self.runtime.spawn(slot.run(taken));
        }
        if let (Some(deadline), Flush::MaxWait(max_wait)) =
            (actions.arm_timer_at, self.settings.flush)
        {
            self.runtime.spawn(Arc::clone(self).timer(deadline, max_wait));
        }
    }

    /// Sleeps until the oldest item's max wait is over, then marks it expired and dispatches.
    async fn timer(self: Arc<Self>, mut deadline: Instant, max_wait: Duration) {
        loop {
            tokio::time::sleep_until(deadline).await;
            let actions = {
                let mut state = self.lock();
                let oldest = match state.queue.front() {
                    Some(Some(oldest)) if state.live > 0 => oldest.enqueued_at,
                    _ => {
                        state.timer_armed = false;
                        return;
                    }
                };
                let due = oldest + max_wait;
                if due > Instant::now() {
                    // The item that armed the timer left; wait for the new oldest one.
                    deadline = due;
                    continue;
                }
                state.timer_armed = false;
                state.expired = true;
                self.pump(&mut state, None)
            };
            self.act(actions);
            return;
        }
    }

    /// Sends each caller its result.
    fn fan_out(
        &self,
        outcome: Collected<O, E>,
        replies: Vec<Reply<O, E>>,
        targets: Option<Vec<usize>>,
    ) {
        match outcome {
            Outcome::Items(results) => match (targets, self.dedup.as_ref()) {
                (Some(targets), Some(dedup)) => {
                    let mut remaining = vec![0usize; results.len()];
                    for target in &targets {
                        remaining[*target] += 1;
                    }
                    let mut results: Vec<Option<Result<O, Error<E>>>> =
                        results.into_iter().map(Some).collect();
                    for (reply, target) in replies.into_iter().zip(targets) {
                        remaining[target] -= 1;
                        let result = if remaining[target] == 0 {
                            results[target].take()
                        } else {
                            results[target]
                                .as_ref()
                                .map(|result| clone_result(result, dedup.clone_output))
                        };
                        if let Some(result) = result {
                            // A caller that went away after dispatch simply never reads its result.
                            let _ = reply.send(result);
                        }
                    }
                }
                _ => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
            },
            Outcome::Failed(error) => {
                let mut replies = replies.into_iter();
                let last = replies.next_back();
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                if let Some(reply) = last {
                    let _ = reply.send(Err(error));
                }
            }
            Outcome::Violation(message) => {
                for reply in replies {
                    let _ = reply.send(Err(Error::ContractViolation { message: message.clone() }));
                }
            }
        }
    }
}

// ===== impl State =====

impl<T, O, E> State<T, O, E> {
    /// A batch may be dispatched now.
    fn ready(&self, settings: &Settings) -> bool {
        self.in_flight < settings.max_concurrent_batches
            && self.live > 0
            && (self.live >= settings.max_batch_size
                || self.closed
                || self.expired
                || settings.flush == Flush::Immediate
                || self.head_id < self.flush_until)
    }

    /// Takes up to `max_batch_size` (distinct, with dedup) items off the front; returns the batch and how many
    /// queue places it freed.
    fn take<V>(
        &mut self,
        settings: &Settings,
        dedup: Option<&Dedup<T, V>>,
        now: Instant,
    ) -> (Taken<T, O, E>, usize) {
        let capacity = settings.max_batch_size.min(self.live);
        let mut items = Vec::with_capacity(capacity);
        let mut replies = Vec::with_capacity(capacity);
        let mut targets = dedup.map(|_| Vec::with_capacity(capacity));
        let mut set = dedup.map(|dedup| (dedup.new_set)());
        let mut wait_total = Duration::ZERO;
        let mut wait_max = Duration::ZERO;
        let mut freed = 0;
        while items.len() < settings.max_batch_size {
            let Some(slot) = self.queue.pop_front() else { break };
            self.head_id += 1;
            let Some(entry) = slot else { continue };
            self.live -= 1;
            freed += 1;
            let waited = now.saturating_duration_since(entry.enqueued_at);
            wait_total += waited;
            wait_max = wait_max.max(waited);
            match (&mut set, &mut targets) {
                (Some(set), Some(targets)) => match set.index_of(&entry.item, items.len()) {
                    Some(existing) => targets.push(existing),
                    None => {
                        targets.push(items.len());
                        items.push(entry.item);
                    }
                },
                _ => items.push(entry.item),
            }
            replies.push(entry.reply);
        }
        self.skip_cancelled();
        // The oldest item changed: whether it waited long enough is decided afresh.
        self.expired = false;
        self.in_flight += 1;
        self.counters.record_batch(freed, items.len());
        self.counters.queue_wait_total += wait_total;
        self.counters.queue_wait_max = self.counters.queue_wait_max.max(wait_max);
        (Taken { items, replies, targets }, freed)
    }

    /// Removes the entry `id` if it is still queued.
    fn remove(&mut self, id: u64) -> Option<Entry<T, O, E>> {
        let index = usize::try_from(id.checked_sub(self.head_id)?).ok()?;
        let entry = self.queue.get_mut(index)?.take()?;
        self.live -= 1;
        if index == 0 {
            self.expired = false;
        }
        self.skip_cancelled();
        while matches!(self.queue.back(), Some(None)) {
            self.queue.pop_back();
        }
        Some(entry)
    }

    /// Keeps the invariant that the front of the queue is a live item.
    fn skip_cancelled(&mut self) {
        while matches!(self.queue.front(), Some(None)) {
            self.queue.pop_front();
            self.head_id += 1;
        }
        if self.live == 0 {
            self.expired = false;
        }
    }
}

// ===== the batch task =====

/// One busy concurrency slot; dropping it frees the slot and dispatches what became ready.
struct Slot<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    shared: Arc<Shared<T, O, E>>,
}

impl<T, O, E> Slot<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    async fn run(self, taken: Taken<T, O, E>) {
        let Taken { items, replies, targets } = taken;
        let outcome = (self.shared.call)(items).await;
        {
            let mut state = self.shared.lock();
            match &outcome {
                Outcome::Items(_) => {}
                Outcome::Failed(error) => {
                    state.counters.failed_batches += 1;
                    if error.is_panicked() {
                        state.counters.panicked_batches += 1;
                    }
                }
                Outcome::Violation(_) => state.counters.contract_violations += 1,
            }
        }
        self.shared.fan_out(outcome, replies, targets);
    }
}

impl<T, O, E> Drop for Slot<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn drop(&mut self) {
        let (actions, idle) = {
            let mut state = self.shared.lock();
            state.in_flight -= 1;
            let actions = self.shared.pump(&mut state, None);
            (actions, state.live == 0 && state.in_flight == 0)
        };
        self.shared.act(actions);
        if idle {
            self.shared.idle.notify_waiters();
        }
    }
}

impl<T, O, E> Drop for Handle<T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn drop(&mut self) {
        self.shared.close();
    }
}
