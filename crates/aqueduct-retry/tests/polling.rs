//! Retrying `Ok` values until one is accepted (polling), with the same backoff, attempts and deadline.

use std::time::Duration;

use aqueduct_retry::{Error, Jitter, RetryPolicy, StopReason, retry};
use tokio::time::Instant;

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .constant(Duration::from_secs(1))
        .jitter(Jitter::None)
        .max_attempts(attempts)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn until_polls_until_the_value_is_accepted() {
    let mut reads = 0;
    let start = Instant::now();
    let mut hook_errors = Vec::new();
    let status: Result<u32, Error<()>> = retry(&policy(10), || {
        reads += 1;
        let read = reads;
        async move { Ok::<_, ()>(read) }
    })
    .until(|read| *read >= 4)
    .notify(|state| hook_errors.push(state.error.is_none()))
    .await;
    assert_eq!(status.unwrap(), 4);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(hook_errors, [true, true, true], "rejected values reach the hook without an error");
}

#[tokio::test(start_paused = true)]
async fn polling_gives_up_without_a_last_error_when_values_keep_being_rejected() {
    let result: Result<&str, Error<()>> = retry(&policy(3), || async { Ok::<_, ()>("pending") })
        .until(|status| *status == "done")
        .await;
    match result {
        Err(Error::Exhausted { attempts, reason, last_error, .. }) => {
            assert_eq!((attempts, reason), (3, StopReason::Attempts));
            assert!(last_error.is_none());
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn errors_and_rejected_values_mix() {
    let mut calls = 0;
    let result: Result<u32, Error<&str>> = retry(&policy(5), || {
        calls += 1;
        let call = calls;
        async move { if call % 2 == 1 { Err("blip") } else { Ok(call) } }
    })
    .until(|value| *value >= 4)
    .await;
    assert_eq!(result.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn rejected_values_do_not_spend_the_retry_budget() {
    let budget = aqueduct_retry::RetryBudget::new(2, 1.0).unwrap();
    let policy = RetryPolicy::builder()
        .constant(Duration::ZERO)
        .max_attempts(10)
        .budget(budget.clone())
        .build()
        .unwrap();
    let mut reads = 0;
    let result: Result<u32, Error<()>> = retry(&policy, || {
        reads += 1;
        let read = reads;
        async move { Ok::<_, ()>(read) }
    })
    .until(|read| *read == 8)
    .await;
    assert_eq!(result.unwrap(), 8);
    assert!((budget.tokens() - 2.0).abs() < f64::EPSILON);
}
