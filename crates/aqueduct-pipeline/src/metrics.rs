//! Per-stage and per-worker counters, and the snapshots and final report built from them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Counters written by one worker only, so a plain load-then-store is enough (no locked instruction).
///
/// Aligned to its own cache lines so that workers on different cores never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    pub(crate) items_in: AtomicU64,
    pub(crate) items_out: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) unprocessed: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) idle_nanos: AtomicU64,
    pub(crate) blocked_nanos: AtomicU64,
    /// Nanoseconds from the pipeline's epoch to the worker's start, plus one (0: not started).
    pub(crate) started: AtomicU64,
    /// Nanoseconds from the pipeline's epoch to the worker's end, plus one (0: still running).
    pub(crate) ended: AtomicU64,
}

/// Adds `amount` to a counter that only the calling worker writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, amount: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(amount), Ordering::Relaxed);
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The shared state of one stage: its name, configuration, live worker count and per-worker counters.
pub(crate) struct StageState {
    pub(crate) index: usize,
    pub(crate) workers: usize,
    pub(crate) capacity: usize,
    pub(crate) workers_alive: AtomicUsize,
    pub(crate) worker_counters: Vec<Arc<WorkerCounters>>,
    pub(crate) queue_depth: Box<dyn Fn() -> usize + Send + Sync>,
}

impl std::fmt::Debug for StageState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StageState")
            .field("index", &self.index)
            .field("workers", &self.workers)
            .finish()
    }
}

/// Counters of the source task, on cache lines of their own (the workers read the control block on every
/// item; sharing a line with a counter the source writes on every item would bounce it between cores).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct SourceCounters {
    pub(crate) produced: AtomicU64,
    pub(crate) unprocessed: AtomicU64,
    pub(crate) blocked_nanos: AtomicU64,
}

/// Counters of the output end (the [`Running`](crate::Running) stream), on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct OutputCounters {
    pub(crate) delivered: AtomicU64,
    pub(crate) unprocessed: AtomicU64,
    pub(crate) discarded: AtomicU64,
}

/// Time accounting of one worker, Flink style: busy, idle (waiting for input) and blocked on send
/// (waiting for room downstream, that is, backpressured).
///
/// A stage whose workers are mostly busy is the bottleneck; one whose workers are mostly blocked on
/// send is a victim of a slower stage downstream.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use aqueduct_pipeline::PipelineBuilder;
///
/// let running = PipelineBuilder::<u32, ()>::from_items(0..10u32)
///     .stage(2, |item| async move { Ok::<_, ()>(item) })
///     .build()
///     .unwrap();
/// let report = running.run().await.unwrap();
/// let worker = &report.stages[0].per_worker[0];
/// assert!(worker.busy + worker.idle + worker.blocked_on_send <= worker.lifetime());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Items this worker received.
    pub items: u64,
    /// Time spent processing items (the stage function, retries and callbacks).
    pub busy: Duration,
    /// Time spent waiting for an input item.
    pub idle: Duration,
    /// Time spent waiting for room in the downstream queue.
    pub blocked_on_send: Duration,
}

impl WorkerMetrics {
    /// The time the worker has existed: `busy + idle + blocked_on_send`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::WorkerMetrics;
    /// assert_eq!(WorkerMetrics::default().lifetime(), std::time::Duration::ZERO);
    /// ```
    pub fn lifetime(&self) -> Duration {
        self.busy + self.idle + self.blocked_on_send
    }
}

