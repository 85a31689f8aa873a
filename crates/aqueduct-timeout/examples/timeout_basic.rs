//! A tour of aqueduct-timeout: a default on timeout, the numbers in `Elapsed`, nesting deadlines, a soft timeout.

use std::time::Duration;

use aqueduct_timeout::{
    DetachOutcome, Error, TimeoutExt, timeout, timeout_or, timeout_or_detach, try_timeout,
    with_deadline,
};
use tokio::time::{Instant, sleep};

/// A pretend backend call that takes `latency` and may fail.
async fn fetch(latency: Duration, fail: bool) -> Result<&'static str, std::io::Error> {
    sleep(latency).await;
    if fail { Err(std::io::Error::other("connection reset")) } else { Ok("payload") }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Python's `with_timeout(coro, timeout, default)`.
    let answer = timeout_or(Duration::from_millis(20), sleep(Duration::from_secs(5)), ()).await;
    eprintln!("timeout_or gave the default: {answer:?}");

    // The plain form carries the numbers.
    match timeout(Duration::from_millis(20), fetch(Duration::from_secs(5), false)).await {
        Ok(result) => eprintln!("finished: {result:?}"),
        Err(elapsed) => {
            eprintln!("timed out: {elapsed} (deadline {:?} after start)", elapsed.timeout())
        }
    }

    // The flattening form: one error type, whether the call failed or timed out.
    let failed: Result<&str, Error<std::io::Error>> =
        try_timeout(Duration::from_secs(1), fetch(Duration::ZERO, true)).await;
    eprintln!("try_timeout, failing call: {}", failed.unwrap_err());
    let late: Result<&str, Error<std::io::Error>> =
        fetch(Duration::from_secs(5), false).try_timeout(Duration::from_millis(20)).await;
    eprintln!("try_timeout, slow call: {}", late.unwrap_err());

    // An ambient deadline for a whole request: inner timeouts get what is left of it.
    let request_deadline = Instant::now() + Duration::from_millis(30);
    let inner = with_deadline(request_deadline, async {
        timeout(Duration::from_secs(10), fetch(Duration::from_secs(5), false)).await
    })
    .await;
    if let Err(elapsed) = inner {
        eprintln!("ambient deadline fired: {elapsed} (ambient: {})", elapsed.is_ambient());
    }

    // A soft timeout: answer now, let the refresh finish in the background.
    match timeout_or_detach(
        Duration::from_millis(10),
        fetch(Duration::from_millis(40), false),
        Ok("stale"),
    )
    .await
    {
        DetachOutcome::Completed(value) => eprintln!("refreshed in time: {value:?}"),
        DetachOutcome::Detached { default, handle, .. } => {
            eprintln!("answered with {default:?} while the refresh goes on");
            let late = handle.await.expect("the refresh does not panic");
            eprintln!("the refresh finished later: {late:?}");
        }
    }
}
