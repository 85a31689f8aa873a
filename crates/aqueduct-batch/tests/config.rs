//! Bad configuration is a clear `ConfigError` from `build()`, never a panic or a hang.

use std::time::Duration;

use aqueduct_batch::{
    Batch, Batcher, BatcherBuilder, ConfigError, Error, Flush, KeyedBatcher, batch,
};

fn builder() -> BatcherBuilder<u32, u32, String> {
    Batcher::builder(|items: Vec<u32>| async move { Ok::<_, String>(items) })
}

fn build_error(builder: BatcherBuilder<u32, u32, String>) -> ConfigError {
    builder.build().expect_err("the settings are invalid")
}

#[test]
fn static_plans_reject_zero_size_and_zero_concurrency() {
    assert_eq!(
        Batch::<u32>::builder().size(0).build().unwrap_err().message(),
        "size must be at least 1 item per batch, got 0"
    );
    assert_eq!(
        Batch::<u32>::builder().concurrency(0).build().unwrap_err().message(),
        "concurrency must be at least 1 batch call in flight, got 0"
    );
}

#[tokio::test]
async fn the_free_function_reports_a_zero_setting_on_every_item_without_calling_anything() {
    let results: Vec<Result<u32, Error<String>>> =
        batch(0..3u32, 0, 5, |_chunk: Vec<u32>| async move {
            unreachable!("never called") as Result<Vec<u32>, String>
        })
        .await;
    assert_eq!(results.len(), 3);
    for result in results {
        assert!(
            matches!(result, Err(Error::ContractViolation { message }) if message.starts_with("size must be"))
        );
    }
}

#[tokio::test]
async fn batchers_reject_each_bad_setting_with_a_message_naming_it() {
    assert!(build_error(builder().max_batch_size(0)).message().starts_with("max_batch_size"));
    assert!(
        build_error(builder().max_concurrent_batches(0))
            .message()
            .starts_with("max_concurrent_batches")
    );
    assert_eq!(
        build_error(builder().max_batch_size(10).max_pending(9)).message(),
        "max_pending (9) must be at least max_batch_size (10), or no batch could ever fill"
    );
    assert!(
        build_error(builder().flush(Flush::MaxWait(Duration::ZERO)))
            .message()
            .contains("use Flush::Immediate")
    );
    let keyed: Result<KeyedBatcher<u8, u32, u32, String>, _> =
        KeyedBatcher::builder(|_key: u8, items: Vec<u32>| async move { Ok::<_, String>(items) })
            .max_pending(0)
            .build();
    assert!(keyed.unwrap_err().message().starts_with("max_pending"));
}

#[test]
fn building_a_batcher_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(build_error(builder()).message().contains("inside a tokio runtime"));
}

#[tokio::test]
async fn valid_edge_settings_build() {
    assert!(builder().max_batch_size(1).max_pending(1).max_concurrent_batches(1).build().is_ok());
    assert!(builder().flush(Flush::MaxWait(Duration::from_nanos(1))).build().is_ok());
    assert!(
        builder().max_pending(usize::MAX).build().is_ok(),
        "a huge queue bound is clamped, not a panic"
    );
}
