//! The process backend: jobs run in worker processes; a crash (abort) or a hard kill fails only its own job and the
//! worker is replaced; timeouts and the ambient deadline kill the job; bounded submission rejects when full.
//!
//! The workers are this test binary, filtered to the one test `worker_entry_point`, which serves jobs when the pool
//! started it (`ProcessPoolBuilder::libtest_worker`); this works under `cargo test` and cargo-nextest alike.
//! These tests use real time: the workers are real processes, which paused tokio time cannot drive.
#![cfg(unix)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aqueduct_core::with_deadline;
use aqueduct_cpu_offload::Error;
use aqueduct_cpu_offload::process::{
    Entry, ProcessPool, ProcessPoolBuilder, Registry, is_worker, serve_if_worker,
};

const DOUBLE: Entry<u64, u64> = Entry::new("double");
const PROCESS_ID: Entry<(), u32> = Entry::new("process_id");
const PANIC: Entry<String, ()> = Entry::new("panic");
const ABORT: Entry<(), ()> = Entry::new("abort");
const HANG: Entry<(), ()> = Entry::new("hang");
const INITIALISED: Entry<(), bool> = Entry::new("initialised");
const NOT_REGISTERED: Entry<u64, u64> = Entry::new("not_registered");

static WORKER_INITIALISED: AtomicBool = AtomicBool::new(false);

type Outcome<T> = Result<T, Error<std::io::Error>>;

fn registry() -> Registry {
    Registry::new()
        .register(DOUBLE, |value: u64| value * 2)
        .register(PROCESS_ID, |()| std::process::id())
        .register(PANIC, |message: String| panic!("{message}"))
        .register(ABORT, |()| std::process::abort())
        .register(HANG, |()| {
            loop {
                std::thread::park();
            }
        })
        .register(INITIALISED, |()| WORKER_INITIALISED.load(Ordering::SeqCst))
        .on_worker_start(|| WORKER_INITIALISED.store(true, Ordering::SeqCst))
}

/// In a worker process this serves jobs and exits; in the test process it checks the registry and the detection.
#[test]
fn worker_entry_point() {
    serve_if_worker(&registry());
    assert!(!is_worker());
    for name in ["double", "process_id", "panic", "abort", "hang", "initialised"] {
        assert!(registry().contains(name), "{name} is registered");
    }
    assert!(!registry().contains(NOT_REGISTERED.name()));
}

