//! The deadline over all attempts and sleeps, the per-attempt timeout, and the ambient deadline.

use std::time::Duration;

use aqueduct_retry::{Error, Jitter, RetryPolicy, StopReason, retry, with_deadline};
use tokio::time::Instant;

fn exhausted<T: std::fmt::Debug, E: std::fmt::Debug>(
    result: Result<T, Error<E>>,
) -> (u32, Duration, StopReason, Option<Error<E>>) {
    match result {
        Err(Error::Exhausted { attempts, elapsed, reason, last_error }) => {
            (attempts, elapsed, reason, last_error.map(|error| *error))
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_attempt_time_and_is_never_overrun() {
    // Each attempt takes 400 ms and fails; sleeps are 200 ms; the deadline is 2 s.
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(200))
        .jitter(Jitter::None)
        .max_attempts(u32::MAX)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut attempt_starts = Vec::new();
    let result: Result<(), Error<&str>> = retry(&policy, || {
        attempt_starts.push(start.elapsed());
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Err("slow failure")
        }
    })
    .await;
    let (attempts, elapsed, reason, last_error) = exhausted(result);
    assert_eq!(reason, StopReason::Deadline);
    // Attempts start at 0, 600, 1200 and 1800 ms; the fourth is cut off at 2000 ms by the deadline.
    assert_eq!(attempt_starts, [0, 600, 1200, 1800].map(Duration::from_millis));
    assert_eq!(attempts, 4);
    assert!(last_error.is_some_and(|error| error.is_elapsed()));
    assert_eq!(elapsed, Duration::from_secs(2));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn no_sleep_is_started_that_would_end_past_the_deadline() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(700))
        .jitter(Jitter::None)
        .max_attempts(u32::MAX)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let start = Instant::now();
    let result: Result<(), Error<&str>> = retry(&policy, || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err("down")
    })
    .await;
    let (attempts, _, reason, last_error) = exhausted(result);
    // 0–100 ms, sleep to 800 ms, 800–900 ms; a sleep to 1600 ms would pass the deadline, so it stops at 900 ms.
    assert_eq!(attempts, 2);
    assert_eq!(reason, StopReason::Deadline);
    assert_eq!(last_error.and_then(Error::into_operation), Some("down"));
    assert_eq!(start.elapsed(), Duration::from_millis(900));
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_cuts_off_hanging_attempts_and_they_are_retried() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(10))
        .jitter(Jitter::None)
        .max_attempts(3)
        .attempt_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut calls = 0;
    let start = Instant::now();
    let result: Result<u32, Error<&str>> = retry(&policy, || {
        calls += 1;
        let call = calls;
        async move {
            if call < 3 {
                std::future::pending::<()>().await;
            }
            Ok::<_, &str>(call)
        }
    })
    .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(220));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_reports_elapsed_with_its_timeout() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(10))
        .max_attempts(2)
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let result: Result<(), Error<&str>> =
        retry(&policy, std::future::pending::<Result<(), &str>>).await;
    let (attempts, _, reason, last_error) = exhausted(result);
    assert_eq!((attempts, reason), (2, StopReason::Attempts));
    match last_error {
        Some(Error::Elapsed { elapsed, last_error: None }) => {
            assert_eq!(elapsed.timeout(), Some(Duration::from_millis(50)));
            assert!(!elapsed.is_ambient());
            assert!(elapsed.waited() >= Duration::from_millis(50));
        }
        other => panic!("expected an elapsed attempt, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_attempt_deadline_is_clamped_to_what_is_left_of_the_overall_deadline() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(100))
        .jitter(Jitter::None)
        .max_attempts(10)
        .attempt_timeout(Duration::from_millis(400))
        .deadline(Duration::from_millis(600))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut ends = Vec::new();
    let result: Result<(), Error<&str>> = retry(&policy, std::future::pending::<Result<(), &str>>)
        .notify(|state| ends.push(state.elapsed))
        .await;
    let (attempts, _, reason, _) = exhausted(result);
    // 0–400 ms (attempt timeout), sleep to 500 ms, 500–600 ms (overall deadline), then stop.
    assert_eq!(ends, [Duration::from_millis(400)]);
    assert_eq!((attempts, reason), (2, StopReason::Deadline));
    assert_eq!(start.elapsed(), Duration::from_millis(600));
}

#[tokio::test(start_paused = true)]
async fn the_ambient_deadline_clamps_attempts_and_sleeps() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(100))
        .jitter(Jitter::None)
        .max_attempts(100)
        .build()
        .unwrap();
    let start = Instant::now();
    let result: Result<(), Error<&str>> =
        with_deadline(start + Duration::from_millis(250), async {
            retry(&policy, std::future::pending::<Result<(), &str>>).await
        })
        .await;
    let (attempts, _, reason, last_error) = exhausted(result);
    assert_eq!((attempts, reason), (1, StopReason::Deadline));
    match last_error {
        Some(Error::Elapsed { elapsed, .. }) => assert!(elapsed.is_ambient()),
        other => panic!("expected an elapsed attempt, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    // With failing (not hanging) attempts the ambient deadline stops the sleeps.
    let start = Instant::now();
    let result: Result<(), Error<&str>> =
        with_deadline(start + Duration::from_millis(250), async {
            retry(&policy, || async { Err("down") }).await
        })
        .await;
    let (attempts, _, reason, _) = exhausted(result);
    assert_eq!((attempts, reason), (3, StopReason::Deadline));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_hint_longer_than_the_deadline_ends_the_loop_without_sleeping() {
    let policy =
        RetryPolicy::builder().deadline(Duration::from_secs(5)).max_attempts(10).build().unwrap();
    let start = Instant::now();
    let result: Result<(), Error<&str>> = retry(&policy, || async {
        Err(Error::RateLimited { retry_after: Duration::from_secs(60) })
    })
    .await;
    let (attempts, _, reason, last_error) = exhausted(result);
    assert_eq!((attempts, reason), (1, StopReason::Deadline));
    assert!(last_error.is_some_and(|error| error.is_rate_limited()));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_passed_ambient_deadline_still_polls_the_attempt_once_and_never_waits() {
    let policy =
        RetryPolicy::builder().constant(Duration::from_millis(10)).max_attempts(5).build().unwrap();
    let start = Instant::now();
    tokio::time::advance(Duration::from_millis(5)).await;
    // A ready attempt wins, as with tokio's timeout: the attempt is polled before its deadline.
    let ready: Result<u8, Error<&str>> =
        with_deadline(start, async { retry(&policy, || async { Ok::<_, &str>(1) }).await }).await;
    assert_eq!(ready.unwrap(), 1);
    let before = Instant::now();
    let pending: Result<(), Error<&str>> = with_deadline(start, async {
        retry(&policy, std::future::pending::<Result<(), &str>>).await
    })
    .await;
    let (attempts, _, reason, _) = exhausted(pending);
    assert_eq!((attempts, reason), (1, StopReason::Deadline));
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_borrowing_loop_sees_the_ambient_deadline() {
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(100))
        .jitter(Jitter::None)
        .max_attempts(100)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut attempts = 0;
    let result: Result<(), Error<&str>> =
        with_deadline(start + Duration::from_millis(250), async {
            aqueduct_retry::retry_mut(&policy, async || {
                attempts += 1;
                Err("down")
            })
            .run()
            .await
        })
        .await;
    let (_, _, reason, _) = exhausted(result);
    assert_eq!(reason, StopReason::Deadline);
    assert_eq!(attempts, 3);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_shared_policy_in_an_arc_works_as_well_as_a_reference() {
    let policy = std::sync::Arc::new(
        RetryPolicy::builder().deadline(Duration::from_secs(1)).build().unwrap(),
    );
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let policy = std::sync::Arc::clone(&policy);
            tokio::spawn(async move {
                let result: Result<u8, Error<&str>> =
                    retry(policy, || async { Ok::<_, &str>(7) }).await;
                result.unwrap()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap(), 7);
    }
}
