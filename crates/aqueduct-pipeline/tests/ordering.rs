//! Ordered output: source order restored through a bounded reorder window, gaps for failed items, no deadlock.

use std::time::Duration;

use aqueduct_pipeline::{PipelineBuilder, StageOptions};
use proptest::prelude::*;

/// A delay that makes later items often finish first.
fn scrambled_delay(item: u64) -> Duration {
    Duration::from_micros((item * 7_919) % 1_000)
}

#[tokio::test(start_paused = true)]
async fn outputs_come_in_source_order() {
    let outputs = PipelineBuilder::<u64, ()>::from_items(0..500u64)
        .stage(4, |item: u64| async move {
            tokio::time::sleep(scrambled_delay(item)).await;
            Ok::<_, ()>(item)
        })
        .stage(3, |item: u64| async move {
            tokio::time::sleep(scrambled_delay(item + 1)).await;
            Ok::<_, ()>(item * 2)
        })
        .ordered(8)
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, (0..500u64).map(|item| item * 2).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn skipped_items_leave_gaps_that_are_passed_over() {
    let options = StageOptions::new(4).skip(|_failure| {});
    let outputs = PipelineBuilder::<u64, &str>::from_items(0..200u64)
        .stage_with(options, |item: u64| async move {
            tokio::time::sleep(scrambled_delay(item)).await;
            if item % 7 == 0 { Err("seven") } else { Ok(item) }
        })
        .stage(2, |item: u64| async move { Ok::<_, &str>(item) })
        .ordered(4)
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, (0..200u64).filter(|item| item % 7 != 0).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn the_window_bounds_what_is_in_flight() {
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..)
        .stage(4, |item: u64| async move {
            // Item 0 is very slow: everything else waits behind it, but only up to the window.
            if item == 0 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, ()>(item)
        })
        .ordered(16)
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let mut running = pipeline.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(handle.metrics().produced, 16, "the source stops at the window");
    assert_eq!(running.recv().await, Some(0));
    assert_eq!(running.recv().await, Some(1));
    drop(running);
    handle.finished().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_window_and_worker_count_keeps_order(
        items in 0u64..300,
        window in 1usize..20,
        workers in 1usize..6,
        capacity in 1usize..8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let outputs = runtime.block_on(async move {
            PipelineBuilder::<u64, ()>::from_items(0..items)
                .capacity(capacity)
                .stage(workers, |item: u64| async move {
                    tokio::time::sleep(scrambled_delay(item)).await;
                    Ok::<_, ()>(item)
                })
                .stage(workers, |item: u64| async move { Ok::<_, ()>(item) })
                .ordered(window)
                .build()
                .unwrap()
                .collect()
                .await
                .unwrap()
        });
        prop_assert_eq!(outputs, (0..items).collect::<Vec<_>>());
    }
}
