//! Exact delay sequences for every backoff and jitter, measured on paused time with a seeded RNG.

use std::time::Duration;

use aqueduct_retry::{Backoff, Error, Jitter, RetryPolicy, retry, retry_blocking};
use tokio::time::Instant;

/// Runs an always-failing operation under `policy` on paused time and returns the measured sleeps
/// (the time between the end of one attempt and the start of the next) and the delays the hook reported.
async fn measured_delays(policy: &RetryPolicy) -> (Vec<Duration>, Vec<Duration>) {
    let mut starts = Vec::new();
    let mut reported = Vec::new();
    let result: Result<(), Error<&str>> = retry(policy, || {
        starts.push(Instant::now());
        async { Err("down") }
    })
    .notify(|state| reported.push(state.next_delay))
    .await;
    assert!(result.unwrap_err().is_exhausted());
    let measured = starts.windows(2).map(|pair| pair[1] - pair[0]).collect();
    (measured, reported)
}

fn policy(
    backoff: Backoff,
    jitter: Jitter,
    attempts: u32,
    cap: Duration,
    seed: u64,
) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(backoff)
        .jitter(jitter)
        .max_attempts(attempts)
        .max_delay(cap)
        .seed(seed)
        .build()
        .expect("valid policy")
}

fn millis(values: &[u64]) -> Vec<Duration> {
    values.iter().copied().map(Duration::from_millis).collect()
}

#[tokio::test(start_paused = true)]
async fn constant_backoff_sleeps_the_same_delay_every_time() {
    let policy = policy(
        Backoff::Constant { delay: Duration::from_millis(250) },
        Jitter::None,
        5,
        Duration::from_secs(1),
        1,
    );
    let (measured, reported) = measured_delays(&policy).await;
    assert_eq!(measured, millis(&[250, 250, 250, 250]));
    assert_eq!(reported, measured);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_up_to_the_cap() {
    let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
    let policy = policy(backoff, Jitter::None, 8, Duration::from_secs(3), 1);
    let (measured, reported) = measured_delays(&policy).await;
    assert_eq!(measured, millis(&[100, 200, 400, 800, 1600, 3000, 3000]));
    assert_eq!(reported, measured);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_with_a_fractional_factor() {
    let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 1.5 };
    let policy = policy(backoff, Jitter::None, 5, Duration::from_secs(10), 1);
    let (measured, reported) = measured_delays(&policy).await;
    let expected = [100_000, 150_000, 225_000, 337_500].map(Duration::from_micros);
    assert_eq!(reported, expected);
    // tokio's timer wheel rounds 337.5 ms up to the next millisecond.
    assert_eq!(measured, millis(&[100, 150, 225, 338]));
}

#[tokio::test(start_paused = true)]
async fn fibonacci_backoff_follows_the_sequence_up_to_the_cap() {
    let policy = policy(
        Backoff::Fibonacci { initial: Duration::from_millis(10) },
        Jitter::None,
        10,
        Duration::from_millis(200),
        1,
    );
    let (measured, _) = measured_delays(&policy).await;
    assert_eq!(measured, millis(&[10, 10, 20, 30, 50, 80, 130, 200, 200]));
}

/// The base delays of an exponential backoff from 100 ms with a 1 s cap, in nanoseconds.
const BASES_NANOS: [u64; 6] =
    [100_000_000, 200_000_000, 400_000_000, 800_000_000, 1_000_000_000, 1_000_000_000];

#[tokio::test(start_paused = true)]
async fn full_jitter_draws_uniformly_below_the_backoff() {
    let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
    let policy = policy(backoff, Jitter::Full, 7, Duration::from_secs(1), 42);
    let (measured, reported) = measured_delays(&policy).await;
    let mut rng = fastrand::Rng::with_seed(42);
    let expected: Vec<Duration> =
        BASES_NANOS.iter().map(|&base| Duration::from_nanos(rng.u64(0..=base))).collect();
    assert_eq!(reported, expected);
    // Paused time rounds each sleep up to the next millisecond tick at most.
    for (measured, expected) in measured.iter().zip(&expected) {
        assert!(
            *measured >= *expected && *measured <= *expected + Duration::from_millis(1),
            "{measured:?} vs {expected:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn equal_jitter_keeps_at_least_half_the_backoff() {
    let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
    let policy = policy(backoff, Jitter::Equal, 7, Duration::from_secs(1), 7);
    let (_, reported) = measured_delays(&policy).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let expected: Vec<Duration> = BASES_NANOS
        .iter()
        .map(|&base| {
            let half = base / 2;
            Duration::from_nanos(half + rng.u64(0..=base - half))
        })
        .collect();
    assert_eq!(reported, expected);
}

#[tokio::test(start_paused = true)]
async fn decorrelated_jitter_grows_from_the_previous_delay_and_respects_the_cap() {
    let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
    let cap = Duration::from_secs(1);
    let policy = policy(backoff, Jitter::Decorrelated, 9, cap, 3);
    let (_, reported) = measured_delays(&policy).await;
    let mut rng = fastrand::Rng::with_seed(3);
    let initial = 100_000_000_u64;
    let mut previous = initial;
    let expected: Vec<Duration> = (0..8)
        .map(|_| {
            let drawn = rng.u64(initial..=previous.max(initial) * 3).min(1_000_000_000);
            previous = drawn;
            Duration::from_nanos(drawn)
        })
        .collect();
    assert_eq!(reported, expected);
    assert!(reported.iter().all(|delay| *delay <= cap && *delay >= Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_sequence_and_another_seed_differs() {
    let backoff = Backoff::Exponential { initial: Duration::from_millis(100), factor: 2.0 };
    let first =
        measured_delays(&policy(backoff, Jitter::Full, 6, Duration::from_secs(5), 11)).await.1;
    let again =
        measured_delays(&policy(backoff, Jitter::Full, 6, Duration::from_secs(5), 11)).await.1;
    let other =
        measured_delays(&policy(backoff, Jitter::Full, 6, Duration::from_secs(5), 12)).await.1;
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn the_blocking_loop_sleeps_the_same_sequence() {
    let backoff = Backoff::Fibonacci { initial: Duration::from_millis(5) };
    let policy = policy(backoff, Jitter::None, 6, Duration::from_secs(1), 1);
    let mut slept = Vec::new();
    let result: Result<(), Error<&str>> =
        retry_blocking(&policy, || Err("down")).sleep_with(|delay| slept.push(delay)).call();
    assert!(result.unwrap_err().is_exhausted());
    assert_eq!(slept, millis(&[5, 5, 10, 15, 25]));
}
