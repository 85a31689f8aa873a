//! Stage configuration: worker counts, queue capacities, retry and failure policies, and the build error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aqueduct_core::{Error, StopReason};

/// The capacity of every queue unless configured otherwise: the `maxsize=100` of the Python original.
pub const DEFAULT_CAPACITY: usize = 100;

pub use aqueduct_core::ConfigError;

/// An item that failed in a stage, handed to a [`StageOptions::skip`] callback.
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::{Error, Failure};
///
/// let failure: Failure<&str> = Failure { stage: 1, index: 7, error: Error::Operation("bad") };
/// assert_eq!(failure.error.operation(), Some(&"bad"));
/// ```
#[derive(Debug)]
pub struct Failure<E> {
    /// The position of the stage that failed (0 for the first stage).
    pub stage: usize,
    /// The position of the item in the source (0 for the first item produced).
    pub index: u64,
    /// What went wrong.
    pub error: Error<E>,
}

/// A failed item together with its error, handed to a [`StageOptions::dead_letter`] callback.
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::{DeadLetter, Error};
///
/// let letter: DeadLetter<u32, &str> = DeadLetter { stage: 0, index: 3, item: 42, error: Error::Operation("bad") };
/// assert_eq!(letter.item, 42);
/// ```
#[derive(Debug)]
pub struct DeadLetter<I, E> {
    /// The position of the stage that failed (0 for the first stage).
    pub stage: usize,
    /// The position of the item in the source (0 for the first item produced).
    pub index: u64,
    /// The stage's input item that failed, as it was before the failing attempt.
    pub item: I,
    /// What went wrong.
    pub error: Error<E>,
}

pub(crate) type SkipCallback<E> = Arc<dyn Fn(Failure<E>) + Send + Sync>;
pub(crate) type DeadLetterCallback<I, E> = Arc<dyn Fn(DeadLetter<I, E>) + Send + Sync>;
pub(crate) type RetryDecider<E> =
    Arc<dyn Fn(u32, &Error<E>) -> Result<Duration, StopReason> + Send + Sync>;

/// What a stage does with an item whose processing failed (after any retries).
pub(crate) enum FailurePolicy<I, E> {
    /// Cancel the whole pipeline and report this error.
    FailFast,
    /// Call the callback and go on with the next item.
    Skip(SkipCallback<E>),
    /// Hand the item and its error to the callback and go on with the next item.
    DeadLetter(DeadLetterCallback<I, E>),
}

/// The configuration of one stage: worker count, input queue capacity, retry and failure policy.
///
/// `I` is the stage's input item type and `E` the pipeline's operation error type. Pass it to
/// [`PipelineBuilder::stage_with`](crate::PipelineBuilder::stage_with).
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::{PipelineBuilder, StageOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let options = StageOptions::new(4)
///     .capacity(16)
///     .skip(|failure| eprintln!("item {} failed: {}", failure.index, failure.error));
/// let doubled = PipelineBuilder::from_items(0..10u32)
///     .stage_with(options, |item| async move { if item == 3 { Err("three") } else { Ok(item * 2) } })
///     .build()
///     .unwrap()
///     .collect()
///     .await
///     .unwrap();
/// assert_eq!(doubled.len(), 9);
/// # }
/// ```
pub struct StageOptions<I, E> {
    pub(crate) workers: usize,
    pub(crate) capacity: Option<usize>,
    pub(crate) retry: Option<RetryDecider<E>>,
    pub(crate) failure: FailurePolicy<I, E>,
    pub(crate) clone_item: Option<fn(&I) -> I>,
}

impl<I, E> fmt::Debug for StageOptions<I, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failure = match self.failure {
            FailurePolicy::FailFast => "fail fast",
            FailurePolicy::Skip(_) => "skip",
            FailurePolicy::DeadLetter(_) => "dead letter",
        };
        formatter
            .debug_struct("StageOptions")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("retry", &self.retry.is_some())
            .field("failure", &failure)
            .finish()
    }
}

