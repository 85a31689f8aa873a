//! `gather` in three policies (collect-all, fail-fast, supervise) over either backend.

use std::any::Any;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::resume_unwind;
use std::pin::Pin;
use std::task::{Context, Poll};

use aqueduct_core::{Aggregate, Error};
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::engine::sealed::{Child, ChildSource, FutureSource};
use crate::engine::{
    ChildOutcome, Engine, InPlace, IntoGatherResult, IterSource, Spawned, StreamSource,
};
use crate::options::{GatherOptions, PanicPolicy};

/// Gathers `futures` concurrently in place and returns every result in input order (collect-all).
///
/// The port of Python's `asyncio.gather(*aws, return_exceptions=True)`: a failure never stops the others, and
/// each slot of the returned `Vec` holds its future's `Result`. Chain [`Gather::fail_fast`] or
/// [`Gather::supervise`] for the other policies, [`Gather::spawned`] to run the futures as tokio tasks, and
/// [`Gather::with_options`] for a concurrency limit or re-raised panics.
///
/// Each future's error may be any `X: Into<Error<E>>`, so futures returning a plain `E` and other aqueduct
/// combinators (returning `Error<E>`) mix without nesting; the annotation at the call picks `E`.
///
/// # Cancellation
///
/// Dropping the returned future drops every child that is still running, at once, and the iterator.
///
/// # Errors
///
/// The future itself cannot fail; each slot holds its child's error, [`Error::Panicked`] for a child that
/// panicked (with the default [`PanicPolicy::Capture`]).
///
/// # Panics
///
/// Only with [`PanicPolicy::Resume`]: a child's panic is resumed once its siblings were dropped.
///
/// # Examples
///
/// ```
/// use aqueduct_gather::{gather, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let names = ["ada", "", "grace"];
/// // Borrowing is fine in place: the futures read `names` without `'static`.
/// let results: Vec<Result<usize, Error<&str>>> = gather(names.iter().map(|name| async move {
///     if name.is_empty() { Err("empty name") } else { Ok(name.len()) }
/// }))
/// .await;
/// assert_eq!(results[0].as_ref().ok(), Some(&3));
/// assert_eq!(results[1].as_ref().unwrap_err().operation(), Some(&"empty name"));
/// assert_eq!(results[2].as_ref().ok(), Some(&5));
/// # }
/// ```
pub fn gather<I, T, X, E>(futures: I) -> Gather<InPlace<IterSource<I::IntoIter>>, CollectAll<T, E>>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    Gather::new(InPlace::new(IterSource::new(futures.into_iter())), CollectAll::new())
}

/// Like [`gather`], but reads the futures from a stream, pulling the next one only when a slot is free.
///
/// # Cancellation
///
/// Dropping the returned future drops the stream and every child still running.
///
/// # Errors
///
/// As [`gather`]: each slot holds its child's error.
///
/// # Examples
///
/// ```
/// use aqueduct_gather::{gather_stream, Error, GatherOptions};
/// use futures::stream;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aqueduct_gather::ConfigError> {
/// let jobs = stream::iter(0..10_u32).map(|n| async move { Ok::<_, std::io::Error>(n * n) });
/// let options = GatherOptions::builder().limit(3).build()?;
/// let squares: Vec<Result<u32, Error<std::io::Error>>> = gather_stream(jobs).with_options(options).await;
/// assert_eq!(squares.len(), 10);
/// assert_eq!(squares[9].as_ref().ok(), Some(&81));
/// # Ok(())
/// # }
/// # use futures::StreamExt as _;
/// ```
pub fn gather_stream<St, T, X, E>(
    futures: St,
) -> Gather<InPlace<StreamSource<St>>, CollectAll<T, E>>
where
    St: Stream,
    St::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    Gather::new(InPlace::new(StreamSource::new(futures)), CollectAll::new())
}

