//! `Limiter`: a concurrency limit, a GCRA rate limit, or both in one guard; its builder, permit and futures.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::{Deadline, Elapsed, Error};
use tokio::time::{Instant, Sleep};

use crate::config::{ConfigError, Quota, Rate};
use crate::gcra::{AtomicTat, Params};
use crate::queue::{Enter, QueuePoll, RateQueue};
use crate::semaphore::{self, MAX_PERMITS, Semaphore};

/// A concurrency limit, a rate limit, or both, shared by cloning (clones share one state).
///
/// - The **concurrency limit** (`max_concurrent`) caps how many [`Permit`]s exist at once, like Python's
///   `asyncio.Semaphore`; a permit is given back when it is dropped.
/// - The **rate limit** (`rate` and `burst`) caps how many calls *start* per unit of time, with the GCRA
///   algorithm: its whole state is one `AtomicU64` (the theoretical arrival time, in nanoseconds) updated by
///   compare-and-swap, so the admission path takes no lock.
/// - With **both**, a [`Permit`] holds a concurrency slot *and* has spent its rate tokens.
///
/// Waiting is FIFO: the order in which [`acquire`](Self::acquire) futures are first polled is the order in
/// which they are admitted. Time comes from `tokio::time`, so `#[tokio::test(start_paused = true)]` drives it.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{Error, Limiter, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Error<std::io::Error>> {
/// let limiter = Limiter::builder().max_concurrent(5).rate(Rate::per_second(100)).burst(10).build().unwrap();
/// let permit = limiter.acquire().await?;
/// assert_eq!(limiter.available_permits(), Some(4));
/// drop(permit);
/// assert_eq!(limiter.available_permits(), Some(5));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// Builds a [`Limiter`]; [`build`](Self::build) validates the configuration.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{Limiter, Rate};
///
/// let limiter = Limiter::builder().rate(Rate::per_minute(600)).burst(20).build().unwrap();
/// assert_eq!(limiter.available_tokens(), Some(20));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct LimiterBuilder {
    max_concurrent: Option<usize>,
    rate: Option<Rate>,
    burst: Option<u32>,
    initial_tokens: Option<u32>,
}

/// Proof of admission by a [`Limiter`]: holds the concurrency slot (if any) until it is dropped.
///
/// The rate tokens were spent when the permit was granted; dropping the permit does not give them back.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{Error, Limiter};
///
/// let limiter = Limiter::builder().max_concurrent(1).build().unwrap();
/// let permit = limiter.try_acquire::<()>().unwrap();
/// assert!(limiter.try_acquire::<()>().is_err());
/// drop(permit);
/// assert!(limiter.try_acquire::<()>().is_ok());
/// ```
///
/// `Permit` is deliberately not `#[must_use]`: with a rate limit alone there is nothing to hold, and
/// `limiter.acquire().await?;` is the natural way to pace a call. With a concurrency limit, bind it
/// (`let _permit = ...`) for as long as the call runs.
pub struct Permit<'a> {
    limiter: &'a Limiter,
    /// Concurrency slots held (0 without a concurrency limit); given back on drop.
    concurrency_held: u32,
    weight: u32,
}

/// What a [`Limiter::peek`] saw: whether a call would be admitted now, without spending anything.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{Limiter, Peek, Rate};
///
/// let limiter = Limiter::builder().rate(Rate::per_second(10)).build().unwrap();
/// assert_eq!(limiter.peek(1), Peek::Admit);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peek {
    /// A call of this weight would be admitted now.
    Admit,
    /// The rate limit would refuse it; it could be admitted after `retry_after` (exact, never rounded down).
    RateLimited {
        /// How long until the rate limit would admit the call.
        retry_after: Duration,
    },
    /// The concurrency limit is at capacity.
    Full {
        /// The configured maximum number of concurrent permits.
        capacity: usize,
    },
    /// The weight can never be admitted: it is larger than the burst or the concurrency limit.
    TooLarge,
}

/// The future of [`Limiter::acquire`] and its variants: resolves to a [`Permit`] in FIFO order.
///
/// Chain [`within`](Self::within) or [`before`](Self::before) to give up at once when the predicted
/// wait is longer than the time allowed.
///
/// # Cancellation
///
/// Dropping it before it resolves leaks nothing, exactly: a concurrency slot not yet granted is never
/// taken, a granted one is given back, and a caller queued for rate tokens leaves the queue having taken
/// none (tokens are taken only at admission), so the callers behind it move up at once.
/// The caller loses its place in the queue.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_ratelimit::{Error, Limiter, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = Limiter::builder().rate(Rate::per_second(10)).build().unwrap();
/// let _first = limiter.acquire::<()>().await.unwrap();
/// // The next slot is 100 ms away: more than we accept to wait, so it fails at once.
/// let refused = limiter.acquire::<()>().within(Duration::from_millis(50)).await.unwrap_err();
/// assert_eq!(refused.retry_after(), Some(Duration::from_millis(50)));
/// # }
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Acquire<'a, E> {
    limiter: &'a Limiter,
    weight: u32,
    own_deadline: Option<Instant>,
    state: AcquireState<'a>,
    error: PhantomData<fn() -> E>,
}

// ===== private state =====

struct Inner {
    origin: Instant,
    rate: Option<RateState>,
    concurrency: Option<ConcurrencyState>,
}

struct RateState {
    tat: AtomicTat,
    emission_ns: AtomicU64,
    burst: AtomicU64,
    /// The quota as configured; its lock also serialises reconfigurations.
    quota: Mutex<Quota>,
    /// Callers waiting for tokens, in arrival order.
    queue: RateQueue,
}

