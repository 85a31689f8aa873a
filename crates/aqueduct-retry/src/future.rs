//! `retry(policy, op)` and its named future `Retry`, with the builder methods shared by every loop.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use aqueduct_core::Error;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::builders::hook_builders;
use crate::engine::{AttemptDeadline, Decision, Engine};
use crate::hooks::{AcceptValue, HintSource, Hooks, OnRetry, RetryIf};
use crate::policy::RetryPolicy;

/// Retries `op` under `policy`: calls it, and on a retryable failure sleeps and calls it again.
///
/// `policy` is a [`RetryPolicy`] or a reference to one (anything that [`Borrow`]s one). `op` is a closure
/// returning a future of `Result<T, X>` where `X: Into<Error<E>>`, so a plain error and an aqueduct
/// [`Error`] both work and stacking never nests (`retry(p, || timeout(d, call()))` is `Error<E>`).
/// The closure is `FnMut` and need not be `'static`: it may capture `&mut` state and update it before
/// building each attempt's future. When the attempt's future itself must borrow that state, use
/// [`retry_mut`](crate::retry_mut) with an `async` closure.
///
/// The returned [`Retry`] is a future; its builder methods set the retry predicate, server hints, a hook and
/// polling (`until`).
///
/// # Clock
///
/// The loop reads the clock only when it needs it: at the start of each attempt when the policy has a
/// deadline or an attempt timeout, or when an ambient deadline is set; otherwise first at the first failure.
/// So the success path of a plain policy costs no clock read, and [`Error::Exhausted`]'s `elapsed` is then
/// measured from the end of the first attempt.
///
/// # Cancellation
///
/// Dropping the future drops the attempt in flight (or the pending sleep); nothing runs afterwards and
/// nothing is spawned. The budget keeps what it recorded for attempts that completed.
///
/// # Errors
///
/// [`Error::Exhausted`] with the attempts made, the time elapsed, the [`StopReason`](crate::StopReason) and
/// the last error: attempts exhausted, the deadline reached (no sleep is started that would end past it),
/// the budget empty, a permanent error, or a server refusal. An attempt cut off by the attempt timeout or a
/// deadline fails with [`Error::Elapsed`], which is transient.
///
/// # Panics
///
/// A panic in `op`, in its future or in a hook propagates to the caller. Polling the future again after it
/// completed panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::{retry, Error, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::exponential(Duration::from_millis(100));
/// let mut calls = 0;
/// let value: Result<u32, Error<&str>> = retry(&policy, || {
///     calls += 1;
///     let this_call = calls;
///     async move { if this_call < 3 { Err("busy") } else { Ok(this_call) } }
/// })
/// .await;
/// assert_eq!(value.unwrap(), 3);
/// # }
/// ```
pub fn retry<P, Op, Fut, T, X, E>(policy: P, op: Op) -> Retry<P, Op, Fut, E>
where
    P: Borrow<RetryPolicy>,
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, X>>,
    X: Into<Error<E>>,
{
    Retry {
        policy,
        op,
        hooks: Hooks::default(),
        engine: Engine::new(),
        attempt: None,
        attempt_deadline: None,
        timer: None,
        phase: Phase::Start,
        error: PhantomData,
    }
}

pin_project! {
    /// The future returned by [`retry`]; its builder methods configure the loop before it is awaited.
    ///
    /// See [`retry`] for the semantics, `# Cancellation`, `# Errors` and `# Panics`.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Retry<P, Op, Fut, E, K = Hooks> {
        policy: P,
        op: Op,
        hooks: K,
        engine: Engine,
        #[pin]
        attempt: Option<Fut>,
        attempt_deadline: Option<AttemptDeadline>,
        timer: Option<Pin<Box<Sleep>>>,
        phase: Phase,
        error: PhantomData<fn() -> E>,
    }
}

