//! `RetryPolicy` and its builder: backoff, jitter, cap, attempts, deadlines, hints, budget and seed.

use std::time::Duration;

use crate::budget::RetryBudget;

/// How the base delay grows from one retry to the next, before jitter and the cap.
///
/// `n` counts retries from zero: the delay before the second attempt uses `n = 0`.
///
/// | backoff | delay before retry `n` |
/// |---|---|
/// | `Constant { delay }` | `delay` |
/// | `Exponential { initial, factor }` | `initial × factor^n` |
/// | `Fibonacci { initial }` | `initial × fib(n + 1)`: 1, 1, 2, 3, 5, 8, … times `initial` |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::Backoff;
///
/// let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
/// assert_eq!(backoff.base_delay(3, Duration::from_secs(60)), Duration::from_millis(800));
/// // The cap bounds every delay.
/// assert_eq!(backoff.base_delay(30, Duration::from_secs(60)), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same delay before every retry.
    Constant {
        /// The delay.
        delay: Duration,
    },
    /// `initial × factor^n`: the classic capped exponential backoff.
    Exponential {
        /// The delay before the first retry.
        initial: Duration,
        /// The growth factor, at least 1 and finite.
        factor: f64,
    },
    /// `initial × fib(n + 1)`: grows more gently than doubling.
    Fibonacci {
        /// The delay before the first and the second retry.
        initial: Duration,
    },
}

/// What randomness is added to each delay, so that many clients do not retry in lockstep.
///
/// With `b = min(cap, backoff(n))`, each retry sleeps:
///
/// | jitter | delay | character |
/// |---|---|---|
/// | `None` | `b` | deterministic; clients that failed together retry together |
/// | `Full` (default) | `U(0, b)` | the least total work in contention (AWS, gRPC A6) |
/// | `Equal` | `b/2 + U(0, b/2)` | never shorter than half the backoff |
/// | `Decorrelated` | `U(base, 3 × previous)` | grows from the previous *jittered* delay; `base` is the initial delay |
///
/// The cap (`max_delay`) is applied **after** jitter, so no delay ever exceeds it.
///
/// # Examples
///
/// ```
/// use aqueduct_retry::Jitter;
/// assert_eq!(Jitter::default(), Jitter::Full);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness.
    None,
    /// A uniform delay between zero and the backoff.
    #[default]
    Full,
    /// Half the backoff plus a uniform delay up to the other half.
    Equal,
    /// A uniform delay between the initial delay and three times the previous delay.
    Decorrelated,
}

/// What to do with a server hint (`Retry-After`, a rate limiter's `retry_after`, gRPC pushback).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::HintMode;
///
/// let mode = HintMode::Clamp { min: Duration::from_millis(100), max: Duration::from_secs(5) };
/// assert_eq!(mode.apply(Duration::from_secs(1), Duration::from_secs(30)), Duration::from_secs(5));
/// assert_eq!(HintMode::Ignore.apply(Duration::from_secs(1), Duration::from_secs(30)), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HintMode {
    /// Wait exactly as long as the server asked (the default); the deadline still applies.
    #[default]
    Honour,
    /// Wait as long as the server asked, bounded to `[min, max]`.
    Clamp {
        /// The shortest wait.
        min: Duration,
        /// The longest wait.
        max: Duration,
    },
    /// Wait the backoff delay, whatever the server said.
    Ignore,
}

impl HintMode {
    /// The delay to sleep, given the computed backoff `delay` and the server's `hint`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::HintMode;
    /// assert_eq!(HintMode::Honour.apply(Duration::from_millis(5), Duration::from_secs(2)), Duration::from_secs(2));
    /// ```
    pub fn apply(self, delay: Duration, hint: Duration) -> Duration {
        match self {
            Self::Honour => hint,
            Self::Clamp { min, max } => hint.clamp(min, max),
            Self::Ignore => delay,
        }
    }
}

pub use aqueduct_core::ConfigError;

/// A reusable retry policy: backoff, jitter, cap, attempts, deadline, per-attempt timeout, hints, budget.
///
/// It is `Clone + Send + Sync` and cheap to share by reference: `retry(&policy, op)` borrows it, and
/// `retry(policy.clone(), op)` owns a copy (the budget inside is shared between copies).
///
/// Defaults (all overridable through [`RetryPolicy::builder`]):
///
/// | setting | default |
/// |---|---|
/// | backoff | exponential, 100 ms × 2ⁿ |
/// | jitter | full |
/// | max delay (cap, after jitter) | 10 s |
/// | max attempts | 3 (the first attempt plus two retries) |
/// | deadline over all attempts | none (the ambient deadline still applies) |
/// | per-attempt timeout | none |
/// | server hints | honoured |
/// | budget | none |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::{Jitter, RetryPolicy};
///
/// # fn main() -> Result<(), aqueduct_retry::ConfigError> {
/// let policy = RetryPolicy::builder()
///     .exponential(Duration::from_millis(50), 2.0)
///     .jitter(Jitter::Equal)
///     .max_delay(Duration::from_secs(2))
///     .max_attempts(5)
///     .deadline(Duration::from_secs(10))
///     .attempt_timeout(Duration::from_secs(1))
///     .build()?;
/// assert_eq!(policy.max_attempts(), 5);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub(crate) backoff: Backoff,
    pub(crate) jitter: Jitter,
    pub(crate) max_delay: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) hints: HintMode,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) seed: Option<u64>,
}

