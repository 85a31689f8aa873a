//! Static batching: split a known collection into chunks, run a bounded number of batch calls at once,
//! and return per-item results in input order.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use aqueduct_core::Error;
use futures::{StreamExt as _, stream};

use crate::config::ConfigError;
use crate::outputs::{BatchOutputs, Outcome, broadcast, broadcast_violation, invoke};

/// Splits `items` into batches of `size`, runs at most `concurrency` calls of `f` at once, and returns one
/// result per item, in input order: the port of Python's `process_batch(items, batch_size, max_concurrent)`.
///
/// `f` receives each batch as a `Vec<T>` and returns `Ok(outputs)` with one output per input, in input
/// order: a `Vec<O>`, or a [`PerItem`](crate::PerItem) when items can fail one by one. A failed batch fails
/// its own items only; the other batches go on (use [`Batch::builder`] for the other failure policies:
/// fail all, or bisect and retry to isolate the bad item).
///
/// The call runs in place: it spawns nothing, so `f` may borrow from the caller; wrap it in
/// `tokio::spawn` to run it on another worker.
///
/// # Cancellation
///
/// Dropping the future drops the batch calls in flight and the items not yet sent; no task is left behind.
///
/// # Errors
///
/// Each item's result is its own:
/// - `Error::Operation` (or whatever the batch function's error converts into) when its batch failed as a
///   whole, copied to every item of the batch, or its own error from a [`PerItem`](crate::PerItem);
/// - `Error::ContractViolation` for every item of a batch whose function returned a different number of
///   outputs than it got inputs;
/// - `Error::Panicked` for every item of a batch whose function panicked;
/// - `Error::ContractViolation` for every item when `size` or `concurrency` is zero (the message says which).
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{batch, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let results: Vec<Result<u32, Error<String>>> = batch(1..=250u32, 100, 5, |ids: Vec<u32>| async move {
///     // One round trip for the whole batch, say a `SELECT ... WHERE id = ANY($1)`.
///     Ok::<_, String>(ids.into_iter().map(|id| id * 2).collect::<Vec<_>>())
/// })
/// .await;
/// assert_eq!(results.len(), 250);
/// assert_eq!(results[249].as_ref().ok(), Some(&500));
/// # }
/// ```
pub async fn batch<T, I, F, Fut, R, X, E>(
    items: I,
    size: usize,
    concurrency: usize,
    f: F,
) -> Vec<Result<R::Output, Error<E>>>
where
    I: IntoIterator<Item = T>,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<R, X>>,
    R: BatchOutputs<E>,
    X: Into<Error<E>>,
    E: Clone,
{
    match Batch::builder().size(size).concurrency(concurrency).build() {
        Ok(plan) => plan.run(items, f).await,
        Err(error) => items
            .into_iter()
            .map(|_| Err(Error::ContractViolation { message: error.message().to_owned() }))
            .collect(),
    }
}

/// What a static batch run does when a batch fails.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{Batch, OnFailure};
///
/// let plan = Batch::<u32>::builder().fail_all().build().unwrap();
/// assert_eq!(plan.on_failure(), OnFailure::FailAll);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// A failed batch fails its own items; the other batches go on (the default).
    #[default]
    FailBatch,
    /// The first batch with a failed item, in input order, stops the run: batches in flight are dropped, no new
    /// batch starts, and every item fails, all-or-nothing. The failed items of that batch keep their errors; every other item,
    /// including those whose batch had succeeded, is reported as `Error::Cancelled`.
    FailAll,
    /// A batch that fails as a whole (an `Err` or a panic, not per-item errors or a contract violation) is split
    /// in halves and each half is retried, recursively, so one bad item fails alone and the others succeed.
    /// The halves run one after the other inside the batch's concurrency slot, so the bound on calls in flight
    /// holds. Costs about `2·log2(size)` extra calls per bad item, and a clone of every item before each call.
    Bisect,
}

/// A validated plan for static batching: batch size, concurrency and failure policy. Build it once, run it often.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{Batch, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aqueduct_batch::ConfigError> {
/// let plan = Batch::builder().size(100).concurrency(5).bisect().build()?;
/// let results: Vec<Result<u32, Error<String>>> = plan
///     .run(0..1_000u32, |ids: Vec<u32>| async move {
///         if ids.contains(&404) { Err(format!("batch of {} rejected", ids.len())) } else { Ok(ids) }
///     })
///     .await;
/// // Bisection isolated the one bad item; its 999 neighbours succeeded.
/// assert_eq!(results.iter().filter(|result| result.is_err()).count(), 1);
/// assert!(results[404].is_err());
/// # Ok(())
/// # }
/// ```
pub struct Batch<T> {
    size: usize,
    concurrency: usize,
    failure: Failure<T>,
}

/// Builds a [`Batch`] plan; every setting has a default (size 100, concurrency 5, [`OnFailure::FailBatch`]).
///
/// # Examples
///
/// ```
/// use aqueduct_batch::Batch;
///
/// let plan = Batch::<String>::builder().size(50).concurrency(2).build().unwrap();
/// assert_eq!((plan.size(), plan.concurrency()), (50, 2));
/// ```
pub struct BatchBuilder<T> {
    size: usize,
    concurrency: usize,
    failure: Failure<T>,
}

/// The results of one batch, one per item, in input order.
type ItemResults<O, E> = Vec<Result<O, Error<E>>>;

/// The failure policy, carrying the item clone function that bisection needs.
enum Failure<T> {
    FailBatch,
    FailAll,
    Bisect(fn(&T) -> T),
}

// ===== impl Batch =====

impl<T> Batch<T> {
    /// The default batch size, the seed's `batch_size=100`.
    pub const DEFAULT_SIZE: usize = 100;
    /// The default number of batch calls in flight, the seed's `max_concurrent=5`.
    pub const DEFAULT_CONCURRENCY: usize = 5;

    /// Starts a builder with the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    ///
    /// let plan = Batch::<u8>::builder().build().unwrap();
    /// assert_eq!(plan.size(), Batch::<u8>::DEFAULT_SIZE);
    /// ```
    pub fn builder() -> BatchBuilder<T> {
        BatchBuilder {
            size: Self::DEFAULT_SIZE,
            concurrency: Self::DEFAULT_CONCURRENCY,
            failure: Failure::FailBatch,
        }
    }

    /// The number of items per batch (the last batch may be smaller).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    /// assert_eq!(Batch::<u8>::builder().size(7).build().unwrap().size(), 7);
    /// ```
    pub fn size(&self) -> usize {
        self.size
    }

    /// The most batch calls in flight at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    /// assert_eq!(Batch::<u8>::builder().concurrency(3).build().unwrap().concurrency(), 3);
    /// ```
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// What happens when a batch fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batch, OnFailure};
    /// assert_eq!(Batch::<u8>::builder().build().unwrap().on_failure(), OnFailure::FailBatch);
    /// ```
    pub fn on_failure(&self) -> OnFailure {
        match self.failure {
            Failure::FailBatch => OnFailure::FailBatch,
            Failure::FailAll => OnFailure::FailAll,
            Failure::Bisect(_) => OnFailure::Bisect,
        }
    }

    /// Runs the plan: splits `items` into batches, runs at most [`concurrency`](Self::concurrency) calls of
    /// `f` at once, and returns one result per item, in input order.
    ///
    /// See [`batch`] for the batch function's contract; the failure policy is the plan's
    /// [`on_failure`](Self::on_failure). The items are pulled from the iterator lazily, one batch at a time.
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops the batch calls in flight and the items not yet pulled from the iterator.
    ///
    /// # Errors
    ///
    /// Per item, as for [`batch`]; under [`OnFailure::FailAll`] every item fails once one batch fails, the
    /// others with `Error::Cancelled`; under [`OnFailure::Bisect`] only the items that fail alone keep an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batch, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let plan = Batch::builder().size(2).concurrency(2).fail_all().build().unwrap();
    /// let results: Vec<Result<u8, Error<&str>>> =
    ///     plan.run(vec![1u8, 2, 3, 4], |pair: Vec<u8>| async move {
    ///         if pair.contains(&3) { Err("boom") } else { Ok(pair) }
    ///     })
    ///     .await;
    /// assert!(results.iter().all(Result::is_err));
    /// # }
    /// ```
    pub async fn run<I, F, Fut, R, X, E>(&self, items: I, f: F) -> Vec<Result<R::Output, Error<E>>>
    where
        I: IntoIterator<Item = T>,
        F: FnMut(Vec<T>) -> Fut,
        Fut: Future<Output = Result<R, X>>,
        R: BatchOutputs<E>,
        X: Into<Error<E>>,
        E: Clone,
    {
        let size = self.size;
        let failure = self.failure;
        let call = Mutex::new(f);
        let mut items = items.into_iter();
        let (lower_bound, _) = items.size_hint();
        let mut flat: ItemResults<R::Output, E> = Vec::with_capacity(lower_bound);
        let mut pulled = 0usize;
        // Under fail-all: the input range of the first failed batch.
        let mut failed_range: Option<(usize, usize)> = None;
        {
            let pulled = &mut pulled;
            let items = &mut items;
            let chunks = std::iter::from_fn(move || {
                let chunk: Vec<T> = items.by_ref().take(size).collect();
                if chunk.is_empty() {
                    None
                } else {
                    let offset = *pulled;
                    *pulled += chunk.len();
                    Some((offset, chunk))
                }
            });
            let call = &call;
            // Ordered, like the hand-written `buffered(k)`: each batch's results go straight into place.
            let mut running = stream::iter(chunks)
                .map(|(offset, chunk)| run_chunk(call, offset, chunk, failure))
                .buffered(self.concurrency);
            while let Some((offset, done)) = running.next().await {
                let start = flat.len();
                done.append_to(&mut flat, offset);
                if matches!(failure, Failure::FailAll) && flat[start..].iter().any(Result::is_err) {
                    failed_range = Some((start, flat.len()));
                    break;
                }
            }
        }
        if let Some((start, end)) = failed_range {
            // All-or-nothing: the failing batch keeps its errors, everything else is cancelled.
            let total = pulled + items.count();
            for (index, result) in flat.iter_mut().enumerate() {
                if index < start || (index < end && result.is_ok()) {
                    *result = Err(Error::Cancelled);
                }
            }
            let filled = flat.len();
            flat.extend((filled..total).map(|_| Err(Error::Cancelled)));
        }
        flat
    }
}

impl<T> Clone for Batch<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Batch<T> {}

impl<T> fmt::Debug for Batch<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Batch")
            .field("size", &self.size)
            .field("concurrency", &self.concurrency)
            .field("on_failure", &self.on_failure())
            .finish()
    }
}

