//! The pieces every job shares: the handle that awaits its outcome, the cooperative cancel token and the job body.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use aqueduct_core::Error;
use tokio::sync::oneshot;

use crate::pool::Inner;

/// A handle to a job that was accepted by a [`CpuPool`](crate::CpuPool); await it for the job's value.
///
/// Made by [`CpuPool::submit`](crate::CpuPool::submit) and [`CpuPool::try_submit`](crate::CpuPool::try_submit).
/// The job holds one slot of the pool's capacity until it finishes or is skipped.
///
/// # Cancellation
///
/// Dropping the handle (or calling [`cancel`](Self::cancel)) before a worker picks the job up means the job never
/// runs: the worker sees that nobody waits for it and skips it.
/// A job that already runs is not interrupted (threads cannot be killed safely); a job submitted with a
/// [`CancelToken`] sees [`CancelToken::is_cancelled`] turn `true` and can stop cooperatively.
///
/// # Errors
///
/// [`Error::Panicked`] when the job panicked, [`Error::Cancelled`] when it was cancelled before it ran (through
/// [`cancel`](Self::cancel) or [`CpuPool::shutdown_now`](crate::CpuPool::shutdown_now)).
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::{CpuPool, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
/// let pool = CpuPool::builder().threads(1).build().unwrap();
/// let handle = pool.submit(|| (1..=10u64).product::<u64>()).await?;
/// assert_eq!(handle.await?, 3_628_800);
/// # Ok(())
/// # }
/// ```
#[must_use = "a job handle does nothing unless awaited; dropping it before the job starts skips the job"]
pub struct JobHandle<T, E> {
    receiver: oneshot::Receiver<Outcome<T>>,
    stop: Option<Arc<AtomicBool>>,
    _error: PhantomData<fn() -> E>,
}

/// A cooperative cancellation flag handed to jobs submitted with
/// [`CpuPool::run_cancellable`](crate::CpuPool::run_cancellable).
///
/// It turns `true` when the job's handle is dropped or cancelled, or when the pool is shut down with
/// [`CpuPool::shutdown_now`](crate::CpuPool::shutdown_now).
/// Long jobs check it between steps and return early; the pool never interrupts a running thread.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::{CpuPool, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
/// let pool = CpuPool::builder().threads(1).build().unwrap();
/// let steps = pool
///     .run_cancellable(|token| {
///         let mut steps = 0u32;
///         while !token.is_cancelled() && steps < 1_000 {
///             steps += 1;
///         }
///         steps
///     })
///     .await?;
/// assert_eq!(steps, 1_000);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CancelToken {
    own: Arc<AtomicBool>,
    pool: Arc<Inner>,
}

/// Why a job produced no value, before it is turned into the caller's `Error<E>`.
pub(crate) enum Failure {
    /// The job panicked; the payload is kept so its message can be extracted.
    Panicked(Box<dyn Any + Send>),
    /// The pool was shut down with `shutdown_now` before the job started.
    Cancelled,
}

/// What a worker sends back to the handle.
pub(crate) type Outcome<T> = Result<T, Failure>;

// ===== impl JobHandle =====

impl<T, E> JobHandle<T, E> {
    pub(crate) fn new(
        receiver: oneshot::Receiver<Outcome<T>>,
        stop: Option<Arc<AtomicBool>>,
    ) -> Self {
        Self { receiver, stop, _error: PhantomData }
    }

    /// Cancels the job: if no worker started it yet it never runs, and its [`CancelToken`] (if any) turns `true`.
    ///
    /// Awaiting the handle afterwards yields the value if the job had already finished, else [`Error::Cancelled`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_cpu_offload::{CpuPool, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error<std::convert::Infallible>> {
    /// let pool = CpuPool::builder().threads(1).build().unwrap();
    /// let mut handle = pool.submit(|| 42).await?;
    /// handle.cancel();
    /// // Either it had already run, or it never will.
    /// let outcome = handle.await;
    /// assert!(matches!(outcome, Ok(42) | Err(Error::Cancelled)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancel(&mut self) {
        self.receiver.close();
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::Release);
        }
    }
}

impl<T, E> Future for JobHandle<T, E> {
    type Output = Result<T, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(Pin::new(&mut self.receiver).poll(context));
        Poll::Ready(match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failure::Panicked(payload))) => Err(Error::from_panic(None, payload)),
            // Shut down before it started, cancelled through the handle, or dropped by a runtime that shut down.
            Ok(Err(Failure::Cancelled)) | Err(_) => Err(Error::Cancelled),
        })
    }
}

impl<T, E> Drop for JobHandle<T, E> {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::Release);
        }
    }
}

impl<T, E> fmt::Debug for JobHandle<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("JobHandle")
            .field("cancellable", &self.stop.is_some())
            .finish_non_exhaustive()
    }
}

// ===== impl CancelToken =====

impl CancelToken {
    pub(crate) fn new(pool: Arc<Inner>) -> Self {
        Self { own: Arc::new(AtomicBool::new(false)), pool }
    }

    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.own)
    }

    /// `true` once the job should stop: its handle was dropped or cancelled, or the pool is shutting down now.
    ///
    /// # Examples
    ///
    /// See [`CancelToken`].
    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::Acquire) || self.pool.is_cancelling()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

// ===== the job body =====

/// Runs `job` on a worker: skipped when its handle is gone, failed when the pool cancels pending work, panics caught.
///
/// `ticket` is the pool itself: dropping it at the end returns the job's capacity slot.
pub(crate) fn execute<F, T>(job: F, sender: oneshot::Sender<Outcome<T>>, ticket: Ticket)
where
    F: FnOnce() -> T,
{
    if sender.is_closed() {
        // Nobody waits for the value: the handle was dropped before the job started, so it never runs.
        return;
    }
    if ticket.pool.is_cancelling() {
        let _ = sender.send(Err(Failure::Cancelled));
        return;
    }
    let outcome = catch_unwind(AssertUnwindSafe(job)).map_err(Failure::Panicked);
    // The slot is returned before the value is sent, so a caller that sees the value also sees the room.
    drop(ticket);
    // The receiver may have gone meanwhile; the value is then dropped here, on the worker.
    let _ = sender.send(outcome);
}

/// One slot of a pool's capacity, held by a queued or running job and returned when dropped.
pub(crate) struct Ticket {
    pub(crate) pool: Arc<Inner>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pool.release_slot();
    }
}
