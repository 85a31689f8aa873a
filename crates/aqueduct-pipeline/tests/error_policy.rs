//! Error policies per stage: fail fast, skip with a callback, retry through a closure, dead letter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_pipeline::{Error, PipelineBuilder, StageOptions, StopReason};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Bad(u64);

#[tokio::test(start_paused = true)]
async fn fail_fast_returns_the_first_error_and_stops_the_source() {
    let result = PipelineBuilder::<u64, Bad>::from_items(0..)
        .stage(2, |item: u64| async move { if item == 42 { Err(Bad(item)) } else { Ok(item) } })
        .build()
        .unwrap()
        .collect()
        .await;
    assert_eq!(result.unwrap_err().into_operation(), Some(Bad(42)));
}

#[tokio::test(start_paused = true)]
async fn a_stage_may_return_the_core_error_directly() {
    let result = PipelineBuilder::<u64, Bad>::from_items(0..5u64)
        .stage(1, |item: u64| async move {
            if item == 3 { Err(Error::Operation(Bad(3))) } else { Ok::<_, Error<Bad>>(item) }
        })
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(
        result.unwrap_err().operation(),
        Some(&Bad(3)),
        "no nesting: Error<Bad>, not Error<Error<Bad>>"
    );
}

#[tokio::test(start_paused = true)]
async fn skip_reports_each_failure_and_goes_on() {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    let options = StageOptions::new(3).skip(move |failure| {
        seen.lock().unwrap().push((failure.stage, failure.index, failure.error.into_operation()));
    });
    let pipeline = PipelineBuilder::<u64, Bad>::from_items(0..100u64)
        .stage(2, |item: u64| async move { Ok::<_, Bad>(item) })
        .stage_with(options, |item: u64| async move {
            if item % 10 == 0 { Err(Bad(item)) } else { Ok(item) }
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let outputs = pipeline.collect().await.unwrap();
    assert_eq!(outputs.len(), 90);
    let mut failures = failures.lock().unwrap().clone();
    failures.sort_unstable_by_key(|failure| failure.1);
    let expected: Vec<_> = (0..10u64).map(|tens| (1, tens * 10, Some(Bad(tens * 10)))).collect();
    assert_eq!(failures, expected);
    let metrics = handle.metrics();
    assert_eq!(metrics.stages[1].items_failed, 10);
    assert_eq!(metrics.accounted(), 100);
}

#[tokio::test(start_paused = true)]
async fn retry_calls_again_after_the_delay_the_closure_chose() {
    let attempts = Arc::new(AtomicU32::new(0));
    let calls = attempts.clone();
    let options = StageOptions::new(1).retry(|attempt, _error| {
        if attempt < 3 { Ok(Duration::from_millis(100)) } else { Err(StopReason::Attempts) }
    });
    let started = tokio::time::Instant::now();
    let outputs = PipelineBuilder::<u64, Bad>::from_items([7u64])
        .stage_with(options, move |item: u64| {
            let calls = calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err(Bad(item)) } else { Ok(item * 2) }
            }
        })
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs, vec![14]);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "two retries, 100 ms each, on paused time"
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_reach_the_dead_letter_with_the_item_and_the_last_error() {
    let letters = Arc::new(Mutex::new(Vec::new()));
    let dead = letters.clone();
    let options = StageOptions::new(2)
        .retry(
            |attempt, _error| {
                if attempt < 2 { Ok(Duration::ZERO) } else { Err(StopReason::Attempts) }
            },
        )
        .dead_letter(move |letter| dead.lock().unwrap().push(letter));
    let outputs = PipelineBuilder::<String, Bad>::from_items(["1", "x", "3"].map(String::from))
        .stage_with(options, |text: String| async move { text.parse::<u64>().map_err(|_| Bad(0)) })
        .build()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(outputs.len(), 2);
    let letters = letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].item, "x");
    assert_eq!(letters[0].index, 1);
    match &letters[0].error {
        Error::Exhausted { attempts, reason, last_error, .. } => {
            assert_eq!(*attempts, 2);
            assert_eq!(*reason, StopReason::Attempts);
            assert_eq!(last_error.as_ref().and_then(|error| error.operation()), Some(&Bad(0)));
        }
        other => panic!("expected exhausted, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_fail_fast_stage_after_exhausted_retries_reports_exhausted() {
    let options = StageOptions::new(1).retry(|_attempt, _error| Err(StopReason::Permanent));
    let result = PipelineBuilder::<u64, Bad>::from_items([1u64])
        .stage_with(options, |item: u64| async move { Err::<u64, _>(Bad(item)) })
        .build()
        .unwrap()
        .run()
        .await;
    let error = result.unwrap_err();
    assert!(error.is_exhausted());
    assert_eq!(error.into_operation(), Some(Bad(1)));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_callback_is_a_fatal_error() {
    let options = StageOptions::new(1).skip(|_failure| panic!("callback broke"));
    let result = PipelineBuilder::<u64, Bad>::from_items(0..10u64)
        .stage_with(options, |item: u64| async move { Err::<u64, _>(Bad(item)) })
        .build()
        .unwrap()
        .run()
        .await;
    match result.unwrap_err() {
        Error::Panicked { message, .. } => assert_eq!(message, "callback broke"),
        other => panic!("expected panicked, got {other:?}"),
    }
}

/// Ten items whose sixth panics when it is pulled.
fn items_that_panic_at_five() -> impl Iterator<Item = u64> + Send + 'static {
    (0..10u64).map(|item| if item == 5 { panic!("source broke") } else { item })
}

/// Runs one pass-through stage over `source` and checks that the source's panic ends the pipeline with
/// `Panicked`, after exactly the five items before it, all accounted for.
async fn a_panicking_source_ends_the_pipeline(source: PipelineBuilder<u64, Bad>) {
    let pipeline = source.stage(1, |item: u64| async move { Ok::<_, Bad>(item) }).build().unwrap();
    let handle = pipeline.handle();
    // `collect` rather than `run`: only a spawned pipeline keeps the order of an ordered one.
    let result = pipeline.collect().await;
    assert!(result.unwrap_err().is_panicked());
    let metrics = handle.metrics();
    assert_eq!(metrics.produced, 5);
    assert_eq!(metrics.accounted(), 5);
}

/// Ten items, then a panic when the iterator is dropped at its end.
struct PanicsWhenDropped(std::ops::Range<u64>);

impl Iterator for PanicsWhenDropped {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.0.next()
    }
}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("the source panics in drop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iterator_that_panics_when_dropped_is_a_fatal_error_pulled_or_not() {
    for ordered in [false, true] {
        let source = PipelineBuilder::<u64, Bad>::from_items(PanicsWhenDropped(0..10));
        let source = if ordered { source.ordered(4) } else { source };
        let pipeline =
            source.stage(4, |item: u64| async move { Ok::<_, Bad>(item) }).build().unwrap();
        let handle = pipeline.handle();
        let collected = tokio::spawn(pipeline.collect());
        // A bound on a hang (the workers once spun forever here), not a timing assertion.
        let ended = tokio::time::timeout(Duration::from_secs(20), handle.finished()).await;
        if ended.is_err() {
            handle.abort();
        }
        assert!(ended.is_ok(), "ordered {ordered}: never finished: {:?}", handle.metrics());
        let result = collected.await.expect("no task panics");
        assert!(result.unwrap_err().is_panicked(), "ordered {ordered}");
        let metrics = handle.metrics();
        assert_eq!(metrics.produced, 10, "ordered {ordered}");
        assert_eq!(metrics.accounted(), 10, "ordered {ordered}: {metrics:?}");
        assert_eq!(metrics.stages[0].workers_alive, 0, "ordered {ordered}: every worker ended");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_is_a_fatal_error() {
    // Pulled by the stage's workers.
    a_panicking_source_ends_the_pipeline(PipelineBuilder::from_items(items_that_panic_at_five()))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_stream_source_is_a_fatal_error() {
    let items = futures_util::stream::iter(items_that_panic_at_five());
    a_panicking_source_ends_the_pipeline(PipelineBuilder::from_stream(items)).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_of_an_ordered_pipeline_is_a_fatal_error() {
    // Ordered: pulled by a source task of its own.
    let source = PipelineBuilder::from_items(items_that_panic_at_five()).ordered(4);
    a_panicking_source_ends_the_pipeline(source).await;
}
