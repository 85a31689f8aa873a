//! The public types are `Send` and `Sync` where they must be, so they work across tasks and threads.

use aqueduct_ratelimit::{
    Acquire, ConfigError, Error, KeyedAcquire, KeyedRateLimiter, KeyedRateLimiterBuilder, Limited,
    Limiter, LimiterBuilder, Overflow, Peek, Permit, Quota, Rate,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Limiter>();
    assert_send_sync::<LimiterBuilder>();
    assert_send_sync::<Permit<'static>>();
    assert_send_sync::<Rate>();
    assert_send_sync::<Quota>();
    assert_send_sync::<Peek>();
    assert_send_sync::<ConfigError>();
    assert_send_sync::<Overflow>();
    assert_send_sync::<KeyedRateLimiter<String>>();
    assert_send_sync::<KeyedRateLimiterBuilder<String>>();
    assert_send_sync::<Limited<Vec<u8>>>();
    assert_send_sync::<Error<std::io::Error>>();
    assert_send::<Acquire<'static, std::io::Error>>();
    assert_send::<KeyedAcquire<'static, String, std::io::Error>>();
}

#[tokio::test]
async fn futures_can_be_spawned() {
    let limiter =
        Limiter::builder().max_concurrent(2).rate(Rate::per_second(1_000)).build().unwrap();
    let keyed =
        KeyedRateLimiter::builder(Quota::new(Rate::per_second(1_000), 1).unwrap()).build().unwrap();
    let handle = tokio::spawn(async move {
        let _permit = limiter.acquire::<()>().await.unwrap();
        keyed.acquire::<()>("key".to_owned()).await.unwrap();
    });
    handle.await.unwrap();
}
