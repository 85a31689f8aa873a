//! `race` (the first to finish wins) and `race_ok` (the first success wins, else every failure).

use std::any::Any;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::task::{Context, Poll};

use aqueduct_core::{Aggregate, Error};
use pin_project_lite::pin_project;

use crate::engine::sealed::{Child, ChildSource, FutureSource};
use crate::engine::{ChildOutcome, Engine, InPlace, IntoGatherResult, IterSource, Spawned};
use crate::options::{GatherOptions, PanicPolicy};

/// Runs `futures` concurrently and returns the result of the first one to finish, success or failure.
///
/// The losers are cancelled: dropped in place, or aborted and awaited until they stopped when
/// [`spawned`](Race::spawned). Python's `asyncio.wait(..., return_when=FIRST_COMPLETED)` plus the cancel
/// you would otherwise forget.
///
/// # Cancellation
///
/// Dropping the returned future drops (in place) or aborts (spawned) every child.
///
/// # Errors
///
/// The winner's error, [`Error::Panicked`] if the first to finish panicked, or [`Error::ContractViolation`]
/// when `futures` is empty (there is nothing to wait for).
///
/// # Panics
///
/// With [`PanicPolicy::Resume`], a winner's panic is resumed once the losers have stopped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_gather::{race, Error};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mirrors = [("eu", 40_u64), ("us", 10), ("ap", 25)];
/// let fastest: Result<&str, Error<()>> = race(mirrors.map(|(name, ms)| async move {
///     tokio::time::sleep(Duration::from_millis(ms)).await;
///     Ok::<_, ()>(name)
/// }))
/// .await;
/// assert_eq!(fastest.ok(), Some("us"));
/// # }
/// ```
pub fn race<I, T, X, E>(futures: I) -> Race<InPlace<IterSource<I::IntoIter>>, T, E>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    Race::new(InPlace::new(IterSource::new(futures.into_iter())), false)
}

/// Runs `futures` concurrently and returns the first success; fails only when every one failed.
///
/// The others are cancelled as soon as one succeeds (dropped in place, aborted and awaited when spawned).
/// Failures before that are kept and returned, in the order they happened, if no future succeeds.
///
/// # Cancellation
///
/// Dropping the returned future drops (in place) or aborts (spawned) every child.
///
/// # Errors
///
/// [`Error::Aggregate`] of every failure (first in time first) when no future succeeded, or
/// [`Error::ContractViolation`] when `futures` is empty.
///
/// # Panics
///
/// With [`PanicPolicy::Resume`], a child's panic is resumed once the others have stopped.
///
/// # Examples
///
/// ```
/// use aqueduct_gather::{race_ok, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let replicas = [Err("replica 0 down"), Ok(42), Ok(7)];
/// let answer: Result<u32, Error<&str>> = race_ok(replicas.map(|reply| async move { reply })).await;
/// assert!(matches!(answer, Ok(42) | Ok(7)));
///
/// let all_down: Result<u32, Error<&str>> = race_ok(["a", "b"].map(|name| async move { Err(name) })).await;
/// assert!(matches!(all_down, Err(Error::Aggregate(failures)) if failures.len() == 2));
/// # }
/// ```
pub fn race_ok<I, T, X, E>(futures: I) -> Race<InPlace<IterSource<I::IntoIter>>, T, E>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    Race::new(InPlace::new(IterSource::new(futures.into_iter())), true)
}

pin_project! {
    /// The future of [`race`] and [`race_ok`].
    ///
    /// # Cancellation
    ///
    /// Dropping it drops every in-place child and aborts every spawned one.
    #[must_use = "futures do nothing unless awaited"]
    pub struct Race<S, T, E>
    where
        S: ChildSource,
    {
        #[pin]
        engine: Engine<S>,
        panics: PanicPolicy,
        // `race_ok`: failures do not win, they are collected.
        first_success: bool,
        winner: Option<Result<T, Error<E>>>,
        failures: Vec<(usize, Error<E>)>,
        resume: Option<Box<dyn Any + Send + 'static>>,
        marker: PhantomData<fn() -> E>,
    }
}