impl<I, E> StageOptions<I, E> {
    /// A stage with `workers` concurrent workers that fails fast on the first error.
    ///
    /// A zero worker count is rejected by [`build`](crate::PipelineBuilder::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::StageOptions;
    /// let options = StageOptions::<u32, ()>::new(4);
    /// assert!(format!("{options:?}").contains("fail fast"));
    /// ```
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            capacity: None,
            retry: None,
            failure: FailurePolicy::FailFast,
            clone_item: None,
        }
    }

    /// The capacity of this stage's input queue (default: the pipeline's, 100 unless changed).
    ///
    /// A zero capacity is rejected by [`build`](crate::PipelineBuilder::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::StageOptions;
    /// let options = StageOptions::<u32, ()>::new(2).capacity(8);
    /// assert!(format!("{options:?}").contains("Some(8)"));
    /// ```
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// On failure, cancel the whole pipeline and report the error (the default).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::StageOptions;
    /// let options = StageOptions::<u32, ()>::new(2).fail_fast();
    /// assert!(format!("{options:?}").contains("fail fast"));
    /// ```
    #[must_use]
    pub fn fail_fast(mut self) -> Self {
        self.failure = FailurePolicy::FailFast;
        self
    }

    /// On failure, call `on_failure` with the error and go on with the next item.
    ///
    /// The callback runs on the worker; keep it short. A panic in it is a fatal error of the pipeline.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::StageOptions;
    /// let options = StageOptions::<u32, String>::new(2).skip(|failure| eprintln!("{}", failure.error));
    /// assert!(format!("{options:?}").contains("skip"));
    /// ```
    #[must_use]
    pub fn skip(mut self, on_failure: impl Fn(Failure<E>) + Send + Sync + 'static) -> Self {
        self.failure = FailurePolicy::Skip(Arc::new(on_failure));
        self
    }
}

impl<I: Clone, E> StageOptions<I, E> {
    /// On failure, hand the input item and its error to `on_dead_letter` and go on with the next item.
    ///
    /// The stage clones each input item before processing it, so the failed item can be handed over
    /// (hence `I: Clone`). Send the letter to a channel of your own to process it elsewhere.
    /// A panic in the callback is a fatal error of the pipeline.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::{PipelineBuilder, StageOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (letters, mut dead) = tokio::sync::mpsc::unbounded_channel();
    /// let options = StageOptions::new(2).dead_letter(move |letter| { let _ = letters.send(letter); });
    /// let kept = PipelineBuilder::from_items(vec!["1", "x", "3"])
    ///     .stage_with(options, |text: &str| async move { text.parse::<u32>() })
    ///     .build()
    ///     .unwrap()
    ///     .collect()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(kept.len(), 2);
    /// assert_eq!(dead.recv().await.unwrap().item, "x");
    /// # }
    /// ```
    #[must_use]
    pub fn dead_letter(
        mut self,
        on_dead_letter: impl Fn(DeadLetter<I, E>) + Send + Sync + 'static,
    ) -> Self {
        self.failure = FailurePolicy::DeadLetter(Arc::new(on_dead_letter));
        self.clone_item = Some(I::clone);
        self
    }

    /// Retries a failed item as `decide` says: `decide(attempt, &error)` returns `Ok(delay)` to try again
    /// after `delay`, or `Err(reason)` to give up.
    ///
    /// `attempt` is 1 after the first failure. The item is cloned before each attempt (hence `I: Clone`).
    /// When `decide` gives up, the stage's failure policy receives [`Error::Exhausted`] with the attempts,
    /// the time spent, the reason and the last error. Panics are retried like errors. Any retry
    /// crate can be plugged in through this closure; this crate depends on none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_pipeline::{StageOptions, StopReason};
    ///
    /// let options = StageOptions::<u32, String>::new(2).retry(|attempt, _error| {
    ///     if attempt < 3 { Ok(Duration::from_millis(10 * u64::from(attempt))) } else { Err(StopReason::Attempts) }
    /// });
    /// assert!(format!("{options:?}").contains("retry: true"));
    /// ```
    #[must_use]
    pub fn retry(
        mut self,
        decide: impl Fn(u32, &Error<E>) -> Result<Duration, StopReason> + Send + Sync + 'static,
    ) -> Self {
        self.retry = Some(Arc::new(decide));
        self.clone_item = Some(I::clone);
        self
    }
}
