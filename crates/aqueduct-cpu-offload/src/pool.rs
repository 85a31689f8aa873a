//! The CPU pool: its builder, submission with bounded capacity, the ordered map and graceful shutdown.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use aqueduct_core::{Deadline, Elapsed, Error};
use tokio::sync::{Semaphore, TryAcquireError, oneshot};
use tokio::time::Instant;

use crate::blocking::BlockingQueue;
use crate::config::{Backend, ConfigError, default_threads};
use crate::job::{CancelToken, JobHandle, Ticket, execute};

/// How many queued-or-running jobs a pool accepts per thread when no capacity is configured.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::{CpuPool, DEFAULT_CAPACITY_PER_THREAD};
///
/// let pool = CpuPool::builder().threads(4).build()?;
/// assert_eq!(pool.capacity(), 4 * DEFAULT_CAPACITY_PER_THREAD);
/// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
/// ```
pub const DEFAULT_CAPACITY_PER_THREAD: usize = 128;

/// A per-worker initialiser: called once on each worker thread, with the worker's index, before its first job.
pub(crate) type Initializer = Arc<dyn Fn(usize) + Send + Sync>;

/// A bounded pool of CPU threads whose jobs are awaited from async code, keeping the runtime's workers free.
///
/// Cloning is cheap and every clone submits to the same threads.
/// At most [`capacity`](CpuPoolBuilder::capacity) jobs are queued or running at once:
/// [`submit`](Self::submit) and [`run`](Self::run) wait for room, [`try_submit`](Self::try_submit) rejects
/// with [`Error::Full`].
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::{CpuPool, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = CpuPool::builder().threads(2).capacity(64).build()?;
/// let sum: u64 = pool.run(|| (1..=1_000u64).sum()).await.map_err(Error::<std::convert::Infallible>::from)?;
/// assert_eq!(sum, 500_500);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CpuPool {
    inner: Arc<Inner>,
}

/// Configures a [`CpuPool`]; made by [`CpuPool::builder`] and checked by [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::{Backend, CpuPool};
///
/// let pool = CpuPool::builder()
///     .threads(2)
///     .capacity(256)
///     .backend(Backend::Rayon)
///     .thread_name("hash")
///     .on_worker_start(|index| eprintln!("worker {index} ready"))
///     .build()?;
/// assert_eq!(pool.threads(), 2);
/// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CpuPoolBuilder {
    threads: Option<usize>,
    capacity: Option<usize>,
    backend: Backend,
    thread_name: Option<String>,
    initializer: Option<Initializer>,
    runtime: Option<tokio::runtime::Handle>,
    /// `None`: [`DEFAULT_THREAD_NICENESS`] where it applies (rayon backend, Linux), otherwise unchanged.
    thread_niceness: Option<i32>,
}

/// How many nice levels the rayon workers' priority is lowered by default on Linux (see
/// [`CpuPoolBuilder::thread_niceness`]).
pub const DEFAULT_THREAD_NICENESS: i32 = 10;

/// A snapshot of a pool's load, from [`CpuPool::status`].
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::CpuPool;
///
/// let pool = CpuPool::builder().threads(1).capacity(8).build()?;
/// let status = pool.status();
/// assert_eq!((status.threads, status.capacity, status.in_flight, status.closed), (1, 8, 0, false));
/// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Worker threads (or, for [`Backend::SpawnBlocking`], the most jobs running at once).
    pub threads: usize,
    /// The most jobs queued or running at once.
    pub capacity: usize,
    /// Jobs queued or running now.
    pub in_flight: usize,
    /// `true` once [`CpuPool::shutdown`] or [`CpuPool::shutdown_now`] was called.
    pub closed: bool,
}

/// The future of [`CpuPool::submit`]: waits for room in the pool, then hands the job over and yields its handle.
///
/// # Cancellation
///
/// Dropping it before it completes submits nothing and holds no capacity.
#[must_use = "futures do nothing unless polled"]
pub struct Submit<F, E> {
    pool: Arc<Inner>,
    job: Option<F>,
    acquire: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
    stop: Option<Arc<AtomicBool>>,
    _error: PhantomData<fn() -> E>,
}

