//! A gather shares its worker: it yields when children keep waking themselves; pooled wakers stay correct.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use aqueduct_gather::{Error, gather};

/// Wakes itself `times` times before finishing, without ever really waiting.
async fn busy(times: usize) -> Result<usize, ()> {
    let mut left = times;
    poll_fn(|cx| {
        if left == 0 {
            return Poll::Ready(Ok(times));
        }
        left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn children_that_keep_waking_themselves_do_not_starve_other_tasks() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    for count in [10, 200] {
        let before = ticks.load(Ordering::SeqCst);
        let results: Vec<Result<usize, Error<()>>> = gather((0..count).map(|_| busy(20))).await;
        assert!(results.iter().all(|result| result.as_ref().ok() == Some(&20)));
        assert!(
            ticks.load(Ordering::SeqCst) > before,
            "another task ran while {count} busy children were gathered"
        );
    }
    ticker.abort();
}

#[tokio::test(start_paused = true)]
async fn consecutive_large_gathers_reuse_wakers_correctly() {
    for round in 0..5_usize {
        let results: Vec<Result<usize, Error<()>>> = gather((0..300).map(|n| async move {
            tokio::task::yield_now().await;
            Ok::<_, ()>(n + round)
        }))
        .await;
        assert!(results.into_iter().enumerate().all(|(n, result)| result.ok() == Some(n + round)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_waker_kept_by_a_finished_child_does_not_disturb_later_gathers() {
    let kept: Arc<Mutex<Vec<Waker>>> = Arc::default();
    let first: Vec<Result<usize, Error<()>>> = gather((0..100).map(|n| {
        let kept = Arc::clone(&kept);
        poll_fn(move |cx| {
            kept.lock().unwrap().push(cx.waker().clone());
            Poll::Ready(Ok::<_, ()>(n))
        })
    }))
    .await;
    assert_eq!(first.len(), 100);
    let second: Vec<Result<usize, Error<()>>> = gather((0..100).map(|n| async move {
        tokio::task::yield_now().await;
        Ok::<_, ()>(n)
    }))
    .await;
    // Waking the stale wakers of the first gather must not confuse anything.
    for waker in kept.lock().unwrap().drain(..) {
        waker.wake();
    }
    let third: Vec<Result<usize, Error<()>>> =
        gather((0..100).map(|n| async move { Ok::<_, ()>(n) })).await;
    assert!(
        second.into_iter().chain(third).enumerate().all(|(n, result)| result.ok() == Some(n % 100))
    );
}
