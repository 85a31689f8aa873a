//! Benchmarks of aqueduct-gather against join_all, FuturesUnordered, JoinSet and futures-concurrency.
//!
//! Workloads (10 000 futures each, created together and gathered in input order):
//! - `gather/yield_once_10k`: each future yields once to the runtime, then returns its index;
//! - `gather/ready_10k`: each future is ready at its first poll;
//! - `gather/bounded_10k_limit_100`: the yielding futures, created lazily with at most 100 alive at once;
//!   contenders `aqueduct` and `aqueduct-spawned` (with `GatherOptions::limit(100)`) and `buffered`
//!   (`futures::StreamExt::buffered(100)`, the ordered bounded combinator of futures 0.3).
//!
//! Extra figures: `peak_alive` (most futures alive at once) for the bounded workload; and, after criterion's
//! timings of the two unbounded workloads, the median ratio over 101 back-to-back pairs of runs (order
//! alternating) of `aqueduct` to `join_all` (`paired_ratio_to_join_all`) and of `aqueduct-spawned` to `JoinSet`
//! (`paired_ratio_to_JoinSet`), which the targets are judged on: criterion times one contender after the
//! other, and on this machine `JoinSet`'s own median moved between 2.8 and 9 ms from one run to the next.
//!
//! Contenders: `aqueduct` (in place, collect-all), `aqueduct-spawned` (one tokio task per future),
//! `join_all` (futures 0.3), `FuturesUnordered` (collected then put back in input order), `JoinSet`
//! (spawned, `join_all`, then put back in input order), `futures-concurrency` (`Vec::join`), and `baseline`
//! (`tokio::spawn` each future and await the handles in order). Every contender runs on the same
//! multi-threaded runtime and every future returns a `Result<usize, Infallible>`.
//!
//! Allocator: each workload starts with [`settle_the_allocator`], for every contender alike. A spawned
//! contender allocates and frees about 4 MB of task cells per iteration; glibc's malloc gives the top of its
//! heap back to the system once more than its trim threshold (128 KiB at start) is free there, so whether an
//! iteration ends in a trim, and the next one in regrowing the heap page by page (about 1 000 page faults and
//! 30 `brk` calls per iteration), depends on the order the cells happen to be freed in. Without the settling,
//! the same contender ran at 2 ms or at 5 ms from one run to the next, and the ranking of the spawned
//! contenders followed the allocator rather than the code.

use std::convert::Infallible;
use std::future::Future;

use aqueduct_gather::{Error, GatherOptions, gather};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use futures_concurrency::future::Join;
use tokio::task::JoinSet;

const COUNT: usize = 10_000;

/// Raises glibc's heap trim threshold for the whole process, so no contender pays for trimming and regrowing
/// the heap on every iteration (see the module docs).
///
/// Freeing one block that malloc had to map on its own (16 MiB, above the 128 KiB mapping threshold and below
/// the 32 MiB cap of the dynamic threshold) raises the mapping threshold to its size and the trim threshold to
/// twice that: malloc's documented dynamic adjustment, the same as `M_TRIM_THRESHOLD=32MiB`. Other allocators
/// ignore it; calling it again changes nothing.
fn settle_the_allocator() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(16 << 20)));
}

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

fn sum_gathered(results: &[Result<usize, Error<Infallible>>]) -> usize {
    results
        .iter()
        .enumerate()
        .map(|(position, result)| {
            let index = *result.as_ref().expect("no failure");
            assert_eq!(index, position, "input order");
            index
        })
        .sum()
}

/// One empty slot per input, for contenders that finish out of order and are put back in input order.
fn empty_slots() -> Vec<Option<Result<usize, Infallible>>> {
    (0..COUNT).map(|_| None).collect()
}

/// Checks the slots filled by [`empty_slots`]' users: every one filled, in input order.
fn check_slots(slots: Vec<Option<Result<usize, Infallible>>>) {
    let results: Vec<_> = slots.into_iter().map(|slot| slot.expect("every slot filled")).collect();
    check(sum_ordered(&results));
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

/// `aqueduct`: in place, collect-all.
async fn run_aqueduct<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>>,
{
    let results: Vec<Result<usize, Error<Infallible>>> = gather((0..COUNT).map(make)).await;
    check(sum_gathered(&results));
}

/// `aqueduct-spawned`: one tokio task per future, results in input order.
async fn run_aqueduct_spawned<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>> + Send + 'static,
{
    let results: Vec<Result<usize, Error<Infallible>>> =
        gather((0..COUNT).map(make)).spawned().await;
    check(sum_gathered(&results));
}

async fn run_join_all<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>>,
{
    let results = futures::future::join_all((0..COUNT).map(make)).await;
    check(sum_ordered(&results));
}

async fn run_futures_unordered<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>>,
{
    let unordered: FuturesUnordered<_> =
        (0..COUNT).map(|index| async move { (index, make(index).await) }).collect();
    let mut results = empty_slots();
    let mut unordered = std::pin::pin!(unordered);
    while let Some((index, result)) = unordered.next().await {
        results[index] = Some(result);
    }
    check_slots(results);
}

/// `JoinSet`: spawned, `join_all`, then put back in input order.
async fn run_join_set<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for index in 0..COUNT {
        set.spawn(async move { (index, make(index).await) });
    }
    let mut results = empty_slots();
    for (index, result) in set.join_all().await {
        results[index] = Some(result);
    }
    check_slots(results);
}

