//! The ordered, chunked `map`: outputs in input order for every chunk size and input length, items pulled lazily.

mod support;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aqueduct_cpu_offload::{Backend, CpuPool};
use proptest::prelude::*;
use support::Outcome;

fn shared_pool(backend: Backend) -> &'static CpuPool {
    static RAYON: OnceLock<CpuPool> = OnceLock::new();
    static BLOCKING: OnceLock<(tokio::runtime::Runtime, CpuPool)> = OnceLock::new();
    match backend {
        Backend::SpawnBlocking => {
            &BLOCKING
                .get_or_init(|| {
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .build()
                        .unwrap();
                    let pool = CpuPool::builder()
                        .backend(Backend::SpawnBlocking)
                        .threads(2)
                        .runtime(runtime.handle().clone())
                        .build()
                        .unwrap();
                    (runtime, pool)
                })
                .1
        }
        _ => RAYON.get_or_init(|| CpuPool::builder().threads(2).capacity(8).build().unwrap()),
    }
}

fn map_on(backend: Backend, items: Vec<i64>, chunk_size: usize) -> Outcome<Vec<i64>> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(shared_pool(backend).map(items, chunk_size, |value| value.wrapping_mul(3) - 1))
}

proptest! {
    #[test]
    fn map_keeps_input_order_for_any_chunk_size(items in proptest::collection::vec(any::<i64>(), 0..300), chunk_size in 0_usize..40) {
        let expected: Vec<i64> = items.iter().map(|value| value.wrapping_mul(3) - 1).collect();
        prop_assert_eq!(&map_on(Backend::Rayon, items.clone(), chunk_size).unwrap(), &expected);
        prop_assert_eq!(&map_on(Backend::SpawnBlocking, items, chunk_size).unwrap(), &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_input_maps_to_an_empty_output() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let mapped: Outcome<Vec<u8>> = pool.map(Vec::<u8>::new(), 4, |value| value).await;
    assert!(mapped.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_map_stops_pulling_items() {
    static PULLED: AtomicUsize = AtomicUsize::new(0);
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let blocker = support::Blocker::start(&pool).await;
    let items = (0..1_000_000_u64).inspect(|_| {
        PULLED.fetch_add(1, Ordering::SeqCst);
    });
    let mut mapping = Box::pin(pool.map(items, 10, |value| value));
    let first: std::task::Poll<Outcome<Vec<u64>>> = support::poll_once(&mut mapping);
    assert!(first.is_pending());
    drop(mapping);
    assert!(blocker.release().await);
    support::drain(&pool).await;
    // A window of two chunks per thread was pulled, plus the chunk that found the window full.
    let pulled = PULLED.load(Ordering::SeqCst);
    assert!(pulled <= 30, "pulled {pulled} items");
    assert_eq!(pool.status().in_flight, 0);
}
