//! The shared control block of a running pipeline and the cloneable handle that drains, aborts and observes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aqueduct_core::{Deadline, Error};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::metrics::{Metrics, OutputCounters, SourceCounters, StageState, stage_snapshot};

/// What every task of one pipeline shares.
#[derive(Debug)]
pub(crate) struct Control {
    /// Cancelled by `abort`, a fail-fast error, or a consumer that stopped early.
    pub(crate) cancel: Arc<Signal>,
    /// Cancelled by `drain` (and by `cancel`): the source stops producing.
    pub(crate) stop_source: Arc<Signal>,
    pub(crate) tracker: TaskTracker,
    pub(crate) epoch: Instant,
    pub(crate) source: SourceCounters,
    pub(crate) output: OutputCounters,
    pub(crate) stages: OnceLock<Vec<Arc<StageState>>>,
    /// `true` when the last stage's outputs are dropped ([`Pipeline::run`](crate::Pipeline::run)).
    pub(crate) discard_outputs: AtomicBool,
}

impl Control {
    pub(crate) fn new() -> Self {
        let stop_source = Arc::new(Signal::new(None));
        let cancel = Arc::new(Signal::new(Some(stop_source.clone())));
        Self {
            cancel,
            stop_source,
            tracker: TaskTracker::new(),
            epoch: Instant::now(),
            source: SourceCounters::default(),
            output: OutputCounters::default(),
            stages: OnceLock::new(),
            discard_outputs: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_discard_outputs(&self, discard: bool) {
        self.discard_outputs.store(discard, Ordering::Relaxed);
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let stages: Vec<_> = self
            .stages
            .get()
            .map(|stages| stages.iter().map(|stage| stage_snapshot(stage, self.epoch)).collect())
            .unwrap_or_default();
        let source_unprocessed = self.source.unprocessed.load(Ordering::Relaxed);
        let produced = self.source.produced.load(Ordering::Relaxed);
        let delivered = if self.discard_outputs.load(Ordering::Relaxed) {
            match stages.last() {
                Some(last) => last.items_out,
                None => produced.saturating_sub(source_unprocessed),
            }
        } else {
            self.output.delivered.load(Ordering::Relaxed)
                + self.output.discarded.load(Ordering::Relaxed)
        };
        Metrics {
            produced,
            source_unprocessed,
            source_blocked_on_send: std::time::Duration::from_nanos(
                self.source.blocked_nanos.load(Ordering::Relaxed),
            ),
            stages,
            delivered,
            output_unprocessed: self.output.unprocessed.load(Ordering::Relaxed),
        }
    }
}

/// A one-shot broadcast flag: a plain atomic load on the hot path (unlike `CancellationToken::is_cancelled`,
/// which takes a mutex), and a `Notify` for those who wait.
#[derive(Debug)]
pub(crate) struct Signal {
    flag: AtomicBool,
    notify: Notify,
    /// Fired together with this one (abort also stops the source).
    also: Option<Arc<Self>>,
}

impl Signal {
    fn new(also: Option<Arc<Self>>) -> Self {
        Self { flag: AtomicBool::new(false), notify: Notify::new(), also }
    }

    pub(crate) fn cancel(&self) {
        if !self.flag.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
        if let Some(also) = &self.also {
            also.cancel();
        }
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Completes once the signal fired. Cancel safe.
    pub(crate) async fn cancelled(&self) {
        let notified = self.notify.notified();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

/// Where the first fatal error of a pipeline is kept.
#[derive(Debug)]
pub(crate) struct ErrorSlot<E> {
    first: Mutex<Option<Error<E>>>,
}

impl<E> ErrorSlot<E> {
    pub(crate) fn new() -> Self {
        Self { first: Mutex::new(None) }
    }

    /// Keeps `error` if it is the first one, then cancels the pipeline.
    pub(crate) fn fail(&self, error: Error<E>, control: &Control) {
        {
            let mut first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if first.is_none() {
                *first = Some(error);
            }
        }
        control.cancel.cancel();
    }

    pub(crate) fn take(&self) -> Option<Error<E>> {
        self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// A cloneable handle on a running pipeline: drain it, abort it, shut it down by a deadline, read its metrics.
///
/// Get one from [`Running::handle`](crate::Running::handle) or
/// [`Pipeline::handle`](crate::Pipeline::handle). Dropping a handle does nothing.
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::PipelineBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let running = PipelineBuilder::<u64, ()>::from_items(0..)
///     .stage(2, |item| async move { Ok::<_, ()>(item) })
///     .build()
///     .unwrap()
///     .spawn();
/// let handle = running.handle();
/// handle.drain(); // the endless source stops; what is in flight still comes out
/// let outputs = running.collect_all().await.unwrap();
/// let metrics = handle.metrics();
/// assert_eq!(metrics.produced, outputs.len() as u64);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    pub(crate) control: Arc<Control>,
}

impl PipelineHandle {
    /// Stops the source: no new item enters; everything already produced is processed and delivered.
    ///
    /// The pipeline then ends on its own once the consumer has read the remaining outputs. For a channel
    /// source, items the input already accepted are still processed; further sends are refused.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub fn drain(&self) {
        self.control.stop_source.cancel();
    }

    /// Cancels the pipeline: the source stops, in-flight stage functions are dropped, and every item
    /// still queued is counted as unprocessed ([`Metrics::unprocessed`]). The output stream ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let running = PipelineBuilder::<u64, ()>::from_items(0..)
    ///     .stage(2, |item| async move { Ok::<_, ()>(item) })
    ///     .build()
    ///     .unwrap()
    ///     .spawn();
    /// let handle = running.handle();
    /// handle.abort();
    /// handle.finished().await;
    /// let metrics = handle.metrics();
    /// assert_eq!(metrics.accounted(), metrics.produced);
    /// # }
    /// ```
    pub fn abort(&self) {
        self.control.cancel.cancel();
    }

    /// Drains the pipeline, and aborts it if it has not finished by `deadline` (clamped to the ambient
    /// [`Deadline`]). Returns `true` when it drained in time, `false` when it had to abort.
    ///
    /// Draining needs the consumer to keep reading the output; a consumer that waits for this future
    /// instead should use [`Running::finish`](crate::Running::finish) or read on another task.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the pipeline draining (the source stays stopped) but does not abort it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_pipeline::PipelineBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let pipeline = PipelineBuilder::<u64, ()>::from_items(0..)
    ///     .stage(2, |item| async move { Ok::<_, ()>(item) })
    ///     .build()
    ///     .unwrap();
    /// let handle = pipeline.handle();
    /// let run = tokio::spawn(pipeline.run());
    /// tokio::task::yield_now().await;
    /// let drained = handle.shutdown(tokio::time::Instant::now() + Duration::from_secs(1)).await;
    /// assert!(drained);
    /// assert!(run.await.unwrap().is_ok());
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Instant) -> bool {
        self.drain();
        let deadline = Deadline::clamp(Some(deadline)).map_or(deadline, |deadline| deadline.at());
        let in_time = tokio::time::timeout_at(deadline, self.finished()).await.is_ok();
        if !in_time {
            self.abort();
            self.finished().await;
        }
        in_time
    }

    /// Waits until every task of the pipeline (source, workers) has ended.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: dropping the future has no effect on the pipeline.
    ///
    /// # Examples
    ///
    /// See [`abort`](Self::abort).
    pub async fn finished(&self) {
        self.control.tracker.wait().await;
    }

    /// `true` once every task of the pipeline has ended (`false` before it was spawned).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let pipeline = PipelineBuilder::<u32, ()>::from_items(0..3u32).build().unwrap();
    /// assert!(!pipeline.handle().is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.control.stages.get().is_some()
            && self.control.tracker.is_closed()
            && self.control.tracker.is_empty()
    }

    /// `true` once the pipeline was cancelled (abort, a fail-fast error, or a consumer that stopped early).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let pipeline = PipelineBuilder::<u32, ()>::from_items(0..3u32).build().unwrap();
    /// pipeline.handle().abort();
    /// assert!(pipeline.handle().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.control.cancel.is_cancelled()
    }

    /// A snapshot of the counters of the source, every stage and the output.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub fn metrics(&self) -> Metrics {
        self.control.metrics()
    }
}
