//! The parent side of the process backend: worker processes, their leases, crash detection and hard kills.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aqueduct_core::{Deadline, Elapsed, Error};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};
use tokio::time::Instant;

use super::protocol::{HELLO, Request, Response, WORKER_ENV, frame, frame_length};
use super::worker::Entry;
use crate::config::{ConfigError, default_threads};

/// How long a new worker may take to start serving when none is configured.
///
/// # Examples
///
/// ```
/// assert_eq!(aqueduct_cpu_offload::process::DEFAULT_START_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of worker processes started from a program (by default the current binary) that run registered entry
/// points on serialised arguments: crash isolation and hard-kill timeouts for CPU work that may misbehave.
///
/// A worker that crashes (abort, segfault, out of memory, `exit`) fails only the job it was running, with
/// [`Error::Panicked`]; the next job that needs a worker starts a fresh one, so the pool never shrinks.
/// A job that outlives its timeout is hard-killed with its worker and fails with [`Error::Elapsed`].
///
/// Unix only: the worker's standard input is one end of a Unix socket pair, so nothing the worker prints can
/// corrupt the protocol.
///
/// # Examples
///
/// ```no_run
/// use aqueduct_cpu_offload::Error;
/// use aqueduct_cpu_offload::process::{Entry, ProcessPool, Registry, serve_if_worker};
///
/// const WORD_COUNT: Entry<String, usize> = Entry::new("word_count");
///
/// fn registry() -> Registry {
///     Registry::new().register(WORD_COUNT, |text: String| text.split_whitespace().count())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     serve_if_worker(&registry()); // Workers never get past this line.
///     let pool = ProcessPool::builder().workers(2).build().await?;
///     let words: Result<usize, Error<std::io::Error>> = pool.call(&WORD_COUNT, &"a b c".to_owned()).await;
///     assert_eq!(words?, 3);
///     pool.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct ProcessPool {
    inner: Arc<ProcessInner>,
}

/// Configures a [`ProcessPool`]; made by [`ProcessPool::builder`] and checked by [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_cpu_offload::process::ProcessPool;
///
/// let builder = ProcessPool::builder().workers(2).capacity(64).job_timeout(Duration::from_secs(5));
/// # drop(builder);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug)]
pub struct ProcessPoolBuilder {
    workers: Option<usize>,
    capacity: Option<usize>,
    job_timeout: Option<Duration>,
    start_timeout: Duration,
    max_jobs_per_worker: Option<u64>,
    program: Option<PathBuf>,
    args: Vec<OsString>,
}

/// A snapshot of a process pool's load and history, from [`ProcessPool::status`].
///
/// # Examples
///
/// ```no_run
/// # async fn example(pool: aqueduct_cpu_offload::process::ProcessPool) {
/// let status = pool.status();
/// eprintln!("{} crashes, {} kills, {} workers started", status.crashed, status.killed, status.started);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStatus {
    /// The number of worker processes (the most jobs running at once).
    pub workers: usize,
    /// The most jobs queued or running at once.
    pub capacity: usize,
    /// Jobs queued or running now.
    pub in_flight: usize,
    /// Worker processes started so far, replacements included.
    pub started: u64,
    /// Workers that died while running a job.
    pub crashed: u64,
    /// Workers killed by the pool: a job timed out or its caller went away mid-job.
    pub killed: u64,
    /// Workers stopped after [`max_jobs_per_worker`](ProcessPoolBuilder::max_jobs_per_worker) jobs.
    pub retired: u64,
    /// `true` once [`ProcessPool::shutdown`] was called.
    pub closed: bool,
}

struct ProcessInner {
    program: PathBuf,
    args: Vec<OsString>,
    workers: usize,
    capacity: usize,
    job_timeout: Option<Duration>,
    start_timeout: Duration,
    max_jobs_per_worker: Option<u64>,
    slots: Semaphore,
    running: Semaphore,
    idle: Mutex<Vec<Worker>>,
    closed: AtomicBool,
    started: AtomicU64,
    crashed: AtomicU64,
    killed: AtomicU64,
    retired: AtomicU64,
}

