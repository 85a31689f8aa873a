//! The two backends: in place borrows and needs neither `'static` nor `Send`; spawned runs in parallel, in order.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct_core::{current_deadline, with_deadline};
use aqueduct_gather::{Error, gather};
use tokio::time::{Instant, sleep};

#[tokio::test(start_paused = true)]
async fn in_place_borrows_local_state_without_static_or_send() {
    let words = ["alpha".to_owned(), "beta".to_owned(), "gamma".to_owned()];
    // `Rc<Cell<_>>` is neither `Send` nor `Sync`: fine in place, on one task.
    let calls = Rc::new(Cell::new(0));
    let lengths: Vec<Result<usize, Error<()>>> = gather(words.iter().map(|word| {
        let calls = Rc::clone(&calls);
        async move {
            sleep(Duration::from_millis(word.len() as u64)).await;
            calls.set(calls.get() + 1);
            Ok::<_, ()>(word.len())
        }
    }))
    .await;
    assert_eq!(calls.get(), 3);
    assert_eq!(lengths.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [5, 4, 5]);
    // `words` is still ours: it was only borrowed.
    assert_eq!(words.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn in_place_with_many_children_uses_per_child_wakeups_and_keeps_order() {
    let count = 500_u64;
    let results: Vec<Result<u64, Error<()>>> = gather((0..count).map(|n| async move {
        sleep(Duration::from_millis((count - n) % 17)).await;
        tokio::task::yield_now().await;
        Ok::<_, ()>(n)
    }))
    .await;
    assert!(
        results
            .into_iter()
            .enumerate()
            .all(|(position, result)| result.ok() == Some(position as u64))
    );
}

#[tokio::test(start_paused = true)]
async fn spawned_returns_results_in_input_order() {
    let delays = [40_u64, 10, 30, 20];
    let results: Vec<Result<u64, Error<()>>> = gather(delays.map(|ms| async move {
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, ()>(ms)
    }))
    .spawned()
    .await;
    assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), delays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_children_run_in_parallel() {
    // Each child blocks its thread until the other one has started: only parallel execution completes.
    let arrived = Arc::new(AtomicUsize::new(0));
    let results: Vec<Result<bool, Error<()>>> = gather((0..2).map(|_| {
        let arrived = Arc::clone(&arrived);
        async move {
            arrived.fetch_add(1, Ordering::SeqCst);
            let give_up = std::time::Instant::now() + Duration::from_secs(10);
            while arrived.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < give_up {
                std::hint::spin_loop();
            }
            Ok::<_, ()>(arrived.load(Ordering::SeqCst) == 2)
        }
    }))
    .spawned()
    .await;
    assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [true, true]);
}

#[tokio::test(start_paused = true)]
async fn spawned_children_inherit_the_ambient_deadline() {
    let at = Instant::now() + Duration::from_secs(2);
    let seen: Vec<Result<Option<Instant>, Error<()>>> = with_deadline(
        at,
        gather((0..3).map(|_| async { Ok::<_, ()>(current_deadline()) })).spawned(),
    )
    .await;
    assert!(seen.into_iter().all(|deadline| deadline.ok() == Some(Some(at))));
}
