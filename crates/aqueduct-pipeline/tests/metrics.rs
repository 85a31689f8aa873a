//! Per-stage metrics: items in/out/failed, queue depth, and busy / idle / blocked-on-send time per worker.

use std::time::Duration;

use aqueduct_pipeline::{Pipeline, PipelineBuilder, StageOptions};

/// Queues of 4, a fast stage of two workers, then a slow one: one worker, 10 ms per item.
fn fast_then_slow(source: PipelineBuilder<u64, ()>) -> Pipeline<u64, ()> {
    source
        .capacity(4)
        .stage(2, |item: u64| async move { Ok::<_, ()>(item) })
        .stage(1, |item: u64| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_slow_stage_is_busy_and_the_stage_before_it_is_blocked_on_send() {
    // A stream source, so that the source also waits for room (an iterator source is pulled by the first
    // stage's workers and never waits to send: see the next test).
    let source = PipelineBuilder::from_stream(futures_util::stream::iter(0..200u64));
    let pipeline = fast_then_slow(source);
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = handle.metrics();
    // A blocked sender is woken once the queue has drained to half its capacity, so behind a slow stage the
    // queue stays between half full and full.
    let depth = live.stages[1].queue_depth;
    assert!((2..=4).contains(&depth), "the slow stage's queue stays at least half full: {depth}");
    assert_eq!(live.stages[1].queue_capacity, 4);
    assert_eq!(live.stages[1].workers_alive, 1);
    let metrics = run.await.unwrap().unwrap();
    let fast = &metrics.stages[0];
    let slow = &metrics.stages[1];
    assert_eq!((fast.items_in, fast.items_out, fast.items_failed), (200, 200, 0));
    assert_eq!((slow.items_in, slow.items_out), (200, 200));
    assert_eq!(slow.busy(), Duration::from_millis(2_000), "200 items of 10 ms on paused time");
    assert!(
        fast.blocked_on_send() > fast.busy(),
        "the fast stage mostly waits for the slow one: {fast:?}"
    );
    assert!(fast.blocked_on_send() >= Duration::from_millis(3_000), "{fast:?}");
    assert!(
        slow.idle() < Duration::from_millis(20),
        "the slow stage never waits for input: {slow:?}"
    );
    for worker in &slow.per_worker {
        assert_eq!(worker.lifetime(), worker.busy + worker.idle + worker.blocked_on_send);
    }
    assert!(metrics.source_blocked_on_send > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_iterator_pulled_by_the_first_stage_never_waits_to_send() {
    let metrics = fast_then_slow(PipelineBuilder::from_items(0..200u64)).run().await.unwrap();
    assert_eq!(metrics.produced, 200);
    assert_eq!(metrics.delivered, 200);
    assert_eq!(metrics.source_blocked_on_send, Duration::ZERO, "{metrics:?}");
    let fast = &metrics.stages[0];
    assert!(fast.blocked_on_send() >= Duration::from_millis(1_000), "{fast:?}");
    assert!(fast.idle() < Duration::from_millis(20), "pulling never waits here: {fast:?}");
}

#[tokio::test(start_paused = true)]
async fn failed_items_are_counted_per_stage() {
    let options = StageOptions::new(2).skip(|_failure| {});
    let metrics = PipelineBuilder::<u64, &str>::from_items(0..30u64)
        .stage(2, |item: u64| async move { Ok::<_, &str>(item) })
        .stage_with(options, |item: u64| async move {
            if item % 3 == 0 { Err("three") } else { Ok(item) }
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(metrics.stages[0].items_failed, 0);
    assert_eq!(metrics.stages[1].items_failed, 10);
    assert_eq!(metrics.stages[1].items_out, 20);
    assert_eq!(metrics.delivered, 20);
    assert_eq!(metrics.failed(), 10);
    assert_eq!(metrics.accounted(), 30);
}

#[tokio::test(start_paused = true)]
async fn idle_time_shows_a_starved_stage() {
    let metrics = PipelineBuilder::<u64, ()>::from_stream(futures_util::stream::unfold(
        0u64,
        |item| async move {
            if item == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((item, item + 1))
        },
    ))
    .stage(2, |item: u64| async move { Ok::<_, ()>(item) })
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    let stage = &metrics.stages[0];
    assert_eq!(stage.items_in, 10);
    assert!(
        stage.idle() >= Duration::from_millis(1_900),
        "two workers waiting about a second each: {stage:?}"
    );
    assert_eq!(stage.busy(), Duration::ZERO);
}