async fn run_futures_concurrency<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>>,
{
    let futures: Vec<_> = (0..COUNT).map(make).collect();
    let results = futures.join().await;
    check(sum_ordered(&results));
}

/// `baseline`: `tokio::spawn` each future and await the handles in order.
async fn run_baseline<Fut>(make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>> + Send + 'static,
{
    let handles: Vec<_> = (0..COUNT).map(|index| tokio::spawn(make(index))).collect();
    let mut results = Vec::with_capacity(COUNT);
    for handle in handles {
        results.push(handle.await.expect("the task finishes"));
    }
    check(sum_ordered(&results));
}

/// How many back-to-back pairs the paired ratios take (a pair costs a few milliseconds).
const PAIRS: usize = 101;

/// One workload: every contender under criterion, then the paired ratios the targets are judged on.
fn workload<Fut>(criterion: &mut Criterion, name: &str, make: fn(usize) -> Fut)
where
    Fut: Future<Output = Result<usize, Infallible>> + Send + 'static,
{
    settle_the_allocator();
    let runtime = benches::multi_thread_runtime();
    let mut group = criterion.benchmark_group(format!("gather/{name}"));
    // One criterion function per contender, each timing `$run` on the shared runtime.
    macro_rules! contender {
        ($id:literal, $run:expr) => {
            group.bench_function(BenchmarkId::from_parameter($id), |bencher| {
                bencher.to_async(&runtime).iter(|| $run);
            });
        };
    }
    contender!("aqueduct", run_aqueduct(make));
    contender!("aqueduct-spawned", run_aqueduct_spawned(make));
    contender!("join_all", run_join_all(make));
    contender!("FuturesUnordered", run_futures_unordered(make));
    contender!("JoinSet", run_join_set(make));
    contender!("futures-concurrency", run_futures_concurrency(make));
    contender!("baseline", run_baseline(make));
    group.finish();
    let in_place =
        benches::paired_ratio(&runtime, PAIRS, || run_aqueduct(make), || run_join_all(make));
    benches::record_extra("gather", name, "aqueduct", "paired_ratio_to_join_all", in_place);
    let spawned = benches::paired_ratio(
        &runtime,
        PAIRS,
        || run_aqueduct_spawned(make),
        || run_join_set(make),
    );
    benches::record_extra("gather", name, "aqueduct-spawned", "paired_ratio_to_JoinSet", spawned);
}

fn bounded_10k_limit_100(criterion: &mut Criterion) {
    const LIMIT: usize = 100;
    settle_the_allocator();
    let runtime = benches::multi_thread_runtime();
    let options = GatherOptions::builder().limit(LIMIT).build().expect("a valid limit");
    let mut group = criterion.benchmark_group("gather/bounded_10k_limit_100");
    group.bench_function(BenchmarkId::from_parameter("aqueduct"), |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let results: Vec<Result<usize, Error<Infallible>>> =
                gather((0..COUNT).map(yield_once)).with_options(options).await;
            check(results.iter().map(|result| *result.as_ref().expect("no failure")).sum());
        });
    });
    group.bench_function(BenchmarkId::from_parameter("aqueduct-spawned"), |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let results: Vec<Result<usize, Error<Infallible>>> =
                gather((0..COUNT).map(yield_once)).with_options(options).spawned().await;
            check(results.iter().map(|result| *result.as_ref().expect("no failure")).sum());
        });
    });
    group.bench_function(BenchmarkId::from_parameter("buffered"), |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let results: Vec<Result<usize, Infallible>> =
                futures::stream::iter((0..COUNT).map(yield_once)).buffered(LIMIT).collect().await;
            check(sum_ordered(&results));
        });
    });
    group.finish();

    // Peak number of futures alive at once, counted from creation to drop.
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = |index: usize| {
        let alive = std::sync::Arc::clone(&alive);
        let peak = std::sync::Arc::clone(&peak);
        let now = alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        async move {
            let result = yield_once(index).await;
            alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            result
        }
    };
    let results: Vec<Result<usize, Error<Infallible>>> =
        runtime.block_on(gather((0..COUNT).map(counted)).with_options(options));
    assert_eq!(results.len(), COUNT);
    #[allow(clippy::cast_precision_loss)] // A count of at most 10 000 is exact in an f64.
    let peak_alive = peak.load(std::sync::atomic::Ordering::SeqCst) as f64;
    benches::record_extra("gather", "bounded_10k_limit_100", "aqueduct", "peak_alive", peak_alive);
}

fn yield_once_10k(criterion: &mut Criterion) {
    workload(criterion, "yield_once_10k", yield_once);
}

fn ready_10k(criterion: &mut Criterion) {
    workload(criterion, "ready_10k", ready);
}

criterion_group! {
    name = gather_benches;
    config = benches::criterion();
    targets = yield_once_10k, ready_10k, bounded_10k_limit_100
}
criterion_main!(gather_benches);
