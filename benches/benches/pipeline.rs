//! Pipeline benchmarks: one producer, four workers per stage, capacity 100, one and three stages, against hand-written workers.
//!
//! Contenders per workload:
//! - `aqueduct`: `PipelineBuilder::from_items(..).stage(4, f)…run()`. The first stage's workers pull the
//!   iterator themselves: there is no producer task and no first queue to fill (see the crate's README);
//! - `aqueduct-from-stream`: the same pipeline over `from_stream(stream::iter(..))`, whose source is a
//!   task of its own that fills the first queue, as the hand-written baselines' producer does;
//! - `baseline-kanal`, `baseline-flume`, `baseline-async-channel`: the same workers written by hand over
//!   that channel's bounded MPMC queue (closing by dropping the senders). They picked the pipeline's first
//!   queue (kanal); the pipeline now has a queue of its own, because its items carry their source index and
//!   kanal moves values wider than a pointer through a store-forwarding stall (see the crate's README);
//! - `tokio-mpsc-mutex`: the naive port of the Python original, four workers sharing one
//!   `Arc<tokio::sync::Mutex<mpsc::Receiver>>`.
//!
//! After criterion's timings, `paired_ratio_to_baseline-kanal` records the median ratio of aqueduct's time to
//! `baseline-kanal`'s over back-to-back pairs of runs (41 in quick mode, 21 otherwise): on this noisy machine
//! kanal's own criterion median moved by 1.6× within an hour, more than the target's margin.
//!
//! Peak memory (`peak_rss_bytes`, from `VmHWM` in `/proc/self/status`, reset through `/proc/self/clear_refs`)
//! is recorded for 100 000 and 1 000 000 items to show that it does not grow with the number of items.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aqueduct_pipeline::PipelineBuilder;
use criterion::{Criterion, criterion_group, criterion_main};

const CAPACITY: usize = 100;
const WORKERS: usize = 4;

fn items() -> u64 {
    if benches::is_quick() { 200_000 } else { 1_000_000 }
}

/// The per-item work of every stage: a few arithmetic operations the optimiser cannot remove.
#[inline]
fn work(item: u64) -> u64 {
    black_box(item).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7)
}

// ===== aqueduct =====

async fn aqueduct(items: u64, stages: usize) {
    run_aqueduct(PipelineBuilder::<u64, ()>::from_items(0..items), items, stages).await;
}

async fn aqueduct_from_stream(items: u64, stages: usize) {
    let source = futures::stream::iter(0..items);
    run_aqueduct(PipelineBuilder::<u64, ()>::from_stream(source), items, stages).await;
}

async fn run_aqueduct(source: PipelineBuilder<u64, ()>, items: u64, stages: usize) {
    let builder = source.capacity(CAPACITY);
    let builder = (1..stages).fold(builder, |builder, _| {
        builder.stage(WORKERS, |item: u64| async move { Ok::<_, ()>(work(item)) })
    });
    let metrics = builder
        .stage(WORKERS, |item: u64| async move {
            black_box(work(item));
            Ok::<_, ()>(())
        })
        .build()
        .expect("a valid pipeline")
        .run()
        .await
        .expect("no stage fails");
    assert_eq!(metrics.delivered, items);
}

// ===== hand-written baselines =====

/// Hand-written workers over kanal: the stage loop every user writes, closing by dropping senders.
async fn baseline_kanal(items: u64, stages: usize) {
    let (source, mut receiver) = kanal::bounded_async::<u64>(CAPACITY);
    let mut workers = Vec::new();
    for _ in 1..stages {
        let (sender, next) = kanal::bounded_async::<u64>(CAPACITY);
        for _ in 0..WORKERS {
            let (input, output) = (receiver.clone(), sender.clone());
            workers.push(tokio::spawn(async move {
                while let Ok(item) = input.recv().await {
                    if output.send(work(item)).await.is_err() {
                        break;
                    }
                }
            }));
        }
        receiver = next;
    }
    for _ in 0..WORKERS {
        let input = receiver.clone();
        workers.push(tokio::spawn(async move {
            while let Ok(item) = input.recv().await {
                black_box(work(item));
            }
        }));
    }
    drop(receiver);
    let producer = tokio::spawn(async move {
        for item in 0..items {
            source.send(item).await.expect("workers are running");
        }
    });
    producer.await.expect("the producer does not panic");
    for worker in workers {
        worker.await.expect("a worker does not panic");
    }
}

