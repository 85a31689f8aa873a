//! Dropping the retry future at every await point (during an attempt, a sleep, a yield) leaks nothing.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_retry::{Error, Jitter, RetryPolicy, retry, retry_mut};
use aqueduct_testkit::DropCounter;
use tokio::time::Instant;

fn policy(delay: Duration) -> RetryPolicy {
    RetryPolicy::builder().constant(delay).jitter(Jitter::None).max_attempts(5).build().unwrap()
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let mut context = Context::from_waker(std::task::Waker::noop());
    future.poll(&mut context)
}

#[tokio::test(start_paused = true)]
async fn dropping_during_an_attempt_drops_the_attempt_and_calls_nothing_more() {
    let drops = DropCounter::new();
    let calls = Arc::new(AtomicU32::new(0));
    let future = retry(policy(Duration::from_millis(10)), || {
        calls.fetch_add(1, Ordering::SeqCst);
        let guard = drops.guard();
        async move {
            let _guard = guard;
            std::future::pending::<Result<(), &str>>().await
        }
    });
    let mut future = Box::pin(future);
    assert!(poll_once(future.as_mut()).is_pending());
    assert_eq!((calls.load(Ordering::SeqCst), drops.alive()), (1, 1));
    drop(future);
    assert_eq!(drops.alive(), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_during_the_sleep_between_attempts_stops_the_loop() {
    let drops = DropCounter::new();
    let calls = Arc::new(AtomicU32::new(0));
    let future = retry(policy(Duration::from_secs(1)), || {
        calls.fetch_add(1, Ordering::SeqCst);
        let guard = drops.guard();
        async move {
            let _guard = guard;
            Err::<(), _>("down")
        }
    });
    // The first attempt fails at once; the loop is now sleeping 1 s.
    let result = tokio::time::timeout(Duration::from_millis(500), future).await;
    assert!(result.is_err(), "the loop should still be sleeping");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(drops.created(), drops.dropped());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt may run after the drop");
}

#[tokio::test(start_paused = true)]
async fn dropping_during_a_zero_delay_yield_stops_the_loop() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut future = pin!(retry(policy(Duration::ZERO), || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), &str>("down") }
    }));
    // First poll: the attempt fails and the loop yields instead of sleeping.
    assert!(poll_once(future.as_mut()).is_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Polled again after the yield, the next attempt runs.
    assert!(poll_once(future.as_mut()).is_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_at_every_poll_leaks_no_attempt() {
    // Drop the loop after 1, 2, 3, … polls; every attempt future it created must be dropped.
    for polls in 1..12 {
        let drops = DropCounter::new();
        let mut future = Box::pin(retry(policy(Duration::from_millis(5)), || {
            let guard = drops.guard();
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_millis(3)).await;
                Err::<(), &str>("down")
            }
        }));
        for _ in 0..polls {
            if poll_once(future.as_mut()).is_ready() {
                break;
            }
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        drop(future);
        assert_eq!(drops.alive(), 0, "leak after {polls} polls");
    }
}

#[tokio::test(start_paused = true)]
async fn the_borrowing_loop_releases_its_state_when_dropped() {
    let drops = DropCounter::new();
    let mut state = Vec::new();
    {
        let future = retry_mut(policy(Duration::from_secs(1)), async || {
            let _guard = drops.guard();
            state.push(Instant::now());
            Err::<(), &str>("down")
        })
        .run();
        let result = tokio::time::timeout(Duration::from_millis(1500), future).await;
        assert!(result.is_err());
    }
    // Two attempts ran (at 0 and 1 s); the state is usable again once the loop is dropped.
    assert_eq!(state.len(), 2);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_operation_propagates_and_leaks_nothing() {
    let drops = DropCounter::new();
    let handle = tokio::spawn({
        let drops = drops.clone();
        async move {
            let mut calls = 0;
            let _: Result<(), Error<&str>> = retry(policy(Duration::ZERO), move || {
                calls += 1;
                let guard = drops.guard();
                let call = calls;
                async move {
                    let _guard = guard;
                    assert!(call < 2, "operation panicked on call {call}");
                    Err("down")
                }
            })
            .await;
        }
    });
    let error = handle.await.expect_err("the panic propagates");
    assert!(error.is_panic());
    assert_eq!(drops.created(), 2);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_hook_propagates() {
    let handle = tokio::spawn(async {
        let _: Result<(), Error<&str>> = retry(policy(Duration::ZERO), || async { Err("down") })
            .notify(|_| panic!("hook failed"))
            .await;
    });
    assert!(handle.await.expect_err("the panic propagates").is_panic());
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "polled after completion")]
async fn polling_after_completion_panics() {
    let mut future = pin!(retry(policy(Duration::ZERO), || async { Ok::<_, &str>(1) }));
    let first: Poll<Result<i32, Error<&str>>> = poll_once(future.as_mut());
    assert!(first.is_ready());
    let _ = poll_once(future.as_mut());
}
