//! Shared harness for the aqueduct benchmarks: runtimes, criterion settings and extra figures.
//!
//! Conventions every bench target follows (see `docs/benchmarks.md`):
//! - one criterion group per workload, named `"<concern>/<workload>"`;
//! - one function id per contender: `aqueduct`, each peer by crate name, and `baseline`;
//! - figures criterion cannot measure (polls per admission, p99 latency, peak memory) go through
//!   [`record_extra`], which `cargo xtask bench` merges into the report.

use std::io::Write;
use std::time::Duration;

use criterion::Criterion;

/// The environment variable `cargo xtask bench --quick` sets to shorten every measurement.
pub const QUICK_ENV: &str = "AQUEDUCT_BENCH_QUICK";

/// The environment variable naming the folder where [`record_extra`] appends its figures.
pub const REPORT_DIR_ENV: &str = "AQUEDUCT_BENCH_REPORT_DIR";

/// `true` when `cargo xtask bench --quick` asked for short measurements.
pub fn is_quick() -> bool {
    std::env::var_os(QUICK_ENV).is_some()
}

/// The criterion settings of every bench target: shorter under `--quick`, steady otherwise.
pub fn criterion() -> Criterion {
    let criterion = Criterion::default().configure_from_args();
    if is_quick() {
        criterion
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .sample_size(10)
    } else {
        criterion
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(30)
    }
}

/// A multi-threaded tokio runtime with one worker per core (2 on our machines), the same for every contender.
///
/// # Panics
///
/// When the runtime cannot be built (no threads can be spawned).
pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a multi-threaded runtime builds")
}

/// A current-thread tokio runtime, for workloads that measure per-call overhead without cross-thread noise.
///
/// # Panics
///
/// When the runtime cannot be built.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

/// Records a figure criterion cannot measure, such as `polls_per_admission` or `p99_ns`.
///
/// Appends one JSON object per line to `extra.jsonl` in the folder `cargo xtask bench` names; outside
/// xtask (plain `cargo bench`) the figure is printed to standard error instead.
pub fn record_extra(concern: &str, workload: &str, contender: &str, metric: &str, value: f64) {
    let line = serde_json::json!({
        "concern": concern,
        "workload": workload,
        "contender": contender,
        "metric": metric,
        "value": value,
    });
    match std::env::var_os(REPORT_DIR_ENV) {
        Some(folder) => {
            let path = std::path::Path::new(&folder).join("extra.jsonl");
            let written = std::fs::create_dir_all(&folder).and_then(|()| {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                writeln!(file, "{line}")
            });
            if let Err(error) = written {
                eprintln!("could not record {line} in {}: {error}", path.display());
            }
        }
        None => eprintln!("extra figure: {line}"),
    }
}

/// The median, over `pairs` back-to-back runs of `first` and `second`, of the ratio of their times.
///
/// Alternating the two cancels most of the drift of a shared, noisy machine, which criterion's medians, taken
/// one contender after another and minutes apart, do not; the order within a pair alternates too, so neither
/// side always runs on a cache the other just warmed.
pub fn paired_ratio<A: Future, B: Future>(
    runtime: &tokio::runtime::Runtime,
    pairs: usize,
    mut first: impl FnMut() -> A,
    mut second: impl FnMut() -> B,
) -> f64 {
    let mut time_first = || {
        let start = std::time::Instant::now();
        std::hint::black_box(runtime.block_on(first()));
        start.elapsed().as_secs_f64()
    };
    let mut time_second = || {
        let start = std::time::Instant::now();
        std::hint::black_box(runtime.block_on(second()));
        start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE)
    };
    let ratios: Vec<f64> = (0..pairs)
        .map(|pair| {
            if pair % 2 == 0 {
                let first_time = time_first();
                first_time / time_second()
            } else {
                let second_time = time_second();
                time_first() / second_time
            }
        })
        .collect();
    median(ratios)
}

/// The median of `values` (the upper one of the middle two for an even count); NaN when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The value at quantile `q` (0.0 to 1.0) of `samples`, sorting them in place; `None` when empty.
pub fn quantile(samples: &mut [u64], q: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let last = samples.len() - 1;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    // A quantile index is within 0..=last, which fits in usize.
    let index = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
    Some(samples[index.min(last)])
}
