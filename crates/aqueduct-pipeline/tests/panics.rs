//! Panic isolation: a panicking item fails alone, its worker goes on, and the stage keeps N workers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_pipeline::{Error, PipelineBuilder, StageOptions};

#[tokio::test(start_paused = true)]
async fn a_panic_fails_only_its_item_and_the_worker_count_stays_n() {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    let options = StageOptions::new(4).skip(move |failure| {
        let Error::Panicked { index, message } = failure.error else { panic!("expected a panic") };
        seen.lock().unwrap().push((index, message));
    });
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..200u64)
        .stage_with(options, |item: u64| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(item % 3 != 0, "item {item} is a multiple of three");
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let mut running = pipeline.spawn();
    let mut outputs = Vec::new();
    let mut alive_while_running = Vec::new();
    while let Some(item) = running.recv().await {
        outputs.push(item);
        alive_while_running.push(handle.metrics().stages[0].workers_alive);
    }
    let metrics = running.finish().await.unwrap();
    assert_eq!(outputs.len(), 133);
    // While input remains (the first 100 of 133 outputs), all four workers are alive; at the very end they
    // exit one by one as the queue closes.
    assert!(
        alive_while_running[..100].iter().all(|alive| *alive == 4),
        "the stage shrank: {alive_while_running:?}"
    );
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 67);
    assert!(failures.iter().all(|(index, message)| {
        index.is_some_and(|index| index % 3 == 0) && message.ends_with("is a multiple of three")
    }));
    assert_eq!(metrics.stages[0].panics, 67);
    assert_eq!(metrics.stages[0].items_failed, 67);
    assert_eq!(metrics.stages[0].workers_alive, 0, "all workers exited at the end");
    // Every worker took items after panics happened, so none of them died.
    assert!(metrics.stages[0].per_worker.iter().all(|worker| worker.items > 1), "{metrics:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panic_under_fail_fast_ends_the_pipeline_with_panicked() {
    let result = PipelineBuilder::<u64, ()>::from_items(0..)
        .stage(2, |item: u64| async move {
            if item == 10 {
                panic!("boom at ten");
            }
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap()
        .run()
        .await;
    match result.unwrap_err() {
        Error::Panicked { index, message } => {
            assert_eq!(index, Some(10));
            assert_eq!(message, "boom at ten");
        }
        other => panic!("expected panicked, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_building_the_future_is_caught_too() {
    let options = StageOptions::new(1).skip(|_failure| {});
    let outputs = PipelineBuilder::<u64, ()>::from_items(0..4u64)
        .stage_with(options, |item: u64| {
            assert!(item != 2, "synchronous panic");
            async move { Ok::<_, ()>(item) }
        })
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs.len(), 3);
}
