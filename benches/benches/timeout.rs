//! Benchmarks of aqueduct-timeout against `tokio::time::timeout` and no timeout at all.
//!
//! Workloads (one criterion group each):
//! - `timeout/ready future`: a future ready on its first poll; measures the fixed cost of a timeout.
//! - `timeout/future that yields once`: a future that returns `Pending` once, so the timer is registered
//!   and cancelled.
//! - `timeout/ready future, deadline given`: the `timeout_at` forms, where aqueduct reads no clock.
//!
//! Contenders: `aqueduct`, `tokio` and `baseline` (the bare future), on a current-thread runtime so the
//! figures measure per-call overhead rather than cross-thread noise.
//!
//! Every contender's output is consumed the same way, as a caller would: matched into a `u64` that goes
//! through `black_box`. Passing the whole `Result` to `black_box` instead would measure moving it through
//! criterion's temporaries, which is not the same size for everyone: aqueduct's error carries a 56-byte
//! `Elapsed` (the configured timeout, the deadline, the measured wait), tokio's `Elapsed` is empty.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::time::Instant;

const GENEROUS: Duration = Duration::from_secs(60);

/// Returns `Pending` once (waking itself at once), then `Ready(value)`.
struct YieldOnce {
    value: u64,
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<u64> {
        if self.yielded {
            return Poll::Ready(self.value);
        }
        self.yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_once(value: u64) -> YieldOnce {
    YieldOnce { value, yielded: false }
}

/// What a caller does with a timeout's result: the value, or a fallback on timeout.
#[inline(always)]
fn consume<E>(result: Result<u64, E>) -> u64 {
    result.unwrap_or(u64::MAX)
}

fn ready_future(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let mut group = criterion.benchmark_group("timeout/ready future");
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let ready = std::future::ready(black_box(1_u64));
            black_box(consume(aqueduct_timeout::timeout(black_box(GENEROUS), ready).await))
        });
    });
    group.bench_function("tokio", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let ready = std::future::ready(black_box(1_u64));
            black_box(consume(tokio::time::timeout(black_box(GENEROUS), ready).await))
        });
    });
    group.bench_function("baseline", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { black_box(std::future::ready(black_box(1_u64)).await) });
    });
    group.finish();
}

fn future_that_yields_once(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    let mut group = criterion.benchmark_group("timeout/future that yields once");
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            black_box(consume(
                aqueduct_timeout::timeout(black_box(GENEROUS), yield_once(black_box(1))).await,
            ))
        });
    });
    group.bench_function("tokio", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            black_box(consume(
                tokio::time::timeout(black_box(GENEROUS), yield_once(black_box(1))).await,
            ))
        });
    });
    group.bench_function("baseline", |bencher| {
        bencher.to_async(&runtime).iter(|| async { black_box(yield_once(black_box(1)).await) });
    });
    group.finish();
}

fn ready_future_deadline_given(criterion: &mut Criterion) {
    let runtime = benches::current_thread_runtime();
    // One deadline shared by every call, as a request handler or a retry loop would.
    let deadline = runtime.block_on(async { Instant::now() + Duration::from_secs(3_600) });
    let mut group = criterion.benchmark_group("timeout/ready future, deadline given");
    group.bench_function("aqueduct", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let ready = std::future::ready(black_box(1_u64));
            black_box(consume(aqueduct_timeout::timeout_at(black_box(deadline), ready).await))
        });
    });
    group.bench_function("tokio", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let ready = std::future::ready(black_box(1_u64));
            black_box(consume(tokio::time::timeout_at(black_box(deadline), ready).await))
        });
    });
    group.bench_function("baseline", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { black_box(std::future::ready(black_box(1_u64)).await) });
    });
    group.finish();
}

criterion_group! {
    name = timeout;
    config = benches::criterion();
    targets = ready_future, future_that_yields_once, ready_future_deadline_given
}
criterion_main!(timeout);