struct ConcurrencyState {
    /// The slots; its count goes below zero while a lowered limit is paid off by returning permits.
    semaphore: Semaphore,
    max: AtomicUsize,
}

/// Where an [`Acquire`] stands. The waiting states are boxed and leave their queue in their own `Drop`:
/// a future admitted on its first poll (the common case) then stays small, and `Acquire` itself has no
/// `Drop`, so the compiler need not keep the output in memory while a destructor runs.
enum AcquireState<'a> {
    Start,
    Waiting(Box<Waiting<'a>>),
    Done,
}

/// An [`Acquire`] that was not admitted on its first poll; dropping it leaves the queue it waits in.
struct Waiting<'a> {
    limiter: &'a Limiter,
    weight: u32,
    stage: Stage<'a>,
}

/// What a [`Waiting`] future waits for.
enum Stage<'a> {
    /// Queued in the semaphore for a concurrency slot.
    Permit {
        /// Its place in the semaphore's queue.
        ticket: u64,
        deadline: Option<(Deadline, Pin<Box<Sleep>>)>,
        started: Instant,
    },
    /// Holding its concurrency slot (if any), queued for rate tokens.
    Queued {
        permit: Permit<'a>,
        ticket: u64,
        slot: Option<(u64, Pin<Box<Sleep>>)>,
        deadline: Option<(Deadline, Pin<Box<Sleep>>)>,
        started: Instant,
    },
    /// Out of every queue: admitted (its permit moved out) or already left.
    Left,
}

/// What the slow paths of [`Acquire`] return: the error is boxed so that the output of the inlined fast
/// path, merged with theirs, stays small enough to live in registers (a 64-byte `Error` written through
/// memory costs a store-forwarding stall on every admission).
type Waited<'a, E> = Poll<Result<Permit<'a>, Box<Error<E>>>>;

/// Why the fast path could not admit a call at once; turned into an error or a wait off the fast path.
enum Shortfall<'a> {
    /// The concurrency limit lacks free slots (or callers queue for them).
    Full,
    /// The concurrency slots (if any) are held in `permit`, but the rate tokens are not there: callers
    /// queue (`start_at` is `None`) or the bucket refused, with the earliest start `start_at`.
    Tokens { permit: Permit<'a>, now: u64, start_at: Option<u64> },
}

/// A rate booking that may still be refunded: the TAT it set and its cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Booking {
    pub(crate) new_tat: u64,
    pub(crate) cost_ns: u64,
}

// ===== impl LimiterBuilder =====

impl LimiterBuilder {
    /// At most `max` permits exist at once (the seed's `asyncio.Semaphore(max_concurrent)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// let limiter = Limiter::builder().max_concurrent(3).build().unwrap();
    /// assert_eq!(limiter.max_concurrent(), Some(3));
    /// ```
    pub fn max_concurrent(mut self, max: usize) -> Self {
        self.max_concurrent = Some(max);
        self
    }

    /// Calls start at most at `rate` on average (GCRA). Without [`burst`](Self::burst), the burst is 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// let limiter = Limiter::builder().rate(Rate::per_second(50)).build().unwrap();
    /// assert_eq!(limiter.rate(), Some(Rate::per_second(50)));
    /// ```
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// How many calls a full bucket admits back to back (default 1: calls evenly spaced).
    ///
    /// With `rate(Rate::per_second(10)).burst(5)`, an idle limiter admits 5 calls at once, then one every
    /// 100 ms; after 500 ms of idleness the bucket is full again. See the crate docs, "Burst, worked out".
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// let limiter = Limiter::builder().rate(Rate::per_second(10)).burst(5).build().unwrap();
    /// assert_eq!(limiter.burst(), Some(5));
    /// ```
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// How many tokens the bucket holds when the limiter is created (default: full, `burst`).
    ///
    /// Set 0 to stop a freshly started service from spending a whole burst in its first instant.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// let limiter = Limiter::builder().rate(Rate::per_second(10)).burst(5).initial_tokens(0).build().unwrap();
    /// assert_eq!(limiter.available_tokens(), Some(0));
    /// ```
    pub fn initial_tokens(mut self, tokens: u32) -> Self {
        self.initial_tokens = Some(tokens);
        self
    }

    /// Validates the configuration and builds the limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when neither a rate nor a concurrency limit is set, `max_concurrent` is 0 or above
    /// tokio's semaphore maximum, the rate is invalid (see [`Rate`]), the burst is 0, `burst` or
    /// `initial_tokens` is set without a rate, or `initial_tokens` exceeds the burst.
    ///
    /// # Panics
    ///
    /// Never panics; it does not need a runtime either (the clock is read, not a timer registered).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// let error = Limiter::builder().build().unwrap_err();
    /// assert!(error.message().contains("max_concurrent"));
    /// ```
    pub fn build(self) -> Result<Limiter, ConfigError> {
        if self.max_concurrent.is_none() && self.rate.is_none() {
            return Err(ConfigError::new(
                "the limiter limits nothing; set max_concurrent, rate, or both",
            ));
        }
        let concurrency = match self.max_concurrent {
            None => None,
            Some(0) => return Err(ConfigError::new("max_concurrent is 0; set it to at least 1")),
            Some(max) if max > MAX_PERMITS => {
                return Err(ConfigError::new(format!(
                    "max_concurrent is {max}; set it to at most {MAX_PERMITS}"
                )));
            }
            Some(max) => Some(ConcurrencyState {
                semaphore: Semaphore::new(max),
                max: AtomicUsize::new(max),
            }),
        };
        let origin = Instant::now();
        let rate = match self.rate {
            None => {
                if self.burst.is_some() || self.initial_tokens.is_some() {
                    return Err(ConfigError::new(
                        "burst and initial_tokens need a rate; set rate(..) too",
                    ));
                }
                None
            }
            Some(rate) => {
                let quota = Quota::new(rate, self.burst.unwrap_or(1))?;
                let initial = self.initial_tokens.unwrap_or_else(|| quota.burst());
                if initial > quota.burst() {
                    return Err(ConfigError::new(format!(
                        "initial_tokens is {initial} but the burst is {}; set initial_tokens to at most the burst",
                        quota.burst()
                    )));
                }
                Some(RateState {
                    tat: AtomicTat::new(quota.params.tat_with_tokens(u64::from(initial), 0)),
                    emission_ns: AtomicU64::new(quota.params.emission_ns),
                    burst: AtomicU64::new(quota.params.burst),
                    quota: Mutex::new(quota),
                    queue: RateQueue::default(),
                })
            }
        };
        Ok(Limiter { inner: Arc::new(Inner { origin, rate, concurrency }) })
    }
}

