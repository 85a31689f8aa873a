//! Bounded submission: `submit` and `run` wait for room, `try_submit` rejects with `Error::Full`, and the number of
//! queued or running jobs never exceeds the capacity.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aqueduct_cpu_offload::{Backend, CpuPool, Error};
use support::{Blocker, Outcome, poll_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_submit_rejects_with_full_when_the_capacity_is_taken() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(1).capacity(2).build().unwrap();
        let blocker = Blocker::start(&pool).await;
        let queued: Outcome<_> = pool.try_submit(|| 1_u8);
        let queued = queued.unwrap();
        let rejected: Result<_, Error<std::io::Error>> = pool.try_submit(|| 2_u8);
        assert!(matches!(rejected, Err(Error::Full { capacity: 2 })), "{backend:?}");
        assert_eq!(pool.status().in_flight, 2);
        assert!(blocker.release().await);
        assert_eq!(queued.await.unwrap(), 1);
        let accepted: Outcome<_> = pool.try_submit(|| 3_u8);
        assert_eq!(accepted.unwrap().await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_waits_for_room_then_proceeds() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(1).capacity(1).build().unwrap();
        let blocker = Blocker::start(&pool).await;
        let mut waiting = pool.submit(|| 9_u8);
        let first: std::task::Poll<Outcome<_>> = poll_once(&mut waiting);
        assert!(first.is_pending(), "{backend:?}: no room yet");
        assert!(blocker.release().await);
        let handle = waiting.await.unwrap();
        assert_eq!(handle.await.unwrap(), 9);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_jobs_never_exceed_the_capacity_and_threads_never_exceed_their_count() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(2).capacity(3).build().unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak_running = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for value in 0..200_u64 {
            let pool = pool.clone();
            let (running, peak_running) = (Arc::clone(&running), Arc::clone(&peak_running));
            tasks.push(tokio::spawn(async move {
                let outcome: Outcome<u64> = pool
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak_running.fetch_max(now, Ordering::SeqCst);
                        let result = (0..1_000 + value).fold(0_u64, u64::wrapping_add);
                        running.fetch_sub(1, Ordering::SeqCst);
                        result
                    })
                    .await;
                assert!(pool.status().in_flight <= 3);
                outcome
            }));
        }
        for (value, task) in (0..200_u64).zip(tasks) {
            let expected = (0..1_000 + value).fold(0_u64, u64::wrapping_add);
            assert_eq!(task.await.unwrap().unwrap(), expected);
        }
        assert!(
            peak_running.load(Ordering::SeqCst) <= 2,
            "{backend:?}: at most `threads` jobs run at once"
        );
        assert_eq!(pool.status().in_flight, 0);
    }
}
