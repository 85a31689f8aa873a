//! Public types are `Send` and `Sync` where they should be, so policies are shared and futures spawned.

use std::time::Duration;

use aqueduct_retry::{
    Backoff, ConfigError, Error, HintMode, Jitter, RetryBudget, RetryPolicy, RetryPolicyBuilder,
    ServerHint, retry,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>(_: &T) {}
fn assert_clone<T: Clone>() {}

#[test]
fn configuration_types_are_send_and_sync() {
    assert_send_sync::<RetryPolicy>();
    assert_send_sync::<RetryPolicyBuilder>();
    assert_send_sync::<RetryBudget>();
    assert_send_sync::<Backoff>();
    assert_send_sync::<Jitter>();
    assert_send_sync::<HintMode>();
    assert_send_sync::<ServerHint>();
    assert_send_sync::<ConfigError>();
    assert_clone::<RetryPolicy>();
    assert_clone::<RetryBudget>();
}

#[tokio::test]
async fn the_retry_future_is_send_and_can_be_spawned() {
    let policy = RetryPolicy::constant(Duration::ZERO);
    let future = retry(policy, || async { Ok::<u32, std::io::Error>(1) });
    assert_send(&future);
    let result: Result<u32, Error<std::io::Error>> = tokio::spawn(future).await.expect("no panic");
    assert_eq!(result.unwrap(), 1);
}
