//! Panics in user code: a panicking call under a permit gives the permit back; a panicking quota function is contained.

use std::time::Duration;

use aqueduct_ratelimit::{Error, KeyedRateLimiter, Limited, Limiter, Quota, Rate};

#[tokio::test(start_paused = true)]
async fn a_panicking_call_under_run_gives_its_permit_back() {
    let limiter = Limiter::builder().max_concurrent(1).rate(Rate::per_second(100)).build().unwrap();
    let task_limiter = limiter.clone();
    let joined = tokio::spawn(async move {
        let _: Result<(), Error<std::io::Error>> = task_limiter
            .run(async {
                panic!("the call failed badly");
                #[allow(unreachable_code)]
                Ok::<(), std::io::Error>(())
            })
            .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(limiter.available_permits(), Some(1));
    tokio::time::advance(Duration::from_millis(10)).await;
    assert!(limiter.try_acquire::<()>().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_limited_call_gives_its_permit_back() {
    let limited = Limited::new(7_u32, Limiter::concurrency(2).unwrap());
    let task_limited = limited.clone();
    let joined = tokio::spawn(async move {
        let _: Result<u32, Error<std::io::Error>> = task_limited
            .call(|_| async { panic!("client exploded") as Result<u32, std::io::Error> })
            .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(limited.limiter().available_permits(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_quota_function_does_not_break_the_limiter() {
    let limiter = KeyedRateLimiter::builder(Quota::new(Rate::per_second(1), 1).unwrap())
        .max_keys(10)
        .quota_for(|key: &u32| {
            assert!(*key != 13, "unlucky key");
            Quota::new(Rate::per_second(1), 1).unwrap()
        })
        .build()
        .unwrap();
    let task_limiter = limiter.clone();
    let joined = tokio::spawn(async move { task_limiter.try_acquire::<()>(&13) }).await;
    assert!(joined.unwrap_err().is_panic());
    assert!(limiter.try_acquire::<()>(&1).is_ok());
    assert!(limiter.try_acquire::<()>(&1).is_err());
}
