//! Saturation: a full queue waits (in arrival order) or rejects with `Error::Full`; under load batches fill.

mod common;

use std::time::Duration;

use aqueduct_batch::{Error, Flush, WhenFull};
use common::{recording, settle};

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_with_its_capacity() {
    let (batcher, _log) = recording(Duration::from_secs(1), |builder| {
        builder
            .max_batch_size(2)
            .max_pending(4)
            .max_concurrent_batches(1)
            .when_full(WhenFull::Reject)
            .flush(Flush::Size)
    });
    // 1 and 2 run, 3..=6 fill the queue.
    let accepted: Vec<_> = (1..=6).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    match batcher.submit(7).await {
        Err(Error::Full { capacity }) => assert_eq!(capacity, 4),
        other => panic!("expected Full, got {other:?}"),
    }
    for handle in accepted {
        assert!(handle.await.unwrap().is_ok());
    }
    assert_eq!(batcher.metrics().rejections, 1);
    let (eighth, ninth) = tokio::join!(batcher.submit(8), batcher.submit(9));
    assert_eq!((eighth.unwrap(), ninth.unwrap()), (80, 90), "room again once the queue drained");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_makes_submitters_wait_in_arrival_order() {
    let (batcher, log) = recording(Duration::from_millis(10), |builder| {
        builder
            .max_batch_size(2)
            .max_pending(2)
            .max_concurrent_batches(1)
            .when_full(WhenFull::Wait)
            .flush(Flush::Size)
    });
    let mut handles = Vec::new();
    for item in 1..=10 {
        handles.push(tokio::spawn(batcher.submit(item)));
        settle().await;
    }
    for handle in handles {
        assert!(handle.await.unwrap().is_ok());
    }
    assert_eq!(log.items(), vec![vec![1, 2], vec![3, 4], vec![5, 6], vec![7, 8], vec![9, 10]]);
    assert_eq!(batcher.metrics().rejections, 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_submitters_are_told_when_the_batcher_shuts_down() {
    let (batcher, _log) = recording(Duration::from_millis(10), |builder| {
        builder.max_batch_size(1).max_pending(1).max_concurrent_batches(1).when_full(WhenFull::Wait)
    });
    let queued: Vec<_> = (1..=2).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    let waiting = tokio::spawn(batcher.submit(3));
    settle().await;
    batcher.shutdown().await;
    assert!(waiting.await.unwrap().unwrap_err().is_closed());
    for handle in queued {
        assert!(handle.await.unwrap().is_ok(), "accepted items are still served");
    }
}

#[tokio::test(start_paused = true)]
async fn batches_fill_to_their_size_under_saturation() {
    let (batcher, log) = recording(Duration::from_millis(10), |builder| {
        builder.max_batch_size(50).max_concurrent_batches(2).max_pending(1_000)
    });
    let results = futures::future::join_all((0..1_000).map(|item| batcher.submit(item))).await;
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(item, result)| result.as_ref().ok() == Some(&(item as u32 * 10)))
    );
    let sizes: Vec<usize> = log.items().iter().map(Vec::len).collect();
    // The two first items find free slots and go alone; after that every batch is full but the last.
    assert_eq!(&sizes[..2], &[1, 1]);
    assert!(sizes[2..sizes.len() - 1].iter().all(|size| *size == 50), "{sizes:?}");
    let metrics = batcher.metrics();
    assert_eq!(metrics.batches, 22);
    assert!(metrics.fill_ratio() > 0.9, "fill ratio {}", metrics.fill_ratio());
}
