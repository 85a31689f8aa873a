//! Bounded concurrency with lazy creation, from iterators and streams, for every form.

use std::time::Duration;

use aqueduct_gather::{
    Error, GatherOptions, as_completed, as_completed_stream, gather, gather_stream, race_ok,
};
use aqueduct_testkit::{CallCounter, DropCounter};
use futures::StreamExt;
use tokio::time::sleep;

fn limit(limit: usize) -> GatherOptions {
    GatherOptions::builder().limit(limit).build().expect("a valid limit")
}

/// A future that counts itself in flight from its creation to its drop.
fn counted(
    counter: &CallCounter,
    ms: u64,
) -> impl Future<Output = Result<u64, ()>> + Send + 'static {
    let in_flight = counter.enter();
    async move {
        let _in_flight = in_flight;
        sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

#[tokio::test(start_paused = true)]
async fn only_limit_futures_exist_at_once_in_place() {
    let counter = CallCounter::new();
    let results: Vec<Result<u64, Error<()>>> =
        gather((0..50).map(|n| counted(&counter, 1 + n % 7))).with_options(limit(4)).await;
    assert_eq!(results.len(), 50);
    assert_eq!(counter.calls(), 50);
    assert_eq!(counter.peak(), 4, "futures are created lazily, never more than the limit at once");
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(n, result)| result.as_ref().ok() == Some(&(1 + n as u64 % 7)))
    );
}

#[tokio::test(start_paused = true)]
async fn only_limit_tasks_exist_at_once_spawned() {
    let counter = CallCounter::new();
    let results: Vec<Result<u64, Error<()>>> =
        gather((0..50).map(|n| counted(&counter, 1 + n % 5)))
            .with_options(limit(3))
            .spawned()
            .await;
    assert_eq!(results.len(), 50);
    assert_eq!(counter.peak(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_large_limit_keeps_the_per_child_wakers_and_the_bound() {
    let counter = CallCounter::new();
    let results: Vec<Result<u64, Error<()>>> =
        gather((0..400).map(|n| counted(&counter, 1 + n % 13))).with_options(limit(100)).await;
    assert_eq!(results.len(), 400);
    assert_eq!(counter.peak(), 100);
}

#[tokio::test(start_paused = true)]
async fn streams_are_pulled_only_when_a_slot_is_free() {
    let counter = CallCounter::new();
    let source = futures::stream::iter(0..30).map(|n| counted(&counter, 1 + n % 3));
    let results: Vec<Result<u64, Error<()>>> = gather_stream(source).with_options(limit(2)).await;
    assert_eq!(results.len(), 30);
    assert_eq!(counter.peak(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_pending_stream_source_is_awaited() {
    // The source itself takes time to produce each future.
    let source = futures::stream::unfold(0_u64, |n| async move {
        if n == 5 {
            return None;
        }
        sleep(Duration::from_millis(10)).await;
        Some((async move { Ok::<u64, ()>(n) }, n + 1))
    });
    let results: Vec<Result<u64, Error<()>>> = gather_stream(Box::pin(source)).await;
    assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn as_completed_yields_in_completion_order_with_input_indices() {
    let delays = [30_u64, 10, 20, 5];
    let order: Vec<(usize, u64)> = as_completed(delays.map(|ms| async move {
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, ()>(ms)
    }))
    .map(|(index, result)| (index, result.unwrap()))
    .collect()
    .await;
    assert_eq!(order, [(3, 5), (1, 10), (2, 20), (0, 30)]);
}

#[tokio::test(start_paused = true)]
async fn as_completed_keeps_no_finished_output() {
    // Each output holds a guard; the consumer drops it at once, so at most `limit` are ever alive.
    let guards = DropCounter::new();
    let mut peak_alive = 0;
    let mut stream = as_completed_stream(futures::stream::iter(0..100_u64).map(|n| {
        let guard = guards.guard();
        async move {
            sleep(Duration::from_millis(1 + n % 4)).await;
            Ok::<_, ()>(guard)
        }
    }))
    .with_options(limit(5));
    let mut seen = 0;
    while let Some((_, output)) = stream.next().await {
        peak_alive = peak_alive.max(guards.alive());
        drop(output);
        seen += 1;
    }
    assert_eq!(seen, 100);
    assert!(peak_alive <= 5, "peak alive {peak_alive}");
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn as_completed_spawned_with_a_limit() {
    let counter = CallCounter::new();
    let count = as_completed((0..20).map(|n| counted(&counter, 1 + n % 3)))
        .with_options(limit(2))
        .spawned()
        .count()
        .await;
    assert_eq!(count, 20);
    assert_eq!(counter.peak(), 2);
}

#[tokio::test(start_paused = true)]
async fn race_ok_with_a_limit_creates_the_next_contender_only_after_a_failure() {
    let counter = CallCounter::new();
    let answer: Result<u32, Error<&str>> = race_ok((0..10_u32).map(|n| {
        let in_flight = counter.enter();
        async move {
            let _in_flight = in_flight;
            if n < 3 { Err("not yet") } else { Ok(n) }
        }
    }))
    .with_options(limit(1))
    .await;
    assert_eq!(answer.ok(), Some(3));
    assert_eq!(counter.calls(), 4, "contenders after the winner were never created");
    assert_eq!(counter.peak(), 1);
}
