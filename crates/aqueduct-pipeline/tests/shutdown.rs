//! Shutdown by closing: the source running dry ends the pipeline, and drain, shutdown(deadline) and abort.

use std::time::Duration;

use aqueduct_pipeline::PipelineBuilder;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_finite_source_closes_every_stage_in_turn_without_sentinels() {
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..1_000u64)
        .stage(4, |item: u64| async move { Ok::<_, ()>(item + 1) })
        .stage(2, |item: u64| async move { Ok::<_, ()>(item * 2) })
        .stage(3, |item: u64| async move { Ok::<_, ()>(item) })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let mut outputs = pipeline.collect().await.unwrap();
    outputs.sort_unstable();
    assert_eq!(outputs, (1..=1_000u64).map(|item| item * 2).collect::<Vec<_>>());
    assert!(handle.is_finished());
    assert!(!handle.is_cancelled());
    let metrics = handle.metrics();
    assert!(metrics.stages.iter().all(|stage| stage.items_in == 1_000 && stage.items_out == 1_000));
    assert!(metrics.stages.iter().all(|stage| stage.workers_alive == 0));
}

#[tokio::test(start_paused = true)]
async fn drain_stops_the_source_and_delivers_everything_in_flight() {
    let running = PipelineBuilder::<u64, ()>::from_items(0..)
        .stage(2, |item: u64| async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap()
        .spawn();
    let handle = running.handle();
    let reader = tokio::spawn(running.collect_all());
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.drain();
    let mut outputs = reader.await.unwrap().unwrap();
    outputs.sort_unstable();
    let metrics = handle.metrics();
    assert!(!handle.is_cancelled(), "drain is not an abort");
    assert_eq!(metrics.unprocessed(), 0);
    assert_eq!(
        outputs,
        (0..metrics.produced).collect::<Vec<_>>(),
        "everything produced came out, no gap"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_stops_a_stream_source_while_it_waits_for_its_next_item() {
    use futures_util::StreamExt;
    // Three items, then a stream that never yields again: the source waits on the stream, not on a queue.
    let source = futures_util::stream::iter(0..3u64).chain(futures_util::stream::pending());
    let running = PipelineBuilder::<u64, ()>::from_stream(source)
        .stage(2, |item: u64| async move { Ok::<_, ()>(item) })
        .build()
        .unwrap()
        .spawn();
    let handle = running.handle();
    let reader = tokio::spawn(running.collect_all());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!handle.is_finished(), "the stream is still open");
    handle.drain();
    let mut outputs = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("drain ends the wait on the stream")
        .unwrap()
        .unwrap();
    outputs.sort_unstable();
    assert_eq!(outputs, vec![0, 1, 2]);
    let metrics = handle.metrics();
    assert_eq!((metrics.produced, metrics.delivered, metrics.unprocessed()), (3, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_what_cannot_drain_by_the_deadline() {
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..)
        .stage(2, |item: u64| async move {
            if item == 5 {
                std::future::pending::<()>().await;
            }
            // Some work per item, so that paused time can advance while the pipeline runs.
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let drained = handle.shutdown(started + Duration::from_secs(2)).await;
    assert!(!drained, "item 5 never finishes, so the deadline forces an abort");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let metrics = run.await.unwrap().unwrap();
    assert_eq!(metrics.stages[0].items_unprocessed, 1, "only the stuck item was cut short");
    assert_eq!(metrics.accounted(), metrics.produced);
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_clamped_to_the_ambient_deadline() {
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..)
        .stage(1, |_item: u64| async move {
            std::future::pending::<()>().await;
            Ok::<_, ()>(())
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let ambient = started + Duration::from_millis(300);
    let drained =
        aqueduct_core::with_deadline(ambient, handle.shutdown(started + Duration::from_secs(60)))
            .await;
    assert!(!drained);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert!(run.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn drain_closes_a_channel_input_but_processes_what_it_accepted() {
    let (input, builder) = PipelineBuilder::<u64, ()>::from_channel(8);
    let pipeline = builder.stage(2, |item: u64| async move { Ok::<_, ()>(item) }).build().unwrap();
    let handle = pipeline.handle();
    for item in 0..5 {
        input.send(item).await.unwrap();
    }
    let run = tokio::spawn(pipeline.collect());
    handle.drain();
    let mut outputs = run.await.unwrap().unwrap();
    outputs.sort_unstable();
    assert_eq!(outputs, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        input.send(5).await.unwrap_err().0,
        5,
        "a drained input refuses new items and hands them back"
    );
}

#[tokio::test(start_paused = true)]
async fn abort_before_spawn_stops_at_once() {
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..)
        .stage(1, |item: u64| async move { Ok::<_, ()>(item) })
        .build()
        .unwrap();
    pipeline.handle().abort();
    let metrics = pipeline.run().await.unwrap();
    assert_eq!(metrics.produced, 0);
}
