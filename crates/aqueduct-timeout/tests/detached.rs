//! `timeout_or_detach`: the value in time, or the default plus a `JoinHandle` that yields the late value.

use std::time::Duration;

use aqueduct_testkit::{CallCounter, DropCounter};
use aqueduct_timeout::{DetachOutcome, timeout_or_detach};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

async fn answer_after(latency: Duration, value: u32) -> u32 {
    sleep(latency).await;
    value
}

#[tokio::test(start_paused = true)]
async fn in_time_the_value_comes_back_and_nothing_is_spawned() {
    let start = Instant::now();
    let outcome = timeout_or_detach(50 * MS, answer_after(10 * MS, 7), 0).await;
    assert_eq!(start.elapsed(), 10 * MS);
    assert!(!outcome.is_detached());
    let (value, handle) = outcome.into_parts();
    assert_eq!(value, 7);
    assert!(handle.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_ready_future_wins_even_with_a_zero_duration() {
    let outcome = timeout_or_detach(Duration::ZERO, async { 7 }, 0).await;
    assert_eq!(outcome.into_value(), 7);
}

#[tokio::test(start_paused = true)]
async fn on_timeout_the_default_comes_back_and_the_handle_yields_the_late_value() {
    let start = Instant::now();
    let outcome = timeout_or_detach(50 * MS, answer_after(80 * MS, 7), 0).await;
    assert_eq!(start.elapsed(), 50 * MS);
    let DetachOutcome::Detached { default, elapsed, handle } = outcome else {
        panic!("the work should have been detached");
    };
    assert_eq!(default, 0);
    assert_eq!(elapsed.timeout(), Some(50 * MS));
    assert_eq!(elapsed.waited(), 50 * MS);
    // The work keeps its own schedule: it finishes 80 ms after it started, not 80 ms after the detach.
    assert_eq!(handle.await.unwrap(), 7);
    assert_eq!(start.elapsed(), 80 * MS);
}

#[tokio::test(start_paused = true)]
async fn the_detached_work_finishes_even_when_its_handle_is_dropped() {
    let finished = CallCounter::new();
    let counted = finished.clone();
    let outcome = timeout_or_detach(
        10 * MS,
        async move {
            sleep(30 * MS).await;
            counted.record();
        },
        (),
    )
    .await;
    assert!(outcome.is_detached());
    drop(outcome);
    sleep(50 * MS).await;
    assert_eq!(finished.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_before_the_deadline_drops_the_work() {
    let drops = DropCounter::new();
    let guard = drops.guard();
    let soft = timeout_or_detach(
        Duration::from_secs(1),
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        },
        (),
    );
    let mut soft = Box::pin(soft);
    assert!(futures::poll!(soft.as_mut()).is_pending());
    assert_eq!(drops.alive(), 1);
    drop(soft);
    assert_eq!(drops.dropped(), 1, "no task was left running behind the caller's back");
}

#[tokio::test(start_paused = true)]
async fn the_handle_can_abort_the_detached_work() {
    let drops = DropCounter::new();
    let guard = drops.guard();
    let outcome = timeout_or_detach(
        10 * MS,
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        },
        (),
    )
    .await;
    let (_, handle) = outcome.into_parts();
    let handle = handle.expect("detached");
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    assert_eq!(drops.dropped(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panic_before_the_deadline_reaches_the_caller() {
    let caller = tokio::spawn(timeout_or_detach(
        Duration::from_secs(1),
        async {
            sleep(10 * MS).await;
            panic!("boom before the deadline");
        },
        (),
    ));
    let error = caller.await.unwrap_err();
    assert!(error.is_panic());
}

#[tokio::test(start_paused = true)]
async fn a_panic_after_the_deadline_is_reported_by_the_handle() {
    let outcome = timeout_or_detach(
        10 * MS,
        async {
            sleep(20 * MS).await;
            panic!("boom after the deadline");
        },
        (),
    )
    .await;
    let (_, handle) = outcome.into_parts();
    let error = handle.expect("detached").await.unwrap_err();
    assert!(error.is_panic());
}

#[tokio::test(start_paused = true)]
async fn the_clock_starts_at_the_first_poll() {
    let start = Instant::now();
    let soft = timeout_or_detach(20 * MS, answer_after(Duration::from_secs(1), 1), 0);
    sleep(100 * MS).await;
    let outcome = soft.await;
    assert!(outcome.is_detached());
    assert_eq!(start.elapsed(), 120 * MS);
}

#[tokio::test(start_paused = true)]
async fn detached_work_leaves_the_ambient_scope_but_keeps_deadlines_it_already_clamped() {
    use aqueduct_timeout::{current_deadline, timeout, with_deadline};

    let start = Instant::now();
    let ambient = start + 100 * MS;
    // Started before the detach: this timeout clamped to the ambient 100 ms at its first poll.
    let started_early = timeout(Duration::from_secs(10), sleep(Duration::from_secs(5)));
    let outcome = with_deadline(
        ambient,
        timeout_or_detach(
            50 * MS,
            started_early,
            Err(aqueduct_timeout::Elapsed::new(None, start, Duration::ZERO)),
        ),
    )
    .await;
    let (_, handle) = outcome.into_parts();
    let elapsed = handle.expect("detached").await.expect("no panic").unwrap_err();
    assert!(elapsed.is_ambient());
    assert_eq!(start.elapsed(), 100 * MS);

    // Anything that reads the ambient deadline after the detach finds none.
    let reads_late = async {
        sleep(80 * MS).await;
        current_deadline()
    };
    let outcome =
        with_deadline(start + Duration::from_secs(1), timeout_or_detach(50 * MS, reads_late, None))
            .await;
    let (_, handle) = outcome.into_parts();
    assert_eq!(handle.expect("detached").await.expect("no panic"), None);
}
