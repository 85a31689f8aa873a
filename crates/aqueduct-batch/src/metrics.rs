//! Counters of a `Batcher`: batch sizes, fill ratio, queue wait, batches in flight, rejections.

use std::time::Duration;

/// A snapshot of a [`Batcher`](crate::Batcher)'s counters, taken by [`Batcher::metrics`](crate::Batcher::metrics).
///
/// Counters run from the batcher's creation; gauges (`pending`, `batches_in_flight`) are the values at the
/// time of the snapshot. Subtract two snapshots to get rates over a window.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::BatcherMetrics;
///
/// let metrics = BatcherMetrics::default();
/// assert_eq!(metrics.mean_batch_size(), 0.0);
/// assert_eq!(metrics.fill_ratio(), 0.0);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct BatcherMetrics {
    /// Batches dispatched to the batch function.
    pub batches: u64,
    /// Items dispatched (with dedup, duplicates count here but are sent once).
    pub items: u64,
    /// Distinct items sent to the batch function (equals `items` without dedup).
    pub items_sent: u64,
    /// The configured maximum batch size, the denominator of [`fill_ratio`](Self::fill_ratio).
    pub max_batch_size: usize,
    /// Batch sizes (items sent per call) in power-of-two buckets: `(upper bound inclusive, count)`, for
    /// bounds 1, 2, 4, 8, … up to the first power of two at or above `max_batch_size`.
    pub batch_size_histogram: Vec<(usize, u64)>,
    /// Total time items waited in the queue before their batch was dispatched.
    pub queue_wait_total: Duration,
    /// The longest time one item waited in the queue.
    pub queue_wait_max: Duration,
    /// Batch calls running now.
    pub batches_in_flight: usize,
    /// Items queued and not yet dispatched now.
    pub pending: usize,
    /// Submissions rejected with `Error::Full` because the queue was full.
    pub rejections: u64,
    /// Submissions whose caller dropped the future before dispatch; their items were removed.
    pub cancelled_before_dispatch: u64,
    /// Batches that failed as a whole (an `Err` or a panic).
    pub failed_batches: u64,
    /// Batches whose function panicked (also counted in `failed_batches`).
    pub panicked_batches: u64,
    /// Batches whose function returned the wrong number of outputs.
    pub contract_violations: u64,
}

impl BatcherMetrics {
    /// The mean number of items sent per batch call.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::BatcherMetrics;
    ///
    /// let mut metrics = BatcherMetrics::default();
    /// metrics.batches = 4;
    /// metrics.items_sent = 300;
    /// assert_eq!(metrics.mean_batch_size(), 75.0);
    /// ```
    #[allow(clippy::cast_precision_loss)] // Counters far below 2^52 in practice; a ratio needs no exactness.
    pub fn mean_batch_size(&self) -> f64 {
        if self.batches == 0 { 0.0 } else { self.items_sent as f64 / self.batches as f64 }
    }

    /// How full batches were on average, from 0.0 to 1.0: the mean batch size over the maximum batch size.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::BatcherMetrics;
    ///
    /// let mut metrics = BatcherMetrics::default();
    /// metrics.batches = 2;
    /// metrics.items_sent = 100;
    /// metrics.max_batch_size = 100;
    /// assert_eq!(metrics.fill_ratio(), 0.5);
    /// ```
    #[allow(clippy::cast_precision_loss)] // As above.
    pub fn fill_ratio(&self) -> f64 {
        if self.max_batch_size == 0 {
            0.0
        } else {
            self.mean_batch_size() / self.max_batch_size as f64
        }
    }

    /// The mean time an item waited in the queue before dispatch.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_batch::BatcherMetrics;
    ///
    /// let mut metrics = BatcherMetrics::default();
    /// metrics.items = 4;
    /// metrics.queue_wait_total = Duration::from_millis(8);
    /// assert_eq!(metrics.mean_queue_wait(), Duration::from_millis(2));
    /// ```
    pub fn mean_queue_wait(&self) -> Duration {
        match u32::try_from(self.items) {
            Ok(0) => Duration::ZERO,
            Ok(items) => self.queue_wait_total / items,
            Err(_) => {
                Duration::from_secs_f64(self.queue_wait_total.as_secs_f64() / f64::from(u32::MAX))
            }
        }
    }
}

/// The dispatch-side counters, kept under the batcher's lock.
#[derive(Debug, Default)]
pub(crate) struct DispatchCounters {
    pub(crate) batches: u64,
    pub(crate) items: u64,
    pub(crate) items_sent: u64,
    pub(crate) histogram: Vec<u64>,
    pub(crate) queue_wait_total: Duration,
    pub(crate) queue_wait_max: Duration,
    pub(crate) rejections: u64,
    pub(crate) cancelled_before_dispatch: u64,
    pub(crate) failed_batches: u64,
    pub(crate) panicked_batches: u64,
    pub(crate) contract_violations: u64,
}

impl DispatchCounters {
    pub(crate) fn new(max_batch_size: usize) -> Self {
        let buckets = bucket_of(max_batch_size) + 1;
        Self { histogram: vec![0; buckets], ..Self::default() }
    }

    pub(crate) fn record_batch(&mut self, items: usize, sent: usize) {
        self.batches += 1;
        self.items += items as u64;
        self.items_sent += sent as u64;
        let bucket = bucket_of(sent).min(self.histogram.len().saturating_sub(1));
        if let Some(count) = self.histogram.get_mut(bucket) {
            *count += 1;
        }
    }

    pub(crate) fn snapshot(
        &self,
        max_batch_size: usize,
        batches_in_flight: usize,
        pending: usize,
    ) -> BatcherMetrics {
        BatcherMetrics {
            batches: self.batches,
            items: self.items,
            items_sent: self.items_sent,
            max_batch_size,
            batch_size_histogram: self
                .histogram
                .iter()
                .enumerate()
                .map(|(bucket, count)| (1usize << bucket, *count))
                .collect(),
            queue_wait_total: self.queue_wait_total,
            queue_wait_max: self.queue_wait_max,
            batches_in_flight,
            pending,
            rejections: self.rejections,
            cancelled_before_dispatch: self.cancelled_before_dispatch,
            failed_batches: self.failed_batches,
            panicked_batches: self.panicked_batches,
            contract_violations: self.contract_violations,
        }
    }
}

/// The power-of-two bucket of a batch size: 1 → 0, 2 → 1, 3..=4 → 2, 5..=8 → 3, …
fn bucket_of(size: usize) -> usize {
    size.max(1).next_power_of_two().trailing_zeros() as usize
}