/// Gathers `futures` in place and fails fast: shorthand for `gather(futures).fail_fast()`.
///
/// The port of `asyncio.TaskGroup`'s semantics: the first failure *in time* (not by input position) cancels
/// every sibling, and the call returns only once they have stopped. See [`Gather::fail_fast`].
///
/// # Cancellation
///
/// Dropping the returned future drops every child that is still running.
///
/// # Errors
///
/// [`Error::Aggregate`] when a child fails: its first entry is the first failure in time, then the siblings
/// it cancelled ([`Error::Cancelled`]) or that failed while being cancelled.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_gather::{try_gather, Error};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let delays = [30_u64, 20, 10];
/// let result: Result<Vec<u64>, Error<String>> = try_gather(delays.map(|ms| async move {
///     tokio::time::sleep(Duration::from_millis(ms)).await;
///     if ms == 10 { Err(format!("failed after {ms} ms")) } else { Ok(ms) }
/// }))
/// .await;
/// let Err(Error::Aggregate(aggregate)) = result else { panic!("expected a failure") };
/// // The last input failed first, so it comes first; the two others were cancelled.
/// let (index, first) = aggregate.first().unwrap();
/// assert_eq!((*index, first.operation().map(String::as_str)), (2, Some("failed after 10 ms")));
/// assert_eq!(aggregate.iter().filter(|(_, error)| error.is_cancelled()).count(), 2);
/// # }
/// ```
pub fn try_gather<I, T, X, E>(
    futures: I,
) -> Gather<InPlace<IterSource<I::IntoIter>>, FailFast<T, E>>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    gather(futures).fail_fast()
}

/// Gathers `futures` in place under supervision: shorthand for `gather(futures).supervise()`.
///
/// Failures are isolated (the siblings go on) and reported, with their input indices, in the order they
/// happened; successes are kept with theirs. See [`Gather::supervise`] and [`Supervised`].
///
/// # Cancellation
///
/// Dropping the returned future drops every child that is still running.
///
/// # Errors
///
/// The future itself cannot fail; failures are in [`Supervised::failures`].
///
/// # Examples
///
/// ```
/// use aqueduct_gather::supervise;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let report = supervise::<_, _, _, &str>((0..4).map(|n| async move {
///     if n % 2 == 1 { Err("odd") } else { Ok(n) }
/// }))
/// .await;
/// assert_eq!(report.succeeded(), &[(0, 0), (2, 2)]);
/// assert_eq!(report.failures().len(), 2);
/// # }
/// ```
// The named future type is the point of this signature; an alias would only hide it.
#[allow(clippy::type_complexity)]
pub fn supervise<I, T, X, E>(
    futures: I,
) -> Gather<InPlace<IterSource<I::IntoIter>>, Supervise<T, E, NoHook<E>>>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    gather(futures).supervise()
}

pin_project! {
    /// The future of every gather: a policy `P` applied to children made by the source `S` (in place or spawned).
    ///
    /// Made by [`gather`], [`gather_stream`], [`try_gather`] and [`supervise`]; configure it before the first
    /// poll with [`fail_fast`](Self::fail_fast), [`supervise`](Self::supervise), [`spawned`](Self::spawned) and
    /// [`with_options`](Self::with_options).
    ///
    /// # Cancellation
    ///
    /// Dropping it drops every in-place child at once and aborts every spawned one.
    #[must_use = "futures do nothing unless awaited"]
    pub struct Gather<S, P>
    where
        S: ChildSource,
    {
        #[pin]
        engine: Engine<S>,
        policy: P,
        panics: PanicPolicy,
        // Set once the policy asked to cancel the rest, or a panic is to be resumed.
        aborting: bool,
        started: bool,
        resume: Option<Box<dyn Any + Send + 'static>>,
    }
}

impl<S: ChildSource, P> fmt::Debug for Gather<S, P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Gather")
            .field("policy", &std::any::type_name::<P>())
            .field("created", &self.engine.created())
            .field("aborting", &self.aborting)
            .finish_non_exhaustive()
    }
}

/// The gather policies: what to keep, and whether a failure cancels the siblings. Sealed.
///
/// Implemented by [`CollectAll`], [`FailFast`] and [`Supervise`].
pub trait Policy: sealed_policy::Sealed {
    /// The value of a successful child.
    type Value;
    /// The operation error of the children.
    type Error;
    /// What the gather returns.
    type Output;

    #[doc(hidden)]
    /// `true` when the output does not depend on the order children are observed in.
    const ORDER_FREE: bool;

    #[doc(hidden)]
    /// Reserves room for `len` children before the first poll.
    fn reserve(&mut self, len: usize);

    #[doc(hidden)]
    /// Records a child's result; returns `true` to cancel the siblings.
    fn record(&mut self, index: usize, result: Result<Self::Value, Error<Self::Error>>) -> bool;

