//! The lock-free admission path under real threads: compare-and-swap races never admit more than the limit.

use std::sync::atomic::{AtomicU64, Ordering};

use aqueduct_ratelimit::{KeyedRateLimiter, Limiter, Quota, Rate};

/// With one token a day and a burst of exactly 100 000, threads racing for 200 000 admissions get exactly
/// 100 000 of them: no lost update, no double spend.
#[test]
fn racing_threads_spend_the_burst_exactly_once() {
    let limiter = Limiter::rate_limit(Rate::per_day(1), 100_000).unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50_000 {
                    if limiter.try_acquire::<()>().is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 100_000);
}

#[test]
fn racing_threads_on_weighted_calls_never_overspend() {
    let limiter = Limiter::rate_limit(Rate::per_day(1), 10_007).unwrap();
    let spent = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..4_u32 {
            let (limiter, spent) = (&limiter, &spent);
            scope.spawn(move || {
                for call in 0..5_000_u32 {
                    let weight = (thread + call) % 7 + 1;
                    if limiter.try_acquire_n::<()>(weight).is_ok() {
                        spent.fetch_add(u64::from(weight), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let spent = spent.load(Ordering::Relaxed);
    assert!(spent <= 10_007, "{spent} tokens spent from a burst of 10 007");
    assert!(spent > 10_007 - 7, "{spent}: the burst was left unused");
}

#[test]
fn racing_threads_on_a_concurrency_limit_never_hold_more_than_it() {
    let limiter = Limiter::concurrency(3).unwrap();
    let held = AtomicU64::new(0);
    let peak = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20_000 {
                    if let Ok(permit) = limiter.try_acquire::<()>() {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        held.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::SeqCst) <= 3);
    assert_eq!(limiter.available_permits(), Some(3));
}

#[test]
fn racing_threads_on_one_key_spend_its_burst_exactly_once() {
    let limiter =
        KeyedRateLimiter::builder(Quota::new(Rate::per_day(1), 1_000).unwrap()).build().unwrap();
    let admitted = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1_000 {
                    if limiter.try_acquire::<()>(&"shared").is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 1_000);
}

/// Waiters on worker threads race releases, hand-overs and cancellations (a waiter dropped while queued
/// or just granted): never more than the limit held, and every slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_racing_releases_and_cancellations_on_threads_conserve_every_slot() {
    const MAX_CONCURRENT: usize = 3;
    let limiter = Limiter::concurrency(MAX_CONCURRENT).unwrap();
    let held = std::sync::Arc::new(AtomicU64::new(0));
    let admitted = std::sync::Arc::new(AtomicU64::new(0));
    let cancelled = std::sync::Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..4_u64 {
        let (limiter, held) = (limiter.clone(), held.clone());
        let (admitted, cancelled) = (admitted.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..5_000_u64 {
                let weight = u32::try_from((task + round) % 2 + 1).unwrap();
                let acquire = limiter.acquire_n::<()>(weight);
                // Every third round gives up after one yield: cancelled while queued or just granted.
                let permit = if round % 3 == 0 {
                    tokio::select! {
                        biased;
                        () = tokio::task::yield_now() => {
                            cancelled.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        permit = acquire => Some(permit.unwrap()),
                    }
                } else {
                    Some(acquire.await.unwrap())
                };
                if let Some(permit) = permit {
                    let now =
                        held.fetch_add(u64::from(weight), Ordering::SeqCst) + u64::from(weight);
                    assert!(now <= MAX_CONCURRENT as u64, "{now} slots held");
                    admitted.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    held.fetch_sub(u64::from(weight), Ordering::SeqCst);
                    drop(permit);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (admitted, cancelled) =
        (admitted.load(Ordering::Relaxed), cancelled.load(Ordering::Relaxed));
    // The two rounds in three that do not give up are all admitted.
    let waiting_rounds = 4 * (5_000 - 5_000_u64.div_ceil(3));
    assert!(admitted >= waiting_rounds, "only {admitted} admitted");
    assert!(cancelled > 0, "no waiter was cancelled while it waited");
    assert_eq!(limiter.available_permits(), Some(MAX_CONCURRENT));
    assert_eq!(limiter.try_acquire_n::<()>(3).unwrap().weight(), 3);
}