/// The future of [`CpuPool::run`] and [`run`](crate::run): waits for room, runs the job on the pool and yields its value.
///
/// It honours the ambient deadline ([`with_deadline`](aqueduct_core::with_deadline)): when it passes first, the
/// future yields [`Error::Elapsed`] and lets go of the job, as if dropped.
///
/// # Cancellation
///
/// Dropping it before a worker started the job means the job never runs; a running job finishes on its thread
/// (and sees its [`CancelToken`] turn `true` when it has one) and its value is dropped there.
#[must_use = "futures do nothing unless polled"]
pub struct Run<F, T, E> {
    submit: Submit<F, E>,
    handle: Option<JobHandle<T, E>>,
    deadline: AmbientDeadline,
}

/// The ambient deadline of a [`Run`], read on its first poll (inside the caller's task).
enum AmbientDeadline {
    Unread,
    Unset,
    Armed { deadline: Deadline, since: Instant, sleep: Pin<Box<tokio::time::Sleep>> },
}

pub(crate) struct Inner {
    backend: Executor,
    kind: Backend,
    threads: usize,
    capacity: usize,
    slots: Semaphore,
    closed: AtomicBool,
    cancelling: AtomicBool,
}

enum Executor {
    Rayon(rayon::ThreadPool),
    Blocking(Arc<BlockingQueue>),
}

// ===== impl CpuPool =====

impl CpuPool {
    /// A builder with the defaults: [`Backend::Rayon`], [`default_threads`] threads and
    /// [`DEFAULT_CAPACITY_PER_THREAD`] jobs per thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().build()?;
    /// assert_eq!(pool.threads(), aqueduct_cpu_offload::default_threads());
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn builder() -> CpuPoolBuilder {
        CpuPoolBuilder {
            threads: None,
            capacity: None,
            backend: Backend::default(),
            thread_name: None,
            initializer: None,
            runtime: None,
            thread_niceness: None,
        }
    }