    #[doc(hidden)]
    /// Records a sibling that finished while being cancelled (its own error, or `Cancelled`).
    fn record_stopped(&mut self, index: usize, result: Result<Self::Value, Error<Self::Error>>);

    #[doc(hidden)]
    /// Builds the output once every child has stopped.
    fn finish(&mut self) -> Self::Output;
}

mod sealed_policy {
    pub trait Sealed {}
}

/// The collect-all policy: every result, in input order (`asyncio.gather(return_exceptions=True)`).
pub struct CollectAll<T, E> {
    results: Vec<Result<T, Error<E>>>,
}

/// The fail-fast policy: the first failure in time cancels the siblings (`asyncio.TaskGroup`).
pub struct FailFast<T, E> {
    values: Vec<Option<T>>,
    errors: Vec<(usize, Error<E>)>,
}

/// The supervise policy: failures are isolated and reported, the others go on (Kotlin's `supervisorScope`).
///
/// `H` is the hook called with each failure as it happens, set by [`Gather::on_error`].
pub struct Supervise<T, E, H> {
    values: Vec<Option<T>>,
    errors: Vec<(usize, Error<E>)>,
    on_error: H,
}

/// The failure hook of a supervised gather before [`Gather::on_error`] sets one: it does nothing.
pub type NoHook<E> = fn(usize, &Error<E>);

/// What a supervised gather returns: the successes in input order and the failures in the order they happened.
///
/// # Examples
///
/// ```
/// use aqueduct_gather::supervise;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let report = supervise::<_, _, _, String>([Ok(1), Err("no".to_owned())].map(|reply| async move { reply })).await;
/// assert!(!report.is_success());
/// let (succeeded, failures) = report.into_parts();
/// assert_eq!(succeeded, [(0, 1)]);
/// assert_eq!(failures.first().map(|(index, _)| *index), Some(1));
/// # }
/// ```
#[derive(Debug)]
pub struct Supervised<T, E> {
    succeeded: Vec<(usize, T)>,
    failures: Aggregate<E>,
}

// ===== impl Gather =====

impl<S: ChildSource, P> Gather<S, P> {
    fn new(source: S, policy: P) -> Self {
        Self {
            engine: Engine::new(source, usize::MAX),
            policy,
            panics: PanicPolicy::Capture,
            aborting: false,
            started: false,
            resume: None,
        }
    }

    fn with_policy<Q>(self, policy: Q) -> Gather<S, Q> {
        Gather {
            engine: self.engine,
            policy,
            panics: self.panics,
            aborting: false,
            started: false,
            resume: None,
        }
    }

    /// Applies `options`: a concurrency limit (children are then created lazily, at most `limit` alive at
    /// once) and the panic policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{gather, Error, GatherOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aqueduct_gather::ConfigError> {
    /// let options = GatherOptions::builder().limit(2).build()?;
    /// let results: Vec<Result<u8, Error<()>>> = gather((0..5).map(|n| async move { Ok::<_, ()>(n) })).with_options(options).await;
    /// assert_eq!(results.len(), 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(mut self, options: GatherOptions) -> Self {
        self.engine.set_limit(options.limit_or_max());
        self.panics = options.panics();
        self
    }
}

impl<R: FutureSource, P> Gather<InPlace<R>, P> {
    /// Runs each child as a tokio task (`tokio::spawn`), so the children run in parallel.
    ///
    /// The policy is unchanged and results still come back in input order. Children must be `Send + 'static`.
    /// Under a limit, a task is spawned only when a slot is free. The ambient deadline in force when a child
    /// is spawned is carried into its task.
    ///
    /// # Cancellation
    ///
    /// Dropping the gather aborts every task still running. Under fail-fast, the gather aborts the siblings
    /// of the first failure and waits until they have stopped before returning.
    ///
    /// # Panics
    ///
    /// Polling the gather outside a tokio runtime panics, as `tokio::spawn` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{gather, Error};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// let results: Vec<Result<u64, Error<()>>> =
    ///     gather((1..=4_u64).map(|n| async move { Ok::<_, ()>((1..=n * 1000).sum::<u64>()) })).spawned().await;
    /// assert_eq!(results[0].as_ref().ok(), Some(&500_500));
    /// # }
    /// ```
    pub fn spawned(self) -> Gather<Spawned<R>, P>
    where
        Spawned<R>: ChildSource,
    {
        Gather {
            engine: self.engine.map_source(InPlace::into_spawned),
            policy: self.policy,
            panics: self.panics,
            aborting: false,
            started: false,
            resume: None,
        }
    }
}

