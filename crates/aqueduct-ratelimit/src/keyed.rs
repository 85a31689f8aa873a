//! `KeyedRateLimiter`: one GCRA bucket per key, with a hard bound on keys and eviction without a background task.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::{Deadline, Error};
use tokio::time::{Instant, Sleep};

use crate::config::{ConfigError, Quota};
use crate::gcra::{AtomicTat, Decision, Params};
use crate::limiter::{Booking, Peek};
use crate::prehashed::{KeyLookup, Lookup, PassThrough, Prehashed};

/// A rate limit per key (per client, per IP, per tenant), with a hard bound on how many keys it remembers.
///
/// - **Bounded memory**: at most `max_keys` keys are tracked; the maps are allocated once at build time
///   (room for twice `max_keys`, so that they never grow). Keys are spread over up to 16 shards of at least
///   1 024 keys, and the bound is enforced per shard (`max_keys / shards` each).
/// - **Eviction without a background task**: a key whose bucket is full again (idle long enough) is
///   indistinguishable from a key never seen, so forgetting it is exact. Idle keys are swept a shard at a
///   time, when the shard is full or every so many operations, and only when the shard's earliest idle time
///   has passed, so the sweep is amortised over the operations that made it necessary.
/// - **Overflow policy**: when every slot holds a key that is still limited, a new key is either refused
///   ([`Overflow::Reject`], the default) or counted against one shared bucket ([`Overflow::Shared`]).
/// - **Per-key quotas**: [`quota_for`](KeyedRateLimiterBuilder::quota_for) picks each key's quota when the
///   key is first seen (for example a higher rate for paying tenants).
///
/// Waiting is FIFO per key, by reservation, exactly as for [`Limiter`](crate::Limiter).
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(1), 2).unwrap())
///     .max_keys(10_000)
///     .build()
///     .unwrap();
/// assert!(limiter.try_acquire::<()>(&"10.0.0.1").is_ok());
/// assert!(limiter.try_acquire::<()>(&"10.0.0.1").is_ok());
/// assert!(limiter.try_acquire::<()>(&"10.0.0.1").is_err(), "this client spent its burst");
/// assert!(limiter.try_acquire::<()>(&"10.0.0.2").is_ok(), "other clients are not affected");
/// # }
/// ```
pub struct KeyedRateLimiter<K> {
    inner: Arc<KeyedInner<K>>,
}

/// Builds a [`KeyedRateLimiter`]; [`build`](Self::build) validates the configuration.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{KeyedRateLimiter, Overflow, Quota, Rate};
///
/// let quota = Quota::new(Rate::per_second(10), 10).unwrap();
/// let limiter = KeyedRateLimiter::<u64>::builder(quota)
///     .max_keys(1_000)
///     .overflow(Overflow::Shared(Quota::new(Rate::per_second(100), 10).unwrap()))
///     .build()
///     .unwrap();
/// assert_eq!(limiter.max_keys(), 1_000);
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct KeyedRateLimiterBuilder<K> {
    quota: Quota,
    max_keys: usize,
    overflow: Overflow,
    quota_for: Option<QuotaFor<K>>,
}

/// What a [`KeyedRateLimiter`] does with a new key when every slot holds a key that is still limited.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::Overflow;
/// assert_eq!(Overflow::default(), Overflow::Reject);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the call with [`Error::Full`] (capacity = `max_keys`) until a key goes idle. The default.
    #[default]
    Reject,
    /// Count every key that does not fit against one shared bucket with this quota.
    Shared(Quota),
}

/// The future of [`KeyedRateLimiter::acquire`]: resolves when the key's booked slot comes.
///
/// # Cancellation
///
/// Dropping it before it resolves refunds the key's booking exactly when no later call for the same key
/// booked after it; otherwise that slot goes unused (the key admits less, never more, than its quota).
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(10), 1).unwrap()).build().unwrap();
/// limiter.acquire::<()>("tenant-a").await.unwrap();
/// let waiting = limiter.acquire::<()>("tenant-a");
/// drop(waiting);
/// # }
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct KeyedAcquire<'a, K: Hash + Eq + Clone, E> {
    limiter: &'a KeyedRateLimiter<K>,
    key: Option<K>,
    weight: u32,
    own_deadline: Option<Instant>,
    waiting: Option<(KeyedBooking, Pin<Box<Sleep>>)>,
    error: PhantomData<fn() -> E>,
}