/// A snapshot of one stage's counters.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use aqueduct_pipeline::PipelineBuilder;
///
/// let report = PipelineBuilder::<u32, ()>::from_items(0..10u32)
///     .stage(2, |item| async move { Ok::<_, ()>(item) })
///     .build()
///     .unwrap()
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(report.stages[0].items_in, 10);
/// assert_eq!(report.stages[0].items_out, 10);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageMetrics {
    /// The position of the stage (0 for the first stage).
    pub index: usize,
    /// The configured number of workers.
    pub workers: usize,
    /// Workers running now; it never drops below `workers` while the stage runs, even when items panic.
    pub workers_alive: usize,
    /// Items received from the input queue.
    pub items_in: u64,
    /// Items processed successfully and passed on.
    pub items_out: u64,
    /// Items that failed (after retries), whatever the failure policy did with them.
    pub items_failed: u64,
    /// Items received but not processed because the pipeline was cancelled, or outputs that could not be
    /// passed on for the same reason.
    pub items_unprocessed: u64,
    /// Panics caught in the stage function (each one failed its item; the worker went on).
    pub panics: u64,
    /// Items waiting in the stage's input queue now (always zero for a first stage that pulls an iterator
    /// source itself).
    pub queue_depth: usize,
    /// The capacity of the stage's input queue.
    pub queue_capacity: usize,
    /// Time accounting per worker.
    pub per_worker: Vec<WorkerMetrics>,
}

impl StageMetrics {
    /// The sum of the workers' busy time.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let report = PipelineBuilder::<u32, ()>::from_items(0..3u32)
    ///     .stage(1, |item| async move { Ok::<_, ()>(item) })
    ///     .build().unwrap().run().await.unwrap();
    /// assert!(report.stages[0].busy() <= report.stages[0].per_worker[0].lifetime());
    /// # }
    /// ```
    pub fn busy(&self) -> Duration {
        self.per_worker.iter().map(|worker| worker.busy).sum()
    }

    /// The sum of the workers' idle time.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let report = PipelineBuilder::<u32, ()>::from_items(0..3u32)
    ///     .stage(1, |item| async move { Ok::<_, ()>(item) })
    ///     .build().unwrap().run().await.unwrap();
    /// assert!(report.stages[0].idle() <= report.stages[0].per_worker[0].lifetime());
    /// # }
    /// ```
    pub fn idle(&self) -> Duration {
        self.per_worker.iter().map(|worker| worker.idle).sum()
    }

    /// The sum of the workers' time blocked on send (backpressure from downstream).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let report = PipelineBuilder::<u32, ()>::from_items(0..3u32)
    ///     .stage(1, |item| async move { Ok::<_, ()>(item) })
    ///     .build().unwrap().run().await.unwrap();
    /// assert_eq!(report.stages[0].blocked_on_send(), std::time::Duration::ZERO);
    /// # }
    /// ```
    pub fn blocked_on_send(&self) -> Duration {
        self.per_worker.iter().map(|worker| worker.blocked_on_send).sum()
    }
}

/// A snapshot of the whole pipeline: the source, every stage, and the output.
///
/// Every item the source produced is in exactly one of these places once the pipeline finished:
/// delivered or discarded at the output, failed in a stage, or unprocessed (in the source, a stage
/// or the output) because the pipeline was cancelled. [`Metrics::accounted`] sums them.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use aqueduct_pipeline::PipelineBuilder;
///
/// let report = PipelineBuilder::<u32, ()>::from_items(0..10u32)
///     .stage(2, |item| async move { Ok::<_, ()>(item) })
///     .build()
///     .unwrap()
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(report.produced, 10);
/// assert_eq!(report.accounted(), 10);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Items the source produced (pulled from the iterator, stream or input channel).
    pub produced: u64,
    /// Items the source produced but could not hand to the first stage because the pipeline was cancelled
    /// (for a channel source: items accepted by the input but never forwarded).
    pub source_unprocessed: u64,
    /// Time the source spent waiting for room in the first queue. Always zero for an iterator source
    /// that the first stage's workers pull themselves (unordered, see
    /// [`from_items`](crate::PipelineBuilder::from_items)): nothing waits to send there.
    pub source_blocked_on_send: Duration,
    /// One entry per stage, in pipeline order.
    pub stages: Vec<StageMetrics>,
    /// Items handed to the consumer of the output (the stream, [`collect`](crate::Pipeline::collect), or
    /// for [`run`](crate::Pipeline::run) the last stage's outputs, which it drops).
    pub delivered: u64,
    /// Outputs dropped because the consumer stopped early (dropped the stream or called
    /// [`finish`](crate::Running::finish)) or the pipeline was cancelled while they waited in the output.
    pub output_unprocessed: u64,
}