impl<S: ChildSource, T, E> Gather<S, CollectAll<T, E>> {
    /// Switches to fail-fast: the first failure in time cancels the siblings, then the gather returns.
    ///
    /// In place, the siblings are dropped at once (their destructors have run when the gather returns).
    /// Spawned, they are aborted and the gather waits until every task has stopped. The output is
    /// `Result<Vec<T>, Error<E>>`: every value in input order, or an [`Error::Aggregate`] whose first entry
    /// is the first failure in time (whatever its input position, unlike `try_join_all` above 30 inputs),
    /// followed by the siblings it cancelled ([`Error::Cancelled`]) or that failed while being cancelled.
    /// Futures not yet created under a limit are never created and are not reported.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{gather, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let all: Result<Vec<u8>, Error<()>> = gather((0..3).map(|n| async move { Ok::<_, ()>(n) })).fail_fast().await;
    /// assert_eq!(all.ok(), Some(vec![0, 1, 2]));
    /// # }
    /// ```
    pub fn fail_fast(self) -> Gather<S, FailFast<T, E>> {
        self.with_policy(FailFast { values: Vec::new(), errors: Vec::new() })
    }

    /// Switches to supervise: failures are isolated and reported, the other children go on.
    ///
    /// The output is a [`Supervised`] report. Add [`on_error`](Gather::on_error) to hear of each failure as
    /// it happens.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{gather, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let report = gather::<_, _, _, ()>([async { Ok::<u8, ()>(1) }]).supervise().await;
    /// assert!(report.is_success());
    /// # }
    /// ```
    pub fn supervise(self) -> Gather<S, Supervise<T, E, NoHook<E>>> {
        fn ignore<E>(_: usize, _: &Error<E>) {}
        self.with_policy(Supervise {
            values: Vec::new(),
            errors: Vec::new(),
            on_error: ignore::<E> as NoHook<E>,
        })
    }
}

impl<S: ChildSource, T, E, H> Gather<S, Supervise<T, E, H>> {
    /// Calls `on_error(index, &error)` for each failure as it happens (to log it, count it, alert).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::supervise;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut seen = Vec::new();
    /// let report = supervise::<_, u8, _, &str>([async { Err("down") }])
    ///     .on_error(|index, error| seen.push(format!("{index}: {error}")))
    ///     .await;
    /// assert_eq!(report.failures().len(), 1);
    /// assert_eq!(seen, ["0: down"]);
    /// # }
    /// ```
    pub fn on_error<G>(self, on_error: G) -> Gather<S, Supervise<T, E, G>>
    where
        G: FnMut(usize, &Error<E>),
    {
        let Supervise { values, errors, .. } = self.policy;
        Gather {
            engine: self.engine,
            policy: Supervise { values, errors, on_error },
            panics: self.panics,
            aborting: false,
            started: false,
            resume: None,
        }
    }
}

impl<S, P> Future for Gather<S, P>
where
    S: ChildSource,
    <S::Child as Child>::Output: IntoGatherResult<P::Value, P::Error>,
    P: Policy,
{
    type Output = P::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<P::Output> {
        let mut this = self.project();
        if !*this.started {
            *this.started = true;
            this.policy.reserve(this.engine.expected_len());
            if P::ORDER_FREE
                && S::RUNS_ON_ITS_OWN
                && *this.panics == PanicPolicy::Capture
                && this.engine.limit() == usize::MAX
            {
                // Spawned collect-all waits for every task anyway: awaiting them one by one, newest first,
                // returns the same output and costs less than tracking which one finished first.
                this.engine.as_mut().await_newest_first();
            }
        }
        loop {
            let Some((index, outcome)) = std::task::ready!(this.engine.as_mut().poll_next(cx))
            else {
                if let Some(payload) = this.resume.take() {
                    resume_unwind(payload);
                }
                return Poll::Ready(this.policy.finish());
            };
            let result = match outcome {
                ChildOutcome::Value(output) => output.into_gather_result(),
                ChildOutcome::Cancelled => Err(Error::Cancelled),
                ChildOutcome::Panicked(payload) => match this.panics {
                    PanicPolicy::Resume => {
                        if this.resume.is_none() {
                            *this.resume = Some(payload);
                            *this.aborting = true;
                            // The dropped siblings need no record: the panic is resumed instead of an output.
                            this.engine.as_mut().abort_all();
                        }
                        continue;
                    }
                    PanicPolicy::Capture => Err(Error::from_panic(Some(index), payload)),
                },
            };
            if this.resume.is_some() {
                continue;
            }
            if *this.aborting {
                this.policy.record_stopped(index, result);
            } else if this.policy.record(index, result) {
                *this.aborting = true;
                for dropped in this.engine.as_mut().abort_all() {
                    this.policy.record_stopped(dropped, Err(Error::Cancelled));
                }
            }
        }
    }
}