// ===== impl Limiter =====

impl Limiter {
    /// Starts a [`LimiterBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// let limiter = Limiter::builder().max_concurrent(10).rate(Rate::per_second(5)).build().unwrap();
    /// assert_eq!(limiter.max_concurrent(), Some(10));
    /// ```
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder::default()
    }

    /// A concurrency limit alone: at most `max` permits at once.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is 0 or above `usize::MAX >> 3` (tokio's semaphore bound).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// assert!(Limiter::concurrency(4).is_ok());
    /// assert!(Limiter::concurrency(0).is_err());
    /// ```
    pub fn concurrency(max: usize) -> Result<Self, ConfigError> {
        Self::builder().max_concurrent(max).build()
    }

    /// A rate limit alone, with a burst of `burst` calls.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the rate or burst is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// assert!(Limiter::rate_limit(Rate::per_second(100), 10).is_ok());
    /// ```
    pub fn rate_limit(rate: Rate, burst: u32) -> Result<Self, ConfigError> {
        Self::builder().rate(rate).burst(burst).build()
    }

    /// Takes a permit of weight 1 now, or fails without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the concurrency limit is at capacity; [`Error::RateLimited`] with the exact
    /// time until the rate would admit the call (never rounded down) when the bucket is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(4), 1).unwrap();
    /// assert!(limiter.try_acquire::<()>().is_ok());
    /// let refused = limiter.try_acquire::<()>().unwrap_err();
    /// assert_eq!(refused.retry_after(), Some(Duration::from_millis(250)));
    /// # }
    /// ```
    #[inline(always)]
    pub fn try_acquire<E>(&self) -> Result<Permit<'_>, Error<E>> {
        // A weight of 1 never exceeds a limit (both are at least 1), so there is no weight to check.
        match self.admit_now(1) {
            Ok(permit) => Ok(permit),
            Err(shortfall) => Err(self.refusal(shortfall)),
        }
    }

    /// Takes a permit of weight `weight` now, or fails without waiting. A weight counts as that many calls
    /// for both limits (tokens for the rate, slots for the concurrency). A weight of 0 is always admitted.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the concurrency limit lacks `weight` free slots; [`Error::RateLimited`] when
    /// the bucket lacks `weight` tokens; [`Error::ContractViolation`] when `weight` exceeds the burst or the
    /// concurrency limit, since waiting could never help.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(10), 10).unwrap();
    /// assert!(limiter.try_acquire_n::<()>(7).is_ok());
    /// assert!(limiter.try_acquire_n::<()>(7).unwrap_err().is_rate_limited());
    /// assert!(limiter.try_acquire_n::<()>(11).is_err());
    /// # }
    /// ```
    #[inline]
    pub fn try_acquire_n<E>(&self, weight: u32) -> Result<Permit<'_>, Error<E>> {
        // A weight of 1 never exceeds a limit (both are at least 1): the common call skips the check.
        if weight != 1 {
            self.check_weight(weight)?;
            if weight == 0 {
                return Ok(self.empty_permit(0));
            }
        }
        match self.admit_now(weight) {
            Ok(permit) => Ok(permit),
            Err(shortfall) => Err(self.refusal(shortfall)),
        }
    }

    /// Waits for a permit of weight 1, in FIFO order.
    ///
    /// # Cancellation
    ///
    /// See [`Acquire`]: dropping the future leaks nothing and gives its place to the callers behind it.
    ///
    /// # Errors
    ///
    /// Only with a deadline ([`Acquire::within`], [`Acquire::before`], or an ambient deadline from
    /// `aqueduct_core::with_deadline`): [`Error::RateLimited`] at once when the rate slot would come too late,
    /// [`Error::Elapsed`] when the deadline passes while waiting for a concurrency slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Error, Limiter, Rate};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Error<std::io::Error>> {
    /// let limiter = Limiter::rate_limit(Rate::per_second(2), 1).unwrap();
    /// let start = Instant::now();
    /// for _ in 0..3 {
    ///     let _permit = limiter.acquire().await?;
    /// }
    /// // One at once, then one every 500 ms.
    /// assert_eq!(start.elapsed().as_millis(), 1_000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire<E>(&self) -> Acquire<'_, E> {
        self.acquire_n(1)
    }

    /// Waits for a permit of weight `weight`, in FIFO order; see [`try_acquire_n`](Self::try_acquire_n) for
    /// what a weight means. A large request queues like any other and small ones cannot slip past it, so it is not starved.
    ///
    /// # Cancellation
    ///
    /// See [`Acquire`].
    ///
    /// # Errors
    ///
    /// [`Error::ContractViolation`] when `weight` exceeds the burst or the concurrency limit; otherwise as
    /// [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(10), 10).unwrap();
    /// let permit = limiter.acquire_n::<()>(10).await.unwrap();
    /// assert_eq!(permit.weight(), 10);
    /// assert_eq!(limiter.available_tokens(), Some(0));
    /// # }
    /// ```
    pub fn acquire_n<E>(&self, weight: u32) -> Acquire<'_, E> {
        Acquire {
            limiter: self,
            weight,
            own_deadline: None,
            state: AcquireState::Start,
            error: PhantomData,
        }
    }

    /// Waits for a permit of weight 1 only if it can be had within `max_wait`; fails at once otherwise.
    ///
    /// Shorthand for `acquire().within(max_wait)`.
    ///
    /// # Cancellation
    ///
    /// See [`Acquire`].
    ///
    /// # Errors
    ///
    /// [`Error::RateLimited`] *immediately* when the predicted rate wait is longer than `max_wait` (its
    /// `retry_after` is how much longer), [`Error::Elapsed`] when `max_wait` passes while waiting for a
    /// concurrency slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(10), 1).unwrap();
    /// assert!(limiter.acquire_within::<()>(Duration::ZERO).await.is_ok());
    /// assert!(limiter.acquire_within::<()>(Duration::from_millis(100)).await.is_ok());
    /// assert!(limiter.acquire_within::<()>(Duration::from_millis(99)).await.is_err());
    /// # }
    /// ```
    pub fn acquire_within<E>(&self, max_wait: Duration) -> Acquire<'_, E> {
        self.acquire().within(max_wait)
    }

    /// Runs `future` while holding a permit of weight 1, flattening its error into [`Error<E>`].
    ///
    /// # Cancellation
    ///
    /// Dropping the returned future while it waits behaves as dropping [`Acquire`]; while `future` runs,
    /// it drops `future` and then the permit.
    ///
    /// # Errors
    ///
    /// Those of [`acquire`](Self::acquire), then those of `future`.
    ///
    /// # Panics
    ///
    /// If `future` panics, the panic propagates; the permit is given back during unwinding.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Error, Limiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = Limiter::concurrency(2).unwrap();
    /// let result: Result<u32, Error<std::io::Error>> = limiter.run(async { Ok::<_, std::io::Error>(7) }).await;
    /// assert_eq!(result.unwrap(), 7);
    /// # }
    /// ```
    pub async fn run<T, E, X, F>(&self, future: F) -> Result<T, Error<E>>
    where
        F: IntoFuture<Output = Result<T, X>>,
        X: Into<Error<E>>,
    {
        let _permit = self.acquire::<E>().await?;
        future.await.map_err(Into::into)
    }

    /// Whether a call of `weight` would be admitted now, spending nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{Limiter, Peek, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(10), 2).unwrap();
    /// assert_eq!(limiter.peek(2), Peek::Admit);
    /// assert_eq!(limiter.peek(2), Peek::Admit, "peeking spends nothing");
    /// let _spent = limiter.try_acquire_n::<()>(2).unwrap();
    /// assert_eq!(limiter.peek(1), Peek::RateLimited { retry_after: Duration::from_millis(100) });
    /// assert_eq!(limiter.peek(3), Peek::TooLarge);
    /// # }
    /// ```
    pub fn peek(&self, weight: u32) -> Peek {
        if self.check_weight::<()>(weight).is_err() {
            return Peek::TooLarge;
        }
        if weight == 0 {
            return Peek::Admit;
        }
        if let Some(concurrency) = &self.inner.concurrency
            && !concurrency.semaphore.would_admit(weight)
        {
            return Peek::Full { capacity: concurrency.max.load(Ordering::Relaxed) };
        }
        if let Some(rate) = &self.inner.rate {
            let now = self.now_ns();
            let queued = rate.queue.queued_tokens();
            let decision = rate.params().decide(rate.tat.load(), now, queued + u64::from(weight));
            if decision.start_at > now {
                return Peek::RateLimited {
                    retry_after: Duration::from_nanos(decision.start_at - now),
                };
            }
        }
        Peek::Admit
    }

    /// How many rate tokens are available now (`None` without a rate limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// let limiter = Limiter::rate_limit(Rate::per_second(10), 3).unwrap();
    /// assert_eq!(limiter.available_tokens(), Some(3));
    /// ```
    pub fn available_tokens(&self) -> Option<u64> {
        self.inner.rate.as_ref().map(|rate| rate.params().available(rate.tat.load(), self.now_ns()))
    }

    /// How many callers queue for rate tokens now (0 without a rate limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(1), 1).unwrap();
    /// let _first = limiter.acquire::<()>().await.unwrap();
    /// let mut second = Box::pin(limiter.acquire::<()>());
    /// assert!(futures::poll!(&mut second).is_pending());
    /// assert_eq!(limiter.waiting(), 1);
    /// drop(second);
    /// assert_eq!(limiter.waiting(), 0);
    /// # }
    /// ```
    pub fn waiting(&self) -> usize {
        self.inner.rate.as_ref().map_or(0, |rate| rate.queue.len())
    }

    /// How many concurrency slots are free now (`None` without a concurrency limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// let limiter = Limiter::concurrency(3).unwrap();
    /// assert_eq!(limiter.available_permits(), Some(3));
    /// ```
    pub fn available_permits(&self) -> Option<usize> {
        self.inner.concurrency.as_ref().map(|concurrency| concurrency.semaphore.available_permits())
    }

    /// The configured concurrency limit (`None` without one).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// assert_eq!(Limiter::concurrency(3).unwrap().max_concurrent(), Some(3));
    /// ```
    pub fn max_concurrent(&self) -> Option<usize> {
        self.inner.concurrency.as_ref().map(|concurrency| concurrency.max.load(Ordering::Relaxed))
    }

    /// The configured rate (`None` without a rate limit), as given to the builder or to
    /// [`set_quota`](Self::set_quota).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// assert_eq!(Limiter::rate_limit(Rate::per_second(8), 1).unwrap().rate(), Some(Rate::per_second(8)));
    /// ```
    pub fn rate(&self) -> Option<Rate> {
        self.inner
            .rate
            .as_ref()
            .map(|rate| rate.quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner).rate())
    }

    /// The configured burst (`None` without a rate limit).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// assert_eq!(Limiter::rate_limit(Rate::per_second(8), 4).unwrap().burst(), Some(4));
    /// ```
    pub fn burst(&self) -> Option<u32> {
        self.inner
            .rate
            .as_ref()
            .map(|rate| u32::try_from(rate.burst.load(Ordering::Relaxed)).unwrap_or(u32::MAX))
    }

    /// Changes the rate, keeping the burst; see [`set_quota`](Self::set_quota).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the rate is invalid or this limiter has no rate limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// let limiter = Limiter::rate_limit(Rate::per_second(8), 4).unwrap();
    /// limiter.set_rate(Rate::per_second(80)).unwrap();
    /// assert_eq!(limiter.rate(), Some(Rate::per_second(80)));
    /// ```
    pub fn set_rate(&self, rate: Rate) -> Result<(), ConfigError> {
        let burst = self.burst().ok_or_else(no_rate)?;
        self.set_quota(Quota::new(rate, burst)?)
    }

    /// Changes the rate and burst at run time, keeping the state: no burst is granted by the change.
    ///
    /// The bucket keeps its fill *ratio* (a bucket empty at 10/s is empty at 100/s); queued callers keep
    /// their order and the head recomputes when its tokens will be there.
    /// Admissions racing with the change use either the old or the new quota.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when this limiter has no rate limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limiter, Quota, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(10), 10).unwrap();
    /// let _spent = limiter.try_acquire_n::<()>(10).unwrap();
    /// // Slowing down does not refill the bucket: still nothing available.
    /// limiter.set_quota(Quota::new(Rate::per_second(1), 100).unwrap()).unwrap();
    /// assert_eq!(limiter.available_tokens(), Some(0));
    /// # }
    /// ```
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        let rate = self.inner.rate.as_ref().ok_or_else(no_rate)?;
        let mut configured = rate.quota.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *configured = quota;
        let old = rate.params();
        let now = self.now_ns();
        rate.tat.update(|tat| old.rescale_tat(quota.params, tat, now));
        rate.emission_ns.store(quota.params.emission_ns, Ordering::Relaxed);
        rate.burst.store(quota.params.burst, Ordering::Relaxed);
        drop(configured);
        rate.queue.wake_head();
        Ok(())
    }

    /// Changes the concurrency limit at run time.
    ///
    /// Raising it frees the new slots at once (waiters are served in FIFO order). Lowering it takes free
    /// slots away at once and retires held ones as their permits are dropped, so the number of permits in
    /// use converges to the new limit without revoking any.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is 0 or too large, or this limiter has no concurrency limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    ///
    /// let limiter = Limiter::concurrency(2).unwrap();
    /// let held = limiter.try_acquire::<()>().unwrap();
    /// limiter.set_max_concurrent(1).unwrap();
    /// assert_eq!(limiter.available_permits(), Some(0));
    /// drop(held);
    /// assert_eq!(limiter.available_permits(), Some(1));
    /// ```
    pub fn set_max_concurrent(&self, max: usize) -> Result<(), ConfigError> {
        let concurrency = self.inner.concurrency.as_ref().ok_or_else(|| {
            ConfigError::new("this limiter has no concurrency limit; build it with max_concurrent")
        })?;
        if max == 0 {
            return Err(ConfigError::new("max_concurrent is 0; set it to at least 1"));
        }
        if max > MAX_PERMITS {
            return Err(ConfigError::new(format!(
                "max_concurrent is {max}; set it to at most {MAX_PERMITS}"
            )));
        }
        // Concurrent changes each apply their own difference, so the count ends at the last limit set.
        let old = concurrency.max.swap(max, Ordering::AcqRel);
        if max > old {
            concurrency.semaphore.add_permits(max - old);
        } else if max < old {
            concurrency.semaphore.remove_permits(old - max);
        }
        Ok(())
    }

    /// Nanoseconds since the limiter's origin on tokio's clock (std's `Instant` unless time is paused).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.inner.origin);
        // u64 arithmetic rather than `as_nanos()`'s u128: 584 years of nanoseconds fit, then it saturates.
        since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()))
    }

    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.inner.origin + Duration::from_nanos(nanos)
    }

    #[inline]
    fn empty_permit(&self, weight: u32) -> Permit<'_> {
        Permit { limiter: self, concurrency_held: 0, weight }
    }

    /// The fast path of every admission of a positive, valid `weight`: a free concurrency slot, then the
    /// rate tokens with nobody queued. No lock, one clock read, one compare-and-swap per limit.
    #[inline(always)]
    fn admit_now(&self, weight: u32) -> Result<Permit<'_>, Shortfall<'_>> {
        let mut permit = self.empty_permit(weight);
        if let Some(concurrency) = &self.inner.concurrency {
            if !concurrency.semaphore.try_acquire(weight) {
                return Err(Shortfall::Full);
            }
            permit.concurrency_held = weight;
        }
        if let Some(rate) = &self.inner.rate {
            let now = self.now_ns();
            // Callers already queued go first: nobody jumps the queue.
            if !rate.queue.is_empty() {
                return Err(Shortfall::Tokens { permit, now, start_at: None });
            }
            if let Err(refused) = rate.tat.book(rate.params(), now, u64::from(weight), 0) {
                return Err(Shortfall::Tokens { permit, now, start_at: Some(refused.start_at) });
            }
        }
        Ok(permit)
    }

    /// The error of a `try_acquire` the fast path could not admit; gives the concurrency slots back.
    ///
    /// Inlined, so that a caller who only looks at the retry-after pays for no `Error` in memory; only the
    /// rare refusal because callers queue is computed out of line.
    #[inline(always)]
    fn refusal<E>(&self, shortfall: Shortfall<'_>) -> Error<E> {
        match shortfall {
            Shortfall::Full => Error::Full { capacity: self.max_concurrent().unwrap_or(0) },
            Shortfall::Tokens { permit, now, start_at: Some(start_at) } => {
                drop(permit);
                Error::RateLimited { retry_after: Duration::from_nanos(start_at - now) }
            }
            Shortfall::Tokens { permit, now, start_at: None } => {
                let tokens = u64::from(permit.weight);
                drop(permit);
                Error::RateLimited { retry_after: self.queued_retry_after(tokens, now) }
            }
        }
    }

    /// How long a `try_acquire` of `tokens` refused because callers queue should wait: until the queue
    /// and then its own tokens would be served, at least 1 ns.
    #[cold]
    #[inline(never)]
    fn queued_retry_after(&self, tokens: u64, now: u64) -> Duration {
        let wait = self.inner.rate.as_ref().map_or(1, |rate| {
            let queued = rate.queue.queued_tokens();
            let start_at = rate.params().decide(rate.tat.load(), now, queued + tokens).start_at;
            start_at.saturating_sub(now).max(1)
        });
        Duration::from_nanos(wait)
    }

    #[inline]
    fn check_weight<E>(&self, weight: u32) -> Result<(), Error<E>> {
        let too_large_for_rate = self
            .inner
            .rate
            .as_ref()
            .is_some_and(|rate| u64::from(weight) > rate.burst.load(Ordering::Relaxed));
        let too_large_for_concurrency =
            self.inner.concurrency.as_ref().is_some_and(|concurrency| {
                weight as usize > concurrency.max.load(Ordering::Relaxed)
            });
        if too_large_for_rate || too_large_for_concurrency {
            return Err(self.too_large(weight));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_large<E>(&self, weight: u32) -> Error<E> {
        let message = match (self.burst(), self.max_concurrent()) {
            (Some(burst), _) if weight > burst => format!(
                "a weight of {weight} can never be admitted by a burst of {burst}; raise the burst or split the call"
            ),
            (_, Some(max)) => format!(
                "a weight of {weight} can never be admitted by max_concurrent {max}; raise it or split the call"
            ),
            _ => format!("a weight of {weight} can never be admitted"),
        };
        Error::ContractViolation { message }
    }

    /// The internal pieces for all-or-nothing acquisition: the state, the parameters, and whether
    /// callers queue (then nobody may take tokens ahead of them).
    pub(crate) fn rate_parts(&self) -> Option<(&AtomicTat, Params, bool)> {
        self.inner.rate.as_ref().map(|rate| (&rate.tat, rate.params(), !rate.queue.is_empty()))
    }

    /// How long until `tokens` rate tokens could be taken, counting the callers already queued.
    pub(crate) fn rate_wait_ns(&self, tokens: u64, now: u64) -> u64 {
        self.inner.rate.as_ref().map_or(0, |rate| {
            let queued = rate.queue.queued_tokens();
            rate.params().decide(rate.tat.load(), now, queued + tokens).start_at - now
        })
    }

    pub(crate) fn try_concurrency(&self, weight: u32) -> Result<Permit<'_>, usize> {
        let mut permit = self.empty_permit(weight);
        if let Some(concurrency) = &self.inner.concurrency {
            if !concurrency.semaphore.try_acquire(weight) {
                return Err(concurrency.max.load(Ordering::Relaxed));
            }
            permit.concurrency_held = weight;
        }
        Ok(permit)
    }

    pub(crate) fn check_weight_for<E>(&self, weight: u32) -> Result<(), Error<E>> {
        self.check_weight(weight)
    }
}

