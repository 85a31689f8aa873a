//! Benchmarks of aqueduct-batch against `stream::iter(chunks).map(f).buffered(k)` and the dataloader crate.
//!
//! Workloads:
//! - `batch/static_1ms`: 100 000 items in batches of 100, 5 in flight, each batch call a mock of fixed 1 ms
//!   latency (a tokio sleep); contenders `aqueduct` (`batch(..)`) and `baseline` (`buffered(5)` over chunks,
//!   flattened into per-item results);
//! - `batch/static_yield`: the same with a mock that yields once instead of sleeping, so the machinery's own
//!   cost is visible;
//! - `batch/dynamic_10k`: 10 000 spawned submitters, one item each, a batch function that answers at once;
//!   contenders `aqueduct` (`Batcher`, size 100, 5 in flight, `Flush::Size`, so every batch fills), `dataloader` (cksac's
//!   non-cached `Loader`, max batch 100, default yield count) and `baseline` (each task calls the mock for its
//!   own item, no batching). Overhead per item = (contender − baseline) / 10 000;
//! - `batch/dynamic_10k_1ms`: the same with a 1 ms batch call and `Flush::Immediate` (the default), so submitters
//!   saturate the batch slots; the mean batch size goes to `record_extra` as `mean_batch_size`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aqueduct_batch::{Batcher, Error, Flush, batch};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dataloader::BatchFn;
use dataloader::non_cached::Loader;
use futures::StreamExt;

const STATIC_ITEMS: u64 = 100_000;
const BATCH_SIZE: usize = 100;
const IN_FLIGHT: usize = 5;
const SUBMITTERS: u64 = 10_000;
const LATENCY: Duration = Duration::from_millis(1);

async fn mock_sleep(chunk: Vec<u64>) -> Result<Vec<u64>, String> {
    tokio::time::sleep(LATENCY).await;
    Ok(chunk.into_iter().map(|item| item * 2).collect())
}

async fn mock_yield(chunk: Vec<u64>) -> Result<Vec<u64>, String> {
    tokio::task::yield_now().await;
    Ok(chunk.into_iter().map(|item| item * 2).collect())
}

/// Checks per-item results in input order, so no contender can skip work.
fn check_static<E: std::fmt::Debug>(results: &[Result<u64, E>]) {
    assert_eq!(results.len() as u64, STATIC_ITEMS);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(*result.as_ref().expect("no failure"), index as u64 * 2, "input order");
    }
}

macro_rules! static_workload {
    ($criterion:expr, $name:literal, $mock:ident) => {{
        let runtime = benches::multi_thread_runtime();
        let mut group = $criterion.benchmark_group(concat!("batch/", $name));
        group.bench_function(BenchmarkId::from_parameter("aqueduct"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let results: Vec<Result<u64, Error<String>>> =
                    batch(0..STATIC_ITEMS, BATCH_SIZE, IN_FLIGHT, $mock).await;
                check_static(&results);
            });
        });
        group.bench_function(BenchmarkId::from_parameter("baseline"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let chunks = (0..STATIC_ITEMS).step_by(BATCH_SIZE).map(|start| {
                    (start..(start + BATCH_SIZE as u64).min(STATIC_ITEMS)).collect::<Vec<u64>>()
                });
                let results: Vec<Result<u64, String>> = futures::stream::iter(chunks)
                    .map(|chunk| {
                        let count = chunk.len();
                        async move { (count, $mock(chunk).await) }
                    })
                    .buffered(IN_FLIGHT)
                    .fold(Vec::with_capacity(STATIC_ITEMS as usize), |mut flat, (count, result)| {
                        match result {
                            Ok(outputs) => flat.extend(outputs.into_iter().map(Ok)),
                            Err(error) => flat.extend(std::iter::repeat_n(error, count).map(Err)),
                        }
                        futures::future::ready(flat)
                    })
                    .await;
                check_static(&results);
            });
        });
        group.finish();
    }};
}

fn static_batches(criterion: &mut Criterion) {
    static_workload!(criterion, "static_1ms", mock_sleep);
    static_workload!(criterion, "static_yield", mock_yield);
}

