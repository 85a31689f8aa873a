//! Server hints: honoured, clamped, ignored, refused; from `Classify`, a closure, or `Error::RateLimited`.

use std::time::Duration;

use aqueduct_retry::{Error, HintMode, Jitter, RetryPolicy, ServerHint, StopReason, retry};
use aqueduct_testkit::{Flaky, FlakyError};
use tokio::time::Instant;

fn policy(hints: HintMode) -> RetryPolicy {
    RetryPolicy::builder()
        .constant(Duration::from_millis(100))
        .jitter(Jitter::None)
        .max_attempts(3)
        .hints(hints)
        .build()
        .unwrap()
}

/// Runs a Flaky operation that fails twice with a 7 s hint and returns the time the loop took.
async fn time_with_hint(policy: &RetryPolicy) -> Duration {
    let flaky = Flaky::new(2).with_retry_after(Duration::from_secs(7));
    let start = Instant::now();
    let result: Result<u32, Error<FlakyError>> = retry(policy, || flaky.call()).classified().await;
    assert_eq!(result.unwrap(), 3);
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn hints_are_honoured_by_default() {
    assert_eq!(time_with_hint(&policy(HintMode::Honour)).await, Duration::from_secs(14));
}

#[tokio::test(start_paused = true)]
async fn hints_are_clamped() {
    let clamp = HintMode::Clamp { min: Duration::from_millis(500), max: Duration::from_secs(2) };
    assert_eq!(time_with_hint(&policy(clamp)).await, Duration::from_secs(4));
    let floor = HintMode::Clamp { min: Duration::from_secs(10), max: Duration::from_secs(20) };
    assert_eq!(time_with_hint(&policy(floor)).await, Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn hints_can_be_ignored() {
    assert_eq!(time_with_hint(&policy(HintMode::Ignore)).await, Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn without_classified_an_operation_error_hint_is_not_read() {
    let flaky = Flaky::new(2).with_retry_after(Duration::from_secs(7));
    let start = Instant::now();
    let result: Result<u32, Error<FlakyError>> =
        retry(&policy(HintMode::Honour), || flaky.call()).await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_error_carries_its_own_hint() {
    let mut calls = 0;
    let start = Instant::now();
    let result: Result<u32, Error<&str>> = retry(&policy(HintMode::Honour), || {
        calls += 1;
        let call = calls;
        async move {
            if call == 1 {
                Err(Error::RateLimited { retry_after: Duration::from_secs(3) })
            } else {
                Ok(call)
            }
        }
    })
    .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_closure_reads_the_hint_and_the_hook_sees_it_as_the_next_delay() {
    let mut delays = Vec::new();
    let result: Result<(), Error<u64>> =
        retry(&policy(HintMode::Honour), || async { Err(250_u64) })
            .retry_after(|error| error.operation().map(|millis| Duration::from_millis(*millis)))
            .notify(|state| delays.push(state.next_delay))
            .await;
    assert!(result.unwrap_err().is_exhausted());
    assert_eq!(delays, [Duration::from_millis(250), Duration::from_millis(250)]);
}

#[tokio::test(start_paused = true)]
async fn a_do_not_retry_hint_stops_the_loop() {
    let result: Result<(), Error<i64>> = retry(&policy(HintMode::Honour), || async { Err(-1_i64) })
        .server_hint(|error| match error.operation() {
            Some(pushback) if *pushback < 0 => Some(ServerHint::DoNotRetry),
            Some(pushback) => {
                Some(ServerHint::RetryAfter(Duration::from_millis(pushback.unsigned_abs())))
            }
            None => None,
        })
        .await;
    match result {
        Err(Error::Exhausted { attempts, reason, .. }) => {
            assert_eq!((attempts, reason), (1, StopReason::ServerRefused))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