/// The default cap on any single delay.
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);
/// The default number of attempts, the first included.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100))
    }
}

impl RetryPolicy {
    /// A policy with exponential backoff doubling from `initial`, and every other setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    ///
    /// static POLICY: RetryPolicy = RetryPolicy::exponential(Duration::from_millis(100));
    /// assert_eq!(POLICY.max_attempts(), 3);
    /// ```
    pub const fn exponential(initial: Duration) -> Self {
        Self::with_backoff(Backoff::Exponential { initial, factor: 2.0 })
    }

    /// A policy with the same `delay` before every retry, and every other setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::constant(Duration::ZERO);
    /// assert_eq!(policy.max_attempts(), 3);
    /// ```
    pub const fn constant(delay: Duration) -> Self {
        Self::with_backoff(Backoff::Constant { delay })
    }

    /// A policy with Fibonacci backoff from `initial`, and every other setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{Backoff, RetryPolicy};
    ///
    /// let policy = RetryPolicy::fibonacci(Duration::from_millis(10));
    /// assert_eq!(policy.backoff(), Backoff::Fibonacci { initial: Duration::from_millis(10) });
    /// ```
    pub const fn fibonacci(initial: Duration) -> Self {
        Self::with_backoff(Backoff::Fibonacci { initial })
    }

    const fn with_backoff(backoff: Backoff) -> Self {
        Self {
            backoff,
            jitter: Jitter::Full,
            max_delay: DEFAULT_MAX_DELAY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline: None,
            attempt_timeout: None,
            hints: HintMode::Honour,
            budget: None,
            seed: None,
        }
    }

    /// A builder starting from the defaults, validated by [`RetryPolicyBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// let policy = RetryPolicy::builder().max_attempts(10).build().expect("valid");
    /// assert_eq!(policy.max_attempts(), 10);
    /// ```
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder { policy: Self::default() }
    }

    /// A builder starting from this policy, to derive a variant of it.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// let base = RetryPolicy::default();
    /// let patient = base.to_builder().max_attempts(8).build().expect("valid");
    /// assert_eq!(patient.max_attempts(), 8);
    /// ```
    pub fn to_builder(&self) -> RetryPolicyBuilder {
        RetryPolicyBuilder { policy: self.clone() }
    }

    /// The backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{Backoff, RetryPolicy};
    /// assert_eq!(RetryPolicy::constant(Duration::ZERO).backoff(), Backoff::Constant { delay: Duration::ZERO });
    /// ```
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The jitter.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::{Jitter, RetryPolicy};
    /// assert_eq!(RetryPolicy::default().jitter(), Jitter::Full);
    /// ```
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The cap on any single delay, applied after jitter and to server hints.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().max_delay(), Duration::from_secs(10));
    /// ```
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The maximum number of attempts, the first included.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().max_attempts(), 3);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The deadline over all attempts and sleeps, measured from the start of the first attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().deadline(), None);
    /// ```
    pub fn deadline(&self) -> Option<std::time::Duration> {
        self.deadline
    }

    /// The timeout of each single attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().attempt_timeout(), None);
    /// ```
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// What is done with server hints.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::{HintMode, RetryPolicy};
    /// assert_eq!(RetryPolicy::default().hints(), HintMode::Honour);
    /// ```
    pub fn hints(&self) -> HintMode {
        self.hints
    }

    /// The shared retry budget, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::default().budget().is_none());
    /// ```
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// Whether anything needs the clock at the start of an attempt (a deadline or an attempt timeout).
    pub(crate) fn needs_clock(&self) -> bool {
        self.deadline.is_some() || self.attempt_timeout.is_some()
    }
}

