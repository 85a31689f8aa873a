//! The public types are `Send` and `Sync` where a user would share or spawn them.

use aqueduct_batch::{
    Batch, BatchBuilder, Batcher, BatcherBuilder, BatcherMetrics, ConfigError, Flush, KeyedBatcher,
    KeyedBatcherBuilder, OnFailure, PerItem, Submit, WhenFull,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Batcher<String, String, String>>();
    assert_send_sync::<KeyedBatcher<u64, String, String, String>>();
    assert_send_sync::<Batch<String>>();
    assert_send_sync::<BatchBuilder<String>>();
    assert_send_sync::<BatcherMetrics>();
    assert_send_sync::<ConfigError>();
    assert_send_sync::<Flush>();
    assert_send_sync::<WhenFull>();
    assert_send_sync::<OnFailure>();
    assert_send_sync::<PerItem<u32, String>>();
    assert_send::<BatcherBuilder<String, String, String>>();
    assert_send::<KeyedBatcherBuilder<u64, String, String, String>>();
    assert_send::<Submit<String, String, String>>();
}

#[test]
fn config_errors_are_standard_errors() {
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<ConfigError>();
}
