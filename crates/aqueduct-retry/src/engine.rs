//! The retry decisions shared by the async, borrowing and blocking loops: clock, deadlines, delays, stops.

use std::time::Duration;

use aqueduct_core::{Deadline, Elapsed, Error, StopReason, current_deadline};
use tokio::time::Instant;

use crate::hooks::{HintSource, Hooks, OnRetry, RetryIf, RetryState, ServerHint};
use crate::policy::RetryPolicy;

/// The per-loop state: attempts, when the clock started, the previous delay and the lazily seeded RNG.
#[derive(Debug)]
pub(crate) struct Engine {
    attempts: u32,
    started: Option<Instant>,
    previous_delay: Duration,
    rng: Option<fastrand::Rng>,
}

/// The deadline of one attempt and where it came from, to describe it if it passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptDeadline {
    pub(crate) at: Instant,
    started: Instant,
    timeout: Option<Duration>,
    ambient: bool,
}

/// What the loop does after a failed (or unaccepted) attempt.
pub(crate) enum Decision<E> {
    /// Sleep this long (zero: only yield), then try again.
    Retry(Duration),
    /// Give up with this error.
    Stop(Error<E>),
}

impl Engine {
    pub(crate) const fn new() -> Self {
        Self { attempts: 0, started: None, previous_delay: Duration::ZERO, rng: None }
    }

    /// Starts an attempt and returns its deadline, if any: min(attempt timeout, overall deadline, ambient).
    ///
    /// Reads the clock only when one of the three exists, so the success path of a plain policy reads none.
    #[inline]
    pub(crate) fn begin_attempt(&mut self, policy: &RetryPolicy) -> Option<AttemptDeadline> {
        self.attempts = self.attempts.saturating_add(1);
        let ambient = current_deadline();
        if !policy.needs_clock() && ambient.is_none() {
            return None;
        }
        self.begin_attempt_slow(policy, ambient)
    }

    #[cold]
    fn begin_attempt_slow(
        &mut self,
        policy: &RetryPolicy,
        ambient: Option<Instant>,
    ) -> Option<AttemptDeadline> {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        let mut best: Option<AttemptDeadline> = None;
        let mut consider =
            |at: Instant, timeout: Option<Duration>, ambient: bool, since: Instant| {
                if best.is_none_or(|current| at < current.at) {
                    best = Some(AttemptDeadline { at, started: since, timeout, ambient });
                }
            };
        if let Some(timeout) = policy.attempt_timeout {
            consider(now + timeout, Some(timeout), false, now);
        }
        if let Some(deadline) = policy.deadline {
            consider(started + deadline, Some(deadline), false, started);
        }
        if let Some(at) = ambient {
            consider(at, None, true, now);
        }
        best
    }

    /// Records a success in the budget.
    #[inline]
    pub(crate) fn succeeded(&self, policy: &RetryPolicy) {
        if let Some(budget) = &policy.budget {
            budget.record_success();
        }
    }

    /// Decides what to do after attempt number `self.attempts` failed with `error` (or returned a value that was
    /// not accepted, when `error` is `None`).
    pub(crate) fn failed<E, W, H, N, A>(
        &mut self,
        policy: &RetryPolicy,
        hooks: &mut Hooks<W, H, N, A>,
        error: Option<Error<E>>,
    ) -> Decision<E>
    where
        W: RetryIf<E>,
        H: HintSource<E>,
        N: OnRetry<E>,
    {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        let elapsed = now.saturating_duration_since(started);
        // Only failures spend the budget: a value that `until` rejected is polling, not a failure.
        let budget_allows = match (&policy.budget, &error) {
            (Some(budget), Some(_)) => budget.record_failure(),
            _ => true,
        };
        let attempts = self.attempts;
        let stop = |reason: StopReason, error: Option<Error<E>>| {
            Decision::Stop(Error::Exhausted {
                attempts,
                elapsed,
                reason,
                last_error: error.map(Box::new),
            })
        };

        let retryable = error.as_ref().is_none_or(|error| hooks.when.should_retry(error));
        if !retryable {
            return stop(StopReason::Permanent, error);
        }
        if attempts >= policy.max_attempts {
            return stop(StopReason::Attempts, error);
        }
        let hint = error.as_ref().and_then(|error| hooks.hint.hint(error));
        let mut delay = self.next_delay(policy);
        match hint {
            Some(ServerHint::DoNotRetry) => return stop(StopReason::ServerRefused, error),
            Some(ServerHint::RetryAfter(hinted)) => delay = policy.hints.apply(delay, hinted),
            None => {}
        }
        if let Some(deadline) = Deadline::clamp(policy.deadline.map(|deadline| started + deadline))
        {
            // Never start a sleep that would end at or past the deadline: the next attempt would have no time.
            if now + delay >= deadline.at() {
                return stop(StopReason::Deadline, error);
            }
        }
        if !budget_allows {
            return stop(StopReason::Budget, error);
        }
        hooks.notify.on_retry(&RetryState {
            attempt: attempts,
            elapsed,
            next_delay: delay,
            error: error.as_ref(),
        });
        Decision::Retry(delay)
    }

    /// The jittered, capped backoff before the next attempt.
    fn next_delay(&mut self, policy: &RetryPolicy) -> Duration {
        let retry_index = self.attempts.saturating_sub(1);
        let cap = policy.max_delay;
        let base = policy.backoff.base_delay(retry_index, cap);
        let initial = policy.backoff.initial();
        let delay = if matches!(policy.jitter, crate::policy::Jitter::None) {
            base
        } else {
            let rng = self.rng.get_or_insert_with(|| {
                policy.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed)
            });
            let previous =
                if self.previous_delay.is_zero() { initial } else { self.previous_delay };
            policy.jitter.apply(base, initial, previous, cap, rng)
        };
        self.previous_delay = delay;
        delay
    }
}

impl AttemptDeadline {
    /// The error of an attempt cut off at this deadline.
    pub(crate) fn elapsed_error<E>(&self) -> Error<E> {
        let waited = Instant::now().saturating_duration_since(self.started);
        Error::elapsed(Elapsed::new(self.timeout, self.at, waited).with_ambient(self.ambient))
    }
}

/// Yields once to the scheduler: wakes itself and returns `Pending` the first time it is polled.
///
/// This is what a zero delay costs instead of a timer (a tokio sleep of zero waits for the next tick, about 1 ms).
#[derive(Debug, Default)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub(crate) struct YieldOnce {
    yielded: bool,
}

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.yielded {
            return std::task::Poll::Ready(());
        }
        self.yielded = true;
        context.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
