//! Accuracy of the GCRA rate limit on paused tokio time: long-run rate, burst, retry-after values, extreme rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aqueduct_ratelimit::{Limiter, Rate};
use proptest::prelude::*;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn sixty_simulated_seconds_at_1000_per_second_admit_within_a_tenth_of_a_percent() {
    let limiter = Limiter::rate_limit(Rate::per_second(1_000), 1).unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let limiter = limiter.clone();
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    permit = limiter.acquire::<()>() => {
                        permit.unwrap();
                        if Instant::now() <= end {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    () = tokio::time::sleep_until(end) => break,
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let expected = 60_000_f64;
    #[allow(clippy::cast_precision_loss)] // 60 000 fits exactly in an f64.
    let error = (admitted as f64 - expected).abs() / expected;
    assert!(
        error < 0.001,
        "admitted {admitted} in 60 s at 1000/s, an error of {:.4} %",
        error * 100.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_bucket_admits_exactly_the_burst_then_one_per_interval() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 5).unwrap();
    for _ in 0..5 {
        limiter.try_acquire::<()>().unwrap();
    }
    let refused = limiter.try_acquire::<()>().unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    tokio::time::advance(Duration::from_millis(99)).await;
    assert_eq!(
        limiter.try_acquire::<()>().unwrap_err().retry_after(),
        Some(Duration::from_millis(1))
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    limiter.try_acquire::<()>().unwrap();
    // After a long idle time the bucket holds the burst, never more.
    tokio::time::advance(Duration::from_secs(3_600)).await;
    assert_eq!(limiter.available_tokens(), Some(5));
    for _ in 0..5 {
        limiter.try_acquire::<()>().unwrap();
    }
    assert!(limiter.try_acquire::<()>().is_err());
}

#[tokio::test(start_paused = true)]
async fn initial_tokens_zero_starts_empty() {
    let limiter =
        Limiter::builder().rate(Rate::per_second(10)).burst(5).initial_tokens(0).build().unwrap();
    assert_eq!(
        limiter.try_acquire::<()>().unwrap_err().retry_after(),
        Some(Duration::from_millis(100))
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(limiter.available_tokens(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn a_weighted_refusal_says_when_all_its_tokens_are_there() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 10).unwrap();
    limiter.try_acquire_n::<()>(10).unwrap();
    let refused = limiter.try_acquire_n::<()>(4).unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(400)));
    let too_large = limiter.try_acquire_n::<()>(11).unwrap_err();
    assert!(
        matches!(too_large, aqueduct_ratelimit::Error::ContractViolation { .. }),
        "{too_large:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn extreme_rates_work_from_one_per_day_to_a_billion_per_second() {
    let daily = Limiter::rate_limit(Rate::per_day(1), 1).unwrap();
    daily.try_acquire::<()>().unwrap();
    assert_eq!(
        daily.try_acquire::<()>().unwrap_err().retry_after(),
        Some(Duration::from_secs(86_400))
    );
    tokio::time::advance(Duration::from_secs(86_400)).await;
    daily.try_acquire::<()>().unwrap();

    let fastest = Limiter::rate_limit(Rate::per_second(1_000_000_000), 1_000).unwrap();
    fastest.try_acquire_n::<()>(1_000).unwrap();
    assert_eq!(
        fastest.try_acquire::<()>().unwrap_err().retry_after(),
        Some(Duration::from_nanos(1))
    );
    tokio::time::advance(Duration::from_micros(1)).await;
    assert_eq!(fastest.available_tokens(), Some(1_000));
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Draining greedily from the start and at least once per interval admits exactly
    /// `burst + elapsed / interval` calls (with a burst of 2 or more the bucket never caps in between), and
    /// every retry-after is what a peek reports and at most one interval.
    #[test]
    fn greedy_draining_admits_exactly_burst_plus_elapsed_over_interval(
        per_second in 1_u64..=1_000_000,
        burst in 2_u32..=50,
        steps in proptest::collection::vec(0.0_f64..=1.0, 1..40),
    ) {
        paused_runtime().block_on(async {
            let limiter = Limiter::rate_limit(Rate::per_second(per_second), burst).unwrap();
            let interval = 1_000_000_000 / per_second;
            let start = Instant::now();
            let mut admitted = 0_u64;
            while limiter.try_acquire::<()>().is_ok() {
                admitted += 1;
            }
            prop_assert_eq!(admitted, u64::from(burst));
            for fraction in steps {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
                let step = (interval as f64 * fraction) as u64;
                tokio::time::advance(Duration::from_nanos(step)).await;
                let retry_after = loop {
                    match limiter.try_acquire::<()>() {
                        Ok(_) => admitted += 1,
                        Err(error) => break error.retry_after().unwrap(),
                    }
                };
                let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap();
                prop_assert_eq!(admitted, u64::from(burst) + elapsed / interval);
                prop_assert!(retry_after > Duration::ZERO);
                prop_assert!(retry_after <= Duration::from_nanos(interval));
                let earlier = limiter.peek(1);
                prop_assert_eq!(earlier, aqueduct_ratelimit::Peek::RateLimited { retry_after });
            }
            Ok(())
        })?;
    }

    /// Whatever the request pattern, no window admits more than `burst + window / interval` tokens.
    #[test]
    fn no_window_admits_more_than_burst_plus_rate(
        per_second in 1_u64..=10_000,
        burst in 1_u32..=20,
        requests in proptest::collection::vec((0_u64..=2_000_000, 1_u32..=5), 1..200),
    ) {
        paused_runtime().block_on(async {
            let limiter = Limiter::rate_limit(Rate::per_second(per_second), burst).unwrap();
            let interval = 1_000_000_000 / per_second;
            let start = Instant::now();
            let mut admissions: Vec<(u64, u64)> = Vec::new();
            for (gap, weight) in requests {
                tokio::time::advance(Duration::from_nanos(gap)).await;
                if limiter.try_acquire_n::<()>(weight.min(burst)).is_ok() {
                    let at = u64::try_from(start.elapsed().as_nanos()).unwrap();
                    admissions.push((at, u64::from(weight.min(burst))));
                }
            }
            for (index, (from, _)) in admissions.iter().enumerate() {
                let mut in_window = 0;
                for (at, weight) in &admissions[index..] {
                    in_window += weight;
                    let span = at - from;
                    prop_assert!(in_window <= u64::from(burst) + span / interval,
                        "{} tokens within {} ns", in_window, span);
                }
            }
            Ok(())
        })?;
    }
}
