//! What a retry loop asks the caller: retry this error? any server hint? accept this value? and who to tell.

use std::fmt;
use std::time::Duration;

use aqueduct_core::{Classify, Error, Transience};

/// The state of a retry loop handed to [`notify`](crate::Retry::notify) hooks, just before it sleeps.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::{retry, Error, Jitter, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::builder().constant(Duration::from_millis(10)).jitter(Jitter::None).build().unwrap();
/// let mut seen = Vec::new();
/// let result: Result<(), Error<&str>> = retry(&policy, || async { Err("down") })
///     .notify(|state| seen.push((state.attempt, state.next_delay)))
///     .await;
/// assert!(result.unwrap_err().is_exhausted());
/// assert_eq!(seen, [(1, Duration::from_millis(10)), (2, Duration::from_millis(10))]);
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryState<'a, E> {
    /// The attempts made so far, the failed one included (1 after the first failure).
    pub attempt: u32,
    /// Time since the loop started measuring (see [`Retry`](crate::Retry), "Clock").
    pub elapsed: Duration,
    /// How long the loop will sleep before the next attempt (zero means it only yields).
    pub next_delay: Duration,
    /// The error of the failed attempt, or `None` when the attempt returned a value that
    /// [`until`](crate::Retry::until) did not accept.
    pub error: Option<&'a Error<E>>,
}

/// What a server said about retrying: wait this long, or do not retry at all.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::ServerHint;
///
/// let hint: ServerHint = Duration::from_secs(2).into();
/// assert_eq!(hint, ServerHint::RetryAfter(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerHint {
    /// Retry after this long (HTTP `Retry-After`, a rate limiter's `retry_after`, gRPC pushback).
    RetryAfter(Duration),
    /// Do not retry (gRPC's negative pushback); the loop stops with
    /// [`StopReason::ServerRefused`](crate::StopReason::ServerRefused).
    DoNotRetry,
}

impl From<Duration> for ServerHint {
    fn from(delay: Duration) -> Self {
        Self::RetryAfter(delay)
    }
}

/// Decides whether a failed attempt is worth retrying. Implemented by closures `FnMut(&Error<E>) -> bool`.
pub trait RetryIf<E> {
    /// `true` to retry after `error`, `false` to stop with [`StopReason::Permanent`](crate::StopReason::Permanent).
    fn should_retry(&mut self, error: &Error<E>) -> bool;
}

impl<E, F: FnMut(&Error<E>) -> bool> RetryIf<E> for F {
    fn should_retry(&mut self, error: &Error<E>) -> bool {
        self(error)
    }
}

/// The default retry predicate: aqueduct-core's classification of its own variants, with every operation
/// error treated as transient (see [`Error::transience_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRetryIf;

impl<E> RetryIf<E> for DefaultRetryIf {
    fn should_retry(&mut self, error: &Error<E>) -> bool {
        error.transience_with(|_| Transience::Transient).is_transient()
    }
}

/// The predicate set by [`classify_with`](crate::Retry::classify_with): core's classification, asking a closure
/// about operation errors.
#[derive(Clone, Copy)]
pub struct ClassifyWith<F>(pub(crate) F);

impl<F> fmt::Debug for ClassifyWith<F> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClassifyWith(..)")
    }
}

impl<E, F: FnMut(&E) -> Transience> RetryIf<E> for ClassifyWith<F> {
    fn should_retry(&mut self, error: &Error<E>) -> bool {
        error.transience_with(&mut self.0).is_transient()
    }
}

/// The predicate and hint source set by [`classified`](crate::Retry::classified): the operation error's own
/// [`Classify`] implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Classified;

impl<E: Classify> RetryIf<E> for Classified {
    fn should_retry(&mut self, error: &Error<E>) -> bool {
        error.transience().is_transient()
    }
}

impl<E: Classify> HintSource<E> for Classified {
    fn hint(&mut self, error: &Error<E>) -> Option<ServerHint> {
        Classify::retry_after(error).map(ServerHint::RetryAfter)
    }
}

/// Reads a server hint from a failed attempt's error. Implemented by closures
/// `FnMut(&Error<E>) -> Option<ServerHint>`.
pub trait HintSource<E> {
    /// The server's hint, if the error carries one.
    fn hint(&mut self, error: &Error<E>) -> Option<ServerHint>;
}

