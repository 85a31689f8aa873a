//! The shared retry budget: it empties under failures, stops retries for every loop sharing it, and refills.

use std::time::Duration;

use aqueduct_retry::{Error, RetryBudget, RetryPolicy, StopReason, retry};

fn policy(budget: &RetryBudget) -> RetryPolicy {
    RetryPolicy::builder()
        .constant(Duration::from_millis(1))
        .max_attempts(100)
        .budget(budget.clone())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_budget_empties_under_failures_and_stops_every_loop_sharing_it() {
    let budget = RetryBudget::new(10, 0.5).unwrap();
    let policy = policy(&budget);
    // 10 tokens; retries are allowed while more than 5 are left: failures 1–4 leave 9..6 (retry), the 5th leaves 5.
    let result: Result<(), Error<&str>> = retry(&policy, || async { Err("down") }).await;
    match result {
        Err(Error::Exhausted { attempts, reason, last_error, .. }) => {
            assert_eq!((attempts, reason), (5, StopReason::Budget));
            assert_eq!(last_error.and_then(|error| error.into_operation()), Some("down"));
        }
        other => panic!("expected a budget stop, got {other:?}"),
    }
    assert!((budget.tokens() - 5.0).abs() < f64::EPSILON);

    // Another loop with another policy sharing the budget gets no retry at all.
    let other_policy =
        RetryPolicy::builder().constant(Duration::ZERO).budget(budget.clone()).build().unwrap();
    let result: Result<(), Error<&str>> = retry(&other_policy, || async { Err("down") }).await;
    assert!(matches!(
        result,
        Err(Error::Exhausted { attempts: 1, reason: StopReason::Budget, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn successes_refill_the_budget_and_retries_resume() {
    let budget = RetryBudget::new(4, 0.5).unwrap();
    let policy = policy(&budget);
    let _: Result<(), Error<&str>> = retry(&policy, || async { Err("down") }).await;
    assert!(!budget.allows_retry());
    assert!((budget.tokens() - 2.0).abs() < f64::EPSILON);

    // Each success gives back half a token.
    for _ in 0..3 {
        let ok: Result<(), Error<&str>> = retry(&policy, || async { Ok::<(), &str>(()) }).await;
        assert!(ok.is_ok());
    }
    assert!((budget.tokens() - 3.5).abs() < f64::EPSILON);
    assert!(budget.allows_retry());

    // Now a failure (3.5 → 2.5 tokens, more than half) followed by a success is retried again.
    let mut calls = 0;
    let result: Result<u32, Error<&str>> = retry(&policy, || {
        calls += 1;
        let call = calls;
        async move { if call == 1 { Err("blip") } else { Ok(call) } }
    })
    .await;
    assert_eq!(result.unwrap(), 2);
}

#[test]
fn the_budget_never_exceeds_its_size_nor_drops_below_zero() {
    let budget = RetryBudget::new(3, 1.0).unwrap();
    for _ in 0..10 {
        budget.record_success();
    }
    assert!((budget.tokens() - 3.0).abs() < f64::EPSILON);
    for _ in 0..10 {
        assert!(!budget.record_failure() || budget.tokens() > 1.5);
    }
    assert!(budget.tokens().abs() < f64::EPSILON);
}

#[test]
fn concurrent_updates_are_never_lost() {
    // 4 threads × 1000 failures empty a bucket of 10 000 tokens by exactly 4 000.
    let budget = RetryBudget::new(10_000, 1.0).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    budget.record_failure();
                }
            });
        }
    });
    assert!((budget.tokens() - 6000.0).abs() < f64::EPSILON);
    // And 4 × 500 successes of one token each give back exactly 2 000.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..500 {
                    budget.record_success();
                }
            });
        }
    });
    assert!((budget.tokens() - 8000.0).abs() < f64::EPSILON);
}

#[test]
fn fractional_ratios_are_kept_to_three_decimals() {
    let budget = RetryBudget::new(2, 0.001).unwrap();
    budget.record_failure();
    budget.record_success();
    assert!((budget.tokens() - 1.001).abs() < 1e-9);
    assert!(RetryBudget::new(2, 0.0004).is_err(), "rounds to zero thousandths");
}
