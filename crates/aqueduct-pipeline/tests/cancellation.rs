//! Cancellation: a consumer that stops early, a dropped `run` future, a pipeline dropped mid-send; nothing leaks or vanishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aqueduct_pipeline::{Error, PipelineBuilder, StageOptions};
use aqueduct_testkit::{DropCounter, DropGuard};

type Item = (u64, DropGuard);

fn guarded_items(counter: &DropCounter) -> impl Iterator<Item = Item> + Send + 'static {
    let counter = counter.clone();
    (0..).map(move |index| (index, counter.guard()))
}

/// Upper bound on how long a well-behaved pipeline needs to wind down on paused time.
const WIND_DOWN: Duration = Duration::from_secs(60);

/// Runs two pass-through stages with queues of 2 over `source`, takes three outputs, lets every queue fill
/// up, then drops the output stream. Returns the metrics just before the drop and after the wind-down.
async fn stop_early_behind_full_queues(
    source: PipelineBuilder<Item, ()>,
) -> (aqueduct_pipeline::Metrics, aqueduct_pipeline::Metrics) {
    let mut running = source
        .capacity(2)
        .stage(2, |item: Item| async move { Ok::<_, ()>(item) })
        .stage(2, |item: Item| async move { Ok::<_, ()>(item) })
        .build()
        .unwrap()
        .spawn();
    let handle = running.handle();
    for _ in 0..3 {
        assert!(running.recv().await.is_some());
    }
    // Let every queue fill up: whoever feeds a full queue is now blocked on send.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = handle.metrics();
    drop(running);
    tokio::time::timeout(WIND_DOWN, handle.finished())
        .await
        .expect("every task ends once the consumer is gone");
    assert!(handle.is_cancelled());
    (before, handle.metrics())
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_stops_early_unblocks_producers_behind_a_full_queue() {
    // A stream source runs as a task of its own, which fills the first queue.
    let counter = DropCounter::new();
    let source = futures_util::stream::iter(guarded_items(&counter));
    let (before, metrics) =
        stop_early_behind_full_queues(PipelineBuilder::<Item, ()>::from_stream(source)).await;
    assert!(
        before.stages.iter().all(|stage| stage.queue_depth == 2),
        "queues should be full: {before:?}"
    );
    assert_eq!(metrics.delivered, 3);
    assert!(metrics.source_blocked_on_send > Duration::ZERO, "{metrics:?}");
    assert_eq!(metrics.accounted(), metrics.produced, "{metrics:?}");
    assert_eq!(counter.alive(), 0, "every produced item and the endless stream were dropped");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_stops_early_unblocks_workers_that_pull_an_endless_iterator() {
    // An iterator source is pulled by the first stage's workers: its queue stays empty, and the first
    // stage's workers are the ones blocked behind the full queue of the second.
    let counter = DropCounter::new();
    let (before, metrics) =
        stop_early_behind_full_queues(PipelineBuilder::from_items(guarded_items(&counter))).await;
    assert_eq!(before.stages[0].queue_depth, 0, "{before:?}");
    assert_eq!(before.stages[1].queue_depth, 2, "the second queue should be full: {before:?}");
    assert_eq!(metrics.delivered, 3);
    assert_eq!(metrics.source_blocked_on_send, Duration::ZERO, "{metrics:?}");
    assert!(metrics.stages[0].blocked_on_send() > Duration::ZERO, "{metrics:?}");
    assert_eq!(metrics.accounted(), metrics.produced, "{metrics:?}");
    assert_eq!(counter.alive(), 0, "every produced item and the endless iterator were dropped");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pipeline_mid_send_accounts_for_every_item() {
    let counter = DropCounter::new();
    let failed = Arc::new(AtomicU64::new(0));
    let failed_in_callback = failed.clone();
    let delivered = Arc::new(AtomicU64::new(0));
    let items = {
        let counter = counter.clone();
        (0..1_000u64).map(move |index| (index, counter.guard()))
    };
    let mut running = PipelineBuilder::<Item, &'static str>::from_items(items)
        .capacity(3)
        .stage(3, |item: Item| async move { Ok::<_, &'static str>(item) })
        .stage_with(
            StageOptions::new(2).skip(move |_failure| {
                failed_in_callback.fetch_add(1, Ordering::SeqCst);
            }),
            |item: Item| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if item.0 % 5 == 0 { Err("multiple of five") } else { Ok(item) }
            },
        )
        .build()
        .unwrap()
        .spawn();
    let handle = running.handle();
    for _ in 0..20 {
        if running.recv().await.is_some() {
            delivered.fetch_add(1, Ordering::SeqCst);
        }
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = handle.metrics();
    assert!(
        before.stages[0].blocked_on_send() > Duration::ZERO,
        "stage 0 must be mid-send: {before:?}"
    );
    drop(running);
    tokio::time::timeout(WIND_DOWN, handle.finished()).await.expect("the pipeline winds down");
    let metrics = handle.metrics();
    let delivered = delivered.load(Ordering::SeqCst);
    let failed = failed.load(Ordering::SeqCst);
    assert_eq!(metrics.delivered, delivered);
    assert_eq!(metrics.failed(), failed);
    assert!(metrics.unprocessed() > 0);
    assert_eq!(delivered + failed + metrics.unprocessed(), metrics.produced, "{metrics:?}");
    assert_eq!(counter.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_after_each_item_never_loses_one() {
    for stop_after in 0..12u64 {
        let counter = DropCounter::new();
        let mut running = PipelineBuilder::<Item, ()>::from_items(guarded_items(&counter))
            .capacity(2)
            .stage(2, |item: Item| async move {
                tokio::time::sleep(Duration::from_micros(100)).await;
                Ok::<_, ()>(item)
            })
            .ordered(4)
            .build()
            .unwrap()
            .spawn();
        let handle = running.handle();
        for expected in 0..stop_after {
            let (index, _guard) = running.recv().await.expect("endless source");
            assert_eq!(index, expected, "ordered output");
        }
        drop(running);
        tokio::time::timeout(WIND_DOWN, handle.finished()).await.expect("the pipeline winds down");
        let metrics = handle.metrics();
        assert_eq!(metrics.delivered, stop_after);
        assert_eq!(metrics.accounted(), metrics.produced, "stop after {stop_after}: {metrics:?}");
        assert_eq!(counter.alive(), 0, "stop after {stop_after}");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_run_future_at_any_point_cancels_the_pipeline() {
    for steps in [0u64, 1, 2, 5, 50, 500] {
        let counter = DropCounter::new();
        let pipeline = PipelineBuilder::<Item, ()>::from_items(guarded_items(&counter))
            .stage(2, |item: Item| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, ()>(item)
            })
            .build()
            .unwrap();
        let handle = pipeline.handle();
        let run = pipeline.run();
        let stopped = tokio::time::timeout(Duration::from_micros(steps * 100), run).await;
        assert!(stopped.is_err(), "an endless pipeline does not finish");
        tokio::time::timeout(WIND_DOWN, handle.finished()).await.expect("the pipeline winds down");
        assert!(handle.is_cancelled());
        let metrics = handle.metrics();
        assert_eq!(metrics.accounted(), metrics.produced, "after {steps} steps: {metrics:?}");
        assert_eq!(counter.alive(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stage_function_that_never_finishes_is_dropped_on_abort() {
    let counter = DropCounter::new();
    let pipeline = PipelineBuilder::<Item, ()>::from_items(guarded_items(&counter))
        .stage(3, |item: Item| async move {
            std::future::pending::<()>().await;
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(handle.metrics().stages[0].items_in, 3, "three workers hold one item each");
    handle.abort();
    let result = tokio::time::timeout(WIND_DOWN, run).await.expect("abort ends the run").unwrap();
    let metrics = result.expect("an abort is not an error");
    assert_eq!(metrics.stages[0].items_unprocessed, metrics.stages[0].items_in);
    assert_eq!(metrics.accounted(), metrics.produced);
    assert_eq!(counter.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_send_blocked_on_the_input_gets_its_item_back_when_the_pipeline_is_dropped() {
    let counter = DropCounter::new();
    let (input, builder) = PipelineBuilder::<Item, ()>::from_channel(1);
    let running = builder
        .capacity(1)
        .stage(1, |item: Item| async move {
            std::future::pending::<()>().await;
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap()
        .spawn();
    let handle = running.handle();
    // Fill the worker, the stage queue, the source's hands and the input, then block one more send.
    for index in 0..4 {
        input.send((index, counter.guard())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let blocked_input = input.clone();
    let guard = counter.guard();
    let blocked = tokio::spawn(async move { blocked_input.send((99, guard)).await });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!blocked.is_finished());
    drop(running);
    let refused = blocked.await.unwrap().expect_err("the pipeline is gone");
    assert_eq!(refused.0.0, 99, "the item comes back to the caller");
    drop(refused);
    tokio::time::timeout(WIND_DOWN, handle.finished()).await.expect("the pipeline winds down");
    let metrics = handle.metrics();
    assert_eq!(metrics.produced, 4, "{metrics:?}");
    assert_eq!(metrics.accounted(), 4, "{metrics:?}");
    assert!(input.is_closed());
    assert_eq!(counter.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn reserve_is_cancel_safe() {
    let (input, builder) = PipelineBuilder::<u32, ()>::from_channel(1);
    let pipeline = builder.stage(1, |item| async move { Ok::<_, ()>(item) }).build().unwrap();
    // Not started: the input holds one item and then is full.
    input.reserve().await.unwrap().send(1);
    let timed_out = tokio::time::timeout(Duration::from_millis(5), input.reserve()).await.is_err();
    assert!(timed_out, "no room, so reserve waits and is dropped without losing anything");
    let outputs = tokio::spawn(pipeline.collect());
    input.reserve().await.unwrap().send(2);
    drop(input);
    let mut outputs = outputs.await.unwrap().unwrap();
    outputs.sort_unstable();
    assert_eq!(outputs, vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_cancels_upstream() {
    let counter = DropCounter::new();
    let result: Result<_, Error<&str>> = PipelineBuilder::from_items(guarded_items(&counter))
        .capacity(2)
        .stage(2, |item: Item| async move { Ok::<_, &str>(item) })
        .stage(2, |item: Item| async move { if item.0 == 10 { Err("ten") } else { Ok(item) } })
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(result.unwrap_err().into_operation(), Some("ten"));
    assert_eq!(counter.alive(), 0);
}
