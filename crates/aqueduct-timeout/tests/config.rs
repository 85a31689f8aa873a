//! Edge values of the only configuration a timeout has, its duration or deadline: none is an error, none panics or hangs.

use std::time::Duration;

use aqueduct_timeout::{IdleTimeoutExt, timeout, timeout_at, timeout_or, timeout_or_detach};
use futures::StreamExt;
use tokio::time::{Instant, sleep};

#[tokio::test(start_paused = true)]
async fn a_zero_duration_lets_ready_work_through_and_fails_waiting_work_at_once() {
    assert_eq!(timeout(Duration::ZERO, async { 1 }).await, Ok(1));
    let start = Instant::now();
    assert!(timeout(Duration::ZERO, sleep(Duration::from_millis(1))).await.is_err());
    assert_eq!(timeout_or(Duration::ZERO, sleep(Duration::from_millis(1)), ()).await, ());
    assert!(
        timeout_or_detach(Duration::ZERO, sleep(Duration::from_millis(1)), ()).await.is_detached()
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn duration_max_means_no_deadline_of_its_own_and_does_not_overflow() {
    let start = Instant::now();
    assert_eq!(
        timeout(Duration::MAX, async {
            sleep(Duration::from_secs(3_600)).await;
            2
        })
        .await,
        Ok(2)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3_600));
    let guarded = std::pin::pin!(timeout(Duration::MAX, std::future::pending::<()>()));
    let mut guarded = guarded;
    assert!(futures::poll!(guarded.as_mut()).is_pending());
    assert_eq!(guarded.deadline(), None, "no deadline at all: neither own nor ambient");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_years_away_is_honoured_by_the_timer_wheel() {
    let start = Instant::now();
    let ten_years = Duration::from_secs(10 * 365 * 24 * 3_600);
    let result = timeout(ten_years, async {
        sleep(Duration::from_secs(5)).await;
        3
    })
    .await;
    assert_eq!(result, Ok(3));
    let result = timeout_at(start + ten_years, std::future::ready(4)).await;
    assert_eq!(result, Ok(4));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_long_past_fails_waiting_work_at_once_and_reports_it() {
    sleep(Duration::from_secs(60)).await;
    let long_ago = Instant::now() - Duration::from_secs(30);
    let elapsed = timeout_at(long_ago, std::future::pending::<()>()).await.unwrap_err();
    assert_eq!(elapsed.deadline(), long_ago);
    assert_eq!(elapsed.waited(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn idle_duration_max_never_times_out_a_stream_that_ends() {
    let items: Vec<_> = futures::stream::iter([1, 2, 3])
        .then(|item| async move {
            sleep(Duration::from_secs(3_600)).await;
            item
        })
        .idle_timeout(Duration::MAX)
        .collect()
        .await;
    assert_eq!(items, vec![Ok(1), Ok(2), Ok(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_duration_is_rounded_up_to_the_timer_granularity() {
    let start = Instant::now();
    let elapsed =
        timeout(Duration::from_micros(100), std::future::pending::<()>()).await.unwrap_err();
    // The deadline is what was asked; the timer fires at the next millisecond tick.
    assert_eq!(elapsed.deadline(), start + Duration::from_micros(100));
    assert_eq!(elapsed.waited(), Duration::from_millis(1));
}