fn no_rate() -> ConfigError {
    ConfigError::new("this limiter has no rate limit; build it with rate(..)")
}

impl fmt::Debug for Limiter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Limiter")
            .field("max_concurrent", &self.max_concurrent())
            .field("available_permits", &self.available_permits())
            .field("rate", &self.rate())
            .field("burst", &self.burst())
            .field("available_tokens", &self.available_tokens())
            .finish()
    }
}

impl RateState {
    #[inline]
    fn params(&self) -> Params {
        Params {
            emission_ns: self.emission_ns.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed),
        }
    }
}

// ===== impl Permit =====

impl Permit<'_> {
    /// The weight this permit was granted for.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// let limiter = Limiter::concurrency(4).unwrap();
    /// assert_eq!(limiter.try_acquire_n::<()>(3).unwrap().weight(), 3);
    /// ```
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The limiter that granted this permit.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// let limiter = Limiter::concurrency(4).unwrap();
    /// let permit = limiter.try_acquire::<()>().unwrap();
    /// assert_eq!(permit.limiter().available_permits(), Some(3));
    /// ```
    pub fn limiter(&self) -> &Limiter {
        self.limiter
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.concurrency_held > 0
            && let Some(concurrency) = &self.limiter.inner.concurrency
        {
            concurrency.semaphore.release(self.concurrency_held);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Permit")
            .field("weight", &self.weight)
            .field("concurrency_held", &self.concurrency_held)
            .finish()
    }
}