/// dataloader's batch function: doubles each key, optionally after a sleep, and counts batch sizes.
#[derive(Clone)]
struct DoubleLoader {
    latency: Duration,
    batches: Arc<AtomicU64>,
    items: Arc<AtomicU64>,
}

impl BatchFn<u64, u64> for DoubleLoader {
    async fn load(&mut self, keys: &[u64]) -> HashMap<u64, u64> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(keys.len() as u64, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        keys.iter().map(|key| (*key, key * 2)).collect()
    }
}

fn check_dynamic(total: u64) {
    assert_eq!(total, SUBMITTERS * (SUBMITTERS - 1), "every item doubled once");
}

fn dynamic_workload(
    criterion: &mut Criterion,
    workload: &'static str,
    latency: Duration,
    flush: Flush,
    with_baseline: bool,
) {
    let runtime = benches::multi_thread_runtime();
    let mut group = criterion.benchmark_group(format!("batch/{workload}"));

    let batcher: Batcher<u64, u64, String> = {
        let _entered = runtime.enter();
        Batcher::builder(move |items: Vec<u64>| async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok::<_, String>(items.into_iter().map(|item| item * 2).collect::<Vec<_>>())
        })
        .max_batch_size(BATCH_SIZE)
        .max_concurrent_batches(IN_FLIGHT)
        .max_pending(SUBMITTERS as usize)
        .flush(flush)
        .build()
        .expect("valid settings")
    };
    group.bench_function(BenchmarkId::from_parameter("aqueduct"), |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let handles: Vec<_> =
                (0..SUBMITTERS).map(|item| tokio::spawn(batcher.submit(item))).collect();
            let mut total = 0;
            for handle in handles {
                total += handle.await.expect("no panic").expect("no failure");
            }
            check_dynamic(total);
        });
    });
    let metrics = batcher.metrics();
    benches::record_extra(
        "batch",
        workload,
        "aqueduct",
        "mean_batch_size",
        metrics.mean_batch_size(),
    );

    let counts = DoubleLoader { latency, batches: Arc::default(), items: Arc::default() };
    let loader = Loader::new(counts.clone()).with_max_batch_size(BATCH_SIZE);
    group.bench_function(BenchmarkId::from_parameter("dataloader"), |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let handles: Vec<_> = (0..SUBMITTERS)
                .map(|item| {
                    let loader = loader.clone();
                    tokio::spawn(async move { loader.load(item).await })
                })
                .collect();
            let mut total = 0;
            for handle in handles {
                total += handle.await.expect("no panic");
            }
            check_dynamic(total);
        });
    });
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    let dataloader_mean = counts.items.load(Ordering::Relaxed) as f64
        / counts.batches.load(Ordering::Relaxed).max(1) as f64;
    benches::record_extra("batch", workload, "dataloader", "mean_batch_size", dataloader_mean);

    if with_baseline {
        group.bench_function(BenchmarkId::from_parameter("baseline"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let handles: Vec<_> = (0..SUBMITTERS)
                    .map(|item| {
                        tokio::spawn(async move {
                            let outputs =
                                mock_direct(vec![item], latency).await.expect("no failure");
                            outputs[0]
                        })
                    })
                    .collect();
                let mut total = 0;
                for handle in handles {
                    total += handle.await.expect("no panic");
                }
                check_dynamic(total);
            });
        });
    }
    group.finish();
}

/// The mock the baseline calls once per item, without batching.
async fn mock_direct(items: Vec<u64>, latency: Duration) -> Result<Vec<u64>, String> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(items.into_iter().map(|item| item * 2).collect())
}

fn dynamic_batches(criterion: &mut Criterion) {
    // 10 000 is a multiple of 100, so under `Flush::Size` every batch fills: the machinery's cost per item.
    dynamic_workload(criterion, "dynamic_10k", Duration::ZERO, Flush::Size, true);
    // The default policy under saturation: batches fill by themselves while the slots are busy.
    dynamic_workload(criterion, "dynamic_10k_1ms", LATENCY, Flush::Immediate, false);
}

criterion_group! {
    name = benches;
    config = benches::criterion();
    targets = static_batches, dynamic_batches
}
criterion_main!(benches);
