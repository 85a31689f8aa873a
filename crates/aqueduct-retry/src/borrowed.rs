//! `retry_mut(policy, op)`: the retry loop for `async` closures whose attempts borrow the closure's `&mut` state.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

use aqueduct_core::Error;

use crate::builders::hook_builders;
use crate::engine::{Decision, Engine, YieldOnce};
use crate::hooks::{AcceptValue, HintSource, Hooks, OnRetry, RetryIf};
use crate::policy::RetryPolicy;

/// Retries an `async` closure (`AsyncFnMut`) whose attempts may borrow state mutably, then [`run`](RetryMut::run).
///
/// [`retry`](crate::retry) takes `FnMut() -> Fut`, where each attempt's future must not borrow from the
/// closure: it can update captured `&mut` state before building the future, but not hold the borrow across
/// an `.await`. `retry_mut` lifts that limit: `async || { conn.query(&mut buffer).await }` works, as the
/// closure lends its captures to each attempt in turn. Plain closures returning futures work too.
///
/// The loop behaves exactly like [`retry`](crate::retry) (same policy, hooks, deadlines and errors); its
/// future is returned by [`run`](RetryMut::run) and cannot be named (a limit of async closures on stable Rust).
///
/// # Cancellation
///
/// Dropping the future returned by `run` drops the attempt in flight or the pending sleep; the borrowed
/// state is released and keeps whatever the attempts did to it.
///
/// # Errors
///
/// As [`retry`](crate::retry): [`Error::Exhausted`] with the attempts, elapsed time, reason and last error.
///
/// # Panics
///
/// A panic in the closure, its future or a hook propagates to the caller.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::{retry_mut, Error, RetryPolicy};
///
/// struct Connection { sent: Vec<u32> }
/// impl Connection {
///     async fn send(&mut self, value: u32) -> Result<usize, &'static str> {
///         self.sent.push(value);
///         if self.sent.len() < 3 { Err("reset") } else { Ok(self.sent.len()) }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut connection = Connection { sent: Vec::new() };
/// let policy = RetryPolicy::constant(Duration::from_millis(10));
/// let sent: Result<usize, Error<&str>> = retry_mut(&policy, async || connection.send(42).await).run().await;
/// assert_eq!(sent.unwrap(), 3);
/// assert_eq!(connection.sent, [42, 42, 42]);
/// # }
/// ```
pub fn retry_mut<P, Op, T, X, E>(policy: P, op: Op) -> RetryMut<P, Op, E>
where
    P: Borrow<RetryPolicy>,
    Op: AsyncFnMut() -> Result<T, X>,
    X: Into<Error<E>>,
{
    RetryMut { policy, op, hooks: Hooks::default(), error: PhantomData }
}

/// A retry loop over an `async` closure, configured by its builder methods and started by [`run`](Self::run).
///
/// See [`retry_mut`].
#[must_use = "a retry loop does nothing until `run().await`"]
pub struct RetryMut<P, Op, E, K = Hooks> {
    policy: P,
    op: Op,
    hooks: K,
    error: PhantomData<fn() -> E>,
}

impl<P: Borrow<RetryPolicy>, Op, E, K> fmt::Debug for RetryMut<P, Op, E, K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RetryMut")
            .field("policy", self.policy.borrow())
            .finish_non_exhaustive()
    }
}

hook_builders!(
    RetryMut<P, Op, E>,
    "use std::time::Duration;\nuse aqueduct_retry::{retry_mut, Error, RetryPolicy};\n\n# #[tokio::main(flavor = \"current_thread\", start_paused = true)]\n# async fn main() {\nlet policy = RetryPolicy::constant(Duration::ZERO);\nlet result: Result<u32, Error<&str>> = retry_mut(&policy, async || Ok::<u32, &str>(7))",
    "use std::time::Duration;\nuse aqueduct_retry::{retry_mut, Error, RetryPolicy};\n\n# #[tokio::main(flavor = \"current_thread\", start_paused = true)]\n# async fn main() {\nlet policy = RetryPolicy::constant(Duration::ZERO);\nlet result: Result<u32, Error<std::io::Error>> = retry_mut(&policy, async || Ok::<u32, std::io::Error>(7))",
    "\n    .run()\n    .await;\nassert_eq!(result.ok(), Some(7));\n# }"
);

impl<P, Op, E, K> RetryMut<P, Op, E, K> {
    fn map_hooks<K2>(self, map: impl FnOnce(K) -> K2) -> RetryMut<P, Op, E, K2> {
        RetryMut { policy: self.policy, op: self.op, hooks: map(self.hooks), error: PhantomData }
    }
}

impl<P, Op, E, W, H, N, A> RetryMut<P, Op, E, Hooks<W, H, N, A>> {
    /// Polls until a value satisfies `accept`; see [`Retry::until`](crate::Retry::until).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{retry_mut, Error, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let mut reads = Vec::new();
    /// let policy = RetryPolicy::builder().constant(Duration::from_millis(5)).max_attempts(5).build().unwrap();
    /// let value: Result<usize, Error<()>> = retry_mut(&policy, async || {
    ///     reads.push(());
    ///     Ok::<_, ()>(reads.len())
    /// })
    /// .until(|count| *count == 3)
    /// .run()
    /// .await;
    /// assert_eq!(value.unwrap(), 3);
    /// # }
    /// ```
    pub fn until<T, X, U>(self, accept: U) -> RetryMut<P, Op, E, Hooks<W, H, N, U>>
    where
        Op: AsyncFnMut() -> Result<T, X>,
        U: FnMut(&T) -> bool,
    {
        self.map_hooks(|hooks| hooks.with_accept(accept))
    }

    /// Runs the loop. See [`retry_mut`] for `# Cancellation`, `# Errors` and `# Panics`.
    ///
    /// # Errors
    ///
    /// [`Error::Exhausted`] when the loop gives up (see [`retry`](crate::retry)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{retry_mut, Error, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy = RetryPolicy::constant(Duration::from_millis(1));
    /// let result: Result<(), Error<&str>> = retry_mut(&policy, async || Err("down")).run().await;
    /// assert!(result.unwrap_err().is_exhausted());
    /// # }
    /// ```
    pub async fn run<T, X>(mut self) -> Result<T, Error<E>>
    where
        P: Borrow<RetryPolicy>,
        Op: AsyncFnMut() -> Result<T, X>,
        X: Into<Error<E>>,
        W: RetryIf<E>,
        H: HintSource<E>,
        N: OnRetry<E>,
        A: AcceptValue<T>,
    {
        let policy: &RetryPolicy = self.policy.borrow();
        let mut engine = Engine::new();
        loop {
            let failure = match engine.begin_attempt(policy) {
                None => match (self.op)().await {
                    Ok(value) if self.hooks.accept.accept(&value) => {
                        engine.succeeded(policy);
                        return Ok(value);
                    }
                    Ok(_) => None,
                    Err(error) => Some(error.into()),
                },
                Some(deadline) => match tokio::time::timeout_at(deadline.at, (self.op)()).await {
                    Ok(Ok(value)) if self.hooks.accept.accept(&value) => {
                        engine.succeeded(policy);
                        return Ok(value);
                    }
                    Ok(Ok(_)) => None,
                    Ok(Err(error)) => Some(error.into()),
                    Err(_) => Some(deadline.elapsed_error()),
                },
            };
            match engine.failed(policy, &mut self.hooks, failure) {
                Decision::Stop(error) => return Err(error),
                Decision::Retry(delay) if delay.is_zero() => YieldOnce::default().await,
                Decision::Retry(delay) => tokio::time::sleep(delay).await,
            }
        }
    }
}