struct Worker {
    child: tokio::process::Child,
    stream: UnixStream,
    jobs_done: u64,
}

/// A worker taken out of the idle list for one job; killed on drop unless the job ended cleanly.
struct Lease<'a> {
    pool: &'a ProcessInner,
    worker: Option<Worker>,
    _running: SemaphorePermit<'a>,
}

/// How one exchange with a worker ended.
enum Exchange {
    Answered(Response),
    Crashed(String),
    TimedOut,
}

// ===== impl ProcessPool =====

impl ProcessPool {
    /// A builder with the defaults: [`default_threads`] workers, 64 jobs of capacity per worker, no job timeout,
    /// and the current executable as the worker program.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            workers: None,
            capacity: None,
            job_timeout: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            max_jobs_per_worker: None,
            program: None,
            args: Vec::new(),
        }
    }

    /// Runs `entry` on `argument` in a worker process and yields its value, waiting for room first; the pool's
    /// job timeout (if any) applies, clamped to the ambient [`Deadline`].
    ///
    /// # Cancellation
    ///
    /// Dropping the future while it waits for room or for a worker sends nothing. Dropping it while a worker runs
    /// the job kills that worker (a hard stop: the job does not finish) and the next job starts a new one.
    ///
    /// # Errors
    ///
    /// - [`Error::Panicked`] when the entry point panicked, or the worker crashed (abort, segfault, exit) while
    ///   running this job; other jobs are not affected;
    /// - [`Error::Elapsed`] when the job outlived its timeout or the ambient deadline; the worker was killed;
    /// - [`Error::ContractViolation`] when the worker does not know the entry point, or the argument or value
    ///   does not (de)serialise;
    /// - [`Error::Closed`] after [`shutdown`](Self::shutdown), or with `reconnecting: true` when a replacement
    ///   worker could not be started (retrying may succeed).
    ///
    /// # Examples
    ///
    /// See [`ProcessPool`].
    pub async fn call<A, R, E>(&self, entry: &Entry<A, R>, argument: &A) -> Result<R, Error<E>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.call_inner(entry, argument, self.inner.job_timeout, true).await
    }

    /// As [`call`](Self::call), with this job's own timeout instead of the pool's (still clamped to the ambient
    /// deadline); a job running longer is hard-killed with its worker.
    ///
    /// # Cancellation
    ///
    /// As [`call`](Self::call).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use aqueduct_cpu_offload::{Error, process::{Entry, ProcessPool}};
    /// # const SOLVE: Entry<u64, u64> = Entry::new("solve");
    /// # async fn example(pool: ProcessPool) {
    /// let answer: Result<u64, Error<()>> = pool.call_with_timeout(&SOLVE, &7, Duration::from_secs(1)).await;
    /// if let Err(error) = answer {
    ///     assert!(error.is_elapsed() || error.is_panicked());
    /// }
    /// # }
    /// ```
    pub async fn call_with_timeout<A, R, E>(
        &self,
        entry: &Entry<A, R>,
        argument: &A,
        timeout: Duration,
    ) -> Result<R, Error<E>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.call_inner(entry, argument, Some(timeout), true).await
    }

    /// As [`call`](Self::call), but rejects at once with [`Error::Full`] when the pool is at capacity.
    ///
    /// # Cancellation
    ///
    /// As [`call`](Self::call).
    ///
    /// # Errors
    ///
    /// [`Error::Full`], and every error of [`call`](Self::call).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use aqueduct_cpu_offload::{Error, process::{Entry, ProcessPool}};
    /// # const SOLVE: Entry<u64, u64> = Entry::new("solve");
    /// # async fn example(pool: ProcessPool) {
    /// let answer: Result<u64, Error<()>> = pool.try_call(&SOLVE, &7).await;
    /// if let Err(Error::Full { capacity }) = answer {
    ///     eprintln!("all {capacity} slots are taken; shed this request");
    /// }
    /// # }
    /// ```
    pub async fn try_call<A, R, E>(&self, entry: &Entry<A, R>, argument: &A) -> Result<R, Error<E>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.call_inner(entry, argument, self.inner.job_timeout, false).await
    }

    async fn call_inner<A, R, E>(
        &self,
        entry: &Entry<A, R>,
        argument: &A,
        timeout: Option<Duration>,
        wait_for_room: bool,
    ) -> Result<R, Error<E>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let inner = &*self.inner;
        if inner.is_closed() {
            return Err(Error::Closed { reconnecting: false });
        }
        let request =
            serde_json::to_vec(&Request { entry: entry.name(), argument }).map_err(|error| {
                Error::ContractViolation {
                    message: format!(
                        "the argument of entry point `{}` could not be serialised: {error}",
                        entry.name()
                    ),
                }
            })?;
        let request = frame(&request)
            .map_err(|error| Error::ContractViolation { message: error.to_string() })?;

        let started_waiting = Instant::now();
        let ambient = Deadline::ambient();
        let slot = if wait_for_room {
            let acquire = inner.slots.acquire();
            match ambient {
                Some(deadline) => match tokio::time::timeout_at(deadline.at(), acquire).await {
                    Ok(slot) => slot,
                    Err(_) => return Err(elapsed_error(None, deadline, started_waiting)),
                },
                None => acquire.await,
            }
            .map_err(|_| Error::Closed { reconnecting: false })?
        } else {
            match inner.slots.try_acquire() {
                Ok(slot) => slot,
                Err(TryAcquireError::NoPermits) => {
                    return Err(Error::Full { capacity: inner.capacity });
                }
                Err(TryAcquireError::Closed) => return Err(Error::Closed { reconnecting: false }),
            }
        };
        if inner.is_closed() {
            return Err(Error::Closed { reconnecting: false });
        }
        let running = match ambient {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.at(), inner.running.acquire()).await {
                    Ok(running) => running,
                    Err(_) => return Err(elapsed_error(None, deadline, started_waiting)),
                }
            }
            None => inner.running.acquire().await,
        }
        .map_err(|_| Error::Closed { reconnecting: false })?;
        let mut lease = inner.lease(running).await?;

        let sent_at = Instant::now();
        let deadline = Deadline::clamp(timeout.map(|timeout| sent_at + timeout));
        let exchange = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.at(), lease.exchange(&request)).await {
                    Ok(exchange) => exchange,
                    Err(_) => Exchange::TimedOut,
                }
            }
            None => lease.exchange(&request).await,
        };
        let outcome = match exchange {
            Exchange::Answered(response) => {
                lease.give_back();
                response
            }
            Exchange::Crashed(reason) => {
                inner.crashed.fetch_add(1, Ordering::Relaxed);
                lease.discard().await;
                return Err(Error::Panicked {
                    index: None,
                    message: format!(
                        "worker process crashed while running `{}`: {reason}",
                        entry.name()
                    ),
                });
            }
            Exchange::TimedOut => {
                inner.killed.fetch_add(1, Ordering::Relaxed);
                lease.discard().await;
                let deadline = deadline.unwrap_or_else(|| Deadline::own(sent_at));
                let own_timeout = if deadline.is_ambient() { None } else { timeout };
                return Err(elapsed_error(own_timeout, deadline, sent_at));
            }
        };
        drop(slot);
        match outcome {
            Response::Returned(value) => {
                serde_json::from_value(value).map_err(|error| Error::ContractViolation {
                    message: format!(
                        "the value of entry point `{}` did not deserialise: {error}",
                        entry.name()
                    ),
                })
            }
            Response::Panicked(message) => Err(Error::Panicked { index: None, message }),
            Response::UnknownEntry(name) => Err(Error::ContractViolation {
                message: format!(
                    "the worker program has no entry point `{name}`: register it in its registry"
                ),
            }),
            Response::BadArgument(error) => Err(Error::ContractViolation {
                message: format!(
                    "the worker could not deserialise the argument of `{}`: {error}",
                    entry.name()
                ),
            }),
            Response::BadOutput(error) => Err(Error::ContractViolation {
                message: format!(
                    "the worker could not serialise the value of `{}`: {error}",
                    entry.name()
                ),
            }),
        }
    }

    /// Stops accepting jobs, waits for the queued and running ones, then stops every worker (closing its
    /// connection; a worker that does not exit within a second is killed).
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops waiting; the pool stays closed. Workers are killed when the last clone of the
    /// pool is dropped.
    ///
    /// # Examples
    ///
    /// See [`ProcessPool`].
    pub async fn shutdown(&self) {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        let all = u32::try_from(inner.capacity).unwrap_or(u32::MAX);
        if let Ok(permits) = inner.slots.acquire_many(all).await {
            permits.forget();
            inner.slots.close();
        }
        let workers =
            std::mem::take(&mut *inner.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for worker in workers {
            stop_worker(worker, Duration::from_secs(1)).await;
        }
    }

    /// A snapshot of the pool's load and history.
    ///
    /// # Examples
    ///
    /// See [`ProcessStatus`].
    pub fn status(&self) -> ProcessStatus {
        let inner = &*self.inner;
        ProcessStatus {
            workers: inner.workers,
            capacity: inner.capacity,
            in_flight: if inner.slots.is_closed() {
                0
            } else {
                inner.capacity.saturating_sub(inner.slots.available_permits())
            },
            started: inner.started.load(Ordering::Relaxed),
            crashed: inner.crashed.load(Ordering::Relaxed),
            killed: inner.killed.load(Ordering::Relaxed),
            retired: inner.retired.load(Ordering::Relaxed),
            closed: inner.is_closed(),
        }
    }
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ProcessPool")
            .field("program", &self.inner.program)
            .field("status", &self.status())
            .finish()
    }
}

