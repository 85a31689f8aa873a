//! The fan-out contract of `Batcher`: one output per input, whole-batch errors to every item, per-item
//! errors to their item, panics to every item of the batch.

mod common;

use aqueduct_batch::{Batcher, Error, Flush, PerItem};

type Checked = Batcher<u32, u32, String>;

async fn submit_four(batcher: &Checked) -> Vec<Result<u32, Error<String>>> {
    futures::future::join_all((0..4).map(|item| batcher.submit(item))).await
}

#[tokio::test(start_paused = true)]
async fn a_wrong_output_count_fails_every_item_of_the_batch() {
    let batcher: Checked =
        Batcher::builder(|items: Vec<u32>| async move { Ok::<_, String>(items[1..].to_vec()) })
            .flush(Flush::Size)
            .max_batch_size(4)
            .build()
            .unwrap();
    let results = submit_four(&batcher).await;
    for result in results {
        match result {
            Err(Error::ContractViolation { message }) => {
                assert!(message.contains("3 outputs for 4 inputs"), "{message}")
            }
            other => panic!("expected a contract violation, got {other:?}"),
        }
    }
    assert_eq!(batcher.metrics().contract_violations, 1);
}

#[tokio::test(start_paused = true)]
async fn too_many_outputs_is_a_violation_too() {
    let batcher: Checked = Batcher::builder(|items: Vec<u32>| async move {
        let mut outputs = items.clone();
        outputs.push(0);
        Ok::<_, String>(outputs)
    })
    .flush(Flush::Size)
    .max_batch_size(4)
    .build()
    .unwrap();
    assert!(
        submit_four(&batcher)
            .await
            .iter()
            .all(|result| matches!(result, Err(Error::ContractViolation { .. })))
    );
}

#[tokio::test(start_paused = true)]
async fn a_whole_batch_error_reaches_every_item() {
    let batcher: Checked = Batcher::builder(|_items: Vec<u32>| async move {
        Err::<Vec<u32>, _>("connection reset".to_owned())
    })
    .flush(Flush::Size)
    .max_batch_size(4)
    .build()
    .unwrap();
    for result in submit_four(&batcher).await {
        assert_eq!(result.unwrap_err().into_operation().as_deref(), Some("connection reset"));
    }
    assert_eq!(batcher.metrics().failed_batches, 1);
}

#[tokio::test(start_paused = true)]
async fn a_whole_batch_error_of_the_core_vocabulary_reaches_every_item() {
    let batcher: Checked = Batcher::builder(|_items: Vec<u32>| async move {
        Err::<Vec<u32>, Error<String>>(Error::RateLimited {
            retry_after: std::time::Duration::from_millis(30),
        })
    })
    .flush(Flush::Size)
    .max_batch_size(4)
    .build()
    .unwrap();
    for result in submit_four(&batcher).await {
        assert_eq!(result.unwrap_err().retry_after(), Some(std::time::Duration::from_millis(30)));
    }
}

#[tokio::test(start_paused = true)]
async fn per_item_errors_reach_their_item_only() {
    let batcher: Checked = Batcher::builder(|items: Vec<u32>| async move {
        Ok::<_, String>(PerItem(
            items
                .into_iter()
                .map(|item| if item == 2 { Err(format!("no row {item}")) } else { Ok(item) })
                .collect(),
        ))
    })
    .flush(Flush::Size)
    .max_batch_size(4)
    .build()
    .unwrap();
    let results = submit_four(&batcher).await;
    assert_eq!(results[0].as_ref().ok(), Some(&0));
    assert_eq!(results[1].as_ref().ok(), Some(&1));
    assert_eq!(results[2].as_ref().unwrap_err().operation().map(String::as_str), Some("no row 2"));
    assert_eq!(results[3].as_ref().ok(), Some(&3));
    assert_eq!(batcher.metrics().failed_batches, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_batch_function_fails_every_item_and_the_batcher_goes_on() {
    let batcher: Checked = Batcher::builder(|items: Vec<u32>| async move {
        assert!(!items.contains(&1), "poison item");
        Ok::<_, String>(items)
    })
    .flush(Flush::Size)
    .max_batch_size(2)
    .max_concurrent_batches(1)
    .build()
    .unwrap();
    let results = submit_four(&batcher).await;
    for result in &results[..2] {
        assert!(
            matches!(result, Err(Error::Panicked { message, .. }) if message == "poison item"),
            "{result:?}"
        );
    }
    assert_eq!(results[2].as_ref().ok(), Some(&2));
    assert_eq!(results[3].as_ref().ok(), Some(&3));
    let metrics = batcher.metrics();
    assert_eq!((metrics.panicked_batches, metrics.batches_in_flight), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_synchronous_panic_is_caught_too() {
    let batcher: Checked = Batcher::builder(|items: Vec<u32>| {
        assert!(items.len() < 3, "too many");
        async move { Ok::<_, String>(items) }
    })
    .flush(Flush::Size)
    .max_batch_size(4)
    .build()
    .unwrap();
    assert!(
        submit_four(&batcher)
            .await
            .iter()
            .all(|result| matches!(result, Err(Error::Panicked { .. })))
    );
    batcher.flush();
    assert_eq!(batcher.metrics().panicked_batches, 1);
}