// ===== private state =====

type QuotaFor<K> = Box<dyn Fn(&K) -> Quota + Send + Sync>;

struct KeyedInner<K> {
    origin: Instant,
    quota: Quota,
    quota_for: Option<QuotaFor<K>>,
    max_keys: usize,
    overflow: Overflow,
    overflow_tat: AtomicTat,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
}

struct Shard<K> {
    /// The keys with their hash, which the map passes through: a key is hashed once per operation.
    entries: HashMap<Prehashed<K>, Entry, PassThrough>,
    capacity: usize,
    /// No entry becomes idle before this time (a lower bound of every entry's TAT).
    next_idle_at: u64,
    operations_since_sweep: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    tat: u64,
    params: Params,
}

#[derive(Debug, Clone, Copy)]
enum KeyedBooking {
    Key(Booking),
    Shared(Booking),
}

const MAX_SHARDS: usize = 16;
/// Small limiters get one shard, so that `max_keys` is not split into tiny per-shard quotas.
const MIN_KEYS_PER_SHARD: usize = 1_024;
const SWEEP_EVERY: usize = 64;

// ===== impl KeyedRateLimiterBuilder =====

impl<K> KeyedRateLimiterBuilder<K> {
    /// The hard bound on how many keys are tracked at once (default 100 000).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// let limiter = KeyedRateLimiter::<String>::builder(Quota::new(Rate::per_second(1), 1).unwrap())
    ///     .max_keys(50)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(limiter.max_keys(), 50);
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What to do with a new key when the table is full of limited keys (default [`Overflow::Reject`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Overflow, Quota, Rate};
    /// let quota = Quota::new(Rate::per_second(1), 1).unwrap();
    /// assert!(KeyedRateLimiter::<u32>::builder(quota).overflow(Overflow::Reject).build().is_ok());
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Picks each key's quota when the key is first seen (or seen again after it was evicted).
    ///
    /// The function runs under the shard's lock: keep it cheap and do not call the limiter from it.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let free = Quota::new(Rate::per_second(1), 1).unwrap();
    /// let paid = Quota::new(Rate::per_second(100), 50).unwrap();
    /// let limiter = KeyedRateLimiter::builder(free)
    ///     .quota_for(move |tenant: &&str| if tenant.starts_with("paid-") { paid } else { free })
    ///     .build()
    ///     .unwrap();
    /// assert!(limiter.try_acquire_n::<()>(&"paid-acme", 50).is_ok());
    /// assert!(limiter.try_acquire_n::<()>(&"someone", 2).is_err());
    /// # }
    /// ```
    pub fn quota_for(mut self, quota_for: impl Fn(&K) -> Quota + Send + Sync + 'static) -> Self {
        self.quota_for = Some(Box::new(quota_for));
        self
    }

    /// Validates the configuration and builds the limiter, allocating room for `max_keys` keys.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max_keys` is 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// let quota = Quota::new(Rate::per_second(1), 1).unwrap();
    /// let error = KeyedRateLimiter::<u32>::builder(quota).max_keys(0).build().unwrap_err();
    /// assert_eq!(error.to_string(), "max_keys is 0; set it to at least 1");
    /// ```
    pub fn build(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys is 0; set it to at least 1"));
        }
        let shard_count = (self.max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        let base = self.max_keys / shard_count;
        let extra = self.max_keys % shard_count;
        let shards = (0..shard_count)
            .map(|index| {
                let capacity = base + usize::from(index < extra);
                Mutex::new(Shard {
                    // Twice the room: deletions leave tombstones, and a map at most half full
                    // rehashes them in place instead of growing.
                    entries: HashMap::with_capacity_and_hasher(
                        capacity.saturating_mul(2),
                        PassThrough::default(),
                    ),
                    capacity,
                    next_idle_at: u64::MAX,
                    operations_since_sweep: 0,
                })
            })
            .collect();
        let overflow_tat = match self.overflow {
            Overflow::Shared(quota) => {
                AtomicTat::new(quota.params.tat_with_tokens(quota.params.burst, 0))
            }
            Overflow::Reject => AtomicTat::new(0),
        };
        Ok(KeyedRateLimiter {
            inner: Arc::new(KeyedInner {
                origin: Instant::now(),
                quota: self.quota,
                quota_for: self.quota_for,
                max_keys: self.max_keys,
                overflow: self.overflow,
                overflow_tat,
                hasher: RandomState::new(),
                shards,
            }),
        })
    }
}

impl<K> fmt::Debug for KeyedRateLimiterBuilder<K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyedRateLimiterBuilder")
            .field("quota", &self.quota)
            .field("max_keys", &self.max_keys)
            .field("overflow", &self.overflow)
            .field("quota_for", &self.quota_for.is_some())
            .finish()
    }
}

