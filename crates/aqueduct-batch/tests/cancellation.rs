//! Cancellation at every await point: a caller dropped before dispatch removes its item, a caller waiting for
//! room leaves without taking any, a caller dropped after dispatch only loses its result; nothing leaks.

mod common;

use std::time::Duration;

use aqueduct_batch::{Batch, Batcher, Error, Flush, WhenFull};
use aqueduct_testkit::{CallCounter, DropCounter, DropGuard};
use common::settle;

type Item = (u32, DropGuard);
type GuardBatcher = Batcher<Item, u32, String>;

/// A batcher of guarded items whose function records the items it saw and sleeps `latency`.
fn guarded(
    latency: Duration,
    seen: &std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    configure: impl FnOnce(
        aqueduct_batch::BatcherBuilder<Item, u32, String>,
    ) -> aqueduct_batch::BatcherBuilder<Item, u32, String>,
) -> GuardBatcher {
    let seen = std::sync::Arc::clone(seen);
    configure(Batcher::builder(move |items: Vec<Item>| {
        seen.lock().unwrap().extend(items.iter().map(|(number, _)| *number));
        async move {
            tokio::time::sleep(latency).await;
            Ok::<_, String>(items.into_iter().map(|(number, _guard)| number).collect::<Vec<_>>())
        }
    }))
    .build()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_drops_before_dispatch_removes_its_item() {
    let drops = DropCounter::new();
    let seen = std::sync::Arc::default();
    let batcher =
        guarded(Duration::ZERO, &seen, |builder| builder.flush(Flush::Size).max_batch_size(3));
    let first = tokio::spawn(batcher.submit((1, drops.guard())));
    let doomed = tokio::spawn(batcher.submit((2, drops.guard())));
    settle().await;
    assert_eq!(batcher.metrics().pending, 2);
    doomed.abort();
    assert!(doomed.await.unwrap_err().is_cancelled());
    assert_eq!(drops.dropped(), 1, "the removed item is dropped at once, not at the next dispatch");
    assert_eq!(batcher.metrics().pending, 1);
    let (third, fourth) =
        tokio::join!(batcher.submit((3, drops.guard())), batcher.submit((4, drops.guard())));
    assert_eq!((third.unwrap(), fourth.unwrap()), (3, 4));
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(*seen.lock().unwrap(), vec![1, 3, 4], "the batch function never saw item 2");
    assert_eq!(batcher.metrics().cancelled_before_dispatch, 1);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_oldest_item_moves_the_max_wait_to_the_next_one() {
    let seen = std::sync::Arc::default();
    let drops = DropCounter::new();
    let batcher = guarded(Duration::ZERO, &seen, |builder| {
        builder.flush(Flush::MaxWait(Duration::from_millis(10)))
    });
    let start = tokio::time::Instant::now();
    let oldest = tokio::spawn(batcher.submit((1, drops.guard())));
    tokio::time::sleep(Duration::from_millis(4)).await;
    let next = tokio::spawn(batcher.submit((2, drops.guard())));
    settle().await;
    oldest.abort();
    assert_eq!(next.await.unwrap().unwrap(), 2);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(14),
        "item 2 waited its own 10 ms, not item 1's"
    );
    assert_eq!(*seen.lock().unwrap(), vec![2]);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_submit_never_polled_queues_nothing() {
    let drops = DropCounter::new();
    let seen = std::sync::Arc::default();
    let batcher = guarded(Duration::ZERO, &seen, |builder| builder);
    let submit = batcher.submit((1, drops.guard()));
    drop(submit);
    settle().await;
    assert_eq!(drops.alive(), 0);
    assert_eq!(batcher.metrics().items, 0);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_caller_waiting_for_room_leaves_without_taking_any() {
    let drops = DropCounter::new();
    let seen = std::sync::Arc::default();
    let batcher = guarded(Duration::from_secs(10), &seen, |builder| {
        builder.max_batch_size(2).max_pending(2).max_concurrent_batches(1).when_full(WhenFull::Wait)
    });
    // Items 1 and 2 run (the only slot is now busy for 10 s), 3 and 4 fill the queue, 5 waits for room.
    let running: Vec<_> =
        (1..=4).map(|number| tokio::spawn(batcher.submit((number, drops.guard())))).collect();
    settle().await;
    assert_eq!(batcher.metrics().pending, 2);
    let waiting = tokio::spawn(batcher.submit((5, drops.guard())));
    settle().await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(drops.dropped(), 1, "the waiting item was dropped with its caller");
    // The room it never took is still there: 6 and 7 queue once 3 and 4 leave.
    let later: Vec<_> =
        (6..=7).map(|number| tokio::spawn(batcher.submit((number, drops.guard())))).collect();
    for handle in running.into_iter().chain(later) {
        assert!(handle.await.unwrap().is_ok());
    }
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3, 4, 6, 7]);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_item_frees_its_queue_place() {
    let seen = std::sync::Arc::default();
    let drops = DropCounter::new();
    let batcher = guarded(Duration::from_secs(10), &seen, |builder| {
        builder
            .max_batch_size(2)
            .max_pending(2)
            .max_concurrent_batches(1)
            .when_full(WhenFull::Reject)
            .flush(Flush::Size)
    });
    let running: Vec<_> =
        (1..=3).map(|number| tokio::spawn(batcher.submit((number, drops.guard())))).collect();
    let doomed = tokio::spawn(batcher.submit((4, drops.guard())));
    settle().await;
    assert!(
        batcher.submit((5, drops.guard())).await.unwrap_err().is_full(),
        "the queue holds 3 and 4"
    );
    doomed.abort();
    let _ = doomed.await;
    let accepted = tokio::spawn(batcher.submit((6, drops.guard())));
    for handle in running.into_iter().chain([accepted]) {
        assert!(handle.await.unwrap().is_ok());
    }
    assert_eq!(batcher.metrics().rejections, 1);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_caller_dropped_after_dispatch_only_loses_its_result() {
    let drops = DropCounter::new();
    let seen = std::sync::Arc::default();
    let batcher = guarded(Duration::from_millis(10), &seen, |builder| {
        builder.flush(Flush::Size).max_batch_size(2)
    });
    let doomed = tokio::spawn(batcher.submit((1, drops.guard())));
    let kept = tokio::spawn(batcher.submit((2, drops.guard())));
    settle().await;
    assert_eq!(batcher.metrics().batches_in_flight, 1);
    doomed.abort();
    assert_eq!(kept.await.unwrap().unwrap(), 2);
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    assert_eq!(batcher.metrics().cancelled_before_dispatch, 0);
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_static_run_midway_drops_its_calls_and_items() {
    let drops = DropCounter::new();
    let counter = CallCounter::new();
    let items: Vec<Item> = (0..50).map(|number| (number, drops.guard())).collect();
    let run = aqueduct_batch::batch(items, 5, 2, |chunk: Vec<Item>| {
        let counter = counter.clone();
        async move {
            let _in_flight = counter.enter();
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, String>(chunk.into_iter().map(|(number, _guard)| number).collect::<Vec<_>>())
        }
    });
    let outcome: Result<Vec<Result<u32, Error<String>>>, _> =
        tokio::time::timeout(Duration::from_millis(25), run).await;
    assert!(outcome.is_err(), "the run was cut short");
    assert!(counter.calls() >= 2 && counter.calls() < 10);
    assert_eq!(counter.in_flight(), 0, "no batch call outlives the run");
    assert_eq!(drops.alive(), 0, "every item, sent or not, was dropped");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_bisecting_run_between_halves_leaks_nothing() {
    let drops = DropCounter::new();
    let counter = CallCounter::new();
    let plan = Batch::builder().size(8).concurrency(1).bisect().build().unwrap();
    let numbers = drops.clone();
    let items: Vec<Guarded> =
        (0..8).map(|number| Guarded(number, std::sync::Arc::new(numbers.guard()))).collect();
    let run = plan.run(items, |chunk: Vec<Guarded>| {
        let counter = counter.clone();
        async move {
            let _in_flight = counter.enter();
            tokio::time::sleep(Duration::from_millis(10)).await;
            if chunk.iter().any(|item| item.0 == 3) {
                Err("bad".to_owned())
            } else {
                Ok(chunk.into_iter().map(|item| item.0).collect::<Vec<_>>())
            }
        }
    });
    let outcome: Result<Vec<Result<u32, Error<String>>>, _> =
        tokio::time::timeout(Duration::from_millis(25), run).await;
    assert!(outcome.is_err());
    assert_eq!(counter.calls(), 3, "the batch, its left half, and the left quarter started");
    assert_eq!(counter.in_flight(), 0);
    assert_eq!(drops.alive(), 0);
}

/// A clonable guarded item, for bisection (clones share one guard).
#[derive(Clone)]
struct Guarded(u32, #[allow(dead_code)] std::sync::Arc<DropGuard>);
