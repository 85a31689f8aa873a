//! The synchronous loop: same policy and errors, thread sleeps (injected here), no runtime needed.

use std::time::Duration;

use aqueduct_retry::{Error, Jitter, RetryBudget, RetryPolicy, StopReason, retry_blocking};
use aqueduct_testkit::{Flaky, FlakyError};

#[test]
fn the_blocking_loop_retries_until_success() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(20))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let flaky = Flaky::new(2);
    let mut slept = Vec::new();
    let result: Result<u32, Error<FlakyError>> =
        retry_blocking(&policy, || flaky.call_now()).sleep_with(|delay| slept.push(delay)).call();
    assert_eq!(result.unwrap(), 3);
    assert_eq!(slept, [Duration::from_millis(20); 2]);
}

#[test]
fn the_blocking_loop_classifies_and_honours_hints() {
    let policy =
        RetryPolicy::builder().constant(Duration::from_millis(20)).max_attempts(5).build().unwrap();
    let flaky = Flaky::new(1).with_retry_after(Duration::from_secs(2));
    let mut slept = Vec::new();
    let result: Result<u32, Error<FlakyError>> = retry_blocking(&policy, || flaky.call_now())
        .classified()
        .sleep_with(|delay| slept.push(delay))
        .call();
    assert_eq!(result.unwrap(), 2);
    assert_eq!(slept, [Duration::from_secs(2)]);

    let permanent = Flaky::new(3).permanent();
    let result: Result<u32, Error<FlakyError>> =
        retry_blocking(&policy, || permanent.call_now()).classified().call();
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Permanent, .. })
    ));
}

#[test]
fn the_blocking_loop_shares_the_budget() {
    let budget = RetryBudget::new(2, 1.0).unwrap();
    let policy = RetryPolicy::builder()
        .constant(Duration::ZERO)
        .max_attempts(10)
        .budget(budget)
        .build()
        .unwrap();
    let result: Result<(), Error<&str>> = retry_blocking(&policy, || Err("down")).call();
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Budget, .. })
    ));
}

#[test]
fn the_blocking_loop_really_sleeps_by_default() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(2))
        .jitter(Jitter::None)
        .max_attempts(2)
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    let result: Result<(), Error<&str>> = retry_blocking(&policy, || Err("down")).call();
    assert!(result.is_err());
    assert!(start.elapsed() >= Duration::from_millis(2));
}

#[test]
fn the_blocking_loop_stops_at_the_deadline() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_secs(10))
        .jitter(Jitter::None)
        .max_attempts(10)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut slept = Vec::new();
    let result: Result<(), Error<&str>> =
        retry_blocking(&policy, || Err("down")).sleep_with(|delay| slept.push(delay)).call();
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Deadline, .. })
    ));
    assert!(slept.is_empty());
}
