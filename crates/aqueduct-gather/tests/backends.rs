//! The two backends: in place borrows and needs neither `'static` nor `Send`; spawned runs in parallel, in order.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct_core::{current_deadline, with_deadline};
use aqueduct_gather::{Error, gather, gather_stream};
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

#[tokio::test(start_paused = true)]
async fn spawned_from_a_slow_stream_keeps_input_order() {
    // One future every 5 ms, each running 0 to 27 ms: some finish before later ones exist, some after.
    let source = futures::stream::unfold(0_u64, |n| async move {
        if n == 20 {
            return None;
        }
        sleep(Duration::from_millis(5)).await;
        let child = async move {
            sleep(Duration::from_millis((n * 7) % 28)).await;
            Ok::<u64, ()>(n)
        };
        Some((child, n + 1))
    });
    let results: Vec<Result<u64, Error<()>>> = gather_stream(Box::pin(source)).spawned().await;
    assert_eq!(
        results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_keeps_every_outcome_of_many_tasks_in_its_slot() {
    let results: Vec<Result<u64, Error<String>>> = gather((0..2_000_u64).map(|n| async move {
        for _ in 0..n % 3 {
            tokio::task::yield_now().await;
        }
        match n % 500 {
            7 => Err(format!("{n} failed")),
            9 => panic!("{n} panicked"),
            _ => Ok(n),
        }
    }))
    .spawned()
    .await;
    assert_eq!(results.len(), 2_000);
    for (position, result) in results.iter().enumerate() {
        match (position % 500, result) {
            (7, Err(error)) => assert_eq!(error.operation(), Some(&format!("{position} failed"))),
            (9, Err(Error::Panicked { index, message })) => {
                assert_eq!(*index, Some(position));
                assert_eq!(*message, format!("{position} panicked"));
            }
            (_, Ok(value)) => assert_eq!(*value, position as u64),
            (_, other) => panic!("unexpected outcome at {position}: {other:?}"),
        }
    }
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