// ===== impl Acquire =====

impl<'a, E> Acquire<'a, E> {
    /// Gives up at once, with [`Error::RateLimited`], if the permit cannot be had within `max_wait`.
    ///
    /// The rate wait is predicted exactly, so the future fails on its first poll instead of sleeping first.
    /// A concurrency wait cannot be predicted: it fails with [`Error::Elapsed`] when `max_wait` passes.
    /// An ambient deadline (`aqueduct_core::with_deadline`) that comes earlier still wins.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(1), 1).unwrap();
    /// let _first = limiter.acquire::<()>().await.unwrap();
    /// let error = limiter.acquire::<()>().within(Duration::from_millis(400)).await.unwrap_err();
    /// assert_eq!(error.retry_after(), Some(Duration::from_millis(600)));
    /// # }
    /// ```
    pub fn within(self, max_wait: Duration) -> Self {
        let deadline = Instant::now().checked_add(max_wait);
        match deadline {
            Some(deadline) => self.before(deadline),
            None => self,
        }
    }

    /// Gives up at once if the permit cannot be had by `deadline`; see [`within`](Self::within).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{Limiter, Rate};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = Limiter::rate_limit(Rate::per_second(1), 1).unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(1);
    /// assert!(limiter.acquire::<()>().before(deadline).await.is_ok());
    /// assert!(limiter.acquire::<()>().before(deadline).await.is_ok());
    /// assert!(limiter.acquire::<()>().before(deadline).await.is_err());
    /// # }
    /// ```
    pub fn before(mut self, deadline: Instant) -> Self {
        self.own_deadline = Some(match self.own_deadline {
            Some(existing) if existing < deadline => existing,
            _ => deadline,
        });
        self
    }

