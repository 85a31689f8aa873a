//! Optional dedup inside a batch, and keyed batching with one queue per key.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_batch::{Batcher, Flush, KeyedBatcher};
use aqueduct_testkit::CallCounter;

#[tokio::test(start_paused = true)]
async fn dedup_sends_equal_items_once_and_answers_every_caller() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&sent);
    let batcher: Batcher<u32, String, String> = Batcher::builder(move |ids: Vec<u32>| {
        log.lock().unwrap().push(ids.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, String>(ids.into_iter().map(|id| format!("row {id}")).collect::<Vec<_>>())
        }
    })
    .max_concurrent_batches(1)
    .max_batch_size(3)
    .dedup()
    .build()
    .unwrap();
    // Item 1 takes the only slot at once; the others queue behind it.
    let ids = [1, 5, 5, 6, 5, 7, 8];
    let results = futures::future::join_all(ids.iter().map(|id| batcher.submit(*id))).await;
    for (id, result) in ids.iter().zip(results) {
        assert_eq!(result.unwrap(), format!("row {id}"));
    }
    // Duplicates do not count against the batch size: the second batch holds three distinct ids.
    assert_eq!(*sent.lock().unwrap(), vec![vec![1], vec![5, 6, 7], vec![8]]);
    let metrics = batcher.metrics();
    assert_eq!((metrics.items, metrics.items_sent), (7, 5));
}

#[tokio::test(start_paused = true)]
async fn dedup_copies_a_whole_batch_error_to_duplicates() {
    let batcher: Batcher<u32, u32, String> =
        Batcher::builder(|_ids: Vec<u32>| async move { Err::<Vec<u32>, _>("down".to_owned()) })
            .flush(Flush::Size)
            .max_batch_size(1)
            .dedup()
            .build()
            .unwrap();
    let (a, b) = tokio::join!(batcher.submit(1), batcher.submit(1));
    assert_eq!(a.unwrap_err().into_operation().as_deref(), Some("down"));
    assert_eq!(b.unwrap_err().into_operation().as_deref(), Some("down"));
}

#[tokio::test(start_paused = true)]
async fn keyed_batches_never_mix_keys() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&sent);
    let batcher: KeyedBatcher<char, u32, u32, String> =
        KeyedBatcher::builder(move |key: char, items: Vec<u32>| {
            log.lock().unwrap().push((key, items.clone()));
            async move { Ok::<_, String>(items) }
        })
        .flush(Flush::Size)
        .max_batch_size(2)
        .build()
        .unwrap();
    let submits =
        [('a', 1), ('b', 2), ('a', 3), ('b', 4)].map(|(key, item)| batcher.submit(key, item));
    let results = futures::future::join_all(submits).await;
    assert!(results.iter().all(Result::is_ok));
    let mut batches = sent.lock().unwrap().clone();
    batches.sort_unstable();
    assert_eq!(batches, vec![('a', vec![1, 3]), ('b', vec![2, 4])]);
    assert_eq!(batcher.metrics(&'a').map(|metrics| metrics.batches), Some(1));
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_concurrency_limit() {
    let counter = CallCounter::new();
    let calls = counter.clone();
    let batcher: KeyedBatcher<u8, u32, u32, String> =
        KeyedBatcher::builder(move |_key: u8, items: Vec<u32>| {
            let counter = calls.clone();
            async move {
                let _in_flight = counter.enter();
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, String>(items)
            }
        })
        .max_batch_size(1)
        .max_concurrent_batches(1)
        .build()
        .unwrap();
    let submits = (0..12).map(|item| batcher.submit((item % 3) as u8, item));
    let results = futures::future::join_all(submits).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(counter.peak(), 3, "one batch per key at a time, three keys");
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted() {
    let batcher: KeyedBatcher<u32, u32, u32, String> =
        KeyedBatcher::builder(|_key: u32, items: Vec<u32>| async move { Ok::<_, String>(items) })
            .build()
            .unwrap();
    for key in 0..1_000 {
        assert_eq!(batcher.submit(key, key).await.unwrap(), key);
    }
    assert!(batcher.key_count() <= 128, "{} keys kept", batcher.key_count());
}

#[tokio::test(start_paused = true)]
async fn a_key_with_a_waiting_caller_is_not_evicted() {
    let batcher: KeyedBatcher<u32, u32, u32, String> =
        KeyedBatcher::builder(|_key: u32, items: Vec<u32>| async move { Ok::<_, String>(items) })
            .flush(Flush::Size)
            .max_batch_size(2)
            .build()
            .unwrap();
    let waiting = tokio::spawn(batcher.submit(u32::MAX, 1));
    common::settle().await;
    for key in 0..200 {
        // Two items fill a batch of the new key, which is then idle and can be swept.
        let (a, b) = tokio::join!(batcher.submit(key, 0), batcher.submit(key, 1));
        assert!(a.is_ok() && b.is_ok());
    }
    assert!(batcher.key_count() < 200, "idle keys were swept");
    // The waiting caller's key survived every sweep: its partner joins it in one batch.
    assert_eq!(batcher.submit(u32::MAX, 2).await.unwrap(), 2);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    assert_eq!(batcher.metrics(&u32::MAX).map(|metrics| metrics.batches), Some(1));
}
