//! `try_timeout` and `try_timeout_at`: one `Error<E>` whether the operation failed, timed out, or was already wrapped.

use std::time::Duration;

use aqueduct_timeout::{Error, TimeoutExt, try_timeout, try_timeout_at};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, PartialEq, Eq)]
struct Refused;

async fn call(latency: Duration, fail: bool) -> Result<u32, Refused> {
    sleep(latency).await;
    if fail { Err(Refused) } else { Ok(7) }
}

/// Stands in for any other aqueduct combinator: it already speaks `Error<E>`.
async fn wrapped(latency: Duration, fail: bool) -> Result<u32, Error<Refused>> {
    call(latency, fail).await.map_err(Error::from)
}

#[tokio::test(start_paused = true)]
async fn success_passes_through() {
    let result: Result<u32, Error<Refused>> = try_timeout(50 * MS, call(10 * MS, false)).await;
    assert_eq!(result.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn the_operation_error_becomes_error_operation() {
    let result: Result<u32, Error<Refused>> = try_timeout(50 * MS, call(10 * MS, true)).await;
    assert_eq!(result.unwrap_err().into_operation(), Some(Refused));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_becomes_error_elapsed_without_a_last_error() {
    let result: Result<u32, Error<Refused>> = try_timeout(50 * MS, call(80 * MS, false)).await;
    match result.unwrap_err() {
        Error::Elapsed { elapsed, last_error } => {
            assert_eq!(elapsed.timeout(), Some(50 * MS));
            assert_eq!(elapsed.waited(), 50 * MS);
            assert!(last_error.is_none());
        }
        other => panic!("expected an elapsed error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_already_wrapped_error_is_not_nested() {
    // The inner future yields `Error<Refused>`; the outer result is still `Error<Refused>`.
    let result: Result<u32, Error<Refused>> = try_timeout(50 * MS, wrapped(10 * MS, true)).await;
    assert_eq!(result.unwrap_err().into_operation(), Some(Refused));
    let result: Result<u32, Error<Refused>> = try_timeout(50 * MS, wrapped(80 * MS, true)).await;
    assert!(result.unwrap_err().is_elapsed());
}

#[tokio::test(start_paused = true)]
async fn two_timeouts_stack_into_one_error_type_and_the_inner_one_fires_first() {
    let start = Instant::now();
    let result: Result<u32, Error<Refused>> =
        try_timeout(100 * MS, try_timeout(30 * MS, call(Duration::from_secs(1), false))).await;
    let error = result.unwrap_err();
    assert!(error.is_elapsed());
    assert_eq!(start.elapsed(), 30 * MS);
    let Error::Elapsed { elapsed, .. } = error else { panic!("elapsed expected") };
    assert_eq!(elapsed.timeout(), Some(30 * MS));
}

#[tokio::test(start_paused = true)]
async fn a_retry_loop_around_try_timeout_yields_error_of_e() {
    // The shape `retry(|| try_timeout(d, op()))` takes, written by hand.
    async fn with_retries(mut attempts_left: u32) -> Result<u32, Error<Refused>> {
        let mut latency = Duration::from_secs(1);
        loop {
            let result = try_timeout(50 * MS, call(latency, false)).await;
            match result {
                Err(error) if error.is_elapsed() && attempts_left > 0 => {
                    attempts_left -= 1;
                    latency = 10 * MS;
                }
                other => return other,
            }
        }
    }
    assert_eq!(with_retries(1).await.unwrap(), 7);
    assert!(with_retries(0).await.unwrap_err().is_elapsed());
}

#[tokio::test(start_paused = true)]
async fn try_timeout_at_and_the_method_forms_flatten_too() {
    let deadline = Instant::now() + 20 * MS;
    let result: Result<u32, Error<Refused>> = try_timeout_at(deadline, call(80 * MS, false)).await;
    let Error::Elapsed { elapsed, .. } = result.unwrap_err() else { panic!("elapsed expected") };
    assert_eq!(elapsed.deadline(), deadline);
    assert_eq!(elapsed.timeout(), None);

    let result: Result<u32, Error<Refused>> = call(10 * MS, true).try_timeout(50 * MS).await;
    assert_eq!(result.unwrap_err().into_operation(), Some(Refused));
    let deadline = Instant::now() + 20 * MS;
    let result: Result<u32, Error<Refused>> = call(10 * MS, false).try_timeout_at(deadline).await;
    assert_eq!(result.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn the_question_mark_operator_works_in_a_function_returning_error_of_e() {
    async fn two_calls() -> Result<u32, Error<Refused>> {
        let first = try_timeout(50 * MS, call(10 * MS, false)).await?;
        let second = try_timeout(50 * MS, wrapped(10 * MS, false)).await?;
        Ok(first + second)
    }
    assert_eq!(two_calls().await.unwrap(), 14);
}
