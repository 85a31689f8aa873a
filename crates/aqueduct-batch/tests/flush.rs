//! The flush rules of `Batcher`, on paused time: size, max wait armed by the first item, immediate when a slot
//! is free, `flush()`, shutdown and dropping the last handle.

mod common;

use std::time::Duration;

use aqueduct_batch::Flush;
use common::{recording, settle};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn size_flush_waits_for_a_full_batch() {
    let (batcher, log) =
        recording(Duration::ZERO, |builder| builder.flush(Flush::Size).max_batch_size(3));
    let first = tokio::spawn(batcher.submit(1));
    let second = tokio::spawn(batcher.submit(2));
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert!(log.batches().is_empty(), "two items of three must wait");
    let third = batcher.submit(3).await.unwrap();
    assert_eq!(third, 30);
    assert_eq!(first.await.unwrap().unwrap(), 10);
    assert_eq!(second.await.unwrap().unwrap(), 20);
    assert_eq!(log.items(), vec![vec![1, 2, 3]]);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_at_once_even_under_max_wait() {
    let (batcher, log) = recording(Duration::ZERO, |builder| {
        builder.flush(Flush::MaxWait(Duration::from_secs(60))).max_batch_size(2)
    });
    let (a, b) = tokio::join!(batcher.submit(1), batcher.submit(2));
    assert_eq!((a.unwrap(), b.unwrap()), (10, 20));
    assert_eq!(log.batches(), vec![(Duration::ZERO, vec![1, 2])]);
}

#[tokio::test(start_paused = true)]
async fn max_wait_is_armed_by_the_first_item_and_not_reset_by_later_ones() {
    let (batcher, log) = recording(Duration::ZERO, |builder| {
        builder.flush(Flush::MaxWait(10 * MS)).max_batch_size(100)
    });
    let first = tokio::spawn(batcher.submit(1));
    tokio::time::sleep(5 * MS).await;
    let second = tokio::spawn(batcher.submit(2));
    tokio::time::sleep(4 * MS).await;
    assert!(log.batches().is_empty(), "9 ms after the first item, nothing is sent");
    assert_eq!(first.await.unwrap().unwrap(), 10);
    assert_eq!(second.await.unwrap().unwrap(), 20);
    assert_eq!(log.batches(), vec![(10 * MS, vec![1, 2])]);

    // An idle batcher arms nothing: the next window starts with the next first item.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = log.batches().len();
    assert_eq!(started, 1);
    let third = batcher.submit(3).await.unwrap();
    assert_eq!(third, 30);
    let batches = log.batches();
    assert_eq!(batches[1].1, vec![3]);
    assert_eq!(batches[1].0, 10 * MS + Duration::from_secs(1) + 10 * MS);
}

#[tokio::test(start_paused = true)]
async fn max_wait_counts_from_the_oldest_remaining_item_after_a_size_flush() {
    let (batcher, log) = recording(Duration::ZERO, |builder| {
        builder.flush(Flush::MaxWait(10 * MS)).max_batch_size(2)
    });
    let a = tokio::spawn(batcher.submit(1));
    tokio::time::sleep(3 * MS).await;
    let b = tokio::spawn(batcher.submit(2));
    let c = tokio::spawn(batcher.submit(3));
    for handle in [a, b, c] {
        handle.await.unwrap().unwrap();
    }
    // [1, 2] went on size at 3 ms; 3 arrived at 3 ms and waited its own 10 ms.
    assert_eq!(log.batches(), vec![(3 * MS, vec![1, 2]), (13 * MS, vec![3])]);
}

#[tokio::test(start_paused = true)]
async fn immediate_sends_at_once_when_a_slot_is_free_and_fills_while_slots_are_busy() {
    let (batcher, log) = recording(10 * MS, |builder| {
        builder.flush(Flush::Immediate).max_concurrent_batches(1).max_batch_size(10)
    });
    let first = tokio::spawn(batcher.submit(1));
    settle().await;
    assert_eq!(log.batches(), vec![(Duration::ZERO, vec![1])], "a lone item goes out at once");
    let rest: Vec<_> = (2..=4).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    assert_eq!(log.batches().len(), 1, "the only slot is busy, so items wait");
    assert_eq!(first.await.unwrap().unwrap(), 10);
    for handle in rest {
        handle.await.unwrap().unwrap();
    }
    assert_eq!(log.batches(), vec![(Duration::ZERO, vec![1]), (10 * MS, vec![2, 3, 4])]);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_concurrent_batches_run_at_once() {
    let counter = aqueduct_testkit::CallCounter::new();
    let calls = counter.clone();
    let batcher: common::TestBatcher = aqueduct_batch::Batcher::builder(move |items: Vec<u32>| {
        let counter = calls.clone();
        async move {
            let _in_flight = counter.enter();
            tokio::time::sleep(5 * MS).await;
            Ok::<_, String>(items)
        }
    })
    .max_batch_size(4)
    .max_concurrent_batches(3)
    .build()
    .unwrap();
    let results = futures::future::join_all((0..100).map(|item| batcher.submit(item))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(counter.peak(), 3);
    assert_eq!(counter.in_flight(), 0);
    assert_eq!(batcher.metrics().batches_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn flush_sends_what_is_queued_now() {
    let (batcher, log) =
        recording(Duration::ZERO, |builder| builder.flush(Flush::Size).max_batch_size(10));
    let early: Vec<_> = (1..=2).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    batcher.flush();
    for handle in early {
        handle.await.unwrap().unwrap();
    }
    let late = tokio::spawn(batcher.submit(3));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        log.items(),
        vec![vec![1, 2]],
        "an item queued after flush() waits for the usual rules"
    );
    batcher.flush();
    assert_eq!(late.await.unwrap().unwrap(), 30);
}

#[tokio::test(start_paused = true)]
async fn flush_respects_the_concurrency_bound() {
    let (batcher, log) = recording(5 * MS, |builder| {
        builder.flush(Flush::Size).max_batch_size(2).max_concurrent_batches(1)
    });
    let handles: Vec<_> = (1..=5).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    // [1, 2] and [3, 4] are full; 5 waits alone.
    batcher.flush();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    assert_eq!(
        log.batches(),
        vec![(Duration::ZERO, vec![1, 2]), (5 * MS, vec![3, 4]), (10 * MS, vec![5])]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_what_is_queued_and_waits_for_it() {
    let (batcher, log) = recording(7 * MS, |builder| builder.flush(Flush::Size).max_batch_size(10));
    let queued: Vec<_> = (1..=3).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    batcher.shutdown().await;
    assert_eq!(log.items(), vec![vec![1, 2, 3]]);
    assert_eq!(batcher.metrics().batches_in_flight, 0, "shutdown waited for the batch");
    for handle in queued {
        assert!(handle.await.unwrap().is_ok());
    }
    assert!(batcher.submit(4).await.unwrap_err().is_closed());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_sends_what_is_queued() {
    let (batcher, log) =
        recording(Duration::ZERO, |builder| builder.flush(Flush::Size).max_batch_size(10));
    let clone = batcher.clone();
    let queued: Vec<_> = (1..=2).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    drop(batcher);
    settle().await;
    assert!(log.batches().is_empty(), "a clone still holds the batcher open");
    drop(clone);
    for handle in queued {
        assert!(handle.await.unwrap().is_ok());
    }
    assert_eq!(log.items(), vec![vec![1, 2]]);
}