    /// The weight requested.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::Limiter;
    /// let limiter = Limiter::concurrency(4).unwrap();
    /// assert_eq!(limiter.acquire_n::<()>(2).weight(), 2);
    /// ```
    pub fn weight(&self) -> u32 {
        self.weight
    }

    fn elapsed_error(deadline: Deadline, started: Instant) -> Error<E> {
        let timeout = if deadline.is_ambient() {
            None
        } else {
            Some(deadline.at().saturating_duration_since(started))
        };
        Error::elapsed(
            Elapsed::new(timeout, deadline.at(), started.elapsed())
                .with_ambient(deadline.is_ambient()),
        )
    }

    /// Takes the rate tokens (if any) for a permit that already holds its concurrency slot, or queues.
    ///
    /// `Poll::Pending` means the state moved to `Queued` and the caller should poll that state now.
    fn take_tokens(
        &mut self,
        permit: Permit<'a>,
        deadline: Option<Deadline>,
        started: Option<Instant>,
    ) -> Waited<'a, E> {
        let limiter = self.limiter;
        let Some(rate) = &limiter.inner.rate else {
            return Poll::Ready(Ok(permit));
        };
        let now = limiter.now_ns();
        let tokens = u64::from(self.weight);
        let params = rate.params();
        // The uncontended path: nobody queues and the tokens are there; one CAS, no lock.
        if rate.queue.is_empty() && rate.tat.book(params, now, tokens, 0).is_ok() {
            return Poll::Ready(Ok(permit));
        }
        let max_wait = deadline.map_or(u64::MAX, |deadline| {
            u64::try_from(deadline.remaining().as_nanos()).unwrap_or(u64::MAX)
        });
        match rate.queue.enter(&rate.tat, params, now, tokens, max_wait) {
            Enter::Admitted => Poll::Ready(Ok(permit)),
            Enter::Refused { start_at } => {
                let too_late = start_at.saturating_sub(now).saturating_sub(max_wait);
                let retry_after = Duration::from_nanos(too_late);
                Poll::Ready(Err(Box::new(Error::RateLimited { retry_after })))
            }
            Enter::Queued { ticket } => {
                let deadline = deadline
                    .map(|deadline| (deadline, Box::pin(tokio::time::sleep_until(deadline.at()))));
                // The clock is read again only on this slow path, for the elapsed time of a later error.
                let started = started.unwrap_or_else(Instant::now);
                self.state = AcquireState::Waiting(Box::new(Waiting {
                    limiter,
                    weight: self.weight,
                    stage: Stage::Queued { permit, ticket, slot: None, deadline, started },
                }));
                Poll::Pending
            }
        }
    }

    /// The first poll when the fast path fell short: read the deadline, then wait for a concurrency slot
    /// or for rate tokens. `Poll::Pending` means the state moved to `Waiting`, to be polled now.
    #[cold]
    #[inline(never)]
    fn start_waiting(&mut self, shortfall: Shortfall<'a>, context: &Context<'_>) -> Waited<'a, E> {
        let limiter = self.limiter;
        // The ambient deadline is read only now, off the fast path.
        let deadline = Deadline::clamp(self.own_deadline);
        if let Shortfall::Tokens { permit, .. } = shortfall {
            return self.take_tokens(permit, deadline, None);
        }
        let started = Instant::now();
        if let Some(deadline) = deadline
            && deadline.at() <= started
        {
            return Poll::Ready(Err(Box::new(Self::elapsed_error(deadline, started))));
        }
        let Some(concurrency) = &limiter.inner.concurrency else {
            unreachable!("only a concurrency limit refuses a slot");
        };
        match concurrency.semaphore.enter(self.weight, context.waker()) {
            semaphore::Enter::Acquired => {
                let mut permit = limiter.empty_permit(self.weight);
                permit.concurrency_held = self.weight;
                self.take_tokens(permit, deadline, Some(started))
            }
            semaphore::Enter::Queued(ticket) => {
                let deadline = deadline
                    .map(|deadline| (deadline, Box::pin(tokio::time::sleep_until(deadline.at()))));
                self.state = AcquireState::Waiting(Box::new(Waiting {
                    limiter,
                    weight: self.weight,
                    stage: Stage::Permit { ticket, deadline, started },
                }));
                Poll::Pending
            }
        }
    }

    /// Polls a waiting future: for its concurrency slot, then for its rate tokens.
    #[cold]
    #[inline(never)]
    fn poll_waiting(&mut self, context: &mut Context<'_>) -> Waited<'a, E> {
        let limiter = self.limiter;
        loop {
            let AcquireState::Waiting(waiting) = &mut self.state else {
                panic!("`Acquire` polled after it completed");
            };
            match &mut waiting.stage {
                Stage::Permit { ticket, deadline, started } => {
                    let Some(concurrency) = &limiter.inner.concurrency else {
                        unreachable!("only a concurrency limit queues for slots");
                    };
                    if concurrency.semaphore.poll_waiter(*ticket, context.waker()) {
                        let deadline = deadline.as_ref().map(|(deadline, _)| *deadline);
                        let started = *started;
                        // Granted: out of the queue, the slots are this future's now.
                        waiting.stage = Stage::Left;
                        self.state = AcquireState::Done;
                        let mut permit = limiter.empty_permit(self.weight);
                        permit.concurrency_held = self.weight;
                        match self.take_tokens(permit, deadline, Some(started)) {
                            Poll::Pending => continue,
                            ready => return ready,
                        }
                    }
                    if let Some((deadline, sleep)) = deadline
                        && sleep.as_mut().poll(context).is_ready()
                    {
                        let error = Self::elapsed_error(*deadline, *started);
                        // Leaves the queue on drop; slots granted since the check above go back.
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(Box::new(error)));
                    }
                    return Poll::Pending;
                }
                Stage::Queued { ticket, slot, deadline, started, .. } => {
                    let Some(rate) = &limiter.inner.rate else {
                        unreachable!("only a rate limit queues");
                    };
                    let now = limiter.now_ns();
                    match rate.queue.poll(*ticket, context.waker(), &rate.tat, rate.params(), now) {
                        QueuePoll::Admitted => {
                            let Stage::Queued { permit, .. } =
                                std::mem::replace(&mut waiting.stage, Stage::Left)
                            else {
                                unreachable!("matched just above");
                            };
                            self.state = AcquireState::Done;
                            return Poll::Ready(Ok(permit));
                        }
                        QueuePoll::Wait { head_start_at: Some(start_at) } => {
                            if slot.as_ref().map(|(at, _)| *at) != Some(start_at) {
                                let sleep = Box::pin(tokio::time::sleep_until(
                                    limiter.instant_at(start_at),
                                ));
                                *slot = Some((start_at, sleep));
                            }
                            if let Some((_, sleep)) = slot
                                && sleep.as_mut().poll(context).is_ready()
                            {
                                continue;
                            }
                        }
                        QueuePoll::Wait { head_start_at: None } => *slot = None,
                    }
                    if let Some((deadline, sleep)) = deadline
                        && sleep.as_mut().poll(context).is_ready()
                    {
                        let error = Self::elapsed_error(*deadline, *started);
                        // Leaves the queue on drop.
                        self.state = AcquireState::Done;
                        return Poll::Ready(Err(Box::new(error)));
                    }
                    return Poll::Pending;
                }
                Stage::Left => unreachable!("a future out of every queue is done"),
            }
        }
    }
}