// ===== impl KeyedRateLimiter =====

impl<K> KeyedRateLimiter<K> {
    /// Starts a builder; `quota` applies to every key unless [`quota_for`](KeyedRateLimiterBuilder::quota_for)
    /// says otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// let limiter = KeyedRateLimiter::<u32>::builder(Quota::new(Rate::per_second(5), 5).unwrap()).build().unwrap();
    /// assert!(limiter.is_empty());
    /// ```
    pub fn builder(quota: Quota) -> KeyedRateLimiterBuilder<K> {
        KeyedRateLimiterBuilder {
            quota,
            max_keys: 100_000,
            overflow: Overflow::Reject,
            quota_for: None,
        }
    }

    /// The hard bound on tracked keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// let limiter = KeyedRateLimiter::<u32>::builder(Quota::new(Rate::per_second(5), 5).unwrap()).build().unwrap();
    /// assert_eq!(limiter.max_keys(), 100_000);
    /// ```
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// How many keys are tracked now (never more than [`max_keys`](Self::max_keys)).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(5), 5).unwrap()).build().unwrap();
    /// limiter.try_acquire::<()>(&7_u32).unwrap();
    /// assert_eq!(limiter.len(), 1);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).entries.len()).sum()
    }

    /// `true` when no key is tracked.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// let limiter = KeyedRateLimiter::<u32>::builder(Quota::new(Rate::per_second(5), 5).unwrap()).build().unwrap();
    /// assert!(limiter.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the maps have room for without allocating: a measure of the memory held, which
    /// never exceeds what `build()` allocated for `max_keys` keys (deleted entries can lower it until the
    /// maps rehash in place).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// let limiter = KeyedRateLimiter::<u32>::builder(Quota::new(Rate::per_second(5), 5).unwrap())
    ///     .max_keys(1_000)
    ///     .build()
    ///     .unwrap();
    /// assert!(limiter.allocated_capacity() >= 1_000);
    /// ```
    pub fn allocated_capacity(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).entries.capacity()).sum()
    }

    fn now_ns(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.inner.origin);
        // u64 arithmetic rather than `as_nanos()`'s u128: 584 years of nanoseconds fit, then it saturates.
        since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()))
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// Forgets every key whose bucket is full again. Never needed for correctness; useful before measuring.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(10), 1).unwrap()).build().unwrap();
    /// limiter.try_acquire::<()>(&"a").unwrap();
    /// tokio::time::advance(Duration::from_millis(100)).await;
    /// limiter.evict_idle();
    /// assert!(limiter.is_empty());
    /// # }
    /// ```
    pub fn evict_idle(&self) {
        let now = self.now_ns();
        for shard in &self.inner.shards {
            lock(shard).sweep(now);
        }
    }

    /// Spends one token of `key`'s bucket now, or fails without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::RateLimited`] with the exact time until the key would be admitted; [`Error::Full`] when the
    /// key is new, the table is full of limited keys and the overflow policy is [`Overflow::Reject`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(4), 1).unwrap()).build().unwrap();
    /// limiter.try_acquire::<()>(&1_u8).unwrap();
    /// let error = limiter.try_acquire::<()>(&1_u8).unwrap_err();
    /// assert_eq!(error.retry_after(), Some(Duration::from_millis(250)));
    /// # }
    /// ```
    pub fn try_acquire<E>(&self, key: &K) -> Result<(), Error<E>> {
        self.try_acquire_n(key, 1)
    }

    /// Spends `weight` tokens of `key`'s bucket now, or fails without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), plus [`Error::ContractViolation`] when `weight` exceeds the
    /// key's burst.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(4), 4).unwrap()).build().unwrap();
    /// assert!(limiter.try_acquire_n::<()>(&"k", 4).is_ok());
    /// assert!(limiter.try_acquire_n::<()>(&"k", 5).is_err());
    /// # }
    /// ```
    pub fn try_acquire_n<E>(&self, key: &K, weight: u32) -> Result<(), Error<E>> {
        let now = self.now_ns();
        match self.book(key, weight, now, 0)? {
            Ok(_) => Ok(()),
            Err(refused) => Err(Error::RateLimited {
                retry_after: Duration::from_nanos(refused.start_at - now),
            }),
        }
    }

    /// Whether `weight` tokens for `key` would be admitted now, spending nothing and remembering nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Peek, Quota, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(4), 1).unwrap()).build().unwrap();
    /// assert_eq!(limiter.peek(&"k", 1), Peek::Admit);
    /// assert!(limiter.is_empty(), "a peek does not create the key");
    /// # }
    /// ```
    pub fn peek(&self, key: &K, weight: u32) -> Peek {
        let now = self.now_ns();
        let (hash, shard) = self.shard_of(key);
        let shard = lock(shard);
        let (tat, params) = match shard.entries.get(&Lookup { hash, key } as &dyn KeyLookup<K>) {
            Some(entry) => (entry.tat, entry.params),
            None => (0, self.quota_of(key).params),
        };
        if u64::from(weight) > params.burst {
            return Peek::TooLarge;
        }
        let decision = params.decide(tat, now, u64::from(weight));
        if decision.start_at > now {
            Peek::RateLimited { retry_after: Duration::from_nanos(decision.start_at - now) }
        } else {
            Peek::Admit
        }
    }

    /// Waits for one token of `key`'s bucket, in FIFO order per key.
    ///
    /// # Cancellation
    ///
    /// See [`KeyedAcquire`].
    ///
    /// # Errors
    ///
    /// With a deadline ([`KeyedAcquire::within`] or an ambient one), [`Error::RateLimited`] at once when the
    /// slot would come too late; [`Error::Full`] as for [`try_acquire`](Self::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(10), 1).unwrap()).build().unwrap();
    /// let start = Instant::now();
    /// for _ in 0..3 {
    ///     limiter.acquire::<()>("user-1").await.unwrap();
    /// }
    /// assert_eq!(start.elapsed().as_millis(), 200);
    /// # }
    /// ```
    pub fn acquire<E>(&self, key: K) -> KeyedAcquire<'_, K, E> {
        self.acquire_n(key, 1)
    }

    /// Waits for `weight` tokens of `key`'s bucket, in FIFO order per key.
    ///
    /// # Cancellation
    ///
    /// See [`KeyedAcquire`].
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), plus [`Error::ContractViolation`] when `weight` exceeds the burst.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(10), 5).unwrap()).build().unwrap();
    /// limiter.acquire_n::<()>("k", 5).await.unwrap();
    /// # }
    /// ```
    pub fn acquire_n<E>(&self, key: K, weight: u32) -> KeyedAcquire<'_, K, E> {
        KeyedAcquire {
            limiter: self,
            key: Some(key),
            weight,
            own_deadline: None,
            waiting: None,
            error: PhantomData,
        }
    }

    /// The key's hash (computed once per operation) and its shard.
    ///
    /// The shard is picked from bits 32 to 47 of the hash: the shard's map takes its bucket from the low
    /// bits and its tag from the top 7, so all three stay independent.
    #[inline]
    fn shard_of(&self, key: &K) -> (u64, &Mutex<Shard<K>>) {
        let hash = self.inner.hasher.hash_one(key);
        let middle = (hash >> 32) & 0xFFFF;
        // At most 16 shards: the product fits in a u64 and the index is below the shard count.
        let index = (middle * self.inner.shards.len() as u64) >> 16;
        (hash, &self.inner.shards[usize::try_from(index).unwrap_or(0)])
    }

    fn quota_of(&self, key: &K) -> Quota {
        self.inner.quota_for.as_ref().map_or(self.inner.quota, |quota_for| quota_for(key))
    }

    /// Books `weight` tokens for `key` if they can start within `max_wait`.
    ///
    /// The outer `Err` is a refusal that waiting cannot fix (too large, table full); the inner result is
    /// the GCRA decision (`Err` = too late, nothing booked).
    #[allow(clippy::type_complexity)]
    fn book<E>(
        &self,
        key: &K,
        weight: u32,
        now: u64,
        max_wait: u64,
    ) -> Result<Result<(KeyedBooking, Decision), Decision>, Error<E>> {
        let tokens = u64::from(weight);
        let (hash, shard) = self.shard_of(key);
        let mut shard = lock(shard);
        shard.operations_since_sweep += 1;
        if shard.operations_since_sweep >= SWEEP_EVERY.max(shard.entries.len()) {
            shard.sweep(now);
        }
        if let Some(entry) = shard.entries.get_mut(&Lookup { hash, key } as &dyn KeyLookup<K>) {
            let params = entry.params;
            too_large(tokens, params)?;
            let decision = params.decide(entry.tat, now, tokens);
            if decision.start_at.saturating_sub(now) > max_wait {
                return Ok(Err(decision));
            }
            entry.tat = decision.new_tat;
            let booking = Booking { new_tat: decision.new_tat, cost_ns: params.cost_ns(tokens) };
            return Ok(Ok((KeyedBooking::Key(booking), decision)));
        }
        let params = self.quota_of(key).params;
        too_large(tokens, params)?;
        let decision = params.decide(0, now, tokens);
        if decision.start_at.saturating_sub(now) > max_wait {
            return Ok(Err(decision));
        }
        if shard.entries.len() >= shard.capacity {
            shard.sweep(now);
        }
        if shard.entries.len() < shard.capacity {
            let key = Prehashed { hash, key: key.clone() };
            shard.entries.insert(key, Entry { tat: decision.new_tat, params });
            shard.next_idle_at = shard.next_idle_at.min(decision.new_tat);
            let booking = Booking { new_tat: decision.new_tat, cost_ns: params.cost_ns(tokens) };
            return Ok(Ok((KeyedBooking::Key(booking), decision)));
        }
        drop(shard);
        match self.inner.overflow {
            Overflow::Reject => Err(Error::Full { capacity: self.inner.max_keys }),
            Overflow::Shared(quota) => {
                too_large(tokens, quota.params)?;
                Ok(self.inner.overflow_tat.book(quota.params, now, tokens, max_wait).map(
                    |decision| {
                        let booking = Booking {
                            new_tat: decision.new_tat,
                            cost_ns: quota.params.cost_ns(tokens),
                        };
                        (KeyedBooking::Shared(booking), decision)
                    },
                ))
            }
        }
    }

    fn refund(&self, key: &K, booking: KeyedBooking) {
        match booking {
            KeyedBooking::Shared(booking) => {
                self.inner.overflow_tat.refund_tail(booking.new_tat, booking.cost_ns);
            }
            KeyedBooking::Key(booking) => {
                let (hash, shard) = self.shard_of(key);
                let mut shard = lock(shard);
                let mut refunded_to = None;
                if let Some(entry) =
                    shard.entries.get_mut(&Lookup { hash, key } as &dyn KeyLookup<K>)
                    && entry.tat == booking.new_tat
                {
                    entry.tat = booking.new_tat.saturating_sub(booking.cost_ns);
                    refunded_to = Some(entry.tat);
                }
                if let Some(tat) = refunded_to {
                    shard.next_idle_at = shard.next_idle_at.min(tat);
                }
            }
        }
    }
}

