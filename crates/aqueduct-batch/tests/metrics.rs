//! `Batcher::metrics`: batch sizes, fill ratio, queue wait, batches in flight, pending items, rejections.

mod common;

use std::time::Duration;

use aqueduct_batch::{BatcherMetrics, Flush};
use common::{recording, settle};

#[tokio::test(start_paused = true)]
async fn queue_wait_is_measured_from_submit_to_dispatch() {
    let (batcher, _log) = recording(Duration::ZERO, |builder| {
        builder.flush(Flush::MaxWait(Duration::from_millis(10)))
    });
    let first = tokio::spawn(batcher.submit(1));
    tokio::time::sleep(Duration::from_millis(4)).await;
    let second = tokio::spawn(batcher.submit(2));
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let metrics = batcher.metrics();
    assert_eq!(metrics.queue_wait_max, Duration::from_millis(10));
    assert_eq!(metrics.queue_wait_total, Duration::from_millis(16));
    assert_eq!(metrics.mean_queue_wait(), Duration::from_millis(8));
}

#[tokio::test(start_paused = true)]
async fn gauges_show_pending_items_and_batches_in_flight() {
    let (batcher, _log) = recording(Duration::from_millis(10), |builder| {
        builder.max_batch_size(2).max_concurrent_batches(1)
    });
    let handles: Vec<_> = (1..=3).map(|item| tokio::spawn(batcher.submit(item))).collect();
    settle().await;
    let metrics = batcher.metrics();
    assert_eq!((metrics.batches_in_flight, metrics.pending), (1, 2));
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let metrics = batcher.metrics();
    assert_eq!((metrics.batches_in_flight, metrics.pending), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_histogram_and_fill_ratio_describe_batch_sizes() {
    let (batcher, _log) =
        recording(Duration::ZERO, |builder| builder.flush(Flush::Size).max_batch_size(4));
    let full = futures::future::join_all((0..8).map(|item| batcher.submit(item)));
    assert!(full.await.iter().all(Result::is_ok));
    let partial = tokio::spawn(batcher.submit(9));
    settle().await;
    batcher.flush();
    partial.await.unwrap().unwrap();
    let metrics = batcher.metrics();
    assert_eq!((metrics.batches, metrics.items, metrics.items_sent), (3, 9, 9));
    assert_eq!(metrics.max_batch_size, 4);
    assert_eq!(metrics.batch_size_histogram, vec![(1, 1), (2, 0), (4, 2)]);
    assert!((metrics.fill_ratio() - 0.75).abs() < 1e-9);
    assert!((metrics.mean_batch_size() - 3.0).abs() < 1e-9);
}

#[test]
fn an_empty_snapshot_has_no_ratios_to_divide_by_zero() {
    let metrics = BatcherMetrics::default();
    assert_eq!(metrics.mean_queue_wait(), Duration::ZERO);
    assert_eq!(metrics.fill_ratio(), 0.0);
}