/// Hand-written workers over flume.
async fn baseline_flume(items: u64, stages: usize) {
    let (source, mut receiver) = flume::bounded::<u64>(CAPACITY);
    let mut workers = Vec::new();
    for _ in 1..stages {
        let (sender, next) = flume::bounded::<u64>(CAPACITY);
        for _ in 0..WORKERS {
            let (input, output) = (receiver.clone(), sender.clone());
            workers.push(tokio::spawn(async move {
                while let Ok(item) = input.recv_async().await {
                    if output.send_async(work(item)).await.is_err() {
                        break;
                    }
                }
            }));
        }
        receiver = next;
    }
    for _ in 0..WORKERS {
        let input = receiver.clone();
        workers.push(tokio::spawn(async move {
            while let Ok(item) = input.recv_async().await {
                black_box(work(item));
            }
        }));
    }
    drop(receiver);
    let producer = tokio::spawn(async move {
        for item in 0..items {
            source.send_async(item).await.expect("workers are running");
        }
    });
    producer.await.expect("the producer does not panic");
    for worker in workers {
        worker.await.expect("a worker does not panic");
    }
}

/// Hand-written workers over async-channel.
async fn baseline_async_channel(items: u64, stages: usize) {
    let (source, mut receiver) = async_channel::bounded::<u64>(CAPACITY);
    let mut workers = Vec::new();
    for _ in 1..stages {
        let (sender, next) = async_channel::bounded::<u64>(CAPACITY);
        for _ in 0..WORKERS {
            let (input, output) = (receiver.clone(), sender.clone());
            workers.push(tokio::spawn(async move {
                while let Ok(item) = input.recv().await {
                    if output.send(work(item)).await.is_err() {
                        break;
                    }
                }
            }));
        }
        receiver = next;
    }
    for _ in 0..WORKERS {
        let input = receiver.clone();
        workers.push(tokio::spawn(async move {
            while let Ok(item) = input.recv().await {
                black_box(work(item));
            }
        }));
    }
    drop(receiver);
    let producer = tokio::spawn(async move {
        for item in 0..items {
            source.send(item).await.expect("workers are running");
        }
    });
    producer.await.expect("the producer does not panic");
    for worker in workers {
        worker.await.expect("a worker does not panic");
    }
}

/// The naive port: tokio `mpsc` (single consumer) shared by the workers behind an async mutex.
async fn tokio_mpsc_mutex(items: u64, stages: usize) {
    use tokio::sync::{Mutex, mpsc};
    let (source, first) = mpsc::channel::<u64>(CAPACITY);
    let mut receiver = Arc::new(Mutex::new(first));
    let mut workers = Vec::new();
    for _ in 1..stages {
        let (sender, next) = mpsc::channel::<u64>(CAPACITY);
        for _ in 0..WORKERS {
            let (input, output) = (receiver.clone(), sender.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let item = input.lock().await.recv().await;
                    let Some(item) = item else { break };
                    if output.send(work(item)).await.is_err() {
                        break;
                    }
                }
            }));
        }
        receiver = Arc::new(Mutex::new(next));
    }
    for _ in 0..WORKERS {
        let input = receiver.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let item = input.lock().await.recv().await;
                let Some(item) = item else { break };
                black_box(work(item));
            }
        }));
    }
    drop(receiver);
    let producer = tokio::spawn(async move {
        for item in 0..items {
            source.send(item).await.expect("workers are running");
        }
    });
    producer.await.expect("the producer does not panic");
    for worker in workers {
        worker.await.expect("a worker does not panic");
    }
}