fn too_large<E>(tokens: u64, params: Params) -> Result<(), Error<E>> {
    if tokens > params.burst {
        return Err(Error::ContractViolation {
            message: format!(
                "a weight of {tokens} can never be admitted by a burst of {}; raise the burst or split the call",
                params.burst
            ),
        });
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections never panic midway through an update, so a poisoned lock holds valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyedRateLimiter")
            .field("quota", &self.inner.quota)
            .field("max_keys", &self.inner.max_keys)
            .field("overflow", &self.inner.overflow)
            .field("len", &self.len())
            .finish()
    }
}

impl<K: Hash + Eq> Shard<K> {
    /// Forgets every idle entry if one can be idle yet; recomputes the earliest idle time.
    fn sweep(&mut self, now: u64) {
        self.operations_since_sweep = 0;
        if now < self.next_idle_at {
            return;
        }
        let mut next_idle_at = u64::MAX;
        self.entries.retain(|_, entry| {
            let keep = entry.tat > now;
            if keep {
                next_idle_at = next_idle_at.min(entry.tat);
            }
            keep
        });
        self.next_idle_at = next_idle_at;
    }
}

// ===== impl KeyedAcquire =====

impl<K: Hash + Eq + Clone, E> KeyedAcquire<'_, K, E> {
    /// Gives up at once, with [`Error::RateLimited`], if the key's slot would come later than `max_wait`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aqueduct_ratelimit::{KeyedRateLimiter, Quota, Rate};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(1), 1).unwrap()).build().unwrap();
    /// limiter.acquire::<()>("k").await.unwrap();
    /// let error = limiter.acquire::<()>("k").within(Duration::from_millis(10)).await.unwrap_err();
    /// assert_eq!(error.retry_after(), Some(Duration::from_millis(990)));
    /// # }
    /// ```
    pub fn within(mut self, max_wait: Duration) -> Self {
        if let Some(deadline) = Instant::now().checked_add(max_wait) {
            self.own_deadline =
                Some(self.own_deadline.map_or(deadline, |existing| existing.min(deadline)));
        }
        self
    }
}

