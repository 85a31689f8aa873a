//! Bad configuration is a clear error from `build()`, never a panic or a hang; run-time reconfiguration grants no burst.

use std::time::Duration;

use aqueduct_ratelimit::{KeyedRateLimiter, Limiter, Peek, Quota, Rate};

#[test]
fn invalid_configurations_are_refused_with_a_message_saying_what_to_change() {
    let cases: Vec<(Result<Limiter, _>, &str)> = vec![
        (Limiter::builder().build(), "set max_concurrent, rate, or both"),
        (Limiter::builder().max_concurrent(0).build(), "max_concurrent is 0"),
        (Limiter::builder().max_concurrent(usize::MAX).build(), "set it to at most"),
        (Limiter::builder().rate(Rate::per_second(0)).build(), "count is 0"),
        (Limiter::builder().rate(Rate::new(1, Duration::ZERO)).build(), "period is zero"),
        (
            Limiter::builder().rate(Rate::per_second(2_000_000_000)).build(),
            "faster than 1e9 per second",
        ),
        (
            Limiter::builder().rate(Rate::new(1, Duration::from_secs(400 * 86_400))).build(),
            "slower than one call per year",
        ),
        (Limiter::builder().rate(Rate::per_second(1)).burst(0).build(), "burst is 0"),
        (Limiter::builder().max_concurrent(1).burst(3).build(), "need a rate"),
        (
            Limiter::builder().rate(Rate::per_second(1)).burst(2).initial_tokens(3).build(),
            "initial_tokens is 3",
        ),
    ];
    for (result, expected) in cases {
        let error = result.unwrap_err();
        assert!(error.to_string().contains(expected), "{error} should mention {expected:?}");
        assert!(error.to_string().chars().next().unwrap().is_lowercase());
    }
    let keyed = KeyedRateLimiter::<u8>::builder(Quota::new(Rate::per_second(1), 1).unwrap())
        .max_keys(0)
        .build();
    assert!(keyed.unwrap_err().to_string().contains("max_keys is 0"));
}

#[test]
fn the_supported_range_goes_from_one_per_day_to_a_billion_per_second() {
    assert!(Limiter::rate_limit(Rate::per_day(1), 1).is_ok());
    assert!(Limiter::rate_limit(Rate::per_second(1_000_000_000), u32::MAX).is_ok());
}

#[test]
fn reconfiguring_a_limit_the_limiter_lacks_is_an_error() {
    let rate_only = Limiter::rate_limit(Rate::per_second(1), 1).unwrap();
    assert!(
        rate_only.set_max_concurrent(3).unwrap_err().to_string().contains("no concurrency limit")
    );
    assert!(rate_only.set_max_concurrent(0).is_err());
    let concurrency_only = Limiter::concurrency(1).unwrap();
    assert!(
        concurrency_only
            .set_rate(Rate::per_second(3))
            .unwrap_err()
            .to_string()
            .contains("no rate limit")
    );
}

#[tokio::test(start_paused = true)]
async fn changing_the_rate_grants_no_burst() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 10).unwrap();
    limiter.try_acquire_n::<()>(10).unwrap();
    // Slower: the empty bucket stays empty, and refills at the new rate.
    limiter.set_rate(Rate::per_second(1)).unwrap();
    assert_eq!(limiter.available_tokens(), Some(0));
    assert_eq!(limiter.peek(1), Peek::RateLimited { retry_after: Duration::from_secs(1) });
    // Faster: still empty, now refilling every 10 ms.
    limiter.set_rate(Rate::per_second(100)).unwrap();
    assert_eq!(limiter.available_tokens(), Some(0));
    assert_eq!(limiter.peek(1), Peek::RateLimited { retry_after: Duration::from_millis(10) });
    assert_eq!(limiter.rate(), Some(Rate::per_second(100)));
    // Half full stays half full across a change.
    tokio::time::advance(Duration::from_millis(50)).await;
    assert_eq!(limiter.available_tokens(), Some(5));
    limiter.set_rate(Rate::per_second(1_000)).unwrap();
    assert_eq!(limiter.available_tokens(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn changing_the_rate_wakes_the_queue_head_to_its_new_time() {
    let limiter = Limiter::rate_limit(Rate::per_second(1), 1).unwrap();
    limiter.try_acquire::<()>().unwrap();
    let start = tokio::time::Instant::now();
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    limiter.set_rate(Rate::per_second(10)).unwrap();
    waiting.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn raising_and_lowering_max_concurrent_never_revokes_a_permit() {
    let limiter = Limiter::concurrency(4).unwrap();
    let held: Vec<_> = (0..4).map(|_| limiter.try_acquire::<()>().unwrap()).collect();
    limiter.set_max_concurrent(2).unwrap();
    assert_eq!(limiter.max_concurrent(), Some(2));
    let mut held = held.into_iter();
    drop(held.next());
    drop(held.next());
    assert_eq!(limiter.available_permits(), Some(0), "two permits retired as they came back");
    drop(held.next());
    assert_eq!(limiter.available_permits(), Some(1));
    // Raising again first cancels pending retirements, then adds slots.
    limiter.set_max_concurrent(5).unwrap();
    drop(held);
    assert_eq!(limiter.available_permits(), Some(5));
    let many = limiter.try_acquire_n::<()>(5).unwrap();
    assert_eq!(many.weight(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_weight_larger_than_the_limits_fails_at_once_instead_of_hanging() {
    let limiter =
        Limiter::builder().max_concurrent(2).rate(Rate::per_second(1)).burst(5).build().unwrap();
    assert!(matches!(
        limiter.acquire_n::<()>(3).await.unwrap_err(),
        aqueduct_ratelimit::Error::ContractViolation { .. }
    ));
    let rate_only = Limiter::rate_limit(Rate::per_second(1), 5).unwrap();
    assert!(matches!(
        rate_only.acquire_n::<()>(6).await.unwrap_err(),
        aqueduct_ratelimit::Error::ContractViolation { .. }
    ));
    assert_eq!(rate_only.peek(6), Peek::TooLarge);
    assert!(rate_only.acquire_n::<()>(0).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn changing_max_concurrent_while_callers_wait_serves_them_in_order() {
    let limiter = Limiter::concurrency(2).unwrap();
    let held = limiter.try_acquire_n::<()>(2).unwrap();
    let mut first = Box::pin(limiter.acquire::<()>());
    let mut second = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    // Lowered to 1: the two slots coming back pay off one retirement, then admit the head only.
    limiter.set_max_concurrent(1).unwrap();
    drop(held);
    let first = first.await.unwrap();
    assert!(futures::poll!(&mut second).is_pending());
    // Raised to 3: the new slots go to the waiter at once.
    limiter.set_max_concurrent(3).unwrap();
    let second = second.await.unwrap();
    assert_eq!(limiter.available_permits(), Some(1));
    drop((first, second));
    assert_eq!(limiter.available_permits(), Some(3));
}
