//! FIFO admission: arrival order is admission order, large requests are not starved, waiters are polled twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_ratelimit::{Limiter, Rate};
use tokio::time::Instant;

/// Counts how often the wrapped future is polled.
struct CountPolls<F> {
    future: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.future.as_mut().poll(context)
    }
}

/// Starts one waiter per weight, in order (each polled once, so it has arrived), then drives them all and
/// returns each one's admission time and the total number of polls.
async fn admit_in_order(limiter: &Limiter, weights: &[u32]) -> (Vec<Instant>, usize) {
    let polls = Arc::new(AtomicUsize::new(0));
    let mut pending = Vec::new();
    let mut admitted_at = vec![None; weights.len()];
    for (index, &weight) in weights.iter().enumerate() {
        let limiter = limiter.clone();
        let mut future = CountPolls {
            future: Box::pin(async move {
                let _permit = limiter.acquire_n::<()>(weight).await.unwrap();
                Instant::now()
            }),
            polls: Arc::clone(&polls),
        };
        match futures::poll!(&mut future) {
            Poll::Ready(at) => admitted_at[index] = Some(at),
            Poll::Pending => pending.push(async move { (index, future.await) }),
        }
    }
    for (index, at) in futures::future::join_all(pending).await {
        admitted_at[index] = Some(at);
    }
    (admitted_at.into_iter().map(Option::unwrap).collect(), polls.load(Ordering::Relaxed))
}

fn inversions(admitted_at: &[Instant]) -> usize {
    let mut count = 0;
    for (index, earlier) in admitted_at.iter().enumerate() {
        count += admitted_at[index + 1..].iter().filter(|later| *later < earlier).count();
    }
    count
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_waiters_are_admitted_in_arrival_order_with_a_constant_number_of_polls() {
    let limiter = Limiter::rate_limit(Rate::per_second(1_000), 1).unwrap();
    let weights = vec![1; 10_000];
    let start = Instant::now();
    let (admitted_at, polls) = admit_in_order(&limiter, &weights).await;
    assert_eq!(inversions(&admitted_at), 0);
    // One admission per millisecond: the last one 9.999 s after the first.
    assert_eq!(admitted_at[9_999] - start, Duration::from_millis(9_999));
    // Per waiter: one poll to arrive, one when `join_all` takes it over with its own waker, one when it
    // becomes the head of the queue (it arms its timer), one when its timer fires. No waiter is woken only
    // to find that another took its tokens, whatever the number of waiters.
    assert!(polls <= 4 * weights.len(), "{polls} polls for {} waiters", weights.len());
}

#[tokio::test(start_paused = true)]
async fn a_large_request_is_not_starved_by_small_ones() {
    let limiter = Limiter::rate_limit(Rate::per_second(1_000), 50).unwrap();
    let _drained = limiter.try_acquire_n::<()>(50).unwrap();
    let mut weights = vec![1; 500];
    weights[100] = 50;
    let start = Instant::now();
    let (admitted_at, _) = admit_in_order(&limiter, &weights).await;
    assert_eq!(inversions(&admitted_at), 0);
    // The 100 small calls ahead of it take 100 ms, then its 50 tokens accrue in 50 ms; every later
    // small call waits behind it instead of slipping ahead.
    assert_eq!(admitted_at[99] - start, Duration::from_millis(100));
    assert_eq!(admitted_at[100] - start, Duration::from_millis(150));
    assert!(admitted_at[101] > admitted_at[100]);
}

#[tokio::test(start_paused = true)]
async fn mixed_weights_never_overtake() {
    let limiter = Limiter::rate_limit(Rate::per_second(1_000), 20).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let weights: Vec<u32> = (0..2_000).map(|_| rng.u32(1..=20)).collect();
    let (admitted_at, _) = admit_in_order(&limiter, &weights).await;
    assert_eq!(inversions(&admitted_at), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrency_waiters_are_served_in_arrival_order() {
    let limiter = Limiter::concurrency(1).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = limiter.try_acquire::<()>().unwrap();
    let mut pending = Vec::new();
    for index in 0..100 {
        let limiter = limiter.clone();
        let order = Arc::clone(&order);
        let mut future = Box::pin(async move {
            let _permit = limiter.acquire::<()>().await.unwrap();
            order.lock().unwrap().push(index);
            tokio::time::sleep(Duration::from_millis(1)).await;
        });
        assert!(futures::poll!(&mut future).is_pending());
        pending.push(future);
    }
    drop(held);
    futures::future::join_all(pending).await;
    assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn the_combined_limit_holds_both_bounds() {
    let limiter =
        Limiter::builder().max_concurrent(3).rate(Rate::per_second(100)).burst(5).build().unwrap();
    let calls = aqueduct_testkit::CallCounter::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let limiter = limiter.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limiter.acquire::<()>().await.unwrap();
            let _in_flight = calls.enter();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(calls.calls(), 50);
    assert_eq!(calls.peak(), 3);
    // With 3 in flight for 50 ms each, concurrency (60/s) binds before the rate (100/s).
    assert!(start.elapsed() >= Duration::from_millis(50 * 50 / 3), "{:?}", start.elapsed());
    assert_eq!(limiter.available_permits(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_large_concurrency_request_is_not_starved_and_try_acquire_never_jumps_the_queue() {
    let limiter = Limiter::concurrency(4).unwrap();
    let held: Vec<_> = (0..4).map(|_| limiter.try_acquire::<()>().unwrap()).collect();
    let mut large = Box::pin(limiter.acquire_n::<()>(4));
    let mut small = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut large).is_pending());
    assert!(futures::poll!(&mut small).is_pending());
    let mut held = held.into_iter();
    drop(held.next());
    // A slot is free, but it is the head's: neither a `try_acquire` nor the small waiter takes it.
    assert!(limiter.try_acquire::<()>().unwrap_err().is_full());
    assert_ne!(limiter.peek(1), aqueduct_ratelimit::Peek::Admit);
    assert!(futures::poll!(&mut small).is_pending());
    drop(held);
    let large = large.await.unwrap();
    assert_eq!(large.weight(), 4);
    assert!(futures::poll!(&mut small).is_pending());
    drop(large);
    small.await.unwrap();
    assert_eq!(limiter.available_permits(), Some(4));
}

#[tokio::test(start_paused = true)]
async fn try_acquire_never_jumps_the_rate_queue_and_says_when_its_turn_would_come() {
    let limiter = Limiter::rate_limit(Rate::per_second(10), 1).unwrap();
    limiter.try_acquire::<()>().unwrap();
    let mut waiting = Box::pin(limiter.acquire::<()>());
    assert!(futures::poll!(&mut waiting).is_pending());
    // The next token (100 ms) is the waiter's; a `try` would get the one after it.
    let refused = limiter.try_acquire::<()>().unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(200)));
    tokio::time::advance(Duration::from_millis(100)).await;
    // The token is there, but the waiter has not taken it yet: still refused.
    let refused = limiter.try_acquire::<()>().unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    waiting.await.unwrap();
    let refused = limiter.try_acquire::<()>().unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
}