impl<'a, E> Future for Acquire<'a, E> {
    type Output = Result<Permit<'a>, Error<E>>;

    // Inlined into the caller so that a permit granted on the first poll is returned in registers: through
    // memory, the 64-byte `Result` is copied twice and stalls on store forwarding (measured with perf).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let AcquireState::Start = this.state {
            this.state = AcquireState::Done;
            let limiter = this.limiter;
            let weight = this.weight;
            // A weight of 1 never exceeds a limit (both are at least 1): the common call skips the check.
            if weight != 1 {
                limiter.check_weight(weight)?;
                if weight == 0 {
                    return Poll::Ready(Ok(limiter.empty_permit(0)));
                }
            }
            // The fast path: a free concurrency slot, and rate tokens there with nobody queued.
            match limiter.admit_now(weight) {
                Ok(permit) => return Poll::Ready(Ok(permit)),
                Err(shortfall) => match this.start_waiting(shortfall, context) {
                    Poll::Pending => {}
                    Poll::Ready(result) => return Poll::Ready(result.map_err(|error| *error)),
                },
            }
        }
        this.poll_waiting(context).map_err(|error| *error)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        match &self.stage {
            Stage::Queued { ticket, .. } => {
                if let Some(rate) = &self.limiter.inner.rate {
                    rate.queue.leave(*ticket);
                }
            }
            Stage::Permit { ticket, .. } => {
                if let Some(concurrency) = &self.limiter.inner.concurrency {
                    // Gives the slots back if they were granted since the last poll.
                    concurrency.semaphore.leave(*ticket, self.weight);
                }
            }
            Stage::Left => {}
        }
    }
}

impl<E> fmt::Debug for Acquire<'_, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            AcquireState::Start => "start",
            AcquireState::Waiting(waiting) => match waiting.stage {
                Stage::Permit { .. } => "waiting for a concurrency slot",
                Stage::Queued { .. } => "queued for rate tokens",
                Stage::Left => "done",
            },
            AcquireState::Done => "done",
        };
        formatter
            .debug_struct("Acquire")
            .field("weight", &self.weight)
            .field("state", &state)
            .finish()
    }
}