fn elapsed_error<E>(timeout: Option<Duration>, deadline: Deadline, since: Instant) -> Error<E> {
    Error::elapsed(
        Elapsed::new(timeout, deadline.at(), since.elapsed()).with_ambient(deadline.is_ambient()),
    )
}

async fn stop_worker(worker: Worker, grace: Duration) {
    let Worker { mut child, stream, .. } = worker;
    // Closing the connection is the worker's signal to exit.
    drop(stream);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

// ===== impl ProcessPoolBuilder =====

impl ProcessPoolBuilder {
    /// The number of worker processes, the most jobs running at once; defaults to [`default_threads`].
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The most jobs queued or running at once; defaults to 64 per worker.
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// A hard limit on each job's run time: a job still running after it is killed with its worker and fails with
    /// [`Error::Elapsed`]. No limit by default (the ambient deadline still applies).
    ///
    /// # Examples
    ///
    /// See [`ProcessPoolBuilder`].
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = Some(timeout);
        self
    }

    /// Replaces a worker after it has run `jobs` jobs (Python's `max_tasks_per_child`): a guard against leaks in
    /// native code. No limit by default. The retired worker is stopped while idle; the next job starts a new one.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = aqueduct_cpu_offload::process::ProcessPool::builder().max_jobs_per_worker(1_000);
    /// # drop(builder);
    /// ```
    pub fn max_jobs_per_worker(mut self, jobs: u64) -> Self {
        self.max_jobs_per_worker = Some(jobs);
        self
    }

    /// How long a new worker may take to start serving; defaults to [`DEFAULT_START_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = aqueduct_cpu_offload::process::ProcessPool::builder().start_timeout(Duration::from_secs(30));
    /// # drop(builder);
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The worker program; defaults to the current executable (`std::env::current_exe()`), whose `main` calls
    /// [`serve_if_worker`](super::serve_if_worker) first.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = aqueduct_cpu_offload::process::ProcessPool::builder().program("/usr/local/bin/my-worker");
    /// # drop(builder);
    /// ```
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Arguments passed to the worker program.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = aqueduct_cpu_offload::process::ProcessPool::builder().args(["--worker"]);
    /// # drop(builder);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Starts workers from the current test binary, running only the test named `test_name`, which calls
    /// [`serve_if_worker`](super::serve_if_worker).
    ///
    /// This is how integration tests use the process backend under `cargo test` and cargo-nextest alike: the
    /// worker is the test binary itself, filtered to one test (`<test_name> --exact --nocapture`). The protocol
    /// runs over the worker's standard input, so libtest's own output cannot corrupt it.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = aqueduct_cpu_offload::process::ProcessPool::builder().libtest_worker("worker_entry_point");
    /// # drop(builder);
    /// ```
    pub fn libtest_worker(self, test_name: &str) -> Self {
        self.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
    }

    /// Checks the configuration and starts every worker, so a broken worker program fails here, not on the
    /// first job.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying what to change when `workers` or `capacity` is 0, the capacity exceeds `u32::MAX`,
    /// the current process is itself a worker, or a worker does not start serving within the start timeout
    /// (typically because `main` does not call [`serve_if_worker`](super::serve_if_worker) first).
    ///
    /// # Cancellation
    ///
    /// Dropping the future kills the workers started so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let error = aqueduct_cpu_offload::process::ProcessPool::builder().workers(0).build().await.unwrap_err();
    /// assert!(error.message().starts_with("workers must be at least 1"));
    /// # }
    /// ```
    pub async fn build(self) -> Result<ProcessPool, ConfigError> {
        let workers = match self.workers {
            Some(0) => {
                return Err(ConfigError::new(format!(
                    "workers must be at least 1; leave it unset to use available_parallelism ({} here)",
                    default_threads()
                )));
            }
            Some(workers) => workers,
            None => default_threads(),
        };
        let capacity = match self.capacity {
            Some(0) => {
                return Err(ConfigError::new(
                    "capacity must be at least 1: it is the most jobs queued or running at once",
                ));
            }
            Some(capacity) => capacity,
            None => workers.saturating_mul(64),
        };
        if capacity > u32::MAX as usize || capacity > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(format!(
                "capacity must be at most {}, got {capacity}",
                u32::MAX
            )));
        }
        if self.max_jobs_per_worker == Some(0) {
            return Err(ConfigError::new(
                "max_jobs_per_worker must be at least 1; leave it unset to keep workers for the pool's lifetime",
            ));
        }
        if self.start_timeout.is_zero() {
            return Err(ConfigError::new("start_timeout must be longer than zero"));
        }
        if std::env::var_os(WORKER_ENV).is_some() {
            return Err(ConfigError::new(
                "this process is a worker of a process pool and may not start its own: call \
                 `serve_if_worker` first thing in `main`",
            ));
        }
        let program = match self.program {
            Some(program) => program,
            None => std::env::current_exe().map_err(|error| {
                ConfigError::new(format!(
                    "could not find the current executable to start workers from: {error}"
                ))
            })?,
        };
        let inner = ProcessInner {
            program,
            args: self.args,
            workers,
            capacity,
            job_timeout: self.job_timeout,
            start_timeout: self.start_timeout,
            max_jobs_per_worker: self.max_jobs_per_worker,
            slots: Semaphore::new(capacity),
            running: Semaphore::new(workers),
            idle: Mutex::new(Vec::with_capacity(workers)),
            closed: AtomicBool::new(false),
            started: AtomicU64::new(0),
            crashed: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            retired: AtomicU64::new(0),
        };
        let mut started = Vec::with_capacity(workers);
        for _ in 0..workers {
            started.push(inner.start_worker().await.map_err(ConfigError::new)?);
        }
        *inner.idle.lock().unwrap_or_else(PoisonError::into_inner) = started;
        Ok(ProcessPool { inner: Arc::new(inner) })
    }
}

