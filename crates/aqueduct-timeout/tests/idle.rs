//! `idle_timeout`: items pass while they keep coming; a wait longer than `idle` yields one error and ends the stream.

use std::task::Poll;
use std::time::Duration;

use aqueduct_testkit::DropCounter;
use aqueduct_timeout::{IdleTimeoutExt, idle_timeout};
use futures::stream::FusedStream;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

/// Yields `0..` with the given pauses before each item, then ends.
fn paced(pauses: Vec<u32>) -> impl futures::Stream<Item = usize> {
    futures::stream::iter(pauses.into_iter().enumerate()).then(|(index, pause)| async move {
        sleep(pause * MS).await;
        index
    })
}

#[tokio::test(start_paused = true)]
async fn items_that_keep_coming_pass_through_and_the_stream_ends_normally() {
    let start = Instant::now();
    let items: Vec<_> = idle_timeout(50 * MS, paced(vec![40, 40, 40, 40])).collect().await;
    assert_eq!(items, vec![Ok(0), Ok(1), Ok(2), Ok(3)]);
    // The total (160 ms) is far beyond `idle`: only the gaps count.
    assert_eq!(start.elapsed(), 160 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_gap_longer_than_idle_yields_one_error_then_ends() {
    let start = Instant::now();
    let mut stream = std::pin::pin!(idle_timeout(50 * MS, paced(vec![10, 20, 500, 10])));
    assert_eq!(stream.next().await, Some(Ok(0)));
    assert_eq!(stream.next().await, Some(Ok(1)));
    let elapsed = stream.next().await.expect("an item").unwrap_err();
    assert_eq!(elapsed.timeout(), Some(50 * MS));
    assert_eq!(elapsed.waited(), 50 * MS);
    assert_eq!(elapsed.deadline(), start + 80 * MS);
    assert!(!elapsed.is_ambient());
    assert!(stream.is_terminated());
    assert_eq!(stream.next().await, None);
    assert_eq!(stream.next().await, None);
}

#[tokio::test(start_paused = true)]
async fn the_first_item_must_arrive_within_idle_of_the_first_poll() {
    let start = Instant::now();
    let items: Vec<_> = futures::stream::pending::<u8>().idle_timeout(30 * MS).collect().await;
    assert_eq!(items.len(), 1);
    assert!(items[0].is_err());
    assert_eq!(start.elapsed(), 30 * MS);
}

#[tokio::test(start_paused = true)]
async fn time_the_consumer_spends_between_items_does_not_count() {
    // The producer always has the next item ready; the consumer is slow.
    let mut stream = std::pin::pin!(futures::stream::iter(0..3).idle_timeout(10 * MS));
    let mut seen = Vec::new();
    while let Some(item) = stream.next().await {
        seen.push(item);
        sleep(100 * MS).await;
    }
    assert_eq!(seen, vec![Ok(0), Ok(1), Ok(2)]);
}

#[tokio::test(start_paused = true)]
async fn each_wait_gets_a_fresh_deadline_from_when_the_consumer_starts_waiting() {
    let mut stream = std::pin::pin!(idle_timeout(50 * MS, paced(vec![40, 40, 60])));
    assert_eq!(stream.next().await, Some(Ok(0)));
    // The consumer dawdles: the producer's next pause overlaps this sleep.
    sleep(30 * MS).await;
    // 10 ms of the producer's 40 ms pause remain: well within `idle`.
    assert_eq!(stream.next().await, Some(Ok(1)));
    let elapsed = stream.next().await.expect("an item").unwrap_err();
    assert_eq!(elapsed.waited(), 50 * MS);
}

#[tokio::test(start_paused = true)]
async fn the_inner_stream_is_dropped_at_the_timeout() {
    let drops = DropCounter::new();
    let guard = drops.guard();
    let inner = futures::stream::unfold(guard, |guard| async move {
        std::future::pending::<()>().await;
        Some((1, guard))
    });
    let mut stream = std::pin::pin!(idle_timeout(10 * MS, inner));
    assert!(stream.next().await.expect("an item").is_err());
    assert_eq!(drops.dropped(), 1, "dropped before the error was handed out");
    assert!(stream.get_ref().is_none());
}

#[tokio::test(start_paused = true)]
async fn an_empty_stream_ends_at_once_and_a_zero_idle_fails_the_first_wait() {
    let items: Vec<_> = futures::stream::empty::<u8>().idle_timeout(Duration::ZERO).collect().await;
    assert!(items.is_empty());
    // Ready items pass even with a zero idle: the inner stream is polled first.
    let mut stream = std::pin::pin!(
        futures::stream::iter([1, 2])
            .chain(futures::stream::pending())
            .idle_timeout(Duration::ZERO)
    );
    assert_eq!(stream.next().await, Some(Ok(1)));
    assert_eq!(stream.next().await, Some(Ok(2)));
    let start = Instant::now();
    assert!(stream.next().await.expect("an item").is_err());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn size_hint_counts_the_possible_error() {
    let stream = futures::stream::iter([1, 2, 3]).idle_timeout(MS);
    assert_eq!(stream.size_hint(), (3, Some(4)));
    assert_eq!(stream.idle(), MS);
}

#[derive(Debug, PartialEq, Eq)]
struct BadLine;

#[tokio::test(start_paused = true)]
async fn try_idle_timeout_passes_stream_errors_and_ends_with_error_elapsed() {
    use aqueduct_timeout::{Error, try_idle_timeout};

    let lines =
        futures::stream::iter([Ok(1), Err(BadLine), Ok(2)]).chain(futures::stream::pending());
    let mut stream = std::pin::pin!(try_idle_timeout::<_, _, _, BadLine>(20 * MS, lines));
    assert_eq!(stream.next().await.expect("an item").ok(), Some(1));
    // The stream's own error passes, and the stream goes on after it.
    assert_eq!(stream.next().await.expect("an item").unwrap_err().into_operation(), Some(BadLine));
    assert_eq!(stream.next().await.expect("an item").ok(), Some(2));
    let start = Instant::now();
    let error = stream.next().await.expect("an item").unwrap_err();
    assert!(error.is_elapsed());
    assert_eq!(start.elapsed(), 20 * MS);
    assert!(stream.is_terminated());
    assert!(stream.next().await.is_none());

    // Items that already carry `Error<E>` are not nested.
    let wrapped = futures::stream::iter([Err::<u8, Error<BadLine>>(Error::Operation(BadLine))]);
    let items: Vec<Result<u8, Error<BadLine>>> = try_idle_timeout(20 * MS, wrapped).collect().await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items.into_iter().next().expect("one item").unwrap_err().into_operation(),
        Some(BadLine)
    );
}

#[tokio::test(start_paused = true)]
async fn try_idle_timeout_drops_its_stream_at_the_timeout() {
    use aqueduct_timeout::{Error, try_idle_timeout};

    let drops = DropCounter::new();
    let guard = drops.guard();
    let inner = futures::stream::unfold(guard, |guard| async move {
        std::future::pending::<()>().await;
        Some((Ok::<u8, BadLine>(1), guard))
    });
    let mut stream = std::pin::pin!(try_idle_timeout(10 * MS, inner));
    let item: Result<u8, Error<BadLine>> = stream.next().await.expect("an item");
    assert!(item.unwrap_err().is_elapsed());
    assert_eq!(drops.dropped(), 1);
}

#[tokio::test]
async fn a_zero_idle_or_an_expired_ambient_deadline_fails_the_first_wait_without_a_timer_tick() {
    // Real time on purpose: a timer armed at "now" fires only at the next millisecond tick, so a first
    // poll that is already `Ready` proves no timer was involved. No sleep, no timing assert.
    let mut zero = std::pin::pin!(futures::stream::pending::<u8>().idle_timeout(Duration::ZERO));
    let Poll::Ready(Some(Err(elapsed))) = futures::poll!(zero.next()) else {
        panic!("a zero idle fails the first wait in the first poll");
    };
    assert_eq!(elapsed.waited(), Duration::ZERO);
    assert!(!elapsed.is_ambient());
    assert!(zero.is_terminated());

    let expired = Instant::now();
    let first = aqueduct_timeout::with_deadline(expired, async {
        let mut stream =
            std::pin::pin!(futures::stream::pending::<u8>().idle_timeout(Duration::from_secs(5)));
        futures::poll!(stream.next())
    })
    .await;
    let Poll::Ready(Some(Err(elapsed))) = first else {
        panic!("an expired ambient deadline fails the first wait in the first poll");
    };
    assert!(elapsed.is_ambient());
    assert_eq!(elapsed.deadline(), expired);
}
