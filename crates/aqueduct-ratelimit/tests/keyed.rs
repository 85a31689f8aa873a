//! The keyed limiter: bounded memory with a million keys, eviction of idle keys, overflow policies, per-key quotas.

use std::time::Duration;

use aqueduct_ratelimit::{Error, KeyedRateLimiter, Overflow, Peek, Quota, Rate};

fn quota(per_second: u64, burst: u32) -> Quota {
    Quota::new(Rate::per_second(per_second), burst).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_million_distinct_keys_keep_memory_bounded_while_keys_go_idle() {
    let limiter = KeyedRateLimiter::builder(quota(1_000, 1)).max_keys(10_000).build().unwrap();
    let allocated = limiter.allocated_capacity();
    let mut refused = 0;
    for key in 0..1_000_000_u64 {
        // A hundred new keys every 100 µs; each goes idle 1 ms after its call.
        if key % 100 == 0 {
            tokio::time::advance(Duration::from_micros(100)).await;
        }
        if limiter.try_acquire::<()>(&key).is_err() {
            refused += 1;
        }
        assert!(limiter.len() <= 10_000);
    }
    assert_eq!(refused, 0, "idle keys were evicted in time for new ones");
    assert!(limiter.allocated_capacity() <= allocated, "the maps never grew");
}

#[tokio::test(start_paused = true)]
async fn a_million_keys_that_never_go_idle_are_refused_beyond_max_keys() {
    let limiter = KeyedRateLimiter::builder(quota(1, 1)).max_keys(1_000).build().unwrap();
    let allocated = limiter.allocated_capacity();
    let mut full = 0;
    for key in 0..1_000_000_u64 {
        match limiter.try_acquire::<()>(&key) {
            Ok(()) => {}
            Err(Error::Full { capacity }) => {
                assert_eq!(capacity, 1_000);
                full += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(limiter.len(), 1_000);
    assert_eq!(full, 999_000);
    assert!(limiter.allocated_capacity() <= allocated);
    // Once the tracked keys are idle again, new keys fit.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(limiter.try_acquire::<()>(&u64::MAX).is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_shared_overflow_bucket_limits_keys_that_do_not_fit() {
    let limiter = KeyedRateLimiter::builder(quota(1, 1))
        .max_keys(4)
        .overflow(Overflow::Shared(quota(10, 3)))
        .build()
        .unwrap();
    for key in 0..4_u32 {
        limiter.try_acquire::<()>(&key).unwrap();
    }
    // Four more keys share a bucket of 3.
    assert!(limiter.try_acquire::<()>(&100).is_ok());
    assert!(limiter.try_acquire::<()>(&101).is_ok());
    assert!(limiter.try_acquire::<()>(&102).is_ok());
    let refused = limiter.try_acquire::<()>(&103).unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(limiter.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn eviction_of_an_idle_key_is_exact() {
    let limiter = KeyedRateLimiter::builder(quota(10, 2)).max_keys(1).build().unwrap();
    limiter.try_acquire_n::<()>(&"a", 2).unwrap();
    tokio::time::advance(Duration::from_millis(100)).await;
    // "a" is not idle yet (one token short), so "b" does not fit.
    assert!(limiter.try_acquire::<()>(&"b").unwrap_err().is_full());
    tokio::time::advance(Duration::from_millis(100)).await;
    // Now "a" is full again and forgetting it loses nothing.
    limiter.try_acquire::<()>(&"b").unwrap();
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.peek(&"a", 2), Peek::Admit);
}

#[tokio::test(start_paused = true)]
async fn per_key_quotas_apply_to_their_keys() {
    let limiter = KeyedRateLimiter::builder(quota(1, 1))
        .quota_for(|key: &u32| if *key == 0 { quota(100, 100) } else { quota(1, 1) })
        .build()
        .unwrap();
    limiter.try_acquire_n::<()>(&0, 100).unwrap();
    limiter.try_acquire::<()>(&1).unwrap();
    assert!(limiter.try_acquire::<()>(&1).is_err());
    let too_large = limiter.try_acquire_n::<()>(&2, 2).unwrap_err();
    assert!(matches!(too_large, Error::ContractViolation { .. }), "{too_large:?}");
}

#[tokio::test(start_paused = true)]
async fn keyed_waiters_for_one_key_are_admitted_in_order_and_other_keys_are_independent() {
    let limiter = KeyedRateLimiter::builder(quota(10, 1)).build().unwrap();
    let start = tokio::time::Instant::now();
    let (a, b) = tokio::join!(
        async {
            for _ in 0..3 {
                limiter.acquire::<()>("a").await.unwrap();
            }
            start.elapsed()
        },
        async {
            limiter.acquire::<()>("b").await.unwrap();
            start.elapsed()
        }
    );
    assert_eq!(a, Duration::from_millis(200));
    assert_eq!(b, Duration::ZERO);
    let refused = limiter.acquire::<()>("a").within(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(50)));
}