// ===== impl BatchBuilder =====

impl<T> BatchBuilder<T> {
    /// Sets the number of items per batch; must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    /// assert!(Batch::<u8>::builder().size(0).build().is_err());
    /// ```
    #[must_use]
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Sets the most batch calls in flight at once; must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    /// assert!(Batch::<u8>::builder().concurrency(1).build().is_ok());
    /// ```
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// A failed batch fails its own items only (the default, [`OnFailure::FailBatch`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batch, OnFailure};
    /// let plan = Batch::<u8>::builder().fail_all().fail_batch().build().unwrap();
    /// assert_eq!(plan.on_failure(), OnFailure::FailBatch);
    /// ```
    #[must_use]
    pub fn fail_batch(mut self) -> Self {
        self.failure = Failure::FailBatch;
        self
    }

    /// The first failed batch fails every item, all-or-nothing ([`OnFailure::FailAll`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batch, OnFailure};
    /// assert_eq!(Batch::<u8>::builder().fail_all().build().unwrap().on_failure(), OnFailure::FailAll);
    /// ```
    #[must_use]
    pub fn fail_all(mut self) -> Self {
        self.failure = Failure::FailAll;
        self
    }

    /// Validates the settings and returns the plan.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting when the size or the concurrency is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    ///
    /// let error = Batch::<u8>::builder().size(0).build().unwrap_err();
    /// assert_eq!(error.to_string(), "size must be at least 1 item per batch, got 0");
    /// ```
    pub fn build(self) -> Result<Batch<T>, ConfigError> {
        if self.size == 0 {
            return Err(ConfigError::new("size must be at least 1 item per batch, got 0"));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::new(
                "concurrency must be at least 1 batch call in flight, got 0",
            ));
        }
        Ok(Batch { size: self.size, concurrency: self.concurrency, failure: self.failure })
    }
}

