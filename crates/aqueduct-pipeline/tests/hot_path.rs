//! The worker's synchronous hot path and its waiting paths: stage futures ready at once or waiting, full queues, gaps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_pipeline::{Error, PipelineBuilder, StageOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_whose_stage_future_is_ready_at_once_or_waits_all_arrive_exactly_once() {
    let mut outputs = PipelineBuilder::<u64, ()>::from_items(0..20_000u64)
        .capacity(3)
        .stage(4, |item: u64| async move {
            if item % 3 == 0 {
                tokio::task::yield_now().await;
            }
            Ok::<_, ()>(item * 2)
        })
        .stage(3, |item: u64| async move {
            if item % 4 == 0 {
                tokio::task::yield_now().await;
            }
            Ok::<_, ()>(item + 1)
        })
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    outputs.sort_unstable();
    assert_eq!(outputs, (0..20_000u64).map(|item| item * 2 + 1).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_three_stages_counts_every_item_once() {
    let metrics = PipelineBuilder::<u64, ()>::from_items(0..50_000u64)
        .stage(4, |item: u64| async move { Ok::<_, ()>(item.wrapping_mul(3)) })
        .stage(4, |item: u64| async move { Ok::<_, ()>(item.rotate_left(5)) })
        .stage(4, |item: u64| async move {
            std::hint::black_box(item);
            Ok::<_, ()>(())
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(metrics.produced, 50_000);
    assert_eq!(metrics.delivered, 50_000);
    assert_eq!(metrics.accounted(), 50_000);
    for stage in &metrics.stages {
        assert_eq!(stage.items_in, 50_000, "{stage:?}");
        assert_eq!(stage.items_out, 50_000, "{stage:?}");
        assert_eq!(stage.queue_depth, 0, "{stage:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_output_passes_the_gaps_of_failed_items_through_later_stages() {
    let options = StageOptions::new(3).skip(|_failure| {});
    let outputs = PipelineBuilder::<u64, ()>::from_items(0..2_000u64)
        .capacity(2)
        .stage_with(
            options,
            |item: u64| async move { if item % 5 == 0 { Err(()) } else { Ok(item) } },
        )
        .stage(2, |item: u64| async move {
            if item % 2 == 0 {
                tokio::task::yield_now().await;
            }
            Ok::<_, ()>(item)
        })
        .stage(2, |item: u64| async move { Ok::<_, ()>(item) })
        .ordered(8)
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, (0..2_000u64).filter(|item| item % 5 != 0).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn panics_on_the_first_poll_and_after_waiting_are_both_isolated_with_their_index() {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    let options = StageOptions::new(2).skip(move |failure| {
        let Error::Panicked { index, .. } = failure.error else { panic!("expected a panic") };
        seen.lock().unwrap().push((failure.index, index));
    });
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..100u64)
        .stage_with(options, |item: u64| async move {
            assert!(item % 10 != 1, "at once");
            if item % 10 == 2 {
                tokio::task::yield_now().await;
                panic!("after waiting");
            }
            Ok::<_, ()>(item)
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let outputs = pipeline.collect().await.unwrap();
    assert_eq!(outputs.len(), 80);
    let mut failures = failures.lock().unwrap().clone();
    failures.sort_unstable();
    let expected: Vec<_> = (0..100u64)
        .filter(|item| item % 10 == 1 || item % 10 == 2)
        .map(|item| (item, usize::try_from(item).ok()))
        .collect();
    assert_eq!(failures, expected);
    let metrics = handle.metrics();
    assert_eq!(metrics.stages[0].panics, 20);
    assert_eq!(metrics.stages[0].items_failed, 20);
    assert_eq!(metrics.accounted(), 100);
}

/// Counts how many stage futures run at once, and the most that ever did.
#[derive(Clone, Default)]
struct Concurrency {
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Concurrency {
    /// Runs `work` counted as one of the futures running at once.
    async fn track<T>(&self, work: impl Future<Output = T>) -> T {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let output = work.await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        output
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// A stage whose futures wait (I/O, timers) must keep all its workers busy: the queue wakes one waiting worker
/// at a time, and a worker that starts waiting on its stage future passes the next item on to a peer.
#[tokio::test(start_paused = true)]
async fn workers_whose_stage_futures_wait_all_work_at_once() {
    let concurrency = Concurrency::default();
    let started = tokio::time::Instant::now();
    let stage = concurrency.clone();
    // A small queue, so the source stays open and blocked while the workers wait.
    let metrics = PipelineBuilder::<u64, ()>::from_items(0..400u64)
        .capacity(10)
        .stage(4, move |item: u64| {
            let stage = stage.clone();
            async move {
                stage.track(tokio::time::sleep(Duration::from_millis(10))).await;
                Ok::<_, ()>(item)
            }
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(metrics.delivered, 400);
    assert_eq!(concurrency.peak(), 4, "all four workers waited at once");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(1000),
        "400 items, 4 at a time, 10 ms each"
    );
}

/// The same with a multi-threaded runtime and a stage that mixes ready and waiting futures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_whose_stage_futures_wait_overlap_on_a_multi_thread_runtime() {
    let concurrency = Concurrency::default();
    let stage = concurrency.clone();
    let metrics = PipelineBuilder::<u64, ()>::from_items(0..200u64)
        .capacity(5)
        .stage(4, move |item: u64| {
            let stage = stage.clone();
            async move {
                stage
                    .track(async {
                        if item % 2 == 0 {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    })
                    .await;
                Ok::<_, ()>(item)
            }
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(metrics.delivered, 200);
    assert_eq!(concurrency.peak(), 4, "all four workers waited at once");
}
