//! `RetryBudget`: a shared, lock-free token bucket that stops retry storms (gRPC `retryThrottling`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::policy::ConfigError;

/// Tokens are kept in thousandths, as gRPC specifies `tokenRatio` to three decimals.
const MILLI: u64 = 1000;

/// A retry budget shared by many retry loops: a token bucket on one atomic, with gRPC's `retryThrottling` rules.
///
/// - The bucket starts full, at `max_tokens`.
/// - Every failed attempt takes one token (never below zero).
/// - Every successful attempt gives back `token_ratio` tokens (never above `max_tokens`).
/// - A retry is allowed only while more than half the bucket (`max_tokens / 2`) is left.
///
/// So when most calls fail, retries stop for everyone sharing the budget and the failing service gets air;
/// as successes come back, retries resume. The loop that is refused ends with
/// [`Error::Exhausted`](crate::Error::Exhausted) and [`StopReason::Budget`](crate::StopReason::Budget).
///
/// Clones share the bucket. Every operation is a single lock-free atomic update.
///
/// # Examples
///
/// ```
/// use aqueduct_retry::RetryBudget;
///
/// # fn main() -> Result<(), aqueduct_retry::ConfigError> {
/// let budget = RetryBudget::new(4, 0.5)?;
/// assert!(budget.record_failure()); // 3 left, more than 2: a retry is allowed
/// assert!(!budget.record_failure()); // 2 left: not more than half, retries stop
/// budget.record_success(); // 2.5 left
/// assert!(budget.allows_retry());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<BudgetInner>,
}

/// The bucket, generic over its atomic so the loom test below can model it with loom's atomic.
struct BudgetInner<A = AtomicU64> {
    /// The tokens left, in thousandths.
    milli_tokens: A,
    /// The bucket size, in thousandths.
    max_milli_tokens: u64,
    /// The tokens a success gives back, in thousandths.
    milli_ratio: u64,
}

impl RetryBudget {
    /// A full bucket of `max_tokens` tokens, refilled by `token_ratio` tokens per successful attempt.
    ///
    /// gRPC's defaults for a busy service are `max_tokens = 10`, `token_ratio = 0.1`: after about five
    /// straight failures retries stop, and about ten successes per failure keep them going.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `max_tokens` is 0, or `token_ratio` is NaN, infinite, not positive, rounds to
    /// zero thousandths, or exceeds `max_tokens`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryBudget;
    ///
    /// assert!(RetryBudget::new(10, 0.1).is_ok());
    /// assert!(RetryBudget::new(0, 0.1).is_err());
    /// assert!(RetryBudget::new(10, f64::NAN).is_err());
    /// ```
    pub fn new(max_tokens: u32, token_ratio: f64) -> Result<Self, ConfigError> {
        if max_tokens == 0 {
            return Err(ConfigError::new("retry budget max_tokens must be at least 1"));
        }
        if !token_ratio.is_finite() || token_ratio <= 0.0 || token_ratio > f64::from(max_tokens) {
            return Err(ConfigError::new(format!(
                "retry budget token_ratio must be a finite number in (0, max_tokens = {max_tokens}], got {token_ratio}"
            )));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // Positive and at most u32::MAX × 1000 after the checks above.
        let milli_ratio = (token_ratio * 1000.0).round() as u64;
        if milli_ratio == 0 {
            return Err(ConfigError::new(format!(
                "retry budget token_ratio must be at least 0.001 (three decimals), got {token_ratio}"
            )));
        }
        let max_milli_tokens = u64::from(max_tokens) * MILLI;
        Ok(Self {
            inner: Arc::new(BudgetInner {
                milli_tokens: AtomicU64::new(max_milli_tokens),
                max_milli_tokens,
                milli_ratio,
            }),
        })
    }

    /// Records a failed attempt (one token taken) and says whether a retry is still allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryBudget;
    /// let budget = RetryBudget::new(2, 1.0).expect("valid");
    /// assert!(!budget.record_failure()); // 1 left, not more than 1
    /// ```
    pub fn record_failure(&self) -> bool {
        self.inner.record_failure()
    }

    /// Records a successful attempt: gives back `token_ratio` tokens, up to the bucket size.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryBudget;
    /// let budget = RetryBudget::new(2, 1.0).expect("valid");
    /// budget.record_failure();
    /// budget.record_success();
    /// assert_eq!(budget.tokens(), 2.0);
    /// ```
    pub fn record_success(&self) {
        self.inner.record_success();
    }

    /// Whether a retry would be allowed now (more than half the bucket left), without taking anything.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryBudget;
    /// assert!(RetryBudget::new(10, 0.1).expect("valid").allows_retry());
    /// ```
    pub fn allows_retry(&self) -> bool {
        self.inner.above_threshold(self.inner.milli_tokens.load_milli())
    }

    /// The tokens left, to three decimals.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryBudget;
    /// assert_eq!(RetryBudget::new(10, 0.1).expect("valid").tokens(), 10.0);
    /// ```
    pub fn tokens(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        // Token counts stay far below 2^53 thousandths.
        let tokens = self.inner.milli_tokens.load_milli() as f64;
        tokens / 1000.0
    }

    /// The bucket size.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_retry::RetryBudget;
    /// assert_eq!(RetryBudget::new(10, 0.1).expect("valid").max_tokens(), 10);
    /// ```
    pub fn max_tokens(&self) -> u32 {
        u32::try_from(self.inner.max_milli_tokens / MILLI).unwrap_or(u32::MAX)
    }
}

/// The two operations the bucket needs from its atomic.
trait MilliTokens {
    fn load_milli(&self) -> u64;
    /// Applies `update` atomically and returns the previous value.
    fn update_milli(&self, update: impl FnMut(u64) -> u64) -> u64;
}

impl MilliTokens for AtomicU64 {
    fn load_milli(&self) -> u64 {
        self.load(Ordering::Acquire)
    }