impl<T: Clone> BatchBuilder<T> {
    /// A batch that fails as a whole is split in halves and retried until the bad items fail alone
    /// ([`OnFailure::Bisect`]); needs `T: Clone` to resend the items.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Batch, OnFailure};
    /// assert_eq!(Batch::<u8>::builder().bisect().build().unwrap().on_failure(), OnFailure::Bisect);
    /// ```
    #[must_use]
    pub fn bisect(mut self) -> Self {
        self.failure = Failure::Bisect(T::clone);
        self
    }
}

impl<T> fmt::Debug for BatchBuilder<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BatchBuilder")
            .field("size", &self.size)
            .field("concurrency", &self.concurrency)
            .field(
                "on_failure",
                &Batch { size: self.size, concurrency: self.concurrency, failure: self.failure }
                    .on_failure(),
            )
            .finish()
    }
}

impl<T> Clone for Failure<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Failure<T> {}

// ===== the run =====

/// What one batch produced: the raw outcome of a single call, or the results gathered by bisection.
enum Done<R: BatchOutputs<E>, E> {
    Single(Outcome<R, E>, usize),
    Bisected(ItemResults<R::Output, E>),
}

impl<R: BatchOutputs<E>, E: Clone> Done<R, E> {
    /// Appends one result per item of the batch starting at input index `offset`.
    fn append_to(self, flat: &mut ItemResults<R::Output, E>, offset: usize) {
        match self {
            Self::Single(Outcome::Items(outputs), _) => flat.extend(outputs.into_results()),
            Self::Single(Outcome::Failed(error), count) => {
                broadcast(flat, with_panic_index(error, count, offset), count)
            }
            Self::Single(Outcome::Violation(message), count) => {
                broadcast_violation(flat, &message, count)
            }
            Self::Bisected(results) => flat.extend(results),
        }
    }
}

