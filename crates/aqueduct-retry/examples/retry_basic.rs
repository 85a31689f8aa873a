//! The basic use of aqueduct-retry: retry a flaky async operation with exponential backoff and full jitter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aqueduct_retry::{Error, RetryPolicy, StopReason, retry};

/// A stand-in for a network call that fails twice, then answers.
async fn fetch(calls: &AtomicU32) -> Result<String, std::io::Error> {
    let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if call < 3 {
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, format!("call {call} reset")))
    } else {
        Ok(format!("answer after {call} calls"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error<std::io::Error>> {
    let policy = RetryPolicy::builder()
        .exponential(Duration::from_millis(20), 2.0)
        .max_delay(Duration::from_millis(500))
        .max_attempts(5)
        .deadline(Duration::from_secs(5))
        .build()
        .expect("a valid policy");

    let calls = AtomicU32::new(0);
    let answer = retry(&policy, || fetch(&calls))
        .notify(|state| {
            eprintln!(
                "attempt {} failed after {:?}; retrying in {:?}",
                state.attempt, state.elapsed, state.next_delay
            );
        })
        .await?;
    eprintln!("{answer}");

    // A call that always fails ends with `Error::Exhausted`, which keeps the last error.
    let failing: Result<(), Error<std::io::Error>> =
        retry(&policy, || async { Err(std::io::Error::other("still down")) }).await;
    match failing {
        Err(Error::Exhausted { attempts, elapsed, reason: StopReason::Attempts, last_error }) => {
            eprintln!(
                "gave up after {attempts} attempts in {elapsed:?}; last error: {last_error:?}"
            );
        }
        other => eprintln!("unexpected: {other:?}"),
    }
    Ok(())
}
