//! Bad configuration is refused at `build()` with a message that says what to change; never a panic or a hang.

use std::time::Duration;

use aqueduct_retry::{Backoff, HintMode, RetryBudget, RetryPolicy};

fn error_of(builder: aqueduct_retry::RetryPolicyBuilder) -> String {
    builder.build().expect_err("the configuration is invalid").to_string()
}

#[test]
fn a_nan_infinite_or_shrinking_factor_is_refused() {
    for factor in [f64::NAN, f64::INFINITY, 0.5, -2.0] {
        let message =
            error_of(RetryPolicy::builder().exponential(Duration::from_millis(10), factor));
        assert!(message.contains("factor"), "{message}");
    }
    assert!(RetryPolicy::builder().exponential(Duration::from_millis(10), 1.0).build().is_ok());
}

#[test]
fn zero_attempts_are_refused() {
    assert_eq!(
        error_of(RetryPolicy::builder().max_attempts(0)),
        "max_attempts must be at least 1 (1 means no retry)"
    );
}

#[test]
fn a_cap_below_the_initial_delay_is_refused() {
    let message = error_of(
        RetryPolicy::builder()
            .backoff(Backoff::Fibonacci { initial: Duration::from_secs(5) })
            .max_delay(Duration::from_secs(1)),
    );
    assert!(message.contains("max_delay") && message.contains("initial"), "{message}");
}

#[test]
fn zero_deadlines_and_timeouts_are_refused() {
    assert!(error_of(RetryPolicy::builder().deadline(Duration::ZERO)).contains("deadline"));
    assert!(
        error_of(RetryPolicy::builder().attempt_timeout(Duration::ZERO))
            .contains("attempt_timeout")
    );
}

#[test]
fn a_backwards_hint_clamp_is_refused() {
    let clamp = HintMode::Clamp { min: Duration::from_secs(3), max: Duration::from_secs(1) };
    assert!(error_of(RetryPolicy::builder().hints(clamp)).contains("min"));
}

#[test]
fn bad_budgets_are_refused() {
    assert!(RetryBudget::new(0, 0.1).unwrap_err().to_string().contains("max_tokens"));
    for ratio in [f64::NAN, f64::INFINITY, 0.0, -1.0, 11.0] {
        assert!(
            RetryBudget::new(10, ratio).unwrap_err().to_string().contains("token_ratio"),
            "{ratio}"
        );
    }
}

#[test]
fn extreme_but_valid_values_do_not_panic() {
    let policy = RetryPolicy::builder()
        .exponential(Duration::from_secs(u64::MAX / 4), 1e300)
        .max_delay(Duration::MAX)
        .max_attempts(u32::MAX)
        .deadline(Duration::from_nanos(1))
        .build()
        .unwrap();
    assert_eq!(
        policy.backoff().base_delay(u32::MAX, Duration::MAX),
        Duration::from_nanos(u64::MAX)
    );
    let zero = RetryPolicy::builder()
        .exponential(Duration::ZERO, 2.0)
        .max_delay(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(zero.backoff().base_delay(10, zero.max_delay()), Duration::ZERO);
}

#[test]
fn policies_can_be_derived_and_const_constructed() {
    const FAST: RetryPolicy = RetryPolicy::constant(Duration::from_millis(5));
    let patient = FAST.to_builder().max_attempts(20).build().unwrap();
    assert_eq!((FAST.max_attempts(), patient.max_attempts()), (3, 20));
    assert_eq!(patient.backoff(), FAST.backoff());
}
