//! Benchmarks of aqueduct-cpu-offload against rayon plus a oneshot, tokio's `spawn_blocking` and inline work.
//!
//! Workloads (one criterion group each):
//! - `cpu-offload/dispatch`: 10 000 tiny jobs with 16 in flight; the time is dispatch cost. Also recorded: the
//!   median ratio of back-to-back runs against each peer, and the CPU time per job of all the process's threads
//!   (`cpu_ns_per_job`), which a noisy shared machine distorts far less than wall time.
//! - `cpu-offload/speedup`: 32 CPU-heavy jobs (about 1 ms each); `inline` runs them serially on the runtime.
//!   The speedup over serial (median of 7 timed runs, same process) is recorded as `speedup_vs_serial`.
//! - `cpu-offload/timer lateness`: while four loops keep both cores saturated with 5 ms jobs, a 1 ms interval timer
//!   ticks on the runtime; criterion times 10 ticks, and the lateness of every tick (actual minus scheduled) is
//!   recorded as `p50_lateness_ns`, `p99_lateness_ns` and `max_lateness_ns`. `inline` runs the same jobs on the
//!   runtime's own workers, the baseline that shows why offloading matters; `baseline-idle` ticks with no load at
//!   all, the floor set by tokio's 1 ms timer granularity.
//!
//! Contenders: `aqueduct` (a `CpuPool` with its defaults: rayon backend, threads at nice +10 on Linux; in the
//! lateness workload also `aqueduct-normal-priority`, the same pool with `thread_niceness(0)`), `rayon-oneshot` (a
//! dedicated rayon pool, `spawn` plus a tokio oneshot), `spawn_blocking` and `inline`. Every contender runs on the same two-worker runtime, and both
//! thread pools have one thread per core.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aqueduct_cpu_offload::{CpuPool, Error, JobHandle};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const CONCERN: &str = "cpu-offload";
const TINY_JOBS: u64 = 10_000;
const IN_FLIGHT: usize = 16;
const HEAVY_JOBS: u64 = 32;
const HEAVY_ROUNDS: u64 = 1_000_000;
const LOAD_LOOPS: usize = 4;
const LOAD_JOB: Duration = Duration::from_millis(5);
const TICKS_PER_ITERATION: u64 = 10;

type Handle = JobHandle<u64, Infallible>;

fn threads() -> usize {
    aqueduct_cpu_offload::default_threads()
}

fn aqueduct_pool() -> CpuPool {
    CpuPool::builder()
        .threads(threads())
        .thread_name("aqueduct-bench")
        .build()
        .expect("the pool starts")
}

fn rayon_pool() -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .build()
            .expect("the rayon pool starts"),
    )
}

