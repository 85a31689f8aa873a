//! Benchmarks of aqueduct-ratelimit against governor, leaky-bucket, tokio's `Semaphore` and an atomic baseline.
//!
//! Workloads (one criterion group each):
//! - `ratelimit/uncontended admit`: `try_acquire` on a limit that never refuses; the admission path.
//! - `ratelimit/reject`: `try_acquire` on an exhausted limit; the cost of saying no with a retry-after.
//! - `ratelimit/2 threads shared`: two threads admitting on one shared limiter (aggregate time per admission).
//! - `ratelimit/semaphore try acquire+release` and `ratelimit/semaphore acquire+release`: the concurrency
//!   limit against `tokio::sync::Semaphore`.
//! - `ratelimit/acquire with tokens available`: `acquire().await` when it need not wait.
//! - `ratelimit/keyed 10000 keys`: one admission per call over 10 000 keys, round robin.
//! - `ratelimit/10000 waiters`: 10 000 tasks waiting on a 1 000/s limit for two seconds of real time; records
//!   `polls_per_admission` (polls after each waiter's first, per admission) with `record_extra`.
//!
//! Every GCRA contender reads `std::time::Instant` (governor with its `MonotonicClock`), so the comparison
//! uses the same clock source; leaky-bucket reads tokio's clock, which is the same `Instant` when unpaused.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aqueduct_ratelimit::{KeyedRateLimiter, Limiter, Quota, Rate};
use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::MonotonicClock;

const CONCERN: &str = "ratelimit";

type GovernorDirect = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    MonotonicClock,
    governor::middleware::NoOpMiddleware<<MonotonicClock as governor::clock::Clock>::Instant>,
>;

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).expect("a positive number")
}

/// A limit no benchmark loop can exhaust: 1e9 per second with a burst of 4 billion.
fn aqueduct_unlimited() -> Limiter {
    Limiter::rate_limit(Rate::per_second(1_000_000_000), u32::MAX).expect("a valid limit")
}

fn governor_unlimited() -> GovernorDirect {
    let quota = governor::Quota::per_second(nonzero(1_000_000_000)).allow_burst(nonzero(u32::MAX));
    governor::RateLimiter::direct_with_clock(quota, MonotonicClock)
}

fn leaky_bucket_unlimited() -> leaky_bucket::RateLimiter {
    let huge = usize::MAX / 4;
    leaky_bucket::RateLimiter::builder()
        .max(huge)
        .initial(huge)
        .refill(huge)
        .interval(Duration::from_millis(1))
        .build()
}

fn uncontended_admit(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let _context = runtime.enter();
    let mut group = criterion.benchmark_group("ratelimit/uncontended admit");
    let aqueduct = aqueduct_unlimited();
    group.bench_function("aqueduct", |bencher| {
        bencher.iter(|| black_box(aqueduct.try_acquire::<()>().is_ok()))
    });
    let governor = governor_unlimited();
    group
        .bench_function("governor", |bencher| bencher.iter(|| black_box(governor.check().is_ok())));
    let leaky = leaky_bucket_unlimited();
    group
        .bench_function("leaky-bucket", |bencher| bencher.iter(|| black_box(leaky.try_acquire(1))));
    let counter = AtomicU64::new(0);
    group.bench_function("baseline", |bencher| {
        bencher.iter(|| black_box(counter.fetch_add(1, Ordering::AcqRel)))
    });
    group.finish();
}

fn reject(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let _context = runtime.enter();
    let mut group = criterion.benchmark_group("ratelimit/reject");
    let aqueduct = Limiter::rate_limit(Rate::per_day(1), 1).expect("a valid limit");
    drop(aqueduct.try_acquire::<()>());
    group.bench_function("aqueduct", |bencher| {
        bencher.iter(|| {
            black_box(aqueduct.try_acquire::<()>().err().and_then(|error| error.retry_after()))
        })
    });
    let governor: GovernorDirect = governor::RateLimiter::direct_with_clock(
        governor::Quota::per_hour(nonzero(1)),
        MonotonicClock,
    );
    let _ = governor.check();
    group.bench_function("governor", |bencher| {
        bencher.iter(|| black_box(governor.check().is_err()))
    });
    let leaky = leaky_bucket::RateLimiter::builder()
        .max(1)
        .initial(0)
        .refill(1)
        .interval(Duration::from_secs(3_600))
        .build();
    group
        .bench_function("leaky-bucket", |bencher| bencher.iter(|| black_box(leaky.try_acquire(1))));
    let counter = AtomicU64::new(0);
    group.bench_function("baseline", |bencher| {
        bencher.iter(|| black_box(counter.load(Ordering::Acquire) > 0))
    });
    group.finish();
}

