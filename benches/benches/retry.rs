//! Benchmarks of aqueduct-retry against backon, tokio-retry2 and a hand-written retry loop.
//!
//! Workloads (one criterion group each):
//! - `retry/success on first attempt`: the operation succeeds at once; measures the fixed cost of the wrapper.
//! - `retry/one failure then success, zero delay`: the operation fails once, then succeeds; the policy's delay
//!   is zero. aqueduct yields once instead of arming a timer; the peers go through a tokio sleep of zero.
//!   The loop runs in a spawned task, as in a server, where a yield goes back to the run queue.
//! - `retry/one failure then success, zero delay, block_on`: the same, driven by `Runtime::block_on` (criterion's
//!   async bencher), where every yield of the root future also polls the I/O driver (about 1 µs of syscalls).
//!
//! Contenders: `aqueduct`, `backon`, `tokio-retry2` and `baseline` (a hand-written loop of at most three
//! attempts that retries at once), on a current-thread runtime so the figures measure per-call overhead.
//! Every contender uses exponential backoff from 100 ms (success workload) or a constant zero delay (retry
//! workload) with three attempts at most; the sizes of each contender's future are recorded as extra figures.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use aqueduct_retry::{Error, RetryPolicy};
use backon::{ConstantBuilder, ExponentialBuilder, Retryable};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio_retry2::strategy::{ExponentialFactorBackoff, FixedInterval};
use tokio_retry2::{Retry, RetryError};

const CONCERN: &str = "retry";
const SUCCESS: &str = "success on first attempt";
const ONE_FAILURE: &str = "one failure then success, zero delay";
const ONE_FAILURE_BLOCK_ON: &str = "one failure then success, zero delay, block_on";

/// The operation of the success workload: ready at once with `Ok`.
async fn succeed() -> Result<u64, io::Error> {
    Ok(black_box(1))
}

/// The operation of the retry workload: fails on the first call of each iteration, then succeeds.
async fn fail_first(call: u32) -> Result<u32, io::Error> {
    if black_box(call) == 1 {
        Err(io::Error::from(io::ErrorKind::ConnectionReset))
    } else {
        Ok(call)
    }
}

/// The hand-written loop every contender is compared with: at most three attempts, retrying at once.
async fn baseline_loop<T, F, Fut>(mut op: F) -> Result<T, io::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, io::Error>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= 3 => return Err(error),
            Err(_) => attempt += 1,
        }
    }
}

fn success_on_first_attempt(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let policy = RetryPolicy::builder()
        .exponential(Duration::from_millis(100), 2.0)
        .max_attempts(3)
        .build()
        .expect("a valid policy");
    let backon_policy =
        ExponentialBuilder::default().with_min_delay(Duration::from_millis(100)).with_max_times(2);
    let mut group = criterion.benchmark_group(format!("{CONCERN}/{SUCCESS}"));
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let result: Result<u64, Error<io::Error>> =
                aqueduct_retry::retry(&policy, succeed).await;
            black_box(result)
        });
    });
    group.bench_function("backon", |bencher| {
        bencher.to_async(&runtime).iter(|| async { black_box(succeed.retry(backon_policy).await) });
    });
    group.bench_function("tokio-retry2", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let strategy = ExponentialFactorBackoff::from_millis(100, 2.0).take(2);
            black_box(
                Retry::spawn(strategy, || async { succeed().await.map_err(RetryError::transient) })
                    .await,
            )
        });
    });
    group.bench_function("baseline", |bencher| {
        bencher.to_async(&runtime).iter(|| async { black_box(baseline_loop(succeed).await) });
    });
    group.finish();

    let aqueduct_future = aqueduct_retry::retry::<_, _, _, _, _, io::Error>(&policy, succeed);
    let backon_future = succeed.retry(backon_policy);
    let tokio_retry2_future =
        Retry::spawn(ExponentialFactorBackoff::from_millis(100, 2.0).take(2), || async {
            succeed().await.map_err(RetryError::transient)
        });
    let baseline_future = baseline_loop(succeed);
    for (contender, bytes) in [
        ("aqueduct", size_of_val(&aqueduct_future)),
        ("backon", size_of_val(&backon_future)),
        ("tokio-retry2", size_of_val(&tokio_retry2_future)),
        ("baseline", size_of_val(&baseline_future)),
    ] {
        #[allow(clippy::cast_precision_loss)]
        // Future sizes are a few hundred bytes.
        benches::record_extra(CONCERN, SUCCESS, contender, "future_bytes", bytes as f64);
    }
}