    /// The process-wide default pool behind the free function [`run`](crate::run), built with the defaults on first use.
    ///
    /// # Panics
    ///
    /// On first use, when the operating system refuses to start its threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::global();
    /// assert!(pool.threads() >= 1);
    /// ```
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<CpuPool> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            Self::builder()
                .thread_name("aqueduct-cpu")
                .build()
                .expect("the default CPU pool starts its threads")
        })
    }

    /// Runs `job` on the pool and yields its value; waits for room first when the pool is at capacity.
    ///
    /// The job runs on a pool thread, never on the runtime's workers, so timers and I/O stay responsive.
    /// `E` is the error type of the surrounding code (any type; pick it with an annotation or `?`).
    ///
    /// # Cancellation
    ///
    /// Dropping the future before a worker starts the job means the job never runs and its slot is returned.
    /// A running job cannot be interrupted: it finishes on its thread and its value is dropped there.
    /// Use [`run_cancellable`](Self::run_cancellable) for jobs that should stop early.
    ///
    /// # Errors
    ///
    /// - [`Error::Panicked`] when the job panics (the pool thread survives);
    /// - [`Error::Closed`] after [`shutdown`](Self::shutdown) was called;
    /// - [`Error::Cancelled`] when [`shutdown_now`](Self::shutdown_now) dropped the job before it started;
    /// - [`Error::Elapsed`] when the ambient deadline ([`with_deadline`](aqueduct_core::with_deadline)) passed
    ///   first; the job is let go of as if the future were dropped.
    ///
    /// # Panics
    ///
    /// When an ambient deadline is set but the runtime has no timer (`enable_time`).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = CpuPool::builder().threads(1).build().unwrap();
    /// let result: Result<u64, Error<std::io::Error>> = pool.run(|| 6 * 7).await;
    /// assert_eq!(result.unwrap(), 42);
    ///
    /// let panicked: Result<u64, Error<std::io::Error>> = pool.run(|| panic!("boom")).await;
    /// assert!(panicked.unwrap_err().is_panicked());
    /// # }
    /// ```
    pub fn run<F, T, E>(&self, job: F) -> Run<F, T, E>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Run { submit: self.submit(job), handle: None, deadline: AmbientDeadline::Unread }
    }

    /// Runs a fallible `job` and flattens its error: `Err(x)` becomes `x.into()`, so a job returning
    /// `Result<T, E>` or `Result<T, Error<E>>` yields `Result<T, Error<E>>`, never a nested error.
    ///
    /// # Cancellation
    ///
    /// As [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// The job's own error (converted with `Into<Error<E>>`), and every error of [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = CpuPool::builder().threads(1).build().unwrap();
    /// let parsed: Result<u32, Error<std::num::ParseIntError>> = pool.try_run(|| "12".parse::<u32>()).await;
    /// assert_eq!(parsed.unwrap(), 12);
    /// let failed: Result<u32, Error<std::num::ParseIntError>> = pool.try_run(|| "x".parse::<u32>()).await;
    /// assert!(failed.unwrap_err().operation().is_some());
    /// # }
    /// ```
    pub async fn try_run<F, T, X, E>(&self, job: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Result<T, X> + Send + 'static,
        T: Send + 'static,
        X: Into<Error<E>> + Send + 'static,
    {
        self.run(job).await?.map_err(Into::into)
    }

    /// Runs `job` with a [`CancelToken`] it can poll to stop early, and yields its value.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before the job starts means it never runs; dropping it while the job runs turns the
    /// token to `true`, so a job that checks it returns early (its value is then dropped on the worker).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = CpuPool::builder().threads(1).build().unwrap();
    /// let result: Result<bool, Error<()>> = pool.run_cancellable(|token| token.is_cancelled()).await;
    /// assert_eq!(result.unwrap(), false);
    /// # }
    /// ```
    pub fn run_cancellable<F, T, E>(&self, job: F) -> Run<impl FnOnce() -> T + Send + 'static, T, E>
    where
        F: FnOnce(&CancelToken) -> T + Send + 'static,
        T: Send + 'static,
    {
        let token = CancelToken::new(Arc::clone(&self.inner));
        let stop = token.flag();
        let mut submit = self.submit(move || job(&token));
        submit.stop = Some(stop);
        Run { submit, handle: None, deadline: AmbientDeadline::Unread }
    }

    /// Waits for room in the pool, hands `job` over and yields a [`JobHandle`] to await its value later.
    ///
    /// Use it to start many jobs and await them together; the number queued or running never exceeds the capacity.
    ///
    /// # Cancellation
    ///
    /// Dropping this future before it completes submits nothing. Dropping the returned handle before the job
    /// starts means the job never runs.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the pool is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
    /// let pool = CpuPool::builder().threads(2).build().unwrap();
    /// let first = pool.submit(|| 1).await?;
    /// let second = pool.submit(|| 2).await?;
    /// assert_eq!(first.await? + second.await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn submit<F, T, E>(&self, job: F) -> Submit<F, E>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Submit {
            pool: Arc::clone(&self.inner),
            job: Some(job),
            acquire: None,
            stop: None,
            _error: PhantomData,
        }
    }

    /// Hands `job` over if the pool has room now, without waiting.
    ///
    /// # Errors
    ///
    /// - [`Error::Full`] with the pool's capacity when it is full (the job is dropped, not run);
    /// - [`Error::Closed`] once the pool is shutting down.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
    /// let pool = CpuPool::builder().threads(1).capacity(1).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let busy = pool.try_submit(move || gate.recv().is_ok())?;
    /// // The only slot is taken: the next job is rejected at once.
    /// let rejected: Error<std::convert::Infallible> = pool.try_submit(|| true).unwrap_err();
    /// assert!(matches!(rejected, Error::Full { capacity: 1 }));
    /// release.send(()).unwrap();
    /// assert!(busy.await?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_submit<F, T, E>(&self, job: F) -> Result<JobHandle<T, E>, Error<E>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.inner.is_closed() {
            return Err(Error::Closed { reconnecting: false });
        }
        match self.inner.slots.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => {
                return Err(Error::Full { capacity: self.inner.capacity });
            }
            Err(TryAcquireError::Closed) => return Err(Error::Closed { reconnecting: false }),
        }
        Ok(dispatch(&self.inner, job, None))
    }

    /// Applies `function` to every item on the pool, `chunk_size` items per job, and yields the outputs in input
    /// order (Python's `Executor.map(fn, items, chunksize=…)`).
    ///
    /// Items are pulled from the iterator lazily: at most twice the thread count of chunks are queued or running,
    /// so memory stays bounded for long iterators. A `chunk_size` of 0 picks one from the iterator's size hint
    /// (about four chunks per thread). Grouping small items into chunks matters: dispatching one job costs about a
    /// microsecond, so a job should carry at least tens of microseconds of work.
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops pulling items; chunks not yet started never run, running chunks finish.
    ///
    /// # Errors
    ///
    /// The first failure in input order: [`Error::Panicked`] with the index of the item whose call panicked, or
    /// the errors of [`submit`](Self::submit). Later chunks are then cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
    /// let pool = CpuPool::builder().threads(2).build().unwrap();
    /// let squares = pool.map(1..=6u64, 2, |value| value * value).await?;
    /// assert_eq!(squares, vec![1, 4, 9, 16, 25, 36]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn map<I, F, T, E>(
        &self,
        items: I,
        chunk_size: usize,
        function: F,
    ) -> Result<Vec<T>, Error<E>>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let mut items = items.into_iter();
        let chunk_size = if chunk_size == 0 {
            (items.size_hint().0 / (self.inner.threads * 4)).max(1)
        } else {
            chunk_size
        };
        let window = self.inner.threads * 2;
        let function = Arc::new(function);
        let mut pending: std::collections::VecDeque<JobHandle<Result<Vec<T>, ChunkPanic>, E>> =
            std::collections::VecDeque::with_capacity(window);
        let mut outputs = Vec::with_capacity(items.size_hint().0);
        let mut next_index = 0;
        loop {
            let chunk: Vec<I::Item> = items.by_ref().take(chunk_size).collect();
            if chunk.is_empty() {
                break;
            }
            if pending.len() == window
                && let Some(oldest) = pending.pop_front()
            {
                collect_chunk(oldest.await?, &mut outputs)?;
            }
            let function = Arc::clone(&function);
            let first_index = next_index;
            next_index += chunk.len();
            let handle = self.submit(move || run_chunk(&*function, chunk, first_index)).await?;
            pending.push_back(handle);
        }
        while let Some(oldest) = pending.pop_front() {
            collect_chunk(oldest.await?, &mut outputs)?;
        }
        Ok(outputs)
    }

    /// Stops accepting jobs, then waits until every queued and running job has finished (Python's
    /// `shutdown(wait=True)`).
    ///
    /// New submissions fail with [`Error::Closed`]; callers already waiting for room get [`Error::Closed`] too.
    /// Calling it again, or on a clone, waits as well.
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops waiting; the pool stays closed and its jobs go on.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
    /// let pool = CpuPool::builder().threads(1).build().unwrap();
    /// let handle = pool.submit(|| 7).await?;
    /// pool.shutdown().await;
    /// assert_eq!(handle.await?, 7);
    /// assert!(pool.run(|| 8).await.map_err(Error::<std::convert::Infallible>::from).unwrap_err().is_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.wait_until_idle().await;
    }

    /// Stops accepting jobs, fails every job that has not started with [`Error::Cancelled`] (it never runs), turns
    /// the [`CancelToken`] of running jobs to `true`, and waits until the running ones return (Python's
    /// `shutdown(cancel_futures=True)`).
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops waiting; the pool stays closed and pending jobs are still skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
    /// let pool = CpuPool::builder().threads(1).build().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    /// let running = pool
    ///     .submit(move || {
    ///         let _ = started.send(());
    ///         gate.recv().is_ok()
    ///     })
    ///     .await?;
    /// let pending = pool.submit(|| true).await?;
    /// has_started.await.unwrap();
    /// let stopping = tokio::spawn({
    ///     let pool = pool.clone();
    ///     async move { pool.shutdown_now().await }
    /// });
    /// tokio::task::yield_now().await;
    /// release.send(()).unwrap();
    /// stopping.await.unwrap();
    /// assert!(running.await?);
    /// // The pending job either never ran, or had started before shutdown_now.
    /// assert!(matches!(pending.await, Ok(true) | Err(Error::Cancelled)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown_now(&self) {
        self.inner.cancelling.store(true, Ordering::SeqCst);
        self.inner.closed.store(true, Ordering::SeqCst);
        self.wait_until_idle().await;
    }

    async fn wait_until_idle(&self) {
        let all = u32::try_from(self.inner.capacity).unwrap_or(u32::MAX);
        // The semaphore is fair: this waits behind every submitter already queued (they will see `closed`), then
        // until every queued or running job has returned its slot.
        if let Ok(permits) = self.inner.slots.acquire_many(all).await {
            permits.forget();
            self.inner.slots.close();
        }
    }

    /// `true` once [`shutdown`](Self::shutdown) or [`shutdown_now`](Self::shutdown_now) was called.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().build()?;
    /// assert!(!pool.is_closed());
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The number of worker threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().threads(3).build()?;
    /// assert_eq!(pool.threads(), 3);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// The most jobs queued or running at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().threads(2).build()?;
    /// assert_eq!(pool.capacity(), 2 * aqueduct_cpu_offload::DEFAULT_CAPACITY_PER_THREAD);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The backend the jobs run on.
    ///
    /// # Examples
    ///
    /// See [`Backend`].
    pub fn backend(&self) -> Backend {
        self.inner.kind
    }

    /// A snapshot of the pool's load.
    ///
    /// # Examples
    ///
    /// See [`Status`].
    pub fn status(&self) -> Status {
        let available = self.inner.slots.available_permits();
        Status {
            threads: self.inner.threads,
            capacity: self.inner.capacity,
            in_flight: if self.inner.is_closed() && self.inner.slots.is_closed() {
                0
            } else {
                self.inner.capacity.saturating_sub(available)
            },
            closed: self.inner.is_closed(),
        }
    }
}