/// Runs `admit` `iterations` times split over two threads; returns the wall time (aggregate per admission).
fn two_threads(iterations: u64, admit: &(dyn Fn() -> bool + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..iterations / 2 {
                    black_box(admit());
                }
            });
        }
    });
    start.elapsed()
}

fn shared_two_threads(criterion: &mut Criterion) {
    let runtime = benches::multi_thread_runtime();
    let _context = runtime.enter();
    let mut group = criterion.benchmark_group("ratelimit/2 threads shared");
    let aqueduct = aqueduct_unlimited();
    group.bench_function("aqueduct", |bencher| {
        bencher.iter_custom(|iterations| {
            two_threads(iterations, &|| aqueduct.try_acquire::<()>().is_ok())
        });
    });
    let governor = governor_unlimited();
    group.bench_function("governor", |bencher| {
        bencher.iter_custom(|iterations| two_threads(iterations, &|| governor.check().is_ok()));
    });
    let leaky = leaky_bucket_unlimited();
    group.bench_function("leaky-bucket", |bencher| {
        bencher.iter_custom(|iterations| two_threads(iterations, &|| leaky.try_acquire(1)));
    });
    let counter = AtomicU64::new(0);
    group.bench_function("baseline", |bencher| {
        bencher.iter_custom(|iterations| {
            two_threads(iterations, &|| counter.fetch_add(1, Ordering::AcqRel) > 0)
        });
    });
    group.finish();
}

fn semaphore(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("ratelimit/semaphore try acquire+release");
    let aqueduct = Limiter::concurrency(1_000).expect("a valid limit");
    group.bench_function("aqueduct", |bencher| {
        bencher.iter(|| drop(black_box(aqueduct.try_acquire::<()>())))
    });
    let tokio_semaphore = tokio::sync::Semaphore::new(1_000);
    group.bench_function("tokio", |bencher| {
        bencher.iter(|| drop(black_box(tokio_semaphore.try_acquire())))
    });
    let counter = AtomicU64::new(1_000);
    group.bench_function("baseline", |bencher| {
        bencher.iter(|| {
            black_box(counter.fetch_sub(1, Ordering::AcqRel));
            counter.fetch_add(1, Ordering::AcqRel)
        });
    });
    group.finish();

    let runtime = benches::current_thread_runtime();
    let mut group = criterion.benchmark_group("ratelimit/semaphore acquire+release");
    group.bench_function("aqueduct", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { drop(black_box(aqueduct.acquire::<()>().await)) });
    });
    group.bench_function("tokio", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { drop(black_box(tokio_semaphore.acquire().await)) });
    });
    group.finish();
}

fn acquire_available(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let _context = runtime.enter();
    let mut group = criterion.benchmark_group("ratelimit/acquire with tokens available");
    let aqueduct = aqueduct_unlimited();
    group.bench_function("aqueduct", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { black_box(aqueduct.acquire::<()>().await.is_ok()) });
    });
    let governor = governor_unlimited();
    group.bench_function("governor", |bencher| {
        bencher.to_async(&runtime).iter(|| async { governor.until_ready().await });
    });
    let leaky = leaky_bucket_unlimited();
    group.bench_function("leaky-bucket", |bencher| {
        bencher.to_async(&runtime).iter(|| async { leaky.acquire_one().await });
    });
    let counter = AtomicU64::new(0);
    group.bench_function("baseline", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { black_box(counter.fetch_add(1, Ordering::AcqRel)) });
    });
    group.finish();
}

