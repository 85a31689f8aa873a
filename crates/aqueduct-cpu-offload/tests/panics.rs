//! Panics in jobs, map functions and initialisers become `Error::Panicked`; the worker threads survive them.

mod support;

use aqueduct_cpu_offload::{Backend, CpuPool, Error};
use support::Outcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_becomes_panicked_with_its_message_and_the_thread_survives() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder().backend(backend).threads(1).build().unwrap();
        let panicked: Outcome<()> = pool.run(|| panic!("bad input {}", 7)).await;
        match panicked {
            Err(Error::Panicked { index: None, message }) => assert_eq!(message, "bad input 7"),
            other => panic!("{backend:?}: expected a panic error, got {other:?}"),
        }
        let static_message: Outcome<()> = pool.run(|| panic!("static")).await;
        assert_eq!(static_message.unwrap_err().to_string(), "task panicked: static");
        // The single thread is still there.
        let after: Outcome<u32> = pool.run(|| 5).await;
        assert_eq!(after.unwrap(), 5);
        assert_eq!(pool.status().in_flight, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_map_names_the_item() {
    let pool = CpuPool::builder().threads(2).build().unwrap();
    let mapped: Outcome<Vec<u32>> = pool
        .map(0..100_u32, 7, |value| if value == 42 { panic!("item {value}") } else { value })
        .await;
    match mapped {
        Err(Error::Panicked { index: Some(42), message }) => assert_eq!(message, "item 42"),
        other => panic!("expected the panic of item 42, got {other:?}"),
    }
    let after: Outcome<Vec<u32>> = pool.map(0..3_u32, 1, |value| value).await;
    assert_eq!(after.unwrap(), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_initialiser_does_not_take_the_worker_down() {
    for backend in [Backend::Rayon, Backend::SpawnBlocking] {
        let pool = CpuPool::builder()
            .backend(backend)
            .threads(1)
            .on_worker_start(|_| panic!("initialiser failed"))
            .build()
            .unwrap();
        let outcome: Outcome<u8> = pool.run(|| 1).await;
        assert_eq!(outcome.unwrap(), 1, "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallible_job_flattens_its_error() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let failed: Outcome<u8> = pool.try_run(|| Err(std::io::Error::other("disk on fire"))).await;
    assert_eq!(
        failed.unwrap_err().into_operation().map(|error| error.to_string()),
        Some("disk on fire".to_owned())
    );
    // An `Error<E>` from the job is not nested either.
    let closed: Outcome<u8> =
        pool.try_run(|| Err(Error::<std::io::Error>::Closed { reconnecting: true })).await;
    assert!(matches!(closed, Err(Error::Closed { reconnecting: true })));
    let ok: Outcome<u8> = pool.try_run(|| Ok::<_, std::io::Error>(3)).await;
    assert_eq!(ok.unwrap(), 3);
}
