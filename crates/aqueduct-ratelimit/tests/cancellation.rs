//! Cancellation at every await point: dropped waiters leak no permit, refund their booking when they are last,
//! and a churn of thousands of randomly dropped waiters conserves every permit exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aqueduct_ratelimit::{KeyedRateLimiter, Limited, Limiter, Peek, Quota, Rate};
use aqueduct_testkit::{CallCounter, DropCounter};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn dropping_a_waiter_for_a_concurrency_slot_takes_nothing() {
    let limiter = Limiter::concurrency(1).unwrap();
    let held = limiter.try_acquire::<()>().unwrap();
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    drop(waiting);
    drop(held);
    assert_eq!(limiter.available_permits(), Some(1));
    let again = limiter.acquire::<()>().await.unwrap();
    assert_eq!(limiter.available_permits(), Some(0));
    drop(again);
    assert_eq!(limiter.available_permits(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_queued_waiter_takes_nothing() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 1).unwrap();
    limiter.try_acquire::<()>().unwrap();
    let before = limiter.peek(1);
    assert_eq!(before, Peek::RateLimited { retry_after: Duration::from_millis(100) });
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    assert_eq!(limiter.peek(1), Peek::RateLimited { retry_after: Duration::from_millis(200) });
    drop(waiting);
    assert_eq!(limiter.peek(1), before);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_combined_waiter_during_its_rate_wait_returns_the_concurrency_slot() {
    let limiter = Limiter::builder().max_concurrent(2).rate(Rate::per_second(10)).build().unwrap();
    let first = limiter.acquire::<()>().await.unwrap();
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    assert_eq!(
        limiter.available_permits(),
        Some(0),
        "it holds its slot while it waits for the rate"
    );
    drop(waiting);
    assert_eq!(limiter.available_permits(), Some(1));
    assert_eq!(limiter.peek(1), Peek::RateLimited { retry_after: Duration::from_millis(100) });
    drop(first);
    assert_eq!(limiter.available_permits(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_combined_waiter_during_its_concurrency_wait_books_nothing() {
    let limiter =
        Limiter::builder().max_concurrent(1).rate(Rate::per_second(10)).burst(2).build().unwrap();
    let held = limiter.acquire::<()>().await.unwrap();
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    drop(waiting);
    assert_eq!(limiter.available_tokens(), Some(1));
    drop(held);
    assert_eq!(limiter.available_permits(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_queued_waiters_dropped_restore_the_state_exactly() {
    let limiter = Limiter::rate_limit(Rate::per_second(1_000), 5).unwrap();
    limiter.try_acquire_n::<()>(5).unwrap();
    let before = limiter.peek(1);
    let mut waiters = Vec::new();
    for weight in 1..=1_000 {
        let mut waiter = Box::pin(limiter.acquire_n::<()>(weight % 5 + 1));
        assert!(futures::poll!(&mut waiter).is_pending());
        waiters.push(waiter);
    }
    assert_eq!(limiter.waiting(), 1_000);
    // Drop them in a shuffled order: every one leaves exactly what it took, nothing.
    let mut rng = fastrand::Rng::with_seed(3);
    rng.shuffle(&mut waiters);
    drop(waiters);
    assert_eq!(limiter.waiting(), 0);
    assert_eq!(limiter.peek(1), before);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_middle_waiter_gives_its_place_to_the_waiters_behind_it() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 1).unwrap();
    limiter.try_acquire::<()>().unwrap();
    let start = Instant::now();
    let mut first = Box::pin(limiter.acquire::<()>());
    let mut middle = Box::pin(limiter.acquire::<()>());
    let mut last = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut middle).is_pending());
    assert!(futures::poll!(&mut last).is_pending());
    drop(middle);
    first.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    last.await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200),
        "the last waiter moved up into the freed slot"
    );
    assert_eq!(limiter.waiting(), 0);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(limiter.available_tokens(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_churn_of_thousands_of_randomly_dropped_waiters_conserves_every_permit() {
    const MAX_CONCURRENT: usize = 8;
    const BURST: u32 = 10;
    let limiter = Limiter::builder()
        .max_concurrent(MAX_CONCURRENT)
        .rate(Rate::per_second(1_000))
        .burst(BURST)
        .build()
        .unwrap();
    let calls = CallCounter::new();
    let work = DropCounter::new();
    let admitted = Arc::new(AtomicU64::new(0));
    let cancelled = Arc::new(AtomicU64::new(0));
    let mut rng = fastrand::Rng::with_seed(42);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..5_000 {
        let limiter = limiter.clone();
        let (calls, work) = (calls.clone(), work.clone());
        let (admitted, cancelled) = (Arc::clone(&admitted), Arc::clone(&cancelled));
        let patience = Duration::from_micros(rng.u64(0..20_000));
        let arrival = Duration::from_micros(rng.u64(0..2_000_000));
        let hold = Duration::from_micros(rng.u64(0..5_000));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(arrival).await;
            tokio::select! {
                permit = limiter.acquire::<()>() => {
                    let _permit = permit.unwrap();
                    let _in_flight = calls.enter();
                    let _work = work.guard();
                    admitted.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(hold).await;
                }
                () = tokio::time::sleep(patience) => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let cancelled = cancelled.load(Ordering::Relaxed);
    assert_eq!(admitted + cancelled, 5_000);
    assert!(cancelled > 100, "the churn must drop waiters: only {cancelled} were");
    assert!(admitted > 100, "the churn must admit callers: only {admitted} were");
    // Exact conservation of concurrency permits: all back, never more than the limit out.
    assert_eq!(limiter.available_permits(), Some(MAX_CONCURRENT));
    assert!(calls.peak() <= MAX_CONCURRENT);
    assert_eq!(calls.in_flight(), 0);
    assert_eq!(work.alive(), 0);
    // The rate was never exceeded.
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap();
    assert!(admitted <= u64::from(BURST) + elapsed_ms, "{admitted} admitted in {elapsed_ms} ms");
    assert_eq!(limiter.waiting(), 0);
    // And no rate capacity leaked: once idle, the bucket is full again.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(limiter.available_tokens(), Some(u64::from(BURST)));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_limited_call_mid_flight_drops_the_call_and_returns_the_permit() {
    let limited = Limited::new((), Limiter::concurrency(1).unwrap());
    let drops = DropCounter::new();
    let guard_source = drops.clone();
    let mut call = Box::pin(limited.call(move |()| async move {
        let _guard = guard_source.guard();
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, std::io::Error>(())
    }));
    assert!(futures::poll!(&mut call).is_pending());
    assert_eq!(limited.limiter().available_permits(), Some(0));
    assert_eq!(drops.alive(), 1);
    drop(call);
    assert_eq!(drops.alive(), 0);
    assert_eq!(limited.limiter().available_permits(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_keyed_waiter_refunds_the_key_when_it_is_last() {
    let limiter =
        KeyedRateLimiter::builder(Quota::new(Rate::per_second(10), 1).unwrap()).build().unwrap();
    limiter.try_acquire::<()>(&"k").unwrap();
    let before = limiter.peek(&"k", 1);
    let mut waiting = Box::pin(limiter.acquire::<()>("k"));
    assert!(futures::poll!(&mut waiting).is_pending());
    assert_ne!(limiter.peek(&"k", 1), before);
    drop(waiting);
    assert_eq!(limiter.peek(&"k", 1), before);
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_waiter_granted_but_dropped_before_its_next_poll_passes_the_slot_on() {
    let limiter = Limiter::concurrency(1).unwrap();
    let held = limiter.try_acquire::<()>().unwrap();
    let mut first = Box::pin(limiter.acquire::<()>());
    let mut second = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    // The slot goes to `first`, which is dropped before it sees it: the slot moves on to `second`.
    drop(held);
    drop(first);
    let permit = second.await.unwrap();
    assert_eq!(limiter.available_permits(), Some(0));
    drop(permit);
    assert_eq!(limiter.available_permits(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_waiter_whose_deadline_passes_leaves_the_queue_and_takes_nothing() {
    let limiter = Limiter::concurrency(2).unwrap();
    let held = limiter.try_acquire_n::<()>(2).unwrap();
    let start = Instant::now();
    let error = limiter.acquire::<()>().within(Duration::from_millis(30)).await.unwrap_err();
    assert!(error.is_elapsed(), "{error:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    drop(held);
    assert_eq!(limiter.available_permits(), Some(2));
    assert_eq!(limiter.try_acquire_n::<()>(2).unwrap().weight(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_churn_of_weighted_concurrency_waiters_dropped_at_random_conserves_every_slot() {
    const MAX_CONCURRENT: usize = 8;
    let limiter = Limiter::concurrency(MAX_CONCURRENT).unwrap();
    let in_use = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let cancelled = Arc::new(AtomicU64::new(0));
    let mut rng = fastrand::Rng::with_seed(11);
    let mut tasks = Vec::new();
    for _ in 0..5_000 {
        let limiter = limiter.clone();
        let (in_use, peak) = (Arc::clone(&in_use), Arc::clone(&peak));
        let (admitted, cancelled) = (Arc::clone(&admitted), Arc::clone(&cancelled));
        let weight = rng.u32(1..=4);
        let patience = Duration::from_micros(rng.u64(0..3_000));
        let arrival = Duration::from_micros(rng.u64(0..1_000_000));
        let hold = Duration::from_micros(rng.u64(0..2_000));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(arrival).await;
            tokio::select! {
                permit = limiter.acquire_n::<()>(weight) => {
                    let _permit = permit.unwrap();
                    let now = in_use.fetch_add(u64::from(weight), Ordering::SeqCst) + u64::from(weight);
                    peak.fetch_max(now, Ordering::SeqCst);
                    admitted.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(hold).await;
                    in_use.fetch_sub(u64::from(weight), Ordering::SeqCst);
                }
                () = tokio::time::sleep(patience) => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let cancelled = cancelled.load(Ordering::Relaxed);
    assert_eq!(admitted + cancelled, 5_000);
    assert!(cancelled > 100, "the churn must drop waiters: only {cancelled} were");
    assert!(admitted > 100, "the churn must admit callers: only {admitted} were");
    assert!(peak.load(Ordering::SeqCst) <= MAX_CONCURRENT as u64);
    assert_eq!(in_use.load(Ordering::SeqCst), 0);
    assert_eq!(limiter.available_permits(), Some(MAX_CONCURRENT));
    assert_eq!(limiter.try_acquire_n::<()>(8).unwrap().weight(), 8);
}