// ===== impl policies =====

/// Stores `value` at `index`, growing `slots` as needed (a stream's length is unknown up front).
fn store<V>(slots: &mut Vec<Option<V>>, index: usize, value: V) {
    if index >= slots.len() {
        slots.resize_with(index + 1, || None);
    }
    slots[index] = Some(value);
}

impl<T, E> CollectAll<T, E> {
    fn new() -> Self {
        Self { results: Vec::new() }
    }
}

impl<T, E> sealed_policy::Sealed for CollectAll<T, E> {}
impl<T, E> sealed_policy::Sealed for FailFast<T, E> {}
impl<T, E, H> sealed_policy::Sealed for Supervise<T, E, H> {}

impl<T, E> Policy for CollectAll<T, E> {
    type Value = T;
    type Error = E;
    type Output = Vec<Result<T, Error<E>>>;

    const ORDER_FREE: bool = true;

    fn reserve(&mut self, len: usize) {
        self.results.reserve(len);
    }

    fn record(&mut self, index: usize, result: Result<T, Error<E>>) -> bool {
        // Results go straight into the output: pushed when they come in input order, else into a slot that
        // holds `Cancelled` until its result comes (every child created records once).
        match index.cmp(&self.results.len()) {
            std::cmp::Ordering::Equal => self.results.push(result),
            std::cmp::Ordering::Less => {
                let placeholder = std::mem::replace(&mut self.results[index], result);
                // Most often the `Cancelled` placeholder, which owns nothing: skip the call to its destructor.
                if matches!(placeholder, Err(Error::Cancelled)) {
                    std::mem::forget(placeholder);
                }
            }
            std::cmp::Ordering::Greater => {
                self.results.resize_with(index, || Err(Error::Cancelled));
                self.results.push(result);
            }
        }
        false
    }

    fn record_stopped(&mut self, index: usize, result: Result<T, Error<E>>) {
        self.record(index, result);
    }

    fn finish(&mut self) -> Self::Output {
        std::mem::take(&mut self.results)
    }
}

impl<T, E> Policy for FailFast<T, E> {
    type Value = T;
    type Error = E;
    type Output = Result<Vec<T>, Error<E>>;

    const ORDER_FREE: bool = false;

    fn reserve(&mut self, len: usize) {
        self.values.reserve(len);
    }

    fn record(&mut self, index: usize, result: Result<T, Error<E>>) -> bool {
        match result {
            Ok(value) => {
                store(&mut self.values, index, value);
                false
            }
            Err(error) => {
                self.errors.push((index, error));
                true
            }
        }
    }

    fn record_stopped(&mut self, index: usize, result: Result<T, Error<E>>) {
        // A sibling that still succeeded while being cancelled is not a failure; its value is dropped.
        if let Err(error) = result {
            self.errors.push((index, error));
        }
    }

    fn finish(&mut self) -> Self::Output {
        if self.errors.is_empty() {
            Ok(std::mem::take(&mut self.values).into_iter().flatten().collect())
        } else {
            Err(Error::Aggregate(Aggregate::new(std::mem::take(&mut self.errors))))
        }
    }
}