impl<E, F: FnMut(&Error<E>) -> Option<ServerHint>> HintSource<E> for F {
    fn hint(&mut self, error: &Error<E>) -> Option<ServerHint> {
        self(error)
    }
}

/// The default hint source: [`Error::retry_after`], the hint of [`Error::RateLimited`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHint;

impl<E> HintSource<E> for DefaultHint {
    fn hint(&mut self, error: &Error<E>) -> Option<ServerHint> {
        error.retry_after().map(ServerHint::RetryAfter)
    }
}

/// The hint source set by [`retry_after`](crate::Retry::retry_after): a closure returning an optional delay,
/// with [`Error::retry_after`] as the fallback.
#[derive(Clone, Copy)]
pub struct RetryAfterFn<F>(pub(crate) F);

impl<F> fmt::Debug for RetryAfterFn<F> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("RetryAfterFn(..)")
    }
}

impl<E, F: FnMut(&Error<E>) -> Option<Duration>> HintSource<E> for RetryAfterFn<F> {
    fn hint(&mut self, error: &Error<E>) -> Option<ServerHint> {
        (self.0)(error).or_else(|| error.retry_after()).map(ServerHint::RetryAfter)
    }
}

/// Told about every retry before its sleep. Implemented by closures `FnMut(&RetryState<'_, E>)`.
pub trait OnRetry<E> {
    /// Called with the state of the loop once it decided to retry.
    fn on_retry(&mut self, state: &RetryState<'_, E>);
}

impl<E, F: FnMut(&RetryState<'_, E>)> OnRetry<E> for F {
    fn on_retry(&mut self, state: &RetryState<'_, E>) {
        self(state);
    }
}

/// The default hook: does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl<E> OnRetry<E> for NoHook {
    fn on_retry(&mut self, _state: &RetryState<'_, E>) {}
}

/// Decides whether a successful value ends the loop (polling). Implemented by closures `FnMut(&T) -> bool`.
pub trait AcceptValue<T> {
    /// `true` to return `value`, `false` to retry as if the attempt failed.
    fn accept(&mut self, value: &T) -> bool;
}

impl<T, F: FnMut(&T) -> bool> AcceptValue<T> for F {
    fn accept(&mut self, value: &T) -> bool {
        self(value)
    }
}

/// The default: every `Ok` value ends the loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl<T> AcceptValue<T> for AcceptAll {
    #[inline]
    fn accept(&mut self, _value: &T) -> bool {
        true
    }
}

/// The caller's answers to a retry loop: retry predicate `W`, hint source `H`, hook `N`, value acceptor `A`.
///
/// You never build one: the builder methods of [`Retry`](crate::Retry), [`RetryMut`](crate::RetryMut) and
/// [`RetryBlocking`](crate::RetryBlocking) fill it in. It appears only in their type parameters.
#[derive(Clone, Copy, Default)]
pub struct Hooks<W = DefaultRetryIf, H = DefaultHint, N = NoHook, A = AcceptAll> {
    pub(crate) when: W,
    pub(crate) hint: H,
    pub(crate) notify: N,
    pub(crate) accept: A,
}

impl<W, H, N, A> fmt::Debug for Hooks<W, H, N, A> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Hooks").finish_non_exhaustive()
    }
}

impl<W, H, N, A> Hooks<W, H, N, A> {
    pub(crate) fn with_when<W2>(self, when: W2) -> Hooks<W2, H, N, A> {
        Hooks { when, hint: self.hint, notify: self.notify, accept: self.accept }
    }

    pub(crate) fn with_hint<H2>(self, hint: H2) -> Hooks<W, H2, N, A> {
        Hooks { when: self.when, hint, notify: self.notify, accept: self.accept }
    }

    pub(crate) fn with_notify<N2>(self, notify: N2) -> Hooks<W, H, N2, A> {
        Hooks { when: self.when, hint: self.hint, notify, accept: self.accept }
    }

    pub(crate) fn with_accept<A2>(self, accept: A2) -> Hooks<W, H, N, A2> {
        Hooks { when: self.when, hint: self.hint, notify: self.notify, accept }
    }
}