impl fmt::Debug for CpuPool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CpuPool")
            .field("backend", &self.inner.kind)
            .field("status", &self.status())
            .finish()
    }
}

/// Hands a job that already holds a slot to the backend.
fn dispatch<F, T, E>(pool: &Arc<Inner>, job: F, stop: Option<Arc<AtomicBool>>) -> JobHandle<T, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = oneshot::channel();
    let ticket = Ticket { pool: Arc::clone(pool) };
    match &pool.backend {
        Executor::Rayon(threads) => threads.spawn(move || execute(job, sender, ticket)),
        Executor::Blocking(queue) => queue.push(Box::new(move || execute(job, sender, ticket))),
    }
    JobHandle::new(receiver, stop)
}

/// A panic inside a map chunk, with the index of the item whose call panicked.
struct ChunkPanic {
    index: usize,
    payload: Box<dyn std::any::Any + Send>,
}

fn run_chunk<Item, T>(
    function: &dyn Fn(Item) -> T,
    chunk: Vec<Item>,
    first_index: usize,
) -> Result<Vec<T>, ChunkPanic> {
    let mut outputs = Vec::with_capacity(chunk.len());
    for (offset, item) in chunk.into_iter().enumerate() {
        match catch_unwind(AssertUnwindSafe(|| function(item))) {
            Ok(output) => outputs.push(output),
            Err(payload) => return Err(ChunkPanic { index: first_index + offset, payload }),
        }
    }
    Ok(outputs)
}