impl Metrics {
    /// Items accounted for: delivered, failed in any stage, or unprocessed anywhere.
    ///
    /// Once the pipeline has finished this equals [`produced`](Self::produced): no item vanishes.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let report = PipelineBuilder::<u32, ()>::from_items(0..5u32).build().unwrap().run().await.unwrap();
    /// assert_eq!(report.accounted(), report.produced);
    /// # }
    /// ```
    pub fn accounted(&self) -> u64 {
        let in_stages: u64 =
            self.stages.iter().map(|stage| stage.items_failed + stage.items_unprocessed).sum();
        self.delivered + self.output_unprocessed + self.source_unprocessed + in_stages
    }

    /// Items failed in any stage.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let report = PipelineBuilder::<u32, ()>::from_items(0..5u32).build().unwrap().run().await.unwrap();
    /// assert_eq!(report.failed(), 0);
    /// # }
    /// ```
    pub fn failed(&self) -> u64 {
        self.stages.iter().map(|stage| stage.items_failed).sum()
    }

    /// Items left unprocessed anywhere because the pipeline was cancelled or the consumer stopped early.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let report = PipelineBuilder::<u32, ()>::from_items(0..5u32).build().unwrap().run().await.unwrap();
    /// assert_eq!(report.unprocessed(), 0);
    /// # }
    /// ```
    pub fn unprocessed(&self) -> u64 {
        let in_stages: u64 = self.stages.iter().map(|stage| stage.items_unprocessed).sum();
        self.source_unprocessed + in_stages + self.output_unprocessed
    }
}

pub(crate) fn worker_snapshot(counters: &WorkerCounters, epoch: Instant) -> WorkerMetrics {
    let started = counters.started.load(Ordering::Relaxed);
    let ended = counters.ended.load(Ordering::Relaxed);
    let lifetime_nanos = if started == 0 {
        0
    } else if ended == 0 {
        nanos(epoch.elapsed()).saturating_add(1).saturating_sub(started)
    } else {
        ended.saturating_sub(started)
    };
    let idle = counters.idle_nanos.load(Ordering::Relaxed);
    let blocked = counters.blocked_nanos.load(Ordering::Relaxed);
    let busy = lifetime_nanos.saturating_sub(idle).saturating_sub(blocked);
    WorkerMetrics {
        items: counters.items_in.load(Ordering::Relaxed),
        busy: Duration::from_nanos(busy),
        idle: Duration::from_nanos(idle.min(lifetime_nanos)),
        blocked_on_send: Duration::from_nanos(blocked.min(lifetime_nanos.saturating_sub(idle))),
    }
}

pub(crate) fn stage_snapshot(stage: &StageState, epoch: Instant) -> StageMetrics {
    let mut metrics = StageMetrics {
        index: stage.index,
        workers: stage.workers,
        workers_alive: stage.workers_alive.load(Ordering::Acquire),
        items_in: 0,
        items_out: 0,
        items_failed: 0,
        items_unprocessed: 0,
        panics: 0,
        queue_depth: (stage.queue_depth)(),
        queue_capacity: stage.capacity,
        per_worker: Vec::with_capacity(stage.worker_counters.len()),
    };
    for counters in &stage.worker_counters {
        metrics.items_in += counters.items_in.load(Ordering::Relaxed);
        metrics.items_out += counters.items_out.load(Ordering::Relaxed);
        metrics.items_failed += counters.failed.load(Ordering::Relaxed);
        metrics.items_unprocessed += counters.unprocessed.load(Ordering::Relaxed);
        metrics.panics += counters.panics.load(Ordering::Relaxed);
        metrics.per_worker.push(worker_snapshot(counters, epoch));
    }
    metrics
}