/// Runs one batch (and, under bisection, its halves one after the other), returning its offset and outcome.
async fn run_chunk<T, F, Fut, R, X, E>(
    call: &Mutex<F>,
    offset: usize,
    items: Vec<T>,
    failure: Failure<T>,
) -> (usize, Done<R, E>)
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<R, X>>,
    R: BatchOutputs<E>,
    X: Into<Error<E>>,
    E: Clone,
{
    let Failure::Bisect(clone_item) = failure else {
        let count = items.len();
        return (offset, Done::Single(call_once(call, items).await, count));
    };
    let mut results = Vec::with_capacity(items.len());
    // Depth first, left half first, so results come out in input order.
    let mut segments = vec![(offset, items)];
    while let Some((segment_offset, segment)) = segments.pop() {
        let count = segment.len();
        let backup: Option<Vec<T>> = (count > 1).then(|| segment.iter().map(clone_item).collect());
        match (call_once(call, segment).await, backup) {
            (Outcome::Failed(_), Some(mut left)) => {
                let right = left.split_off(count / 2);
                segments.push((segment_offset + count / 2, right));
                segments.push((segment_offset, left));
            }
            (outcome, _) => Done::Single(outcome, count).append_to(&mut results, segment_offset),
        }
    }
    (offset, Done::Bisected(results))
}

/// Calls the user's function once, holding its lock only while the call builds the future.
async fn call_once<T, F, Fut, R, X, E>(call: &Mutex<F>, items: Vec<T>) -> Outcome<R, E>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<R, X>>,
    R: BatchOutputs<E>,
    X: Into<Error<E>>,
{
    invoke(
        |items| {
            let mut function = call.lock().unwrap_or_else(PoisonError::into_inner);
            (function)(items)
        },
        items,
    )
    .await
}

/// A panic of a one-item batch names that item's input index.
fn with_panic_index<E>(error: Error<E>, count: usize, offset: usize) -> Error<E> {
    match error {
        Error::Panicked { index: None, message } if count == 1 => {
            Error::Panicked { index: Some(offset), message }
        }
        other => other,
    }
}