fn collect_chunk<T, E>(
    chunk: Result<Vec<T>, ChunkPanic>,
    outputs: &mut Vec<T>,
) -> Result<(), Error<E>> {
    match chunk {
        Ok(values) => {
            outputs.extend(values);
            Ok(())
        }
        Err(ChunkPanic { index, payload }) => Err(Error::from_panic(Some(index), payload)),
    }
}

// ===== impl CpuPoolBuilder =====

impl CpuPoolBuilder {
    /// The number of worker threads; defaults to [`default_threads`] (`available_parallelism`, which honours
    /// cgroup CPU quotas and the affinity mask on Linux).
    ///
    /// The async runtime needs CPU too: on a busy service consider one thread fewer than the cores.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().threads(1).build()?;
    /// assert_eq!(pool.threads(), 1);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// The most jobs queued or running at once; defaults to [`DEFAULT_CAPACITY_PER_THREAD`] per thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().capacity(4).build()?;
    /// assert_eq!(pool.capacity(), 4);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Where jobs run; defaults to [`Backend::Rayon`].
    ///
    /// # Examples
    ///
    /// See [`Backend`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The name prefix of the worker threads (`"<prefix>-<index>"`); rayon backend only.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = aqueduct_cpu_offload::CpuPool::builder().thread_name("parse").build()?;
    /// # drop(pool);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = Some(prefix.into());
        self
    }

    /// A per-worker initialiser (Python's `initializer`): called once on each worker thread, with the worker's
    /// index, before it runs its first job. Keep per-worker state (a parser, a compiled regex, a scratch buffer)
    /// in a `thread_local!` that the initialiser fills.
    ///
    /// On [`Backend::SpawnBlocking`] it runs the first time a blocking thread works for this pool.
    /// A panic in the initialiser is caught; the worker then runs its jobs without that state.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&started);
    /// let pool = aqueduct_cpu_offload::CpuPool::builder()
    ///     .threads(2)
    ///     .on_worker_start(move |_index| {
    ///         counter.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()?;
    /// # drop(pool);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn on_worker_start(mut self, initializer: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.initializer = Some(Arc::new(initializer));
        self
    }

    /// Lowers the worker threads' scheduling priority by `increment` nice levels (0 leaves it unchanged, 19 is
    /// the lowest), so that when CPU work saturates the cores the runtime's threads still get the CPU first and
    /// timers and I/O stay on time. Linux and the rayon backend only.
    ///
    /// **Default:** [`DEFAULT_THREAD_NICENESS`] (10) with the rayon backend on Linux; unchanged elsewhere and
    /// with [`Backend::SpawnBlocking`], whose threads belong to the runtime. Measured with both cores saturated
    /// by the pool, a 1 ms timer on the runtime was 1.9 ms late at p99 at nice 10 (the same as with no load at
    /// all) and 3.0 ms late at nice 0 (`docs/benchmarks.md`).
    ///
    /// The cost: when other threads of the same cgroup compete for the CPU (in a container or a systemd
    /// service, that is mostly this process), the pool's work gets a smaller share; threads of other cgroups
    /// are weighed by their cgroup's weight, not by nice values. Set `thread_niceness(0)` when the offloaded
    /// work's throughput matters more than the runtime's latency, for example in a batch job that does
    /// nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// // A batch job: the pool's work is all there is, so keep the normal priority.
    /// let builder = aqueduct_cpu_offload::CpuPool::builder().thread_niceness(0);
    /// # builder.build()?;
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn thread_niceness(mut self, increment: i32) -> Self {
        self.thread_niceness = Some(increment);
        self
    }

    /// The runtime whose blocking pool [`Backend::SpawnBlocking`] uses; defaults to the runtime `build` runs in.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{Backend, CpuPool};
    ///
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let pool = CpuPool::builder().backend(Backend::SpawnBlocking).runtime(runtime.handle().clone()).build()?;
    /// assert_eq!(pool.backend(), Backend::SpawnBlocking);
    /// # Ok::<(), aqueduct_cpu_offload::ConfigError>(())
    /// ```
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Checks the configuration and starts the pool.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying what to change when `threads` or `capacity` is 0, the capacity exceeds
    /// `u32::MAX`, [`Backend::SpawnBlocking`] finds no tokio runtime, or the threads cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// let error = aqueduct_cpu_offload::CpuPool::builder().threads(0).build().unwrap_err();
    /// assert!(error.message().contains("at least 1"));
    /// ```
    pub fn build(self) -> Result<CpuPool, ConfigError> {
        let threads = match self.threads {
            Some(0) => {
                return Err(ConfigError::new(format!(
                    "threads must be at least 1; leave it unset to use available_parallelism ({} here)",
                    default_threads()
                )));
            }
            Some(threads) => threads,
            None => default_threads(),
        };
        let capacity = match self.capacity {
            Some(0) => {
                return Err(ConfigError::new(
                    "capacity must be at least 1: it is the most jobs queued or running at once",
                ));
            }
            Some(capacity) => capacity,
            None => threads.saturating_mul(DEFAULT_CAPACITY_PER_THREAD),
        };
        if capacity > u32::MAX as usize || capacity > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(format!(
                "capacity must be at most {}, got {capacity}",
                u32::MAX
            )));
        }
        let niceness = match self.thread_niceness {
            Some(niceness) => niceness,
            None if self.backend == Backend::Rayon && cfg!(target_os = "linux") => {
                DEFAULT_THREAD_NICENESS
            }
            None => 0,
        };
        if !(0..=19).contains(&niceness) {
            return Err(ConfigError::new(format!(
                "thread_niceness must be between 0 (unchanged) and 19 (lowest priority), got {niceness}"
            )));
        }
        if niceness > 0 && self.backend != Backend::Rayon {
            return Err(ConfigError::new(
                "thread_niceness needs the rayon backend: tokio's blocking threads are shared with the rest of the \
                 program, so the pool must not change their priority",
            ));
        }
        if niceness > 0 && !cfg!(target_os = "linux") {
            return Err(ConfigError::new(
                "thread_niceness is supported on Linux only; leave it at 0 elsewhere",
            ));
        }
        let initializer = self.initializer.map(|initializer| -> Initializer {
            Arc::new(move |index| {
                // A panicking initialiser must not take the worker down; the panic hook has already reported it.
                let _ = catch_unwind(AssertUnwindSafe(|| initializer(index)));
            })
        });
        let backend = match self.backend {
            Backend::Rayon => {
                let mut builder = rayon::ThreadPoolBuilder::new().num_threads(threads);
                if let Some(prefix) = self.thread_name {
                    builder = builder.thread_name(move |index| format!("{prefix}-{index}"));
                }
                if initializer.is_some() || niceness > 0 {
                    builder = builder.start_handler(move |index| {
                        if niceness > 0 {
                            lower_current_thread_priority(niceness);
                        }
                        if let Some(initializer) = &initializer {
                            initializer(index);
                        }
                    });
                }
                let pool = builder.build().map_err(|error| {
                    ConfigError::new(format!("could not start the rayon threads: {error}"))
                })?;
                Executor::Rayon(pool)
            }
            Backend::SpawnBlocking => {
                let handle = match self.runtime {
                    Some(handle) => handle,
                    None => tokio::runtime::Handle::try_current().map_err(|_| {
                        ConfigError::new(
                            "the spawn_blocking backend needs a tokio runtime: build the pool inside one or pass \
                             its handle with `runtime(handle)`",
                        )
                    })?,
                };
                Executor::Blocking(Arc::new(BlockingQueue::new(handle, threads, initializer)))
            }
        };
        let inner = Inner {
            backend,
            kind: self.backend,
            threads,
            capacity,
            slots: Semaphore::new(capacity),
            closed: AtomicBool::new(false),
            cancelling: AtomicBool::new(false),
        };
        Ok(CpuPool { inner: Arc::new(inner) })
    }
}