fn keyed(criterion: &mut Criterion) {
    const KEYS: u64 = 10_000;
    let runtime = benches::current_thread_runtime();
    let _context = runtime.enter();
    let mut group = criterion.benchmark_group("ratelimit/keyed 10000 keys");
    let quota = Quota::new(Rate::per_second(1_000_000_000), u32::MAX).expect("a valid quota");
    let aqueduct =
        KeyedRateLimiter::<u64>::builder(quota).max_keys(100_000).build().expect("a valid limit");
    let mut next = 0_u64;
    group.bench_function("aqueduct", |bencher| {
        bencher.iter(|| {
            next = (next + 1) % KEYS;
            black_box(aqueduct.try_acquire::<()>(&next).is_ok())
        });
    });
    let governor_quota =
        governor::Quota::per_second(nonzero(1_000_000_000)).allow_burst(nonzero(u32::MAX));
    let governor = governor::RateLimiter::dashmap_with_clock(governor_quota, MonotonicClock);
    group.bench_function("governor", |bencher| {
        bencher.iter(|| {
            next = (next + 1) % KEYS;
            black_box(governor.check_key(&next).is_ok())
        });
    });
    let counters: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
    group.bench_function("baseline", |bencher| {
        bencher.iter(|| {
            next = (next + 1) % KEYS;
            black_box(counters[usize::try_from(next).unwrap_or(0)].fetch_add(1, Ordering::AcqRel))
        });
    });
    group.finish();
}

/// Counts the polls of the wrapped future after its first one (the first poll only registers it).
struct CountPolls<F> {
    future: Pin<Box<F>>,
    polled_once: bool,
    later_polls: Arc<AtomicU64>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        if self.polled_once {
            self.later_polls.fetch_add(1, Ordering::Relaxed);
        }
        self.polled_once = true;
        self.future.as_mut().poll(context)
    }
}

/// Spawns 10 000 waiters, lets them run for two seconds of real time, and records polls per admission.
fn ten_thousand_waiters<F, Fut>(contender: &str, acquire: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    const WAITERS: usize = 10_000;
    const WINDOW: Duration = Duration::from_secs(2);
    let runtime = benches::current_thread_runtime();
    let later_polls = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_start = Instant::now();
    runtime.block_on(async {
        for _ in 0..WAITERS {
            let waiter = acquire();
            let admitted = Arc::clone(&admitted);
            let stop = Arc::clone(&stop);
            tokio::spawn(CountPolls {
                future: Box::pin(async move {
                    waiter.await;
                    if !stop.load(Ordering::Relaxed) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }),
                polled_once: false,
                later_polls: Arc::clone(&later_polls),
            });
        }
        tokio::time::sleep(WINDOW).await;
        stop.store(true, Ordering::Relaxed);
    });
    let wall = cpu_start.elapsed();
    drop(runtime);
    let admitted = admitted.load(Ordering::Relaxed);
    let polls = later_polls.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    let polls_per_admission = polls as f64 / admitted.max(1) as f64;
    let workload = "10000 waiters";
    benches::record_extra(CONCERN, workload, contender, "polls_per_admission", polls_per_admission);
    #[allow(clippy::cast_precision_loss)]
    let admitted_figure = admitted as f64;
    benches::record_extra(CONCERN, workload, contender, "admitted_in_2s", admitted_figure);
    benches::record_extra(CONCERN, workload, contender, "wall_s", wall.as_secs_f64());
}

fn waiters(_criterion: &mut Criterion) {
    // Not a criterion timing: two seconds of real time per contender, figures through `record_extra`.
    let rate_limit = || Limiter::rate_limit(Rate::per_second(1_000), 1).expect("a valid limit");
    let aqueduct = rate_limit();
    ten_thousand_waiters("aqueduct", || {
        let limiter = aqueduct.clone();
        async move {
            let _ = limiter.acquire::<()>().await;
        }
    });
    // The same configuration for every contender: 1 000 per second, a burst of 1.
    let governor_quota = governor::Quota::per_second(nonzero(1_000)).allow_burst(nonzero(1));
    let governor: Arc<GovernorDirect> =
        Arc::new(governor::RateLimiter::direct_with_clock(governor_quota, MonotonicClock));
    ten_thousand_waiters("governor", || {
        let limiter = Arc::clone(&governor);
        async move {
            limiter.until_ready().await;
        }
    });
    // leaky-bucket's `acquire` reads tokio's clock and needs a runtime to build.
    let leaky = {
        let runtime = benches::current_thread_runtime();
        let _context = runtime.enter();
        Arc::new(
            leaky_bucket::RateLimiter::builder()
                .max(1)
                .initial(1)
                .refill(1)
                .interval(Duration::from_millis(1))
                .build(),
        )
    };
    ten_thousand_waiters("leaky-bucket", || {
        let limiter = Arc::clone(&leaky);
        async move {
            limiter.acquire_one().await;
        }
    });
}

criterion_group! {
    name = ratelimit;
    config = benches::criterion();
    targets = uncontended_admit, reject, shared_two_threads, semaphore, acquire_available, keyed, waiters
}
criterion_main!(ratelimit);