impl<T, E, H> Policy for Supervise<T, E, H>
where
    H: FnMut(usize, &Error<E>),
{
    type Value = T;
    type Error = E;
    type Output = Supervised<T, E>;

    const ORDER_FREE: bool = false;

    fn reserve(&mut self, len: usize) {
        self.values.reserve(len);
    }

    fn record(&mut self, index: usize, result: Result<T, Error<E>>) -> bool {
        match result {
            Ok(value) => store(&mut self.values, index, value),
            Err(error) => {
                (self.on_error)(index, &error);
                self.errors.push((index, error));
            }
        }
        false
    }

    fn record_stopped(&mut self, index: usize, result: Result<T, Error<E>>) {
        self.record(index, result);
    }

    fn finish(&mut self) -> Self::Output {
        let succeeded = std::mem::take(&mut self.values)
            .into_iter()
            .enumerate()
            .filter_map(|(index, value)| value.map(|value| (index, value)))
            .collect();
        Supervised { succeeded, failures: Aggregate::new(std::mem::take(&mut self.errors)) }
    }
}

impl<T, E> fmt::Debug for CollectAll<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CollectAll")
            .field("finished", &self.results.iter().flatten().count())
            .finish()
    }
}

impl<T, E> fmt::Debug for FailFast<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FailFast")
            .field("failures", &self.errors.len())
            .finish_non_exhaustive()
    }
}

impl<T, E, H> fmt::Debug for Supervise<T, E, H> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Supervise")
            .field("failures", &self.errors.len())
            .finish_non_exhaustive()
    }
}

// ===== impl Supervised =====

impl<T, E> Supervised<T, E> {
    /// The successful children as `(input index, value)`, in input order.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::supervise;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let report = supervise::<_, _, _, ()>([async { Ok::<_, ()>('a') }]).await;
    /// assert_eq!(report.succeeded(), &[(0, 'a')]);
    /// # }
    /// ```
    pub fn succeeded(&self) -> &[(usize, T)] {
        &self.succeeded
    }

    /// The failures as `(input index, error)`, in the order they happened.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::supervise;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let report = supervise::<_, u8, _, &str>([async { Err("x") }]).await;
    /// assert_eq!(report.failures().first().and_then(|(_, error)| error.operation()), Some(&"x"));
    /// # }
    /// ```
    pub fn failures(&self) -> &Aggregate<E> {
        &self.failures
    }

    /// Returns `true` when no child failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::supervise;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(supervise::<_, _, _, ()>([async { Ok::<_, ()>(1) }]).await.is_success());
    /// # }
    /// ```
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }

    /// The successes (input order) and the failures (time order).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::supervise;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (succeeded, failures) = supervise::<_, _, _, ()>([async { Ok::<_, ()>(1) }]).await.into_parts();
    /// assert_eq!((succeeded.len(), failures.len()), (1, 0));
    /// # }
    /// ```
    pub fn into_parts(self) -> (Vec<(usize, T)>, Aggregate<E>) {
        (self.succeeded, self.failures)
    }

    /// Every value in input order when no child failed, else an [`Error::Aggregate`] of the failures.
    ///
    /// # Errors
    ///
    /// [`Error::Aggregate`] with every failure, in the order they happened, when at least one child failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::supervise;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let values = supervise::<_, _, _, ()>([1, 2].map(|n| async move { Ok::<_, ()>(n) })).await.into_result();
    /// assert_eq!(values.ok(), Some(vec![1, 2]));
    /// # }
    /// ```
    pub fn into_result(self) -> Result<Vec<T>, Error<E>> {
        if self.failures.is_empty() {
            Ok(self.succeeded.into_iter().map(|(_, value)| value).collect())
        } else {
            Err(Error::Aggregate(self.failures))
        }
    }
}

/// The first failure of an [`Error::Aggregate`] (the first in time), or the error itself otherwise.
///
/// Fail-fast gathers report an aggregate even when one child failed, as Python's `TaskGroup` raises an
/// `ExceptionGroup`; use this to get at the failure that cancelled the rest.
///
/// # Examples
///
/// ```
/// use aqueduct_gather::{first_error, try_gather, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let result: Result<Vec<u8>, Error<&str>> = try_gather([async { Err("refused") }]).await;
/// assert_eq!(first_error(result.unwrap_err()).operation(), Some(&"refused"));
/// # }
/// ```
pub fn first_error<E>(error: Error<E>) -> Error<E> {
    match error {
        Error::Aggregate(aggregate) if !aggregate.is_empty() => {
            aggregate.into_iter().next().map_or(Error::Cancelled, |(_, error)| error)
        }
        other => other,
    }
}