/// Builds a [`RetryPolicy`], checking every value in [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_retry::{HintMode, Jitter, RetryBudget, RetryPolicy};
///
/// # fn main() -> Result<(), aqueduct_retry::ConfigError> {
/// let budget = RetryBudget::new(10, 0.1)?;
/// let policy = RetryPolicy::builder()
///     .fibonacci(Duration::from_millis(10))
///     .jitter(Jitter::Decorrelated)
///     .max_delay(Duration::from_secs(1))
///     .hints(HintMode::Clamp { min: Duration::ZERO, max: Duration::from_secs(5) })
///     .budget(budget)
///     .build()?;
/// assert!(policy.budget().is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Any backoff.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{Backoff, RetryPolicy};
    /// let policy = RetryPolicy::builder().backoff(Backoff::Constant { delay: Duration::from_millis(5) }).build();
    /// assert!(policy.is_ok());
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// Constant backoff: the same `delay` before every retry.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().constant(Duration::from_millis(5)).build().is_ok());
    /// ```
    pub fn constant(self, delay: Duration) -> Self {
        self.backoff(Backoff::Constant { delay })
    }

    /// Exponential backoff: `initial × factor^n`. The factor must be finite and at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().exponential(Duration::from_millis(5), 1.5).build().is_ok());
    /// assert!(RetryPolicy::builder().exponential(Duration::from_millis(5), 0.5).build().is_err());
    /// ```
    pub fn exponential(self, initial: Duration, factor: f64) -> Self {
        self.backoff(Backoff::Exponential { initial, factor })
    }

    /// Fibonacci backoff: `initial × fib(n + 1)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().fibonacci(Duration::from_millis(5)).build().is_ok());
    /// ```
    pub fn fibonacci(self, initial: Duration) -> Self {
        self.backoff(Backoff::Fibonacci { initial })
    }

    /// The jitter (full by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::{Jitter, RetryPolicy};
    /// let policy = RetryPolicy::builder().jitter(Jitter::None).build().expect("valid");
    /// assert_eq!(policy.jitter(), Jitter::None);
    /// ```
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// The cap on any single delay, applied after jitter (10 s by default). It must not be below the initial delay.
    ///
    /// Server hints in [`HintMode::Honour`] are not capped by it (the server knows best); the deadline still applies.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// let error = RetryPolicy::builder()
    ///     .exponential(Duration::from_secs(2), 2.0)
    ///     .max_delay(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(error.message().contains("max_delay"));
    /// ```
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.policy.max_delay = max_delay;
        self
    }

    /// The maximum number of attempts, the first included (3 by default); at least 1.
    ///
    /// Use [`u32::MAX`] with a [`deadline`](Self::deadline) to retry until the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().max_attempts(1).build().is_ok());
    /// ```
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.policy.max_attempts = max_attempts;
        self
    }

    /// A deadline over all attempts and sleeps, measured from the start of the first attempt; not zero.
    ///
    /// No sleep is started that would end at or past it, and each attempt is cut off at it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().deadline(Duration::ZERO).build().is_err());
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policy.deadline = Some(deadline);
        self
    }

    /// A timeout for each attempt; not zero. A timed-out attempt fails with [`Error::Elapsed`](crate::Error::Elapsed), which is transient.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().attempt_timeout(Duration::from_secs(1)).build().is_ok());
    /// ```
    pub fn attempt_timeout(mut self, attempt_timeout: Duration) -> Self {
        self.policy.attempt_timeout = Some(attempt_timeout);
        self
    }

    /// What to do with server hints (honoured by default). A clamp needs `min <= max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::{HintMode, RetryPolicy};
    /// let backwards = HintMode::Clamp { min: Duration::from_secs(2), max: Duration::from_secs(1) };
    /// assert!(RetryPolicy::builder().hints(backwards).build().is_err());
    /// ```
    pub fn hints(mut self, hints: HintMode) -> Self {
        self.policy.hints = hints;
        self
    }

    /// A retry budget shared with every other policy holding a clone of it.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::{RetryBudget, RetryPolicy};
    /// let budget = RetryBudget::new(100, 0.1).expect("valid");
    /// assert!(RetryPolicy::builder().budget(budget).build().is_ok());
    /// ```
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.policy.budget = Some(budget);
        self
    }

    /// Seeds the jitter for deterministic tests: every retry loop of this policy then draws the same sequence.
    ///
    /// Do not seed in production: clients with one seed retry in lockstep, which jitter exists to prevent.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().seed(7).build().is_ok());
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.seed = Some(seed);
        self
    }

    /// Checks every value and returns the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying what to change when: the exponential factor is NaN, infinite or below 1;
    /// `max_attempts` is 0; the deadline or the attempt timeout is zero; `max_delay` is below the initial
    /// delay; a hint clamp has `min > max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryPolicy;
    /// assert!(RetryPolicy::builder().build().is_ok());
    /// ```
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let policy = self.policy;
        let initial = match policy.backoff {
            Backoff::Constant { delay } => delay,
            Backoff::Exponential { initial, factor } => {
                if !factor.is_finite() || factor < 1.0 {
                    return Err(ConfigError::new(format!(
                        "exponential factor must be a finite number of at least 1, got {factor}"
                    )));
                }
                initial
            }
            Backoff::Fibonacci { initial } => initial,
        };
        if policy.max_attempts == 0 {
            return Err(ConfigError::new("max_attempts must be at least 1 (1 means no retry)"));
        }
        if policy.max_delay < initial {
            return Err(ConfigError::new(format!(
                "max_delay ({:?}) must be at least the initial delay ({initial:?}): raise max_delay or lower the initial delay",
                policy.max_delay
            )));
        }
        if policy.deadline == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "deadline must be longer than zero: remove it or give a positive duration",
            ));
        }
        if policy.attempt_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "attempt_timeout must be longer than zero: remove it or give a positive duration",
            ));
        }
        if let HintMode::Clamp { min, max } = policy.hints {
            if min > max {
                return Err(ConfigError::new(format!(
                    "hint clamp min ({min:?}) must not exceed max ({max:?})"
                )));
            }
        }
        Ok(policy)
    }
}