/// Where the loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next poll starts an attempt.
    Start,
    /// An attempt is in flight.
    Attempting,
    /// Sleeping before the next attempt.
    Sleeping,
    /// Yielded once for a zero delay; the next poll starts an attempt.
    Yielded,
    /// Finished.
    Done,
}

impl<P, Op, Fut, E, K> fmt::Debug for Retry<P, Op, Fut, E, K>
where
    P: Borrow<RetryPolicy>,
{
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Retry")
            .field("policy", self.policy.borrow())
            .field("engine", &self.engine)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

hook_builders!(
    Retry<P, Op, Fut, E>,
    "use std::time::Duration;\nuse aqueduct_retry::{retry, Error, RetryPolicy};\n\n# #[tokio::main(flavor = \"current_thread\", start_paused = true)]\n# async fn main() {\nlet policy = RetryPolicy::constant(Duration::ZERO);\nlet result: Result<u32, Error<&str>> = retry(&policy, || async { Ok::<u32, &str>(7) })",
    "use std::time::Duration;\nuse aqueduct_retry::{retry, Error, RetryPolicy};\n\n# #[tokio::main(flavor = \"current_thread\", start_paused = true)]\n# async fn main() {\nlet policy = RetryPolicy::constant(Duration::ZERO);\nlet result: Result<u32, Error<std::io::Error>> = retry(&policy, || async { Ok::<u32, std::io::Error>(7) })",
    "\n    .await;\nassert_eq!(result.ok(), Some(7));\n# }"
);

impl<P, Op, Fut, E, K> Retry<P, Op, Fut, E, K> {
    fn map_hooks<K2>(self, map: impl FnOnce(K) -> K2) -> Retry<P, Op, Fut, E, K2> {
        Retry {
            policy: self.policy,
            op: self.op,
            hooks: map(self.hooks),
            engine: self.engine,
            attempt: self.attempt,
            attempt_deadline: self.attempt_deadline,
            timer: self.timer,
            phase: self.phase,
            error: PhantomData,
        }
    }
}

impl<P, Op, Fut, E, W, H, N, A> Retry<P, Op, Fut, E, Hooks<W, H, N, A>> {
    /// Polls until a value satisfies `accept`: an `Ok` value it rejects is retried like a failure, with the
    /// same backoff, attempts and deadline (the hook sees `error: None`).
    ///
    /// When the loop gives up, [`Error::Exhausted`] has no `last_error` if the last attempt returned a rejected value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{retry, Error, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy = RetryPolicy::builder().constant(Duration::from_secs(1)).max_attempts(10).build().unwrap();
    /// let mut polls = 0;
    /// let status: Result<&str, Error<()>> = retry(&policy, || {
    ///     polls += 1;
    ///     let ready = polls >= 4;
    ///     async move { Ok::<_, ()>(if ready { "done" } else { "pending" }) }
    /// })
    /// .until(|status| *status == "done")
    /// .await;
    /// assert_eq!(status.unwrap(), "done");
    /// # }
    /// ```
    pub fn until<T, X, U>(self, accept: U) -> Retry<P, Op, Fut, E, Hooks<W, H, N, U>>
    where
        Fut: Future<Output = Result<T, X>>,
        U: FnMut(&T) -> bool,
    {
        self.map_hooks(|hooks| hooks.with_accept(accept))
    }
}

impl<P, Op, Fut, T, X, E, W, H, N, A> Future for Retry<P, Op, Fut, E, Hooks<W, H, N, A>>
where
    P: Borrow<RetryPolicy>,
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, X>>,
    X: Into<Error<E>>,
    W: RetryIf<E>,
    H: HintSource<E>,
    N: OnRetry<E>,
    A: AcceptValue<T>,
{
    type Output = Result<T, Error<E>>;

    // Inlined so that the success path (one attempt, ready at once) compiles into the caller without moving the
    // output through memory; everything after a failure lives in the out-of-line helpers below.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let policy: &RetryPolicy = (*this.policy).borrow();
        // The phase is kept in a local and tested with plain branches (no jump table), in the order a loop
        // moves through them, and written back only when the poll returns.
        let mut phase = *this.phase;
        loop {
            if phase == Phase::Sleeping {
                if poll_timer(this.timer, context).is_pending() {
                    *this.phase = phase;
                    return Poll::Pending;
                }
                phase = Phase::Start;
            }
            if phase == Phase::Start || phase == Phase::Yielded {
                let deadline = this.engine.begin_attempt(policy);
                *this.attempt_deadline = deadline;
                this.attempt.set(Some((this.op)()));
                phase = Phase::Attempting;
                if let Some(deadline) = deadline {
                    arm(this.timer, deadline.at);
                }
            }
            let Some(attempt) = this.attempt.as_mut().as_pin_mut() else {
                panic!("`Retry` polled after completion")
            };
            let failure = match attempt.poll(context) {
                Poll::Ready(Ok(value)) => {
                    if this.hooks.accept.accept(&value) {
                        this.attempt.set(None);
                        *this.phase = Phase::Done;
                        this.engine.succeeded(policy);
                        return Poll::Ready(Ok(value));
                    }
                    None
                }
                Poll::Ready(Err(error)) => Some(error.into()),
                Poll::Pending => {
                    match attempt_timed_out(*this.attempt_deadline, this.timer, context) {
                        Some(error) => Some(error),
                        None => {
                            *this.phase = phase;
                            return Poll::Pending;
                        }
                    }
                }
            };
            this.attempt.set(None);
            if let Some(error) =
                after_failure(policy, this.engine, this.hooks, this.timer, &mut phase, failure)
            {
                *this.phase = Phase::Done;
                return Poll::Ready(Err(error));
            }
            if phase == Phase::Yielded {
                // A tokio sleep of zero still waits for the next timer tick (about 1 ms): yield instead.
                *this.phase = phase;
                context.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

/// After the attempt returned `Pending`: the elapsed error if its deadline passed, else `None`.
#[inline(never)]
fn attempt_timed_out<E>(
    deadline: Option<AttemptDeadline>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    context: &mut Context<'_>,
) -> Option<Error<E>> {
    let deadline = deadline?;
    match poll_timer(timer, context) {
        Poll::Ready(()) => Some(deadline.elapsed_error()),
        Poll::Pending => None,
    }
}

/// Decides what follows a failed attempt: returns the final error, or sets the phase to sleep or yield.
#[inline(never)]
fn after_failure<E, W, H, N, A>(
    policy: &RetryPolicy,
    engine: &mut Engine,
    hooks: &mut Hooks<W, H, N, A>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    phase: &mut Phase,
    failure: Option<Error<E>>,
) -> Option<Error<E>>
where
    W: RetryIf<E>,
    H: HintSource<E>,
    N: OnRetry<E>,
{
    match engine.failed(policy, hooks, failure) {
        Decision::Stop(error) => {
            *phase = Phase::Done;
            Some(error)
        }
        Decision::Retry(delay) if delay.is_zero() => {
            *phase = Phase::Yielded;
            None
        }
        Decision::Retry(delay) => {
            arm(timer, Instant::now() + delay);
            *phase = Phase::Sleeping;
            None
        }
    }
}

/// Polls the armed timer.
#[inline(never)]
fn poll_timer(timer: &mut Option<Pin<Box<Sleep>>>, context: &mut Context<'_>) -> Poll<()> {
    match timer {
        Some(timer) => timer.as_mut().poll(context),
        None => unreachable_phase(),
    }
}

/// Arms the reusable timer at `at`, creating it the first time (later resets avoid a new allocation).
#[inline(never)]
fn arm(timer: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match timer {
        Some(timer) => timer.as_mut().reset(at),
        None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
    }
}

#[cold]
fn unreachable_phase() -> ! {
    unreachable!("the retry loop's phase and its state disagree")
}