impl fmt::Debug for CpuPoolBuilder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CpuPoolBuilder")
            .field("threads", &self.threads)
            .field("capacity", &self.capacity)
            .field("backend", &self.backend)
            .field("thread_name", &self.thread_name)
            .field("initializer", &self.initializer.is_some())
            .field("thread_niceness", &self.thread_niceness)
            .finish_non_exhaustive()
    }
}

/// Adds `increment` to the calling thread's nice value (best effort: a failure leaves the priority unchanged).
#[cfg(target_os = "linux")]
fn lower_current_thread_priority(increment: i32) {
    // On Linux, PRIO_PROCESS with a thread id changes only that thread.
    let thread = Some(rustix::thread::gettid());
    if let Ok(current) = rustix::process::getpriority_process(thread) {
        let _ = rustix::process::setpriority_process(thread, (current + increment).min(19));
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_current_thread_priority(_increment: i32) {}

// ===== impl Inner =====

impl Inner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_cancelling(&self) -> bool {
        self.cancelling.load(Ordering::Acquire)
    }

    pub(crate) fn release_slot(&self) {
        self.slots.add_permits(1);
    }
}

// ===== impl Submit =====

// `Submit` never pins `F`: the job is moved out by value, so the future may move freely.
impl<F, E> Unpin for Submit<F, E> {}

impl<F, T, E> Future for Submit<F, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = Result<JobHandle<T, E>, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.job.is_none() {
            // Polled after completion: report it as closed rather than panic.
            return Poll::Ready(Err(Error::Closed { reconnecting: false }));
        }
        if this.acquire.is_none() {
            if this.pool.is_closed() {
                this.job = None;
                return Poll::Ready(Err(Error::Closed { reconnecting: false }));
            }
            match this.pool.slots.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(TryAcquireError::Closed) => {
                    this.job = None;
                    return Poll::Ready(Err(Error::Closed { reconnecting: false }));
                }
                Err(TryAcquireError::NoPermits) => {
                    let pool = Arc::clone(&this.pool);
                    this.acquire = Some(Box::pin(async move {
                        // No await between acquiring and forgetting: a dropped future never leaks a slot.
                        pool.slots.acquire().await.map(tokio::sync::SemaphorePermit::forget).is_ok()
                    }));
                }
            }
        }
        if let Some(acquire) = this.acquire.as_mut() {
            let acquired = ready!(acquire.as_mut().poll(context));
            this.acquire = None;
            if !acquired {
                this.job = None;
                return Poll::Ready(Err(Error::Closed { reconnecting: false }));
            }
            if this.pool.is_closed() {
                this.pool.release_slot();
                this.job = None;
                return Poll::Ready(Err(Error::Closed { reconnecting: false }));
            }
        }
        let Some(job) = this.job.take() else {
            return Poll::Ready(Err(Error::Closed { reconnecting: false }));
        };
        Poll::Ready(Ok(dispatch(&this.pool, job, this.stop.take())))
    }
}

