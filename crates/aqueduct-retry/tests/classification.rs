//! What is retried: the default classification, predicates, classifiers and `Classify`, and exhaustion errors.

use std::time::Duration;

use aqueduct_retry::{Error, RetryPolicy, StopReason, Transience, retry};
use aqueduct_testkit::{Flaky, FlakyError};

fn policy() -> RetryPolicy {
    RetryPolicy::builder().constant(Duration::ZERO).max_attempts(4).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn by_default_operation_errors_are_retried_until_attempts_run_out() {
    let flaky = Flaky::new(10);
    let result: Result<u32, Error<FlakyError>> = retry(&policy(), || flaky.call()).await;
    match result {
        Err(Error::Exhausted { attempts, reason, last_error: Some(last), elapsed }) => {
            assert_eq!((attempts, reason), (4, StopReason::Attempts));
            assert_eq!(last.operation().map(|error| error.attempt), Some(4));
            assert_eq!(elapsed, Duration::ZERO);
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    assert_eq!(flaky.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn by_default_permanent_aqueduct_errors_are_not_retried() {
    let mut calls = 0;
    let result: Result<(), Error<&str>> = retry(&policy(), || {
        calls += 1;
        async { Err(Error::ContractViolation { message: "two outputs for one input".into() }) }
    })
    .await;
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Permanent, .. })
    ));
    assert_eq!(calls, 1);
    let result: Result<(), Error<&str>> =
        retry(&policy(), || async { Err(Error::Closed { reconnecting: true }) }).await;
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 4, reason: StopReason::Attempts, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn classified_uses_the_errors_own_classification() {
    let flaky = Flaky::new(10).permanent();
    let result: Result<u32, Error<FlakyError>> =
        retry(&policy(), || flaky.call()).classified().await;
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Permanent, .. })
    ));
    let flaky = Flaky::new(2);
    let result: Result<u32, Error<FlakyError>> =
        retry(&policy(), || flaky.call()).classified().await;
    assert_eq!(result.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn classify_with_asks_a_closure_about_operation_errors() {
    let mut calls = 0;
    let result: Result<(), Error<u16>> = retry(&policy(), || {
        calls += 1;
        let status = if calls < 3 { 503 } else { 404 };
        async move { Err(status) }
    })
    .classify_with(
        |status| if *status >= 500 { Transience::Transient } else { Transience::Permanent },
    )
    .await;
    match result {
        Err(Error::Exhausted { attempts, reason, last_error, .. }) => {
            assert_eq!((attempts, reason), (3, StopReason::Permanent));
            assert_eq!(last_error.and_then(|error| error.into_operation()), Some(404));
        }
        other => panic!("expected a permanent stop, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn when_replaces_the_predicate() {
    let flaky = Flaky::new(10);
    let result: Result<u32, Error<FlakyError>> = retry(&policy(), || flaky.call())
        .when(|error| error.operation().is_some_and(|error| error.attempt < 2))
        .await;
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 2, reason: StopReason::Permanent, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn exhaustion_is_displayed_with_its_reason_and_chains_the_last_error() {
    let result: Result<(), Error<std::io::Error>> =
        retry(&policy(), || async { Err(std::io::Error::other("refused")) }).await;
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "gave up after 4 attempts in 0ns: attempts exhausted");
    let source = std::error::Error::source(&error).expect("the last error is the source");
    assert_eq!(source.to_string(), "refused");
}

#[tokio::test(start_paused = true)]
async fn a_single_attempt_policy_never_retries() {
    let policy = RetryPolicy::builder().max_attempts(1).build().unwrap();
    let flaky = Flaky::new(1);
    let result: Result<u32, Error<FlakyError>> = retry(&policy, || flaky.call()).await;
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Attempts, .. })
    ));
    assert_eq!(flaky.attempts(), 1);
}
