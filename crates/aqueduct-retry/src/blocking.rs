//! `retry_blocking(policy, op)`: the retry loop for synchronous callers, sleeping the thread between attempts.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use aqueduct_core::Error;

use crate::builders::hook_builders;
use crate::engine::{Decision, Engine};
use crate::hooks::{AcceptValue, HintSource, Hooks, OnRetry, RetryIf};
use crate::policy::RetryPolicy;

/// Retries a synchronous operation under `policy`, sleeping the thread between attempts; then [`call`](RetryBlocking::call).
///
/// The same policy, hooks and errors as [`retry`](crate::retry), with two differences that come from
/// synchronous code: the attempt timeout cannot interrupt a running call, so it is not applied (the overall
/// deadline still stops the loop and no sleep is started past it), and no ambient deadline exists outside a
/// future. A zero delay retries at once. Do not call it on an async runtime thread: use
/// `tokio::task::spawn_blocking`, or [`retry`](crate::retry).
///
/// # Errors
///
/// [`Error::Exhausted`] when the loop gives up, as for [`retry`](crate::retry).
///
/// # Panics
///
/// A panic in the operation or a hook propagates to the caller.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::{retry_blocking, Error, RetryPolicy};
///
/// let policy = RetryPolicy::constant(Duration::from_millis(1));
/// let mut calls = 0;
/// let value: Result<u32, Error<&str>> = retry_blocking(&policy, || {
///     calls += 1;
///     if calls < 2 { Err("busy") } else { Ok(calls) }
/// })
/// .call();
/// assert_eq!(value.unwrap(), 2);
/// ```
pub fn retry_blocking<P, Op, T, X, E>(policy: P, op: Op) -> RetryBlocking<P, Op, E, fn(Duration)>
where
    P: Borrow<RetryPolicy>,
    Op: FnMut() -> Result<T, X>,
    X: Into<Error<E>>,
{
    RetryBlocking {
        policy,
        op,
        sleep: std::thread::sleep,
        hooks: Hooks::default(),
        error: PhantomData,
    }
}

/// A synchronous retry loop, configured by its builder methods and run by [`call`](Self::call).
///
/// See [`retry_blocking`].
#[must_use = "a retry loop does nothing until `call()`"]
pub struct RetryBlocking<P, Op, E, S, K = Hooks> {
    policy: P,
    op: Op,
    sleep: S,
    hooks: K,
    error: PhantomData<fn() -> E>,
}

impl<P: Borrow<RetryPolicy>, Op, E, S, K> fmt::Debug for RetryBlocking<P, Op, E, S, K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RetryBlocking")
            .field("policy", self.policy.borrow())
            .finish_non_exhaustive()
    }
}

hook_builders!(
    RetryBlocking<P, Op, E, S>,
    "use std::time::Duration;\nuse aqueduct_retry::{retry_blocking, Error, RetryPolicy};\n\nlet policy = RetryPolicy::constant(Duration::ZERO);\nlet result: Result<u32, Error<&str>> = retry_blocking(&policy, || Ok::<u32, &str>(7))",
    "use std::time::Duration;\nuse aqueduct_retry::{retry_blocking, Error, RetryPolicy};\n\nlet policy = RetryPolicy::constant(Duration::ZERO);\nlet result: Result<u32, Error<std::io::Error>> = retry_blocking(&policy, || Ok::<u32, std::io::Error>(7))",
    "\n    .call();\nassert_eq!(result.ok(), Some(7));"
);

impl<P, Op, E, S, K> RetryBlocking<P, Op, E, S, K> {
    fn map_hooks<K2>(self, map: impl FnOnce(K) -> K2) -> RetryBlocking<P, Op, E, S, K2> {
        RetryBlocking {
            policy: self.policy,
            op: self.op,
            sleep: self.sleep,
            hooks: map(self.hooks),
            error: PhantomData,
        }
    }

    /// Sleeps with `sleep` instead of `std::thread::sleep` (a test double, or a sleep that also watches a
    /// shutdown flag).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{retry_blocking, Error, Jitter, RetryPolicy};
    ///
    /// let policy = RetryPolicy::builder().exponential(Duration::from_millis(10), 2.0).jitter(Jitter::None).build().unwrap();
    /// let mut slept = Vec::new();
    /// let result: Result<(), Error<&str>> = retry_blocking(&policy, || Err("down")).sleep_with(|delay| slept.push(delay)).call();
    /// assert!(result.is_err());
    /// assert_eq!(slept, [Duration::from_millis(10), Duration::from_millis(20)]);
    /// ```
    pub fn sleep_with<S2>(self, sleep: S2) -> RetryBlocking<P, Op, E, S2, K>
    where
        S2: FnMut(Duration),
    {
        RetryBlocking {
            policy: self.policy,
            op: self.op,
            sleep,
            hooks: self.hooks,
            error: PhantomData,
        }
    }
}

impl<P, Op, E, S, W, H, N, A> RetryBlocking<P, Op, E, S, Hooks<W, H, N, A>> {
    /// Polls until a value satisfies `accept`; see [`Retry::until`](crate::Retry::until).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{retry_blocking, Error, RetryPolicy};
    ///
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).max_attempts(5).build().unwrap();
    /// let mut count = 0;
    /// let value: Result<u32, Error<()>> = retry_blocking(&policy, || { count += 1; Ok::<_, ()>(count) }).until(|count| *count == 4).call();
    /// assert_eq!(value.unwrap(), 4);
    /// ```
    pub fn until<T, X, U>(self, accept: U) -> RetryBlocking<P, Op, E, S, Hooks<W, H, N, U>>
    where
        Op: FnMut() -> Result<T, X>,
        U: FnMut(&T) -> bool,
    {
        self.map_hooks(|hooks| hooks.with_accept(accept))
    }

    /// Runs the loop on this thread. See [`retry_blocking`].
    ///
    /// # Errors
    ///
    /// [`Error::Exhausted`] when the loop gives up.
    ///
    /// # Panics
    ///
    /// A panic in the operation, a hook or the sleep function propagates.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{retry_blocking, Error, RetryPolicy, StopReason};
    ///
    /// let policy = RetryPolicy::builder().constant(Duration::ZERO).max_attempts(2).build().unwrap();
    /// let result: Result<(), Error<&str>> = retry_blocking(&policy, || Err("down")).call();
    /// assert!(matches!(result, Err(Error::Exhausted { attempts: 2, reason: StopReason::Attempts, .. })));
    /// ```
    pub fn call<T, X>(mut self) -> Result<T, Error<E>>
    where
        P: Borrow<RetryPolicy>,
        Op: FnMut() -> Result<T, X>,
        X: Into<Error<E>>,
        S: FnMut(Duration),
        W: RetryIf<E>,
        H: HintSource<E>,
        N: OnRetry<E>,
        A: AcceptValue<T>,
    {
        let policy: &RetryPolicy = self.policy.borrow();
        let mut engine = Engine::new();
        loop {
            // The attempt deadline cannot interrupt synchronous code; beginning the attempt still starts the clock.
            let _ = engine.begin_attempt(policy);
            let failure = match (self.op)() {
                Ok(value) if self.hooks.accept.accept(&value) => {
                    engine.succeeded(policy);
                    return Ok(value);
                }
                Ok(_) => None,
                Err(error) => Some(error.into()),
            };
            match engine.failed(policy, &mut self.hooks, failure) {
                Decision::Stop(error) => return Err(error),
                Decision::Retry(delay) if delay.is_zero() => {}
                Decision::Retry(delay) => (self.sleep)(delay),
            }
        }
    }
}