/// Runs `iterations` of `routine` in one task spawned on `runtime` and returns the time they took.
fn in_spawned_task<R, F>(
    runtime: &tokio::runtime::Runtime,
    iterations: u64,
    mut routine: R,
) -> Duration
where
    R: FnMut() -> F + Send + 'static,
    F: Future + Send,
{
    runtime
        .block_on(async move {
            tokio::spawn(async move {
                let start = Instant::now();
                for _ in 0..iterations {
                    black_box(routine().await);
                }
                start.elapsed()
            })
            .await
        })
        .expect("the benchmark task does not panic")
}

fn one_failure_then_success(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let policy = RetryPolicy::builder()
        .constant(Duration::ZERO)
        .max_attempts(3)
        .build()
        .expect("a valid policy");
    let backon_policy = ConstantBuilder::default().with_delay(Duration::ZERO).with_max_times(2);
    let mut group = criterion.benchmark_group(format!("{CONCERN}/{ONE_FAILURE}"));
    // The spawned task needs a `'static` policy; leaking one per run keeps clones out of the measurement.
    let policy: &'static RetryPolicy = Box::leak(Box::new(policy));
    group.bench_function("aqueduct", |bencher| {
        bencher.iter_custom(|iterations| {
            in_spawned_task(&runtime, iterations, move || async move {
                let mut calls = 0;
                let result: Result<u32, Error<io::Error>> = aqueduct_retry::retry(policy, || {
                    calls += 1;
                    fail_first(calls)
                })
                .await;
                result
            })
        });
    });
    group.bench_function("backon", |bencher| {
        bencher.iter_custom(|iterations| {
            in_spawned_task(&runtime, iterations, move || async move {
                let mut calls = 0;
                let op = || {
                    calls += 1;
                    fail_first(calls)
                };
                op.retry(backon_policy).await
            })
        });
    });
    group.bench_function("tokio-retry2", |bencher| {
        bencher.iter_custom(|iterations| {
            in_spawned_task(&runtime, iterations, || async {
                let mut calls = 0;
                let strategy = FixedInterval::new(Duration::ZERO).take(2);
                Retry::spawn(strategy, || {
                    calls += 1;
                    let call = calls;
                    async move { fail_first(call).await.map_err(RetryError::transient) }
                })
                .await
            })
        });
    });
    group.bench_function("baseline", |bencher| {
        bencher.iter_custom(|iterations| {
            in_spawned_task(&runtime, iterations, || async {
                let mut calls = 0;
                baseline_loop(|| {
                    calls += 1;
                    fail_first(calls)
                })
                .await
            })
        });
    });
    group.finish();
}

fn one_failure_then_success_block_on(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let policy = RetryPolicy::builder()
        .constant(Duration::ZERO)
        .max_attempts(3)
        .build()
        .expect("a valid policy");
    let backon_policy = ConstantBuilder::default().with_delay(Duration::ZERO).with_max_times(2);
    let mut group = criterion.benchmark_group(format!("{CONCERN}/{ONE_FAILURE_BLOCK_ON}"));
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let mut calls = 0;
            let result: Result<u32, Error<io::Error>> = aqueduct_retry::retry(&policy, || {
                calls += 1;
                fail_first(calls)
            })
            .await;
            black_box(result)
        });
    });
    group.bench_function("backon", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let mut calls = 0;
            let op = || {
                calls += 1;
                fail_first(calls)
            };
            black_box(op.retry(backon_policy).await)
        });
    });
    group.bench_function("tokio-retry2", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let mut calls = 0;
            let strategy = FixedInterval::new(Duration::ZERO).take(2);
            black_box(
                Retry::spawn(strategy, || {
                    calls += 1;
                    let call = calls;
                    async move { fail_first(call).await.map_err(RetryError::transient) }
                })
                .await,
            )
        });
    });
    group.bench_function("baseline", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let mut calls = 0;
            black_box(
                baseline_loop(|| {
                    calls += 1;
                    fail_first(calls)
                })
                .await,
            )
        });
    });
    group.finish();
}

criterion_group! {
    name = retry;
    config = benches::criterion();
    targets = success_on_first_attempt, one_failure_then_success, one_failure_then_success_block_on
}
criterion_main!(retry);