fn tiny(value: u64) -> u64 {
    black_box(value).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn heavy(seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for round in 0..HEAVY_ROUNDS {
        hash ^= round;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    black_box(hash)
}

fn spin(duration: Duration) -> u64 {
    let start = Instant::now();
    let mut spins = 0_u64;
    while start.elapsed() < duration {
        spins = black_box(spins.wrapping_add(1));
    }
    spins
}

// ===== dispatch =====

async fn dispatch_aqueduct(pool: &CpuPool) -> u64 {
    let mut window: VecDeque<Handle> = VecDeque::with_capacity(IN_FLIGHT);
    let mut sum = 0_u64;
    for value in 0..TINY_JOBS {
        if window.len() == IN_FLIGHT
            && let Some(oldest) = window.pop_front()
        {
            sum ^= oldest.await.expect("the job runs");
        }
        window.push_back(pool.submit(move || tiny(value)).await.expect("the pool accepts"));
    }
    for handle in window {
        sum ^= handle.await.expect("the job runs");
    }
    sum
}

async fn dispatch_rayon_oneshot(pool: &rayon::ThreadPool) -> u64 {
    let mut window: VecDeque<oneshot::Receiver<u64>> = VecDeque::with_capacity(IN_FLIGHT);
    let mut sum = 0_u64;
    for value in 0..TINY_JOBS {
        if window.len() == IN_FLIGHT
            && let Some(oldest) = window.pop_front()
        {
            sum ^= oldest.await.expect("the job runs");
        }
        let (sender, receiver) = oneshot::channel();
        pool.spawn(move || {
            let _ = sender.send(tiny(value));
        });
        window.push_back(receiver);
    }
    for receiver in window {
        sum ^= receiver.await.expect("the job runs");
    }
    sum
}

async fn dispatch_spawn_blocking() -> u64 {
    let mut window: VecDeque<tokio::task::JoinHandle<u64>> = VecDeque::with_capacity(IN_FLIGHT);
    let mut sum = 0_u64;
    for value in 0..TINY_JOBS {
        if window.len() == IN_FLIGHT
            && let Some(oldest) = window.pop_front()
        {
            sum ^= oldest.await.expect("the job runs");
        }
        window.push_back(tokio::task::spawn_blocking(move || tiny(value)));
    }
    for handle in window {
        sum ^= handle.await.expect("the job runs");
    }
    sum
}

async fn dispatch_inline() -> u64 {
    let mut sum = 0_u64;
    for value in 0..TINY_JOBS {
        sum ^= tiny(value);
        tokio::task::yield_now().await;
    }
    sum
}

/// CPU time consumed so far by every live thread of this process, in nanoseconds (Linux `schedstat`), or `None`.
///
/// Unlike wall time, this barely depends on how busy the rest of a shared machine is, so it measures dispatch cost
/// itself: work done, plus spinning, plus the system calls of sleeping and waking threads.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0_u64;
    for thread in std::fs::read_dir("/proc/self/task").ok()? {
        let path = thread.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        if let Ok(stat) = std::fs::read_to_string(path) {
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// The CPU time per tiny job of several runs of a dispatch workload, recorded as `cpu_ns_per_job`.
fn record_cpu_per_job<F: Future<Output = u64>>(
    runtime: &Runtime,
    contender: &str,
    mut work: impl FnMut() -> F,
) {
    let runs: u32 = if benches::is_quick() { 3 } else { 10 };
    black_box(runtime.block_on(work()));
    let Some(before) = process_cpu_ns() else { return };
    for _ in 0..runs {
        black_box(runtime.block_on(work()));
    }
    let Some(after) = process_cpu_ns() else { return };
    #[allow(clippy::cast_precision_loss)] // Nanosecond totals are far below 2^52.
    let per_job = after.saturating_sub(before) as f64 / (f64::from(runs) * TINY_JOBS as f64);
    benches::record_extra(CONCERN, "dispatch", contender, "cpu_ns_per_job", per_job);
}

fn dispatch(criterion: &mut Criterion) {
    let runtime = benches::multi_thread_runtime();
    let pool = aqueduct_pool();
    let rayon = rayon_pool();
    let pairs = if benches::is_quick() { 9 } else { 25 };
    let to_rayon = benches::paired_ratio(
        &runtime,
        pairs,
        || dispatch_aqueduct(&pool),
        || dispatch_rayon_oneshot(&rayon),
    );
    benches::record_extra(
        CONCERN,
        "dispatch",
        "aqueduct",
        "paired_ratio_to_rayon-oneshot",
        to_rayon,
    );
    let to_blocking = benches::paired_ratio(
        &runtime,
        pairs,
        || dispatch_aqueduct(&pool),
        dispatch_spawn_blocking,
    );
    benches::record_extra(
        CONCERN,
        "dispatch",
        "aqueduct",
        "paired_ratio_to_spawn_blocking",
        to_blocking,
    );
    record_cpu_per_job(&runtime, "aqueduct", || dispatch_aqueduct(&pool));
    record_cpu_per_job(&runtime, "rayon-oneshot", || dispatch_rayon_oneshot(&rayon));
    record_cpu_per_job(&runtime, "spawn_blocking", dispatch_spawn_blocking);
    // Not for `inline`: its thread is never descheduled during a run, so the kernel's counter would not move.
    let mut group = criterion.benchmark_group("cpu-offload/dispatch");
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| dispatch_aqueduct(&pool))
    });
    group.bench_function("rayon-oneshot", |bencher| {
        bencher.to_async(&runtime).iter(|| dispatch_rayon_oneshot(&rayon));
    });
    group.bench_function("spawn_blocking", |bencher| {
        bencher.to_async(&runtime).iter(dispatch_spawn_blocking)
    });
    group.bench_function("inline", |bencher| bencher.to_async(&runtime).iter(dispatch_inline));
    group.finish();
}

// ===== speedup =====

async fn heavy_aqueduct(pool: &CpuPool) -> u64 {
    let hashes: Result<Vec<u64>, Error<Infallible>> = pool.map(0..HEAVY_JOBS, 1, heavy).await;
    hashes.expect("the jobs run").into_iter().fold(0, |sum, hash| sum ^ hash)
}

async fn heavy_rayon_oneshot(pool: &rayon::ThreadPool) -> u64 {
    let receivers: Vec<oneshot::Receiver<u64>> = (0..HEAVY_JOBS)
        .map(|seed| {
            let (sender, receiver) = oneshot::channel();
            pool.spawn(move || {
                let _ = sender.send(heavy(seed));
            });
            receiver
        })
        .collect();
    let mut sum = 0;
    for receiver in receivers {
        sum ^= receiver.await.expect("the job runs");
    }
    sum
}

async fn heavy_spawn_blocking() -> u64 {
    let handles: Vec<_> =
        (0..HEAVY_JOBS).map(|seed| tokio::task::spawn_blocking(move || heavy(seed))).collect();
    let mut sum = 0;
    for handle in handles {
        sum ^= handle.await.expect("the job runs");
    }
    sum
}

async fn heavy_inline() -> u64 {
    let mut sum = 0;
    for seed in 0..HEAVY_JOBS {
        sum ^= heavy(seed);
        tokio::task::yield_now().await;
    }
    sum
}

/// The median wall time of `runs` runs of `work` on `runtime`.
fn median_time<F: Future<Output = u64>>(
    runtime: &Runtime,
    runs: usize,
    mut work: impl FnMut() -> F,
) -> Duration {
    let mut times: Vec<u64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(runtime.block_on(work()));
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .collect();
    Duration::from_nanos(benches::quantile(&mut times, 0.5).unwrap_or(0))
}

fn speedup(criterion: &mut Criterion) {
    let runtime = benches::multi_thread_runtime();
    let pool = aqueduct_pool();
    let rayon = rayon_pool();

    let pairs = if benches::is_quick() { 5 } else { 11 };
    let paired = [
        (
            "aqueduct",
            benches::paired_ratio(&runtime, pairs, heavy_inline, || heavy_aqueduct(&pool)),
        ),
        (
            "rayon-oneshot",
            benches::paired_ratio(&runtime, pairs, heavy_inline, || heavy_rayon_oneshot(&rayon)),
        ),
    ];
    for (contender, ratio) in paired {
        benches::record_extra(CONCERN, "speedup", contender, "paired_speedup_vs_serial", ratio);
    }
    let serial = median_time(&runtime, 7, heavy_inline);
    let parallel = [
        ("aqueduct", median_time(&runtime, 7, || heavy_aqueduct(&pool))),
        ("rayon-oneshot", median_time(&runtime, 7, || heavy_rayon_oneshot(&rayon))),
        ("spawn_blocking", median_time(&runtime, 7, heavy_spawn_blocking)),
    ];
    for (contender, time) in parallel {
        let ratio = serial.as_secs_f64() / time.as_secs_f64().max(f64::MIN_POSITIVE);
        benches::record_extra(CONCERN, "speedup", contender, "speedup_vs_serial", ratio);
    }

    let mut group = criterion.benchmark_group("cpu-offload/speedup");
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| heavy_aqueduct(&pool))
    });
    group.bench_function("rayon-oneshot", |bencher| {
        bencher.to_async(&runtime).iter(|| heavy_rayon_oneshot(&rayon))
    });
    group.bench_function("spawn_blocking", |bencher| {
        bencher.to_async(&runtime).iter(heavy_spawn_blocking)
    });
    group.bench_function("inline", |bencher| bencher.to_async(&runtime).iter(heavy_inline));
    group.finish();
}

