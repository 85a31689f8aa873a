//! All-or-nothing acquisition across limiters and the peek that spends nothing.

use std::time::Duration;

use aqueduct_ratelimit::{Error, Limiter, Peek, Rate, try_acquire_all};

#[tokio::test(start_paused = true)]
async fn a_refusal_by_one_limiter_charges_none_of_the_others() {
    let per_second = Limiter::rate_limit(Rate::per_second(10), 2).unwrap();
    let per_hour = Limiter::rate_limit(Rate::per_hour(3), 3).unwrap();
    let concurrency = Limiter::concurrency(5).unwrap();
    let limiters = [&concurrency, &per_second, &per_hour];
    let first = try_acquire_all::<()>(&limiters, 1).unwrap();
    let second = try_acquire_all::<()>(&limiters, 1).unwrap();
    assert_eq!(concurrency.available_permits(), Some(3));
    // The per-second bucket is empty: nobody is charged, not even the per-hour one.
    let refused = try_acquire_all::<()>(&limiters, 1).unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(per_hour.available_tokens(), Some(1));
    assert_eq!(concurrency.available_permits(), Some(3));
    // The longest wait is reported: the per-hour bucket has 1 token and earns one every 20 minutes.
    tokio::time::advance(Duration::from_secs(1)).await;
    let refused = try_acquire_all::<()>(&limiters, 2).unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(1_199)));
    assert_eq!(per_second.available_tokens(), Some(2));
    drop((first, second));
    assert_eq!(concurrency.available_permits(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn a_full_concurrency_limit_gives_back_the_slots_already_taken() {
    let wide = Limiter::concurrency(3).unwrap();
    let narrow = Limiter::concurrency(1).unwrap();
    let _held = narrow.try_acquire::<()>().unwrap();
    let refused = try_acquire_all::<()>(&[&wide, &narrow], 1).unwrap_err();
    assert!(matches!(refused, Error::Full { capacity: 1 }), "{refused:?}");
    assert_eq!(wide.available_permits(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn all_or_nothing_never_jumps_a_queue() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 1).unwrap();
    let _first = limiter.try_acquire::<()>().unwrap();
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    tokio::time::advance(Duration::from_millis(100)).await;
    // The token is there, but it belongs to the queued caller.
    assert!(try_acquire_all::<()>(&[&limiter], 1).is_err());
    assert!(limiter.try_acquire::<()>().is_err());
    assert!(matches!(limiter.peek(1), Peek::RateLimited { .. }));
    waiting.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn peeking_spends_nothing() {
    let limiter = Limiter::builder().max_concurrent(1).rate(Rate::per_second(10)).build().unwrap();
    for _ in 0..1_000 {
        assert_eq!(limiter.peek(1), Peek::Admit);
    }
    let permit = limiter.try_acquire::<()>().unwrap();
    assert_eq!(limiter.peek(1), Peek::Full { capacity: 1 });
    drop(permit);
    assert_eq!(limiter.peek(1), Peek::RateLimited { retry_after: Duration::from_millis(100) });
    assert_eq!(limiter.peek(2), Peek::TooLarge);
}
