//! Ambient deadlines: every timeout clamps to `with_deadline`, nesting takes the earlier one, and `Elapsed` says which fired.

use std::time::Duration;

use aqueduct_timeout::{
    Error, TimeoutExt, idle_timeout, remaining, timeout, timeout_at, timeout_or, timeout_or_detach,
    try_timeout, with_deadline,
};
use futures::StreamExt;
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn an_earlier_ambient_deadline_wins_and_is_marked_ambient() {
    let start = Instant::now();
    let ambient = start + 30 * MS;
    let elapsed =
        with_deadline(ambient, timeout(Duration::from_secs(10), std::future::pending::<()>()))
            .await
            .unwrap_err();
    assert_eq!(start.elapsed(), 30 * MS);
    assert!(elapsed.is_ambient());
    assert_eq!(elapsed.deadline(), ambient);
    assert_eq!(elapsed.timeout(), Some(Duration::from_secs(10)));
    assert_eq!(elapsed.waited(), 30 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_own_deadline_wins_and_is_not_marked_ambient() {
    let start = Instant::now();
    let elapsed = with_deadline(
        start + Duration::from_secs(10),
        timeout(20 * MS, std::future::pending::<()>()),
    )
    .await
    .unwrap_err();
    assert_eq!(start.elapsed(), 20 * MS);
    assert!(!elapsed.is_ambient());
    assert_eq!(elapsed.deadline(), start + 20 * MS);
}

#[tokio::test(start_paused = true)]
async fn nested_ambient_deadlines_take_the_earliest() {
    let start = Instant::now();
    let elapsed = with_deadline(start + 40 * MS, async {
        with_deadline(start + Duration::from_secs(5), async {
            timeout(Duration::from_secs(60), std::future::pending::<()>()).await
        })
        .await
    })
    .await
    .unwrap_err();
    assert!(elapsed.is_ambient());
    assert_eq!(elapsed.deadline(), start + 40 * MS);
    assert_eq!(start.elapsed(), 40 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_built_outside_the_ambient_scope_still_clamps_at_its_first_poll() {
    let start = Instant::now();
    let guarded = timeout(Duration::from_secs(10), std::future::pending::<()>());
    let elapsed = with_deadline(start + 25 * MS, guarded).await.unwrap_err();
    assert!(elapsed.is_ambient());
    assert_eq!(start.elapsed(), 25 * MS);
}

#[tokio::test(start_paused = true)]
async fn timeout_at_clamps_too_and_an_equal_deadline_counts_as_own() {
    let start = Instant::now();
    let at = start + 15 * MS;
    let elapsed =
        with_deadline(at, timeout_at(at, std::future::pending::<()>())).await.unwrap_err();
    assert!(!elapsed.is_ambient(), "on a tie the caller's own deadline is reported");
    let elapsed =
        with_deadline(start + 20 * MS, timeout_at(start + 100 * MS, std::future::pending::<()>()))
            .await
            .unwrap_err();
    assert!(elapsed.is_ambient());
    assert_eq!(start.elapsed(), 20 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_expired_ambient_deadline_fails_a_waiting_future_at_once_but_not_a_ready_one() {
    let start = Instant::now();
    let outcome = with_deadline(start, async {
        sleep(5 * MS).await;
        let ready = timeout(Duration::from_secs(1), async { 1 }).await;
        let waiting = timeout(Duration::from_secs(1), std::future::pending::<u8>()).await;
        (ready, waiting)
    })
    .await;
    assert_eq!(outcome.0, Ok(1));
    let elapsed = outcome.1.unwrap_err();
    assert!(elapsed.is_ambient());
    assert_eq!(start.elapsed(), 5 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_duration_too_long_to_represent_still_clamps_to_the_ambient_deadline() {
    let start = Instant::now();
    let elapsed =
        with_deadline(start + 10 * MS, timeout(Duration::MAX, std::future::pending::<()>()))
            .await
            .unwrap_err();
    assert!(elapsed.is_ambient());
    assert_eq!(start.elapsed(), 10 * MS);
}

#[tokio::test(start_paused = true)]
async fn every_entry_point_clamps() {
    let start = Instant::now();
    let value = with_deadline(
        start + 10 * MS,
        timeout_or(Duration::from_secs(1), std::future::pending(), 3),
    )
    .await;
    assert_eq!(value, 3);
    let result: Result<(), Error<()>> = with_deadline(
        start + 20 * MS,
        try_timeout(Duration::from_secs(1), std::future::pending::<Result<(), ()>>()),
    )
    .await;
    assert!(result.unwrap_err().is_elapsed());
    let result = with_deadline(
        start + 30 * MS,
        std::future::pending::<()>().timeout(Duration::from_secs(1)),
    )
    .await;
    assert!(result.unwrap_err().is_ambient());
    let outcome = with_deadline(
        start + 40 * MS,
        timeout_or_detach(Duration::from_secs(1), sleep(Duration::from_secs(2)), ()),
    )
    .await;
    assert!(outcome.is_detached());
    let items: Vec<_> = with_deadline(
        start + 50 * MS,
        idle_timeout(Duration::from_secs(1), futures::stream::pending::<u8>()).collect::<Vec<_>>(),
    )
    .await;
    assert!(items[0].unwrap_err().is_ambient());
    assert_eq!(start.elapsed(), 50 * MS);
}

#[tokio::test(start_paused = true)]
async fn remaining_inside_a_timeout_reports_the_ambient_deadline_only() {
    // A timeout enforces its deadline; it does not set an ambient one (that is `with_deadline`'s job).
    let left = timeout(Duration::from_secs(1), async { remaining() }).await.unwrap();
    assert_eq!(left, None);
    let start = Instant::now();
    let left = with_deadline(
        start + Duration::from_secs(2),
        timeout(Duration::from_secs(1), async { remaining() }),
    )
    .await
    .unwrap();
    assert_eq!(left, Some(Duration::from_secs(2)));
}