// ===== timer lateness =====

/// Where the load's 5 ms jobs run.
#[derive(Clone)]
enum Load {
    Aqueduct(CpuPool),
    RayonOneshot(Arc<rayon::ThreadPool>),
    SpawnBlocking,
    Inline,
    /// No load at all: the floor of the timer's own lateness (tokio's timer has a 1 ms granularity).
    Idle,
}

impl Load {
    async fn one_job(&self) -> u64 {
        match self {
            Self::Aqueduct(pool) => {
                let spins: Result<u64, Error<Infallible>> = pool.run(|| spin(LOAD_JOB)).await;
                spins.expect("the job runs")
            }
            Self::RayonOneshot(pool) => {
                let (sender, receiver) = oneshot::channel();
                pool.spawn(move || {
                    let _ = sender.send(spin(LOAD_JOB));
                });
                receiver.await.expect("the job runs")
            }
            Self::SpawnBlocking => {
                tokio::task::spawn_blocking(|| spin(LOAD_JOB)).await.expect("the job runs")
            }
            Self::Inline => {
                let spins = spin(LOAD_JOB);
                tokio::task::yield_now().await;
                spins
            }
            Self::Idle => 0,
        }
    }
}

/// Keeps the cores busy with `load` until `stop` is set.
fn start_load(
    runtime: &Runtime,
    load: &Load,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let loops = if matches!(load, Load::Idle) { 0 } else { LOAD_LOOPS };
    (0..loops)
        .map(|_| {
            let (load, stop) = (load.clone(), Arc::clone(stop));
            runtime.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    black_box(load.one_job().await);
                }
            })
        })
        .collect()
}

