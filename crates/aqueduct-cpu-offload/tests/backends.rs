//! Both thread backends run jobs off the runtime's threads, in parallel up to `threads`, with per-worker
//! initialisers; the default pool and the free function work.

mod support;

use std::cell::Cell;

use aqueduct_cpu_offload::{Backend, CpuPool};
use support::Outcome;

thread_local! {
    static INITIALISED_AS: Cell<Option<usize>> = const { Cell::new(None) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_pool_threads_not_on_runtime_workers() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder()
            .backend(backend)
            .threads(1)
            .thread_name("offload-test")
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let (thread, inside_runtime): (std::thread::ThreadId, bool) = {
            let outcome: Outcome<_> = pool
                .run(|| {
                    // Blocking threads belong to the runtime but are not its async workers; rayon threads are outside.
                    let inside = tokio::runtime::Handle::try_current().is_ok();
                    (std::thread::current().id(), inside)
                })
                .await;
            outcome.unwrap()
        };
        assert_ne!(thread, here, "{backend:?}");
        assert_eq!(inside_runtime, backend == Backend::SpawnBlocking);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rayon_threads_carry_their_name() {
    let pool = CpuPool::builder().threads(1).thread_name("hasher").build().unwrap();
    let name: Outcome<Option<String>> =
        pool.run(|| std::thread::current().name().map(str::to_owned)).await;
    assert_eq!(name.unwrap().as_deref(), Some("hasher-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_runs_its_initialiser_before_its_first_job() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder()
            .backend(backend)
            .threads(2)
            .on_worker_start(|index| INITIALISED_AS.with(|slot| slot.set(Some(index))))
            .build()
            .unwrap();
        let mut jobs = Vec::new();
        for _ in 0..50 {
            jobs.push(pool.submit(|| INITIALISED_AS.with(Cell::get)).await.unwrap());
        }
        for job in jobs {
            let index: Outcome<Option<usize>> = job.await;
            let index = index.unwrap();
            assert!(
                matches!(index, Some(0 | 1)),
                "{backend:?}: worker initialised with index {index:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_run_two_jobs_at_once() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(2).build().unwrap();
        // Each job waits until the other has started: this completes only if both run at the same time.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (first, second) = (std::sync::Arc::clone(&barrier), barrier);
        let (a, b): (Outcome<bool>, Outcome<bool>) = tokio::join!(
            pool.run(move || first.wait().is_leader()),
            pool.run(move || second.wait().is_leader())
        );
        assert!(a.unwrap() ^ b.unwrap(), "{backend:?}: exactly one leader");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_function_uses_the_default_pool() {
    let sum: Outcome<u64> = aqueduct_cpu_offload::run(|| (1..=100_u64).sum()).await;
    assert_eq!(sum.unwrap(), 5_050);
    assert_eq!(CpuPool::global().threads(), aqueduct_cpu_offload::default_threads());
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_stays_free_while_the_pool_works() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let job = pool.run(move || gate.recv().is_ok());
    // The job blocks its pool thread, yet this single-threaded runtime can still run another task to completion.
    let other = tokio::spawn(async { 7 });
    let releaser = tokio::spawn(async move {
        let value = other.await.unwrap();
        release.send(()).unwrap();
        value
    });
    let finished: Outcome<bool> = job.await;
    assert!(finished.unwrap());
    assert_eq!(releaser.await.unwrap(), 7);
}

#[test]
fn jobs_for_a_runtime_that_shut_down_fail_as_cancelled_instead_of_hanging() {
    let gone = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let pool = CpuPool::builder()
        .backend(Backend::SpawnBlocking)
        .threads(1)
        .runtime(gone.handle().clone())
        .build()
        .unwrap();
    drop(gone);
    let caller = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for _ in 0..3 {
        let outcome: Outcome<u8> = caller.block_on(pool.run(|| 1));
        assert!(outcome.unwrap_err().is_cancelled());
    }
    assert_eq!(pool.status().in_flight, 0, "the slots came back");
}
