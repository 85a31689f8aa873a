//! Property tests of `Batcher`: whatever the settings and the load, every caller gets its own item's result,
//! no batch exceeds its size, and the concurrency bound holds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_batch::{Batcher, Flush};
use aqueduct_testkit::CallCounter;
use proptest::prelude::*;

fn flush_policy() -> impl Strategy<Value = Flush> {
    prop_oneof![
        Just(Flush::Immediate),
        (1u64..20).prop_map(|ms| Flush::MaxWait(Duration::from_millis(ms)))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_caller_gets_its_own_result_within_the_bounds(
        submitters in 1u32..300,
        max_batch_size in 1usize..40,
        max_concurrent_batches in 1usize..5,
        latency_ms in 0u64..5,
        flush in flush_policy(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let counter = CallCounter::new();
        let outcome = runtime.block_on({
            let sizes = Arc::clone(&sizes);
            let counter = counter.clone();
            async move {
                let batcher: Batcher<u32, u32, String> = Batcher::builder(move |items: Vec<u32>| {
                    sizes.lock().unwrap().push(items.len());
                    let in_flight = counter.enter();
                    async move {
                        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
                        drop(in_flight);
                        Ok::<_, String>(items.into_iter().map(|item| item + 1).collect::<Vec<_>>())
                    }
                })
                .max_batch_size(max_batch_size)
                .max_concurrent_batches(max_concurrent_batches)
                .max_pending(max_batch_size.max(64))
                .flush(flush)
                .build()
                .unwrap();
                let handles: Vec<_> = (0..submitters).map(|item| tokio::spawn(batcher.submit(item))).collect();
                let mut results = Vec::new();
                for handle in handles {
                    results.push(handle.await.unwrap());
                }
                (results, batcher.metrics())
            }
        });
        let (results, metrics) = outcome;
        for (item, result) in results.iter().enumerate() {
            prop_assert_eq!(result.as_ref().ok().copied(), Some(item as u32 + 1));
        }
        let sizes = sizes.lock().unwrap();
        prop_assert!(sizes.iter().all(|size| (1..=max_batch_size).contains(size)));
        prop_assert_eq!(sizes.iter().sum::<usize>(), submitters as usize);
        prop_assert!(counter.peak() <= max_concurrent_batches);
        prop_assert_eq!((metrics.pending, metrics.batches_in_flight), (0, 0));
        prop_assert_eq!(metrics.items, u64::from(submitters));
    }
}
