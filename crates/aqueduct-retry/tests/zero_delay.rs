//! A zero delay yields to the scheduler instead of arming a timer, so other tasks run and no time passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aqueduct_retry::{Error, RetryPolicy, retry, retry_mut};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn zero_delays_take_no_time() {
    let policy = RetryPolicy::builder().constant(Duration::ZERO).max_attempts(50).build().unwrap();
    let start = Instant::now();
    let result: Result<(), Error<&str>> = retry(&policy, || async { Err("down") }).await;
    assert!(matches!(result, Err(Error::Exhausted { attempts: 50, .. })));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "current_thread")]
async fn a_zero_delay_lets_other_tasks_run_between_attempts() {
    let policy = RetryPolicy::constant(Duration::ZERO);
    let other_ran = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let other_ran = Arc::clone(&other_ran);
        async move { other_ran.store(true, Ordering::SeqCst) }
    });
    // On a current-thread runtime the spawned task can only run if the loop yields between attempts.
    let mut seen = Vec::new();
    let result: Result<(), Error<&str>> = retry(&policy, || {
        seen.push(other_ran.load(Ordering::SeqCst));
        async { Err("down") }
    })
    .await;
    assert!(result.is_err());
    assert_eq!(seen, [false, true, true]);
}

#[tokio::test(flavor = "current_thread")]
async fn the_borrowing_loop_yields_too() {
    let policy = RetryPolicy::constant(Duration::ZERO);
    let other_ran = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let other_ran = Arc::clone(&other_ran);
        async move { other_ran.store(true, Ordering::SeqCst) }
    });
    let mut seen = Vec::new();
    let result: Result<(), Error<&str>> = retry_mut(&policy, async || {
        seen.push(other_ran.load(Ordering::SeqCst));
        Err("down")
    })
    .run()
    .await;
    assert!(result.is_err());
    assert_eq!(seen, [false, true, true]);
}
