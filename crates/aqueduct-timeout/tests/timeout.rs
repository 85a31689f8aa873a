//! `timeout` and `timeout_at` on paused time: what fires when, what `Elapsed` says, who wins a tie.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_testkit::DropCounter;
use aqueduct_timeout::{TimeoutExt, timeout, timeout_at};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

/// Returns `Pending` once (waking itself), then `Ready(value)`.
struct YieldOnce<T> {
    value: Option<T>,
    yielded: bool,
}

impl<T: Unpin> Future for YieldOnce<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        if !self.yielded {
            self.yielded = true;
            context.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.value.take().expect("polled once after ready"))
    }
}

#[tokio::test(start_paused = true)]
async fn fires_after_the_duration_with_the_numbers() {
    let start = Instant::now();
    let elapsed = timeout(100 * MS, sleep(Duration::from_secs(10))).await.unwrap_err();
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(elapsed.timeout(), Some(100 * MS));
    assert_eq!(elapsed.deadline(), start + 100 * MS);
    assert_eq!(elapsed.waited(), 100 * MS);
    assert!(!elapsed.is_ambient());
}

#[tokio::test(start_paused = true)]
async fn a_future_that_finishes_first_wins() {
    let start = Instant::now();
    let value = timeout(100 * MS, async {
        sleep(40 * MS).await;
        "done"
    })
    .await;
    assert_eq!(value, Ok("done"));
    assert_eq!(start.elapsed(), 40 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_ready_future_wins_even_with_a_zero_duration() {
    assert_eq!(timeout(Duration::ZERO, async { 1 }).await, Ok(1));
    assert_eq!(
        timeout_at(Instant::now() - Duration::from_secs(1), std::future::ready(2)).await,
        Ok(2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_future_that_waits_loses_at_once_with_a_zero_duration() {
    let start = Instant::now();
    let elapsed =
        timeout(Duration::ZERO, YieldOnce { value: Some(1), yielded: false }).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(elapsed.waited(), Duration::ZERO);
    assert_eq!(elapsed.timeout(), Some(Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn when_both_are_due_at_the_same_instant_the_inner_future_wins() {
    let result = timeout(50 * MS, sleep(50 * MS)).await;
    assert!(result.is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_clock_starts_at_the_first_poll_not_at_construction() {
    let start = Instant::now();
    let guarded = timeout(100 * MS, sleep(Duration::from_secs(10)));
    assert_eq!(guarded.deadline(), None);
    sleep(Duration::from_secs(1)).await;
    let elapsed = guarded.await.unwrap_err();
    assert_eq!(elapsed.deadline(), start + Duration::from_secs(1) + 100 * MS);
    assert_eq!(elapsed.waited(), 100 * MS);
    assert_eq!(start.elapsed(), Duration::from_secs(1) + 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn timeout_at_fires_at_the_instant() {
    let start = Instant::now();
    let deadline = start + 70 * MS;
    let guarded = timeout_at(deadline, std::future::pending::<()>());
    assert_eq!(guarded.deadline(), Some(deadline));
    sleep(20 * MS).await;
    let elapsed = guarded.await.unwrap_err();
    assert_eq!(start.elapsed(), 70 * MS);
    assert_eq!(elapsed.deadline(), deadline);
    assert_eq!(elapsed.timeout(), None);
    // Measured from the first poll, 20 ms after the start.
    assert_eq!(elapsed.waited(), 50 * MS);
}

#[tokio::test(start_paused = true)]
async fn timeout_at_in_the_past_fails_a_waiting_future_at_once() {
    let deadline = Instant::now();
    sleep(10 * MS).await;
    let elapsed = timeout_at(deadline, std::future::pending::<()>()).await.unwrap_err();
    assert_eq!(elapsed.deadline(), deadline);
    assert_eq!(elapsed.waited(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_on_timeout() {
    let drops = DropCounter::new();
    let guard = drops.guard();
    let result = timeout(10 * MS, async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    })
    .await;
    assert!(result.is_err());
    assert_eq!(drops.created(), 1);
    assert_eq!(drops.dropped(), 1, "the inner future is dropped before the error is returned");
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_at_the_deadline_even_while_the_timeout_lives() {
    let drops = DropCounter::new();
    let guard = drops.guard();
    let mut guarded = std::pin::pin!(timeout(10 * MS, async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }));
    assert!(guarded.get_ref().is_some());
    assert!(futures::poll!(guarded.as_mut()).is_pending());
    sleep(10 * MS).await;
    assert!(matches!(futures::poll!(guarded.as_mut()), Poll::Ready(Err(_))));
    // The `Timeout` is still alive, its work is not.
    assert_eq!(drops.dropped(), 1);
    assert!(guarded.get_ref().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_future_that_yields_many_times_is_timed_out_between_yields() {
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&polls);
    let result = timeout(25 * MS, async move {
        loop {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            sleep(10 * MS).await;
        }
    })
    .await;
    assert!(result.is_err());
    // Woken at 0, 10 and 20 ms; the deadline at 25 ms drops it before the 30 ms wake.
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_method_forms_match_the_functions() {
    let start = Instant::now();
    assert!(std::future::pending::<()>().timeout(30 * MS).await.is_err());
    assert_eq!(start.elapsed(), 30 * MS);
    assert!(std::future::pending::<()>().timeout_at(start + 50 * MS).await.is_err());
    assert_eq!(start.elapsed(), 50 * MS);
}

#[tokio::test(start_paused = true)]
async fn elapsed_converts_to_a_timed_out_io_error() {
    async fn read() -> std::io::Result<u8> {
        let byte = timeout(5 * MS, std::future::pending::<u8>()).await?;
        Ok(byte)
    }
    assert_eq!(read().await.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn into_inner_gives_the_future_back_before_the_first_poll() {
    let guarded = timeout(5 * MS, YieldOnce { value: Some(3), yielded: false });
    let inner = guarded.into_inner().expect("not timed out");
    assert_eq!(inner.await, 3);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_known_after_the_first_poll() {
    let start = Instant::now();
    let mut guarded = std::pin::pin!(timeout(40 * MS, std::future::pending::<()>()));
    assert!(futures::poll!(guarded.as_mut()).is_pending());
    assert_eq!(guarded.deadline(), Some(start + 40 * MS));
}

#[test]
fn a_ready_future_completes_outside_a_runtime() {
    // No timer is created for a ready future, so no runtime is needed.
    let output = futures::executor::block_on(timeout(MS, async { 9 }));
    assert_eq!(output, Ok(9));
}

#[tokio::test(start_paused = true)]
async fn a_future_that_always_spends_the_cooperative_budget_still_times_out() {
    // The inner future never sleeps: it spends tokio's whole budget on every poll, then yields (tokio#4314).
    let busy = async {
        loop {
            tokio::task::coop::consume_budget().await;
        }
    };
    // The runtime never idles, so paused time does not auto-advance: another task moves the clock.
    let clock = tokio::spawn(async {
        loop {
            tokio::time::advance(MS).await;
        }
    });
    let elapsed = timeout(10 * MS, busy).await.unwrap_err();
    assert!(elapsed.waited() >= 10 * MS);
    clock.abort();
}