// ===== impl Backoff =====

impl Backoff {
    /// The delay before retry `n` (from zero), before jitter, bounded by `cap`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_retry::Backoff;
    ///
    /// let fibonacci = Backoff::Fibonacci { initial: Duration::from_millis(10) };
    /// let delays: Vec<u128> = (0..6).map(|n| fibonacci.base_delay(n, Duration::from_secs(1)).as_millis()).collect();
    /// assert_eq!(delays, [10, 10, 20, 30, 50, 80]);
    /// ```
    pub fn base_delay(&self, n: u32, cap: Duration) -> Duration {
        match *self {
            Self::Constant { delay } => delay.min(cap),
            Self::Exponential { initial, factor } => {
                if initial.is_zero() {
                    return Duration::ZERO;
                }
                let exponent = i32::try_from(n).unwrap_or(i32::MAX);
                #[allow(clippy::cast_precision_loss)]
                // Nanosecond counts below 2^53 (104 days) are exact in an f64; larger ones round, then hit the cap.
                let nanos = initial.as_nanos() as f64 * factor.powi(exponent);
                nanos_to_duration(nanos).min(cap)
            }
            Self::Fibonacci { initial } => {
                if initial.is_zero() {
                    return Duration::ZERO;
                }
                let (mut previous, mut current) = (0_u32, 1_u32);
                for _ in 0..n {
                    let next = previous.saturating_add(current);
                    previous = current;
                    current = next;
                    if initial.saturating_mul(current) >= cap {
                        return cap;
                    }
                }
                initial.saturating_mul(current).min(cap)
            }
        }
    }

    /// The initial delay: the base of decorrelated jitter.
    pub(crate) fn initial(&self) -> Duration {
        match *self {
            Self::Constant { delay } => delay,
            Self::Exponential { initial, .. } | Self::Fibonacci { initial } => initial,
        }
    }
}

/// Converts a non-negative nanosecond count to a duration, saturating (NaN becomes zero).
fn nanos_to_duration(nanos: f64) -> Duration {
    if nanos.is_nan() || nanos <= 0.0 {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_precision_loss)]
    let max = u64::MAX as f64;
    if nanos >= max {
        return Duration::from_nanos(u64::MAX);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // In range [0, u64::MAX) after the checks above.
    Duration::from_nanos(nanos.round() as u64)
}

// ===== impl Jitter =====

impl Jitter {
    /// Applies this jitter to the capped backoff `base` and then the cap, drawing from `rng`.
    ///
    /// `initial` and `previous` feed decorrelated jitter: the initial delay and the previous jittered delay.
    pub(crate) fn apply(
        self,
        base: Duration,
        initial: Duration,
        previous: Duration,
        cap: Duration,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let jittered = match self {
            Self::None => base,
            Self::Full => uniform(rng, Duration::ZERO, base),
            Self::Equal => {
                let half = base / 2;
                half + uniform(rng, Duration::ZERO, base - half)
            }
            Self::Decorrelated => {
                let low = initial.min(cap);
                let high = previous.max(initial).saturating_mul(3).max(low);
                uniform(rng, low, high)
            }
        };
        jittered.min(cap)
    }
}

/// A uniform duration in `[low, high]`, at nanosecond resolution (saturating at `u64::MAX` nanoseconds).
fn uniform(rng: &mut fastrand::Rng, low: Duration, high: Duration) -> Duration {
    let low = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    if high <= low {
        return Duration::from_nanos(low);
    }
    Duration::from_nanos(rng.u64(low..=high))
}
