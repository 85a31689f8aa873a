//! Configuration values: `Rate`, `Quota` (a rate with its burst), and `ConfigError` for what `build()` refuses.

use std::time::Duration;

use crate::gcra::Params;

/// How many calls per period a rate limit admits on average, for example `Rate::per_second(100)`.
///
/// A rate is just two numbers; it is checked when a limiter is built (see [`ConfigError`]).
/// The supported range goes from one call per day ([`Rate::per_day(1)`](Rate::per_day)) to
/// 1e9 calls per second ([`Rate::per_second(1_000_000_000)`](Rate::per_second)); the interval between two
/// calls is kept in whole nanoseconds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_ratelimit::Rate;
///
/// assert_eq!(Rate::per_second(4).interval(), Some(Duration::from_millis(250)));
/// assert_eq!(Rate::new(3, Duration::from_secs(60)).interval(), Some(Duration::from_secs(20)));
/// assert_eq!(Rate::per_second(0).interval(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u64,
    period: Duration,
}

/// A rate together with its burst: the configuration of one GCRA bucket, already validated.
///
/// Use it for per-key quotas ([`KeyedRateLimiterBuilder::quota_for`](crate::KeyedRateLimiterBuilder::quota_for))
/// and for [`Limiter::set_quota`](crate::Limiter::set_quota).
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{Quota, Rate};
///
/// let quota = Quota::new(Rate::per_second(10), 5).unwrap();
/// assert_eq!(quota.burst(), 5);
/// assert!(Quota::new(Rate::per_second(10), 0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    rate: Rate,
    pub(crate) params: Params,
}

pub use aqueduct_core::ConfigError;

/// The slowest supported interval between two tokens: one year.
const MAX_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

// ===== impl Rate =====

impl Rate {
    /// `count` calls per `period`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::Rate;
    ///
    /// let rate = Rate::new(5, Duration::from_millis(10));
    /// assert_eq!(rate.interval(), Some(Duration::from_millis(2)));
    /// ```
    pub const fn new(count: u64, period: Duration) -> Self {
        Self { count, period }
    }

    /// `count` calls per second.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_second(1_000).count(), 1_000);
    /// ```
    pub const fn per_second(count: u64) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` calls per minute.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_minute(60).interval(), Some(Duration::from_secs(1)));
    /// ```
    pub const fn per_minute(count: u64) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` calls per hour.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_hour(2).interval(), Some(Duration::from_secs(1_800)));
    /// ```
    pub const fn per_hour(count: u64) -> Self {
        Self::new(count, Duration::from_secs(3_600))
    }

    /// `count` calls per day.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_day(1).interval(), Some(Duration::from_secs(86_400)));
    /// ```
    pub const fn per_day(count: u64) -> Self {
        Self::new(count, Duration::from_secs(86_400))
    }

    /// The number of calls per period.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_minute(7).count(), 7);
    /// ```
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The period.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_minute(7).period(), Duration::from_secs(60));
    /// ```
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The time between two tokens, in whole nanoseconds (rounded down), or `None` if the rate is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::Rate;
    /// assert_eq!(Rate::per_second(3).interval(), Some(Duration::from_nanos(333_333_333)));
    /// assert_eq!(Rate::per_second(2_000_000_000).interval(), None);
    /// ```
    pub fn interval(&self) -> Option<Duration> {
        self.emission_ns().ok().map(Duration::from_nanos)
    }

    pub(crate) fn emission_ns(&self) -> Result<u64, ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::new(
                "the rate's count is 0; admit at least 1 call per period",
            ));
        }
        if self.period.is_zero() {
            return Err(ConfigError::new(
                "the rate's period is zero; use a period of at least 1 ns",
            ));
        }
        let emission = self.period.as_nanos() / u128::from(self.count);
        if emission == 0 {
            return Err(ConfigError::new(format!(
                "the rate of {} per {:?} is faster than 1e9 per second; lower the count or lengthen the period",
                self.count, self.period
            )));
        }
        if emission > MAX_INTERVAL.as_nanos() {
            return Err(ConfigError::new(format!(
                "the rate of {} per {:?} is slower than one call per year; raise the count or shorten the period",
                self.count, self.period
            )));
        }
        // Bounded by MAX_INTERVAL above, so it fits.
        Ok(u64::try_from(emission).unwrap_or(u64::MAX))
    }
}

// ===== impl Quota =====

impl Quota {
    /// A rate with a burst of `burst` calls, validated.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the rate is invalid (zero count or period, faster than 1e9/s, slower than one per
    /// year) or the burst is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Quota, Rate};
    /// assert!(Quota::new(Rate::per_second(100), 10).is_ok());
    /// assert!(Quota::new(Rate::per_second(0), 10).is_err());
    /// ```
    pub fn new(rate: Rate, burst: u32) -> Result<Self, ConfigError> {
        let emission_ns = rate.emission_ns()?;
        if burst == 0 {
            return Err(ConfigError::new(
                "burst is 0; set it to at least 1 (1 means no burst: calls are evenly spaced)",
            ));
        }
        Ok(Self { rate, params: Params { emission_ns, burst: u64::from(burst) } })
    }

    /// The rate.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Quota, Rate};
    /// assert_eq!(Quota::new(Rate::per_second(3), 1).unwrap().rate(), Rate::per_second(3));
    /// ```
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The burst: how many calls a full bucket admits at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Quota, Rate};
    /// assert_eq!(Quota::new(Rate::per_second(3), 2).unwrap().burst(), 2);
    /// ```
    pub fn burst(&self) -> u32 {
        // Built from a u32.
        u32::try_from(self.params.burst).unwrap_or(u32::MAX)
    }
}