/// Ticks a 1 ms interval `ticks` times on a runtime worker, appending each tick's lateness in nanoseconds.
async fn tick(ticks: u64, lateness: Arc<Mutex<Vec<u64>>>) -> Duration {
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let start = Instant::now();
    let mut samples = Vec::with_capacity(usize::try_from(ticks).unwrap_or(0));
    for _ in 0..ticks {
        let scheduled = interval.tick().await;
        let late = tokio::time::Instant::now().saturating_duration_since(scheduled);
        samples.push(u64::try_from(late.as_nanos()).unwrap_or(u64::MAX));
    }
    lateness.lock().expect("no panics while holding the lock").extend(samples);
    start.elapsed()
}

fn timer_lateness(criterion: &mut Criterion) {
    let runtime = benches::multi_thread_runtime();
    let contenders = [
        ("aqueduct", Load::Aqueduct(aqueduct_pool())),
        // The same pool with its threads left at the normal priority (`thread_niceness(0)`): the opt-out.
        (
            "aqueduct-normal-priority",
            Load::Aqueduct(
                CpuPool::builder()
                    .threads(threads())
                    .thread_niceness(0)
                    .build()
                    .expect("the pool starts"),
            ),
        ),
        ("rayon-oneshot", Load::RayonOneshot(rayon_pool())),
        ("spawn_blocking", Load::SpawnBlocking),
        ("inline", Load::Inline),
        ("baseline-idle", Load::Idle),
    ];
    let mut group = criterion.benchmark_group("cpu-offload/timer lateness");
    for (contender, load) in contenders {
        let stop = Arc::new(AtomicBool::new(false));
        let loops = start_load(&runtime, &load, &stop);
        let lateness = Arc::new(Mutex::new(Vec::new()));
        group.bench_function(contender, |bencher| {
            bencher.iter_custom(|iterations| {
                let lateness = Arc::clone(&lateness);
                // Spawned, so the ticker runs on a runtime worker like any task would.
                runtime
                    .block_on(runtime.spawn(tick(iterations * TICKS_PER_ITERATION, lateness)))
                    .expect("the ticker runs")
            });
        });
        stop.store(true, Ordering::Relaxed);
        for handle in loops {
            runtime.block_on(handle).expect("the load loop ends");
        }
        let mut samples =
            std::mem::take(&mut *lateness.lock().expect("no panics while holding the lock"));
        #[allow(clippy::cast_precision_loss)] // Nanosecond lateness is far below 2^52.
        for (metric, quantile) in
            [("p50_lateness_ns", 0.5), ("p99_lateness_ns", 0.99), ("max_lateness_ns", 1.0)]
        {
            if let Some(value) = benches::quantile(&mut samples, quantile) {
                benches::record_extra(CONCERN, "timer lateness", contender, metric, value as f64);
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = cpu_offload;
    config = benches::criterion();
    targets = dispatch, speedup, timer_lateness
}
criterion_main!(cpu_offload);