impl<S: ChildSource, T, E> fmt::Debug for Race<S, T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Race")
            .field("first_success", &self.first_success)
            .field("decided", &self.winner.is_some())
            .field("failures", &self.failures.len())
            .finish_non_exhaustive()
    }
}

impl<S: ChildSource, T, E> Race<S, T, E> {
    fn new(source: S, first_success: bool) -> Self {
        Self {
            engine: Engine::new(source, usize::MAX),
            panics: PanicPolicy::Capture,
            first_success,
            winner: None,
            failures: Vec::new(),
            resume: None,
            marker: PhantomData,
        }
    }

    /// Applies `options`: a concurrency limit (contenders are created lazily) and the panic policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{race_ok, Error, GatherOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aqueduct_gather::ConfigError> {
    /// // Try replicas one at a time: the second is created only if the first fails.
    /// let options = GatherOptions::builder().limit(1).build()?;
    /// let answer: Result<u8, Error<&str>> =
    ///     race_ok([Err("down"), Ok(2)].map(|reply| async move { reply })).with_options(options).await;
    /// assert_eq!(answer.ok(), Some(2));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(mut self, options: GatherOptions) -> Self {
        self.engine.set_limit(options.limit_or_max());
        self.panics = options.panics();
        self
    }
}

impl<R: FutureSource, T, E> Race<InPlace<R>, T, E> {
    /// Runs each contender as a tokio task; the losers are aborted and awaited until they stopped.
    ///
    /// # Panics
    ///
    /// Polling the race outside a tokio runtime panics, as `tokio::spawn` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{race, Error};
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let first: Result<u8, Error<()>> = race([async { Ok::<_, ()>(1) }]).spawned().await;
    /// assert_eq!(first.ok(), Some(1));
    /// # }
    /// ```
    pub fn spawned(self) -> Race<Spawned<R>, T, E>
    where
        Spawned<R>: ChildSource,
    {
        Race {
            engine: self.engine.map_source(InPlace::into_spawned),
            panics: self.panics,
            first_success: self.first_success,
            winner: None,
            failures: Vec::new(),
            resume: None,
            marker: PhantomData,
        }
    }
}

impl<S, T, E> Future for Race<S, T, E>
where
    S: ChildSource,
    <S::Child as Child>::Output: IntoGatherResult<T, E>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let Some((index, outcome)) = std::task::ready!(this.engine.as_mut().poll_next(cx))
            else {
                if let Some(payload) = this.resume.take() {
                    resume_unwind(payload);
                }
                if let Some(winner) = this.winner.take() {
                    return Poll::Ready(winner);
                }
                if this.failures.is_empty() {
                    return Poll::Ready(Err(Error::ContractViolation {
                        message: "a race needs at least one future, it was given none".to_owned(),
                    }));
                }
                return Poll::Ready(Err(Error::Aggregate(Aggregate::new(std::mem::take(
                    this.failures,
                )))));
            };
            if this.winner.is_some() || this.resume.is_some() {
                // A loser that stopped after the race was decided.
                continue;
            }
            let result = match outcome {
                ChildOutcome::Value(output) => output.into_gather_result(),
                ChildOutcome::Cancelled => Err(Error::Cancelled),
                ChildOutcome::Panicked(payload) => match this.panics {
                    PanicPolicy::Capture => Err(Error::from_panic(Some(index), payload)),
                    PanicPolicy::Resume => {
                        *this.resume = Some(payload);
                        this.engine.as_mut().abort_all();
                        continue;
                    }
                },
            };
            match result {
                Err(error) if *this.first_success => this.failures.push((index, error)),
                decided => {
                    *this.winner = Some(decided);
                    this.engine.as_mut().abort_all();
                }
            }
        }
    }
}
