//! Public types are `Send` and `Sync` (where they can be), so they can cross tasks and threads.

use aqueduct_pipeline::{
    ConfigError, DeadLetter, Failure, Input, InputClosed, InputPermit, Metrics, Pipeline,
    PipelineBuilder, PipelineHandle, Running, StageMetrics, StageOptions, WorkerMetrics,
};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send::<PipelineBuilder<u32, String>>();
    assert_send::<Pipeline<u32, String>>();
    assert_send::<Running<u32, String>>();
    assert_sync::<Running<u32, String>>();
    assert_send::<PipelineHandle>();
    assert_sync::<PipelineHandle>();
    assert_send::<Input<u32>>();
    assert_sync::<Input<u32>>();
    assert_send::<InputPermit<'static, u32>>();
    assert_send::<InputClosed<u32>>();
    assert_send::<StageOptions<u32, String>>();
    assert_sync::<StageOptions<u32, String>>();
    assert_send::<Failure<String>>();
    assert_send::<DeadLetter<u32, String>>();
    assert_send::<ConfigError>();
    assert_sync::<ConfigError>();
    assert_send::<Metrics>();
    assert_sync::<Metrics>();
    assert_sync::<StageMetrics>();
    assert_sync::<WorkerMetrics>();
}

#[test]
fn configuration_errors_are_std_errors() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<ConfigError>();
    assert_error::<InputClosed<u32>>();
}