    fn update_milli(&self, mut update: impl FnMut(u64) -> u64) -> u64 {
        self.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| Some(update(tokens)))
            .unwrap_or_else(|tokens| tokens)
    }
}

impl<A: MilliTokens> BudgetInner<A> {
    fn record_failure(&self) -> bool {
        let previous = self.milli_tokens.update_milli(|tokens| tokens.saturating_sub(MILLI));
        self.above_threshold(previous.saturating_sub(MILLI))
    }

    fn record_success(&self) {
        // A full bucket (the common case) needs no write.
        if self.milli_tokens.load_milli() >= self.max_milli_tokens {
            return;
        }
        self.milli_tokens.update_milli(|tokens| {
            tokens.saturating_add(self.milli_ratio).min(self.max_milli_tokens)
        });
    }

    fn above_threshold(&self, milli_tokens: u64) -> bool {
        // gRPC: retries are throttled when token_count <= max_tokens / 2.
        milli_tokens > self.max_milli_tokens / 2
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RetryBudget")
            .field("tokens", &self.tokens())
            .field("max_tokens", &self.max_tokens())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod loom_tests {
    //! Every interleaving of concurrent failures and successes, explored by loom: no update is ever lost.

    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU64, Ordering};

    use super::{BudgetInner, MilliTokens};

    impl MilliTokens for AtomicU64 {
        fn load_milli(&self) -> u64 {
            self.load(Ordering::Acquire)
        }

        fn update_milli(&self, mut update: impl FnMut(u64) -> u64) -> u64 {
            self.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| Some(update(tokens)))
                .unwrap_or_else(|tokens| tokens)
        }
    }

    fn bucket(milli_tokens: u64) -> Arc<BudgetInner<AtomicU64>> {
        Arc::new(BudgetInner {
            milli_tokens: AtomicU64::new(milli_tokens),
            max_milli_tokens: 4000,
            milli_ratio: 1000,
        })
    }

    #[test]
    fn concurrent_failures_and_a_success_are_never_lost() {
        loom::model(|| {
            let inner = bucket(3000);
            let failing = Arc::clone(&inner);
            let first = loom::thread::spawn(move || failing.record_failure());
            let succeeding = Arc::clone(&inner);
            let second = loom::thread::spawn(move || succeeding.record_success());
            inner.record_failure();
            first.join().expect("no panic");
            second.join().expect("no panic");
            // 3 − 1 − 1 + 1 tokens in any order: the cap of 4 is never hit from 3 with one success.
            assert_eq!(inner.milli_tokens.load_milli(), 2000);
        });
    }

    #[test]
    fn concurrent_failures_on_an_almost_empty_bucket_stop_at_zero() {
        loom::model(|| {
            let inner = bucket(1000);
            let other = Arc::clone(&inner);
            let thread = loom::thread::spawn(move || other.record_failure());
            let allowed_here = inner.record_failure();
            let allowed_there = thread.join().expect("no panic");
            assert!(!allowed_here && !allowed_there);
            assert_eq!(inner.milli_tokens.load_milli(), 0);
        });
    }
}