// ===== workloads =====

fn workload(criterion: &mut Criterion, name: &str, stages: usize) {
    let runtime = benches::multi_thread_runtime();
    let items = items();
    let mut group = criterion.benchmark_group(format!("pipeline/{name}"));
    group.throughput(criterion::Throughput::Elements(items));
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| aqueduct(items, stages))
    });
    group.bench_function("aqueduct-from-stream", |bencher| {
        bencher.to_async(&runtime).iter(|| aqueduct_from_stream(items, stages))
    });
    group.bench_function("baseline-kanal", |bencher| {
        bencher.to_async(&runtime).iter(|| baseline_kanal(items, stages));
    });
    group.bench_function("baseline-flume", |bencher| {
        bencher.to_async(&runtime).iter(|| baseline_flume(items, stages));
    });
    group.bench_function("baseline-async-channel", |bencher| {
        bencher.to_async(&runtime).iter(|| baseline_async_channel(items, stages));
    });
    group.bench_function("tokio-mpsc-mutex", |bencher| {
        bencher.to_async(&runtime).iter(|| tokio_mpsc_mutex(items, stages));
    });
    group.finish();
    let pairs = if benches::is_quick() { 41 } else { 21 };
    let ratio = benches::paired_ratio(
        &runtime,
        pairs,
        || aqueduct(items, stages),
        || baseline_kanal(items, stages),
    );
    benches::record_extra("pipeline", name, "aqueduct", "paired_ratio_to_baseline-kanal", ratio);
    let ratio = benches::paired_ratio(
        &runtime,
        pairs,
        || aqueduct_from_stream(items, stages),
        || baseline_kanal(items, stages),
    );
    benches::record_extra(
        "pipeline",
        name,
        "aqueduct-from-stream",
        "paired_ratio_to_baseline-kanal",
        ratio,
    );
}

fn one_stage(criterion: &mut Criterion) {
    workload(criterion, "one-stage", 1);
}

fn three_stages(criterion: &mut Criterion) {
    workload(criterion, "three-stages", 3);
}

// ===== peak memory =====

/// `VmHWM` (peak resident set) of this process in bytes, if the kernel reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// Resets `VmHWM` to the current resident set (Linux: write 5 to `/proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_memory(_criterion: &mut Criterion) {
    let runtime = benches::multi_thread_runtime();
    // Warm the runtime and the allocator once so both measurements start from the same state.
    runtime.block_on(aqueduct(10_000, 3));
    for (label, items) in [("100k", 100_000u64), ("1m", 1_000_000u64)] {
        if !reset_peak_rss() {
            eprintln!("pipeline/peak-memory: cannot reset VmHWM here, skipping");
            return;
        }
        let before = peak_rss_bytes().unwrap_or(0);
        runtime.block_on(aqueduct(items, 3));
        let after = peak_rss_bytes().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)] // Byte counts far below 2^52.
        let growth = after.saturating_sub(before) as f64;
        #[allow(clippy::cast_precision_loss)]
        let peak = after as f64;
        benches::record_extra(
            "pipeline",
            &format!("peak-memory-{label}"),
            "aqueduct",
            "peak_rss_bytes",
            peak,
        );
        benches::record_extra(
            "pipeline",
            &format!("peak-memory-{label}"),
            "aqueduct",
            "peak_rss_growth_bytes",
            growth,
        );
    }
    // Let the runtime's threads settle before criterion's groups start.
    std::thread::sleep(Duration::from_millis(10));
}

criterion_group! {
    name = pipeline;
    config = benches::criterion();
    targets = peak_memory, one_stage, three_stages
}
criterion_main!(pipeline);