// ===== impl ProcessInner =====

impl ProcessInner {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes an idle worker, or starts one when a crash or kill left its place empty.
    async fn lease<'a, E>(&'a self, running: SemaphorePermit<'a>) -> Result<Lease<'a>, Error<E>> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let worker = match idle {
            Some(worker) => worker,
            None => self.start_worker().await.map_err(|_| Error::Closed { reconnecting: true })?,
        };
        Ok(Lease { pool: self, worker: Some(worker), _running: running })
    }

    /// Starts one worker process and waits for its hello.
    async fn start_worker(&self) -> Result<Worker, String> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|error| format!("could not create a socket pair for a worker: {error}"))?;
        ours.set_nonblocking(true)
            .map_err(|error| format!("could not configure the worker socket: {error}"))?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env(WORKER_ENV, "1")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let spawned = command.spawn();
        // The command holds the worker's end of the socket: drop it so a dead worker reads as end of file.
        drop(command);
        let mut child = spawned.map_err(|error| {
            format!("could not start worker program {}: {error}", self.program.display())
        })?;
        self.started.fetch_add(1, Ordering::Relaxed);
        let mut stream = UnixStream::from_std(ours)
            .map_err(|error| format!("could not register the worker socket with tokio: {error}"))?;
        let hello = tokio::time::timeout(self.start_timeout, read_frame(&mut stream)).await;
        match hello {
            Ok(Ok(bytes)) if bytes == HELLO.as_bytes() => {
                Ok(Worker { child, stream, jobs_done: 0 })
            }
            Ok(Ok(_)) => {
                let _ = child.start_kill();
                Err(format!("worker program {} spoke an unknown protocol", self.program.display()))
            }
            Ok(Err(_)) => {
                let status = child
                    .wait()
                    .await
                    .map_or_else(|error| error.to_string(), |status| status.to_string());
                Err(format!(
                    "worker program {} exited ({status}) before serving: call `serve_if_worker` first thing in `main`",
                    self.program.display()
                ))
            }
            Err(_) => {
                let _ = child.start_kill();
                Err(format!(
                    "worker program {} did not start serving within {:?}: call `serve_if_worker` first thing in \
                     `main`, or raise `start_timeout`",
                    self.program.display(),
                    self.start_timeout
                ))
            }
        }
    }
}