// The key is never pinned: it is only borrowed to find the bucket.
impl<K: Hash + Eq + Clone, E> Unpin for KeyedAcquire<'_, K, E> {}

impl<K: Hash + Eq + Clone, E> Future for KeyedAcquire<'_, K, E> {
    type Output = Result<(), Error<E>>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some((_, sleep)) = &mut this.waiting {
            if sleep.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            this.waiting = None;
            this.key = None;
            return Poll::Ready(Ok(()));
        }
        let key = this.key.as_ref().expect("`KeyedAcquire` polled after it completed");
        let limiter = this.limiter;
        let now = limiter.now_ns();
        let max_wait = Deadline::clamp(this.own_deadline).map_or(u64::MAX, |deadline| {
            u64::try_from(deadline.remaining().as_nanos()).unwrap_or(u64::MAX)
        });
        match limiter.book(key, this.weight, now, max_wait) {
            Err(error) => {
                this.key = None;
                Poll::Ready(Err(error))
            }
            Ok(Err(refused)) => {
                this.key = None;
                let too_late = refused.start_at - now - max_wait;
                Poll::Ready(Err(Error::RateLimited { retry_after: Duration::from_nanos(too_late) }))
            }
            Ok(Ok((_, decision))) if decision.start_at <= now => {
                this.key = None;
                Poll::Ready(Ok(()))
            }
            Ok(Ok((booking, decision))) => {
                let at = limiter.inner.origin + Duration::from_nanos(decision.start_at);
                let mut sleep = Box::pin(tokio::time::sleep_until(at));
                let pending = sleep.as_mut().poll(context).is_pending();
                if pending {
                    this.waiting = Some((booking, sleep));
                    Poll::Pending
                } else {
                    this.key = None;
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

impl<K: Hash + Eq + Clone, E> Drop for KeyedAcquire<'_, K, E> {
    fn drop(&mut self) {
        if let (Some((booking, _)), Some(key)) = (self.waiting.take(), self.key.take()) {
            self.limiter.refund(&key, booking);
        }
    }
}

impl<K: Hash + Eq + Clone, E> fmt::Debug for KeyedAcquire<'_, K, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyedAcquire")
            .field("weight", &self.weight)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}
