//! Benchmarks of aqueduct-gather against join_all, FuturesUnordered, JoinSet and futures-concurrency.
//!
//! Workloads (10 000 futures each, created together and gathered in input order):
//! - `gather/yield_once_10k`: each future yields once to the runtime, then returns its index;
//! - `gather/ready_10k`: each future is ready at its first poll.
//!
//! Contenders: `aqueduct` (in place, collect-all), `aqueduct-spawned` (one tokio task per future),
//! `join_all` (futures 0.3), `FuturesUnordered` (collected then put back in input order), `JoinSet`
//! (spawned, `join_all`, then put back in input order), `futures-concurrency` (`Vec::join`), and `baseline`
//! (`tokio::spawn` each future and await the handles in order). Every contender runs on the same
//! multi-threaded runtime and every future returns a `Result<usize, Infallible>`.

use std::convert::Infallible;

use aqueduct_gather::{Error, gather};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use futures_concurrency::future::Join;
use tokio::task::JoinSet;

const COUNT: usize = 10_000;

async fn yield_once(index: usize) -> Result<usize, Infallible> {
    tokio::task::yield_now().await;
    Ok(index)
}

async fn ready(index: usize) -> Result<usize, Infallible> {
    Ok(index)
}

/// Checks a gathered output so no contender can skip work.
fn check(total: usize) {
    assert_eq!(total, COUNT * (COUNT - 1) / 2, "every index gathered once");
}

fn sum_ordered(results: &[Result<usize, Infallible>]) -> usize {
    results
        .iter()
        .enumerate()
        .map(|(position, result)| {
            let index = match result {
                Ok(index) => *index,
                Err(never) => match *never {},
            };
            assert_eq!(index, position, "input order");
            index
        })
        .sum()
}

macro_rules! workload {
    ($criterion:expr, $name:literal, $make:ident) => {{
        let runtime = benches::multi_thread_runtime();
        let mut group = $criterion.benchmark_group(concat!("gather/", $name));
        group.bench_function(BenchmarkId::from_parameter("aqueduct"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let results: Vec<Result<usize, Error<Infallible>>> =
                    gather((0..COUNT).map($make)).await;
                let total: usize = results
                    .iter()
                    .enumerate()
                    .map(|(position, result)| {
                        let index = *result.as_ref().expect("no failure");
                        assert_eq!(index, position, "input order");
                        index
                    })
                    .sum();
                check(total);
            });
        });
        group.bench_function(BenchmarkId::from_parameter("aqueduct-spawned"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let results: Vec<Result<usize, Error<Infallible>>> =
                    gather((0..COUNT).map($make)).spawned().await;
                let total: usize = results
                    .iter()
                    .enumerate()
                    .map(|(position, result)| {
                        let index = *result.as_ref().expect("no failure");
                        assert_eq!(index, position, "input order");
                        index
                    })
                    .sum();
                check(total);
            });
        });
        group.bench_function(BenchmarkId::from_parameter("join_all"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let results = futures::future::join_all((0..COUNT).map($make)).await;
                check(sum_ordered(&results));
            });
        });
        group.bench_function(BenchmarkId::from_parameter("FuturesUnordered"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let unordered: FuturesUnordered<_> =
                    (0..COUNT).map(|index| async move { (index, $make(index).await) }).collect();
                let mut results: Vec<Option<Result<usize, Infallible>>> =
                    (0..COUNT).map(|_| None).collect();
                let mut unordered = std::pin::pin!(unordered);
                while let Some((index, result)) = unordered.next().await {
                    results[index] = Some(result);
                }
                let results: Vec<_> =
                    results.into_iter().map(|slot| slot.expect("every slot filled")).collect();
                check(sum_ordered(&results));
            });
        });
        group.bench_function(BenchmarkId::from_parameter("JoinSet"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let mut set = JoinSet::new();
                for index in 0..COUNT {
                    set.spawn(async move { (index, $make(index).await) });
                }
                let mut results: Vec<Option<Result<usize, Infallible>>> =
                    (0..COUNT).map(|_| None).collect();
                for (index, result) in set.join_all().await {
                    results[index] = Some(result);
                }
                let results: Vec<_> =
                    results.into_iter().map(|slot| slot.expect("every slot filled")).collect();
                check(sum_ordered(&results));
            });
        });
        group.bench_function(BenchmarkId::from_parameter("futures-concurrency"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let futures: Vec<_> = (0..COUNT).map($make).collect();
                let results = futures.join().await;
                check(sum_ordered(&results));
            });
        });
        group.bench_function(BenchmarkId::from_parameter("baseline"), |bencher| {
            bencher.to_async(&runtime).iter(|| async {
                let handles: Vec<_> = (0..COUNT).map(|index| tokio::spawn($make(index))).collect();
                let mut results = Vec::with_capacity(COUNT);
                for handle in handles {
                    results.push(handle.await.expect("the task finishes"));
                }
                check(sum_ordered(&results));
            });
        });
        group.finish();
    }};
}

fn yield_once_10k(criterion: &mut Criterion) {
    workload!(criterion, "yield_once_10k", yield_once);
}

fn ready_10k(criterion: &mut Criterion) {
    workload!(criterion, "ready_10k", ready);
}

criterion_group! {
    name = gather_benches;
    config = benches::criterion();
    targets = yield_once_10k, ready_10k
}
criterion_main!(gather_benches);