async fn read_frame(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0_u8; 4];
    stream.read_exact(&mut prefix).await?;
    let mut payload = vec![0_u8; frame_length(prefix)?];
    stream.read_exact(&mut payload).await?;
    Ok(payload)
}

// ===== impl Lease =====

impl Lease<'_> {
    /// Sends one job and reads its answer; cancel-unsafe by design: a dropped lease kills its worker.
    async fn exchange(&mut self, request: &[u8]) -> Exchange {
        let Some(worker) = self.worker.as_mut() else {
            return Exchange::Crashed("the worker was already gone".to_owned());
        };
        let answer = async {
            worker.stream.write_all(request).await?;
            let bytes = read_frame(&mut worker.stream).await?;
            serde_json::from_slice::<Response>(&bytes).map_err(std::io::Error::other)
        }
        .await;
        match answer {
            Ok(response) => Exchange::Answered(response),
            Err(error) => {
                // The connection broke: the worker died. Its exit status says how.
                let status =
                    tokio::time::timeout(Duration::from_secs(1), worker.child.wait()).await;
                Exchange::Crashed(match status {
                    Ok(Ok(status)) => status.to_string(),
                    _ => format!("the connection failed: {error}"),
                })
            }
        }
    }

    /// Returns a healthy worker to the idle list, or retires it after its last allowed job.
    fn give_back(mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.jobs_done += 1;
            if self.pool.max_jobs_per_worker.is_some_and(|limit| worker.jobs_done >= limit) {
                // Idle, so nothing is lost: dropping it kills the process (`kill_on_drop`) and tokio reaps it.
                self.pool.retired.fetch_add(1, Ordering::Relaxed);
                drop(worker);
                return;
            }
            self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner).push(worker);
        }
    }

    /// Kills the worker and reaps it; its place is refilled by the next job.
    async fn discard(mut self) {
        if let Some(mut worker) = self.worker.take() {
            let _ = worker.child.start_kill();
            let _ = worker.child.wait().await;
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            // Dropped mid-job: the connection is in an unknown state, so the worker is killed (tokio reaps it).
            self.pool.killed.fetch_add(1, Ordering::Relaxed);
            let _ = worker.child.start_kill();
        }
    }
}
