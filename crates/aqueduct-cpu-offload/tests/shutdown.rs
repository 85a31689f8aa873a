//! Shutdown: `shutdown` waits for queued and running jobs and then rejects new ones; `shutdown_now` skips pending
//! jobs (they never run), signals the tokens of running ones and waits for them.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aqueduct_cpu_offload::{Backend, CpuPool, Error};
use aqueduct_testkit::CallCounter;
use support::{Blocker, Outcome, poll_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_queued_jobs_then_rejects_new_ones() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(1).capacity(4).build().unwrap();
        let blocker = Blocker::start(&pool).await;
        let queued: Outcome<_> = pool.try_submit(|| 11_u8);
        let queued = queued.unwrap();
        let mut stopping = Box::pin(pool.shutdown());
        assert!(poll_once(&mut stopping).is_pending(), "{backend:?}: two jobs are still in flight");
        assert!(pool.is_closed());
        let refused: Outcome<u8> = pool.run(|| 1).await;
        assert!(matches!(refused, Err(Error::Closed { reconnecting: false })));
        let refused: Result<_, Error<std::io::Error>> = pool.try_submit(|| 1_u8);
        assert!(refused.unwrap_err().is_closed());
        assert!(blocker.release().await);
        stopping.await;
        assert_eq!(queued.await.unwrap(), 11, "the queued job ran during the graceful shutdown");
        let status = pool.status();
        assert!(status.closed);
        assert_eq!(status.in_flight, 0);
        // A second shutdown returns at once.
        pool.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_waiting_for_room_gets_closed_on_shutdown() {
    let pool = CpuPool::builder().threads(1).capacity(1).build().unwrap();
    let blocker = Blocker::start(&pool).await;
    let calls = CallCounter::new();
    let job_calls = calls.clone();
    let mut waiting = pool.submit(move || job_calls.record());
    let first: std::task::Poll<Outcome<_>> = poll_once(&mut waiting);
    assert!(first.is_pending());
    let stopping = tokio::spawn({
        let pool = pool.clone();
        async move { pool.shutdown().await }
    });
    while !pool.is_closed() {
        tokio::task::yield_now().await;
    }
    assert!(blocker.release().await);
    let outcome: Outcome<_> = waiting.await;
    assert!(outcome.unwrap_err().is_closed());
    stopping.await.unwrap();
    assert_eq!(calls.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_now_skips_pending_jobs_and_stops_running_ones_cooperatively() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(1).capacity(4).build().unwrap();
        let (started, has_started) = tokio::sync::oneshot::channel::<()>();
        let stopped_by_token = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stopped_by_token);
        let running = tokio::spawn({
            let pool = pool.clone();
            async move {
                let outcome: Outcome<u32> = pool
                    .run_cancellable(move |token| {
                        let _ = started.send(());
                        let mut steps = 0_u32;
                        while !token.is_cancelled() {
                            steps = steps.wrapping_add(1);
                            std::hint::spin_loop();
                        }
                        stopped.store(true, Ordering::SeqCst);
                        steps
                    })
                    .await;
                outcome
            }
        });
        has_started.await.unwrap();
        let calls = CallCounter::new();
        let job_calls = calls.clone();
        let pending: Outcome<_> = pool.try_submit(move || job_calls.record());
        let pending = pending.unwrap();
        pool.shutdown_now().await;
        assert!(
            stopped_by_token.load(Ordering::SeqCst),
            "{backend:?}: the running job saw its token"
        );
        assert!(running.await.unwrap().is_ok(), "the running job returned its value");
        assert!(pending.await.unwrap_err().is_cancelled(), "the pending job was cancelled");
        assert_eq!(calls.calls(), 0, "and never ran");
        assert_eq!(pool.status().in_flight, 0);
    }
}