impl<F, E> fmt::Debug for Submit<F, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Submit")
            .field("waiting_for_room", &self.acquire.is_some())
            .field("done", &self.job.is_none())
            .finish_non_exhaustive()
    }
}

// ===== impl Run =====

// `Run` pins neither `F` nor the handle (which is `Unpin`).
impl<F, T, E> Unpin for Run<F, T, E> {}

impl<F, T, E> Future for Run<F, T, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    type Output = Result<T, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let AmbientDeadline::Unread = this.deadline {
            this.deadline = match Deadline::ambient() {
                Some(deadline) => AmbientDeadline::Armed {
                    deadline,
                    since: Instant::now(),
                    sleep: Box::pin(tokio::time::sleep_until(deadline.at())),
                },
                None => AmbientDeadline::Unset,
            };
        }
        // The job is polled first: a value that is ready is returned even when the deadline passed meanwhile.
        if let Poll::Ready(outcome) = this.poll_job(context) {
            return Poll::Ready(outcome);
        }
        if let AmbientDeadline::Armed { deadline, since, sleep } = &mut this.deadline {
            ready!(sleep.as_mut().poll(context));
            let elapsed = Elapsed::new(None, deadline.at(), since.elapsed()).with_ambient(true);
            // Let go of the job as a dropped future would: not started means never run.
            if let Some(mut handle) = this.handle.take() {
                handle.cancel();
            }
            return Poll::Ready(Err(Error::elapsed(elapsed)));
        }
        Poll::Pending
    }
}

impl<F, T, E> Run<F, T, E>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn poll_job(&mut self, context: &mut Context<'_>) -> Poll<Result<T, Error<E>>> {
        if self.handle.is_none() {
            let handle = ready!(Pin::new(&mut self.submit).poll(context))?;
            self.handle = Some(handle);
        }
        match self.handle.as_mut() {
            Some(handle) => Pin::new(handle).poll(context),
            None => Poll::Ready(Err(Error::Closed { reconnecting: false })),
        }
    }
}

impl<F, T, E> fmt::Debug for Run<F, T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Run")
            .field("submitted", &self.handle.is_some())
            .finish_non_exhaustive()
    }
}
