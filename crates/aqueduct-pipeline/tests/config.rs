//! Bad configuration: zero workers, zero capacities and a zero window are clear errors from `build`, never panics.

use aqueduct_pipeline::{PipelineBuilder, StageOptions};

#[test]
fn zero_workers_is_an_error_naming_the_stage() {
    let error = PipelineBuilder::<u32, ()>::from_items(0..3u32)
        .stage(1, |item: u32| async move { Ok::<_, ()>(item) })
        .stage(0, |item: u32| async move { Ok::<_, ()>(item) })
        .build()
        .unwrap_err();
    assert_eq!(error.message(), "stage 1: the number of workers must be at least 1, got 0");
}

#[test]
fn zero_capacities_and_window_are_errors() {
    let error = PipelineBuilder::<u32, ()>::from_items(0..3u32).capacity(0).build().unwrap_err();
    assert!(error.message().contains("default queue capacity must be at least 1"));
    let error = PipelineBuilder::<u32, ()>::from_items(0..3u32)
        .stage_with(StageOptions::new(1).capacity(0), |item: u32| async move { Ok::<_, ()>(item) })
        .build()
        .unwrap_err();
    assert!(error.message().contains("stage 0: the queue capacity must be at least 1"));
    let error = PipelineBuilder::<u32, ()>::from_items(0..3u32).ordered(0).build().unwrap_err();
    assert!(error.message().contains("ordered window must be at least 1"));
    let (_input, builder) = PipelineBuilder::<u32, ()>::from_channel(0);
    let error = builder.build().unwrap_err();
    assert!(error.message().contains("input channel capacity must be at least 1"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let error = PipelineBuilder::<u32, ()>::from_items(0..3u32)
        .stage(0, |item: u32| async move { Ok::<_, ()>(item) })
        .capacity(0)
        .ordered(0)
        .build()
        .unwrap_err();
    assert_eq!(error.message().matches("; ").count(), 2, "{error}");
    assert_eq!(error.to_string(), error.message());
}

#[test]
fn the_default_capacity_is_the_python_maxsize() {
    assert_eq!(aqueduct_pipeline::DEFAULT_CAPACITY, 100);
}

#[tokio::test]
async fn process_reports_zero_workers_as_an_error() {
    let result =
        aqueduct_pipeline::process(0..3u32, 0, |item| async move { Ok::<_, ()>(item) }).await;
    assert!(matches!(result, Err(aqueduct_pipeline::Error::ContractViolation { .. })));
}