fn builder() -> ProcessPoolBuilder {
    ProcessPool::builder()
        .libtest_worker("worker_entry_point")
        .start_timeout(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_in_other_processes_with_serialised_arguments() {
    let pool = builder().workers(2).build().await.unwrap();
    let doubled: Outcome<u64> = pool.call(&DOUBLE, &21).await;
    assert_eq!(doubled.unwrap(), 42);
    let worker_id: Outcome<u32> = pool.call(&PROCESS_ID, &()).await;
    assert_ne!(worker_id.unwrap(), std::process::id());
    assert_eq!(pool.status().started, 2);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_initialiser_runs_before_the_first_job() {
    let pool = builder().workers(1).build().await.unwrap();
    let initialised: Outcome<bool> = pool.call(&INITIALISED, &()).await;
    assert!(initialised.unwrap());
    // The initialiser ran in the worker, not here.
    assert!(!WORKER_INITIALISED.load(Ordering::SeqCst));
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_entry_point_fails_only_its_job_and_the_worker_lives_on() {
    let pool = builder().workers(1).build().await.unwrap();
    let before: Outcome<u32> = pool.call(&PROCESS_ID, &()).await;
    let panicked: Outcome<()> = pool.call(&PANIC, &"bad input".to_owned()).await;
    match panicked {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "bad input"),
        other => panic!("expected a panic error, got {other:?}"),
    }
    let after: Outcome<u32> = pool.call(&PROCESS_ID, &()).await;
    assert_eq!(before.unwrap(), after.unwrap(), "the same worker survived the panic");
    assert_eq!(pool.status().crashed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborting_worker_fails_only_its_own_job_and_is_replaced() {
    let pool = builder().workers(2).build().await.unwrap();
    let crash = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let outcome: Outcome<()> = pool.call(&ABORT, &()).await;
            outcome
        })
    };
    let mut others = Vec::new();
    for value in 0..20_u64 {
        let pool = pool.clone();
        others.push(tokio::spawn(async move {
            let outcome: Outcome<u64> = pool.call(&DOUBLE, &value).await;
            (value, outcome)
        }));
    }
    match crash.await.unwrap() {
        Err(Error::Panicked { message, .. }) => {
            assert!(message.contains("worker process crashed while running `abort`"), "{message}");
            assert!(message.contains("signal"), "{message}");
        }
        other => panic!("expected a crash error, got {other:?}"),
    }
    for other in others {
        let (value, outcome) = other.await.unwrap();
        assert_eq!(outcome.unwrap(), value * 2, "job {value} is not affected by the crash");
    }
    // The pool never shrinks: while one job hangs on a worker, another job still finds a worker, so the crashed one
    // was replaced.
    let hanging = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let outcome: Outcome<()> = pool.call(&HANG, &()).await;
            outcome
        })
    };
    // Once it holds its slot it has also taken a worker (both happen in the same poll when nothing waits).
    while pool.status().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    let doubled: Outcome<u64> = pool.call(&DOUBLE, &2).await;
    assert_eq!(doubled.unwrap(), 4);
    let status = pool.status();
    assert_eq!(status.crashed, 1);
    assert_eq!(status.started, 3, "one replacement worker");
    hanging.abort();
    assert!(hanging.await.unwrap_err().is_cancelled());
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_killed_and_its_worker_replaced() {
    let pool = builder().workers(1).job_timeout(Duration::from_secs(30)).build().await.unwrap();
    let hung: Outcome<()> = pool.call_with_timeout(&HANG, &(), Duration::from_millis(200)).await;
    match hung {
        Err(Error::Elapsed { elapsed, .. }) => {
            assert_eq!(elapsed.timeout(), Some(Duration::from_millis(200)));
            assert!(elapsed.waited() >= Duration::from_millis(200));
            assert!(!elapsed.is_ambient());
        }
        other => panic!("expected an elapsed error, got {other:?}"),
    }
    assert_eq!(pool.status().killed, 1);
    let after: Outcome<u64> = pool.call(&DOUBLE, &5).await;
    assert_eq!(after.unwrap(), 10);
    assert_eq!(pool.status().started, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_job_timeout_applies_to_every_call() {
    let pool = builder().workers(1).job_timeout(Duration::from_millis(200)).build().await.unwrap();
    let hung: Outcome<()> = pool.call(&HANG, &()).await;
    assert!(hung.unwrap_err().is_elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ambient_deadline_kills_a_job_without_its_own_timeout() {
    let pool = builder().workers(1).build().await.unwrap();
    let at = tokio::time::Instant::now() + Duration::from_millis(200);
    let hung: Outcome<()> = with_deadline(at, pool.call(&HANG, &())).await;
    match hung {
        Err(Error::Elapsed { elapsed, .. }) => {
            assert!(elapsed.is_ambient());
            assert_eq!(elapsed.deadline(), at);
        }
        other => panic!("expected an elapsed error, got {other:?}"),
    }
    assert_eq!(pool.status().killed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_mid_job_kills_its_worker_and_the_next_job_gets_a_new_one() {
    let pool = builder().workers(1).build().await.unwrap();
    let before: Outcome<u32> = pool.call(&PROCESS_ID, &()).await;
    let abandoned = tokio::time::timeout(Duration::from_millis(200), async {
        let outcome: Outcome<()> = pool.call(&HANG, &()).await;
        outcome
    })
    .await;
    assert!(abandoned.is_err(), "the hanging job cannot finish");
    assert_eq!(pool.status().killed, 1);
    assert_eq!(pool.status().in_flight, 0, "the abandoned call gave its slot back");
    let after: Outcome<u32> = pool.call(&PROCESS_ID, &()).await;
    assert_ne!(before.unwrap(), after.unwrap(), "a new worker process runs the next job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_call_rejects_with_full_when_every_slot_is_taken() {
    let pool = builder().workers(1).capacity(1).build().await.unwrap();
    let busy = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let outcome: Outcome<()> = pool.call(&HANG, &()).await;
            outcome
        })
    };
    while pool.status().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    let rejected: Outcome<u64> = pool.try_call(&DOUBLE, &1).await;
    assert!(matches!(rejected, Err(Error::Full { capacity: 1 })), "{rejected:?}");
    busy.abort();
    assert!(busy.await.unwrap_err().is_cancelled());
    let accepted: Outcome<u64> = pool.try_call(&DOUBLE, &1).await;
    assert_eq!(accepted.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_entry_point_is_a_contract_violation() {
    let pool = builder().workers(1).build().await.unwrap();
    let missing: Outcome<u64> = pool.call(&NOT_REGISTERED, &1).await;
    match missing {
        Err(Error::ContractViolation { message }) => {
            assert!(message.contains("not_registered"), "{message}")
        }
        other => panic!("expected a contract violation, got {other:?}"),
    }
    // The worker is still fine.
    let doubled: Outcome<u64> = pool.call(&DOUBLE, &4).await;
    assert_eq!(doubled.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_then_rejects_new_jobs() {
    let pool = builder().workers(1).build().await.unwrap();
    let doubled: Outcome<u64> = pool.call(&DOUBLE, &3).await;
    assert_eq!(doubled.unwrap(), 6);
    pool.shutdown().await;
    let status = pool.status();
    assert!(status.closed);
    assert_eq!(status.in_flight, 0);
    let refused: Outcome<u64> = pool.call(&DOUBLE, &3).await;
    assert!(refused.unwrap_err().is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_replaced_after_its_maximum_number_of_jobs() {
    let pool = builder().workers(1).max_jobs_per_worker(2).build().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id: Outcome<u32> = pool.call(&PROCESS_ID, &()).await;
        ids.push(id.unwrap());
    }
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2], "a fresh worker after two jobs");
    assert_eq!(ids[2], ids[3]);
    let status = pool.status();
    assert_eq!((status.started, status.retired, status.crashed, status.killed), (2, 2, 0, 0));
}
