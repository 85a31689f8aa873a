//! Static batching: input order, the bound on calls in flight, the three failure policies, the fan-out contract.

use std::time::Duration;

use aqueduct_batch::{Batch, Error, OnFailure, PerItem, batch};
use aqueduct_testkit::CallCounter;
use proptest::prelude::*;

type Results = Vec<Result<u32, Error<String>>>;

#[tokio::test(start_paused = true)]
async fn results_come_back_in_input_order_with_at_most_concurrency_calls_in_flight() {
    let counter = CallCounter::new();
    let results: Results = batch(0..1_000u32, 100, 5, |chunk: Vec<u32>| {
        let counter = counter.clone();
        async move {
            let _in_flight = counter.enter();
            // Later chunks finish first, so order must be restored.
            let delay = 100 - u64::from(chunk[0] / 10);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok::<_, String>(chunk.into_iter().map(|n| n * 2).collect::<Vec<_>>())
        }
    })
    .await;
    assert_eq!(results.len(), 1_000);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().ok(), Some(&(index as u32 * 2)));
    }
    assert_eq!(counter.calls(), 10);
    assert_eq!(counter.peak(), 5);
    assert_eq!(counter.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_of_one_runs_batches_one_at_a_time() {
    let counter = CallCounter::new();
    let results: Results = batch(0..10u32, 3, 1, |chunk: Vec<u32>| {
        let counter = counter.clone();
        async move {
            let _in_flight = counter.enter();
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, String>(chunk)
        }
    })
    .await;
    assert_eq!(results.len(), 10);
    assert_eq!(counter.calls(), 4, "3 + 3 + 3 + 1");
    assert_eq!(counter.peak(), 1);
}

#[tokio::test]
async fn empty_input_calls_nothing() {
    let counter = CallCounter::new();
    let results: Results = batch(Vec::<u32>::new(), 10, 2, |chunk: Vec<u32>| {
        counter.record();
        async move { Ok::<_, String>(chunk) }
    })
    .await;
    assert!(results.is_empty());
    assert_eq!(counter.calls(), 0);
}

#[tokio::test]
async fn a_failed_batch_fails_only_its_own_items_by_default() {
    let results: Results = batch(0..10u32, 3, 2, |chunk: Vec<u32>| async move {
        if chunk.contains(&4) { Err(format!("chunk at {} failed", chunk[0])) } else { Ok(chunk) }
    })
    .await;
    for (index, result) in results.iter().enumerate() {
        if (3..6).contains(&index) {
            assert_eq!(
                result.as_ref().unwrap_err().operation().map(String::as_str),
                Some("chunk at 3 failed")
            );
        } else {
            assert_eq!(result.as_ref().ok(), Some(&(index as u32)));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn fail_all_stops_the_run_and_fails_every_item() {
    let counter = CallCounter::new();
    let plan = Batch::builder().size(2).concurrency(2).fail_all().build().unwrap();
    assert_eq!(plan.on_failure(), OnFailure::FailAll);
    let results: Results = plan
        .run(0..20u32, |chunk: Vec<u32>| {
            let counter = counter.clone();
            async move {
                let _in_flight = counter.enter();
                tokio::time::sleep(Duration::from_millis(10)).await;
                if chunk.contains(&5) { Err("bad chunk".to_owned()) } else { Ok(chunk) }
            }
        })
        .await;
    assert_eq!(results.len(), 20);
    assert!(results.iter().all(Result::is_err));
    assert_eq!(results[4].as_ref().unwrap_err().operation().map(String::as_str), Some("bad chunk"));
    assert_eq!(results[5].as_ref().unwrap_err().operation().map(String::as_str), Some("bad chunk"));
    assert!(results[0].as_ref().unwrap_err().is_cancelled());
    assert!(results[19].as_ref().unwrap_err().is_cancelled());
    // The run stopped: not every one of the 10 chunks was called.
    assert!(counter.calls() < 10, "calls: {}", counter.calls());
    assert_eq!(counter.in_flight(), 0, "batches in flight were dropped");
}

#[tokio::test]
async fn bisect_isolates_the_bad_items_and_keeps_the_rest() {
    let counter = CallCounter::new();
    let plan = Batch::builder().size(64).concurrency(3).bisect().build().unwrap();
    let results: Results = plan
        .run(0..256u32, |chunk: Vec<u32>| {
            counter.record();
            async move {
                if chunk.contains(&17) || chunk.contains(&200) {
                    Err(format!("{} rows rejected", chunk.len()))
                } else {
                    Ok(chunk)
                }
            }
        })
        .await;
    for (index, result) in results.iter().enumerate() {
        if index == 17 || index == 200 {
            assert_eq!(
                result.as_ref().unwrap_err().operation().map(String::as_str),
                Some("1 rows rejected")
            );
        } else {
            assert_eq!(result.as_ref().ok(), Some(&(index as u32)));
        }
    }
    // 4 first calls, then for each bad chunk of 64: 2 calls per level for 6 levels.
    assert_eq!(counter.calls(), 4 + 2 * 2 * 6);
}

#[tokio::test(start_paused = true)]
async fn bisect_stays_within_the_concurrency_bound() {
    let counter = CallCounter::new();
    let plan = Batch::builder().size(8).concurrency(2).bisect().build().unwrap();
    let results: Results = plan
        .run(0..64u32, |chunk: Vec<u32>| {
            let counter = counter.clone();
            async move {
                let _in_flight = counter.enter();
                tokio::time::sleep(Duration::from_millis(1)).await;
                if chunk.iter().any(|n| n % 8 == 3) { Err("bad".to_owned()) } else { Ok(chunk) }
            }
        })
        .await;
    assert_eq!(results.iter().filter(|result| result.is_err()).count(), 8);
    assert_eq!(counter.peak(), 2);
}

#[tokio::test]
async fn a_wrong_output_count_is_a_contract_violation_for_every_item_of_the_batch() {
    let results: Results = batch(0..6u32, 3, 1, |chunk: Vec<u32>| async move {
        if chunk[0] == 0 { Ok::<_, String>(vec![1, 2]) } else { Ok(chunk) }
    })
    .await;
    for result in &results[..3] {
        match result {
            Err(Error::ContractViolation { message }) => {
                assert!(message.contains("2 outputs for 3 inputs"), "{message}")
            }
            other => panic!("expected a contract violation, got {other:?}"),
        }
    }
    assert_eq!(results[3].as_ref().ok(), Some(&3));
}

#[tokio::test]
async fn bisect_does_not_retry_a_contract_violation() {
    let counter = CallCounter::new();
    let plan = Batch::builder().size(4).bisect().build().unwrap();
    let results: Results = plan
        .run(0..4u32, |_chunk: Vec<u32>| {
            counter.record();
            async move { Ok::<_, String>(Vec::<u32>::new()) }
        })
        .await;
    assert!(results.iter().all(|result| matches!(result, Err(Error::ContractViolation { .. }))));
    assert_eq!(counter.calls(), 1);
}

#[tokio::test]
async fn per_item_errors_reach_their_item_only() {
    let results: Results = batch(0..5u32, 5, 1, |chunk: Vec<u32>| async move {
        Ok::<_, String>(PerItem(
            chunk
                .into_iter()
                .map(|n| if n % 2 == 1 { Err(format!("odd {n}")) } else { Ok(n) })
                .collect(),
        ))
    })
    .await;
    assert_eq!(results[0].as_ref().ok(), Some(&0));
    assert_eq!(results[1].as_ref().unwrap_err().operation().map(String::as_str), Some("odd 1"));
    assert_eq!(results[4].as_ref().ok(), Some(&4));
}

#[tokio::test]
async fn a_panicking_batch_fails_its_items_with_the_panic_message() {
    let results: Results = batch(0..4u32, 2, 2, |chunk: Vec<u32>| async move {
        assert!(chunk[0] != 2, "chunk two exploded");
        Ok::<_, String>(chunk)
    })
    .await;
    assert!(results[0].is_ok() && results[1].is_ok());
    for result in &results[2..] {
        match result {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, "chunk two exploded"),
            other => panic!("expected a panic error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_function_that_panics_before_returning_a_future_is_caught_too() {
    let results: Results = batch(0..2u32, 1, 1, |chunk: Vec<u32>| {
        assert!(chunk[0] != 1, "synchronous panic");
        async move { Ok::<_, String>(chunk) }
    })
    .await;
    assert!(results[0].is_ok());
    // A one-item batch names the item's index.
    assert!(
        matches!(&results[1], Err(Error::Panicked { index: Some(1), message }) if message == "synchronous panic")
    );
}

#[tokio::test]
async fn bisect_isolates_a_panicking_item() {
    let plan = Batch::builder().size(8).bisect().build().unwrap();
    let results: Results = plan
        .run(0..8u32, |chunk: Vec<u32>| async move {
            assert!(!chunk.contains(&6), "row 6 is poison");
            Ok::<_, String>(chunk)
        })
        .await;
    assert!(matches!(&results[6], Err(Error::Panicked { index: Some(6), .. })));
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 7);
}

#[tokio::test]
async fn the_batch_function_may_borrow_from_the_caller() {
    let offset = 1_000u32;
    let offset_ref = &offset;
    let results: Results = batch(0..3u32, 2, 1, |chunk: Vec<u32>| async move {
        Ok::<_, String>(chunk.into_iter().map(|n| n + offset_ref).collect::<Vec<_>>())
    })
    .await;
    assert_eq!(results[2].as_ref().ok(), Some(&1_002));
}

#[tokio::test]
async fn the_run_future_is_send_so_it_can_be_spawned() {
    let handle =
        tokio::spawn(batch(
            0..10u32,
            3,
            2,
            |chunk: Vec<u32>| async move { Ok::<_, String>(chunk) },
        ));
    let results: Results = handle.await.unwrap();
    assert_eq!(results.len(), 10);
}

proptest! {
    #[test]
    fn every_item_gets_its_own_result_in_order(len in 0usize..300, size in 1usize..40, concurrency in 1usize..8) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let results: Results = runtime.block_on(batch(0..len as u32, size, concurrency, |chunk: Vec<u32>| async move {
            assert!(!chunk.is_empty());
            Ok::<_, String>(chunk.into_iter().map(|n| n + 1).collect::<Vec<_>>())
        }));
        prop_assert_eq!(results.len(), len);
        for (index, result) in results.iter().enumerate() {
            prop_assert_eq!(result.as_ref().ok().copied(), Some(index as u32 + 1));
        }
    }

    #[test]
    fn bisect_fails_exactly_the_bad_items(len in 1usize..200, size in 1usize..40, bad in proptest::collection::btree_set(0u32..200, 0..5)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let plan = Batch::builder().size(size).concurrency(3).bisect().build().unwrap();
        let bad_ref = &bad;
        let results: Results = runtime.block_on(plan.run(0..len as u32, |chunk: Vec<u32>| async move {
            if chunk.iter().any(|n| bad_ref.contains(n)) { Err("bad".to_owned()) } else { Ok(chunk) }
        }));
        prop_assert_eq!(results.len(), len);
        for (index, result) in results.iter().enumerate() {
            prop_assert_eq!(result.is_err(), bad.contains(&(index as u32)));
        }
    }
}
