//! Cancellation in layers: a job dropped before it starts never runs and returns its slot; a running job's token
//! turns cancelled when its caller goes away; nothing the job captured leaks, at every await point.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aqueduct_cpu_offload::{Backend, CpuPool, Error};
use aqueduct_testkit::{CallCounter, DropCounter};
use support::{Blocker, Outcome, drain, poll_once};

fn pools() -> Vec<CpuPool> {
    [Backend::Rayon, Backend::SpawnBlocking]
        .into_iter()
        .map(|backend| CpuPool::builder().backend(backend).threads(1).capacity(4).build().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_dropped_before_the_job_starts_means_it_never_runs() {
    for pool in pools() {
        let blocker = Blocker::start(&pool).await;
        let calls = CallCounter::new();
        let drops = DropCounter::new();
        let (job_calls, guard) = (calls.clone(), drops.guard());
        let handle = pool
            .submit(move || {
                job_calls.record();
                drop(guard);
            })
            .await;
        let handle: support::Outcome<_> = handle;
        drop(handle.unwrap());
        assert_eq!(pool.status().in_flight, 2);
        assert!(blocker.release().await);
        drain(&pool).await;
        assert_eq!(calls.calls(), 0, "{:?}: the dropped job never ran", pool.backend());
        assert_eq!(drops.alive(), 0, "the job's captures were dropped");
        assert_eq!(pool.status().in_flight, 0, "its slot was returned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_future_dropped_while_queued_never_runs() {
    for pool in pools() {
        let blocker = Blocker::start(&pool).await;
        let calls = CallCounter::new();
        let job_calls = calls.clone();
        let mut run = pool.run(move || job_calls.record());
        // The first poll submits the job; it waits behind the blocker.
        let first: std::task::Poll<Outcome<()>> = poll_once(&mut run);
        assert!(first.is_pending());
        assert_eq!(pool.status().in_flight, 2);
        drop(run);
        assert!(blocker.release().await);
        drain(&pool).await;
        assert_eq!(calls.calls(), 0, "{:?}: the dropped job never ran", pool.backend());
        assert_eq!(pool.status().in_flight, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_dropped_while_waiting_for_room_submits_nothing_and_leaks_no_slot() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(1).capacity(1).build().unwrap();
        let blocker = Blocker::start(&pool).await;
        let calls = CallCounter::new();
        let drops = DropCounter::new();
        let (job_calls, guard) = (calls.clone(), drops.guard());
        let mut submit = pool.submit(move || {
            job_calls.record();
            drop(guard);
        });
        let waiting: std::task::Poll<Result<_, Error<std::io::Error>>> = poll_once(&mut submit);
        assert!(waiting.is_pending(), "the pool is full");
        drop(submit);
        assert_eq!(drops.alive(), 0, "the unsubmitted job was dropped at once");
        assert!(blocker.release().await);
        assert_eq!(pool.status().in_flight, 0, "no slot leaked");
        let again: Outcome<u8> = pool.run(|| 7).await;
        assert_eq!(again.unwrap(), 7);
        assert_eq!(calls.calls(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_the_handle_skips_a_queued_job() {
    for pool in pools() {
        let blocker = Blocker::start(&pool).await;
        let calls = CallCounter::new();
        let job_calls = calls.clone();
        let mut handle = pool.try_submit(move || job_calls.record()).unwrap();
        handle.cancel();
        let outcome: Outcome<()> = handle.await;
        assert!(outcome.unwrap_err().is_cancelled());
        assert!(blocker.release().await);
        drain(&pool).await;
        assert_eq!(calls.calls(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_cancellable_job_turns_its_token_and_it_stops() {
    for pool in pools() {
        let (started, has_started) = tokio::sync::oneshot::channel::<()>();
        let (stopped, has_stopped) = std::sync::mpsc::channel::<bool>();
        let drops = DropCounter::new();
        let guard = drops.guard();
        let mut run = pool.run_cancellable(move |token| {
            let _ = started.send(());
            let _guard = guard;
            // Cooperative: check the token between steps of work.
            while !token.is_cancelled() {
                std::hint::spin_loop();
            }
            let _ = stopped.send(true);
        });
        let first: std::task::Poll<Outcome<()>> = poll_once(&mut run);
        assert!(first.is_pending());
        has_started.await.unwrap();
        drop(run);
        let stopped_by_token =
            tokio::task::spawn_blocking(move || has_stopped.recv()).await.unwrap();
        assert_eq!(stopped_by_token, Ok(true), "{:?}: the job saw its token", pool.backend());
        drain(&pool).await;
        assert_eq!(drops.alive(), 0);
        assert_eq!(pool.status().in_flight, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stays_clear_while_the_caller_waits() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let seen = Arc::new(AtomicBool::new(true));
    let seen_in_job = Arc::clone(&seen);
    let outcome: Outcome<()> = pool
        .run_cancellable(move |token| seen_in_job.store(token.is_cancelled(), Ordering::SeqCst))
        .await;
    outcome.unwrap();
    assert!(!seen.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_value_of_a_job_whose_caller_left_is_dropped_on_the_worker() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let drops = DropCounter::new();
    let blocker = Blocker::start(&pool).await;
    let value_drops = drops.clone();
    let (started, has_started) = tokio::sync::oneshot::channel::<()>();
    let (finish, gate) = std::sync::mpsc::channel::<()>();
    let mut run = pool.run(move || {
        let _ = started.send(());
        let _ = gate.recv();
        value_drops.guard()
    });
    let first: std::task::Poll<Outcome<_>> = poll_once(&mut run);
    assert!(first.is_pending());
    assert!(blocker.release().await);
    has_started.await.unwrap();
    drop(run);
    finish.send(()).unwrap();
    drain(&pool).await;
    assert_eq!(drops.created(), 1);
    assert_eq!(drops.alive(), 0, "the orphaned value was dropped, not leaked");
}
