//! Prints per-stage metrics of a three-stage pipeline, showing which stage is the bottleneck and which ones wait for it.

use std::time::Duration;

use aqueduct_pipeline::{Metrics, PipelineBuilder};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pipeline = PipelineBuilder::<u64, ()>::from_items(0..2_000u64)
        .capacity(20)
        // Fast: parse.
        .stage(2, |item: u64| async move { Ok::<_, ()>(item) })
        // Slow: a remote call of about 2 ms, with 4 concurrent workers. This is the bottleneck.
        .stage(4, |item: u64| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, ()>(item)
        })
        // Fast: store.
        .stage(2, |item: u64| async move { Ok::<_, ()>(item) })
        .build()
        .expect("a valid configuration");
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!("while running:");
    print_metrics(&handle.metrics());
    let metrics = run.await.expect("the pipeline task does not panic").expect("no stage fails");
    eprintln!("at the end:");
    print_metrics(&metrics);
}

fn print_metrics(metrics: &Metrics) {
    // An iterator source is pulled by the first stage's workers, so it never waits to send: its blocked
    // time stays zero, and the first stage's workers show the backpressure instead.
    eprintln!(
        "  source: produced {}, blocked on send {:?}",
        metrics.produced, metrics.source_blocked_on_send
    );
    for stage in &metrics.stages {
        let lifetime: Duration = stage.per_worker.iter().map(|worker| worker.lifetime()).sum();
        let share = |part: Duration| {
            if lifetime.is_zero() {
                0.0
            } else {
                100.0 * part.as_secs_f64() / lifetime.as_secs_f64()
            }
        };
        eprintln!(
            "  stage {}: {} workers ({} alive), in {} out {} failed {}, queue {}/{}, busy {:.0}% idle {:.0}% blocked on send {:.0}%",
            stage.index,
            stage.workers,
            stage.workers_alive,
            stage.items_in,
            stage.items_out,
            stage.items_failed,
            stage.queue_depth,
            stage.queue_capacity,
            share(stage.busy()),
            share(stage.idle()),
            share(stage.blocked_on_send()),
        );
    }
    eprintln!("  delivered {}, unprocessed {}", metrics.delivered, metrics.unprocessed());
}
