//! Each test double does what it promises.

use std::time::Duration;

use aqueduct_core::{Classify, Transience};
use aqueduct_testkit::{CallCounter, DropCounter, Flaky, with_latency};
use tokio::time::Instant;

#[tokio::test]
async fn flaky_fails_exactly_n_times_and_shares_its_count() {
    let flaky = Flaky::new(3).with_retry_after(Duration::from_secs(1));
    let clone = flaky.clone();
    for attempt in 1..=3 {
        let error = clone.call().await.expect_err("fails while attempts remain");
        assert_eq!(error.attempt, attempt);
        assert_eq!(error.transience(), Transience::Transient);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    }
    assert_eq!(clone.call().await, Ok(4));
    assert_eq!(flaky.attempts(), 4);
    let permanent = Flaky::new(1).permanent();
    assert_eq!(permanent.call_now().expect_err("fails once").transience(), Transience::Permanent);
    assert_eq!(Flaky::new(0).call_now(), Ok(1));
}

#[tokio::test(start_paused = true)]
async fn latency_delays_by_exactly_the_given_time() {
    let start = Instant::now();
    let value = with_latency(Duration::from_millis(250), async { "done" }).await;
    assert_eq!(value, "done");
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn latency_future_dropped_early_never_runs_the_inner_future() {
    let counter = CallCounter::new();
    let inner_counter = counter.clone();
    let delayed = with_latency(Duration::from_secs(1), async move { inner_counter.record() });
    let outcome = tokio::time::timeout(Duration::from_millis(10), delayed).await;
    assert!(outcome.is_err());
    assert_eq!(counter.calls(), 0);
}

#[test]
fn drop_counter_tracks_alive_and_dropped() {
    let counter = DropCounter::new();
    let guards: Vec<_> = (0..5).map(|_| counter.guard()).collect();
    assert_eq!((counter.created(), counter.alive(), counter.dropped()), (5, 5, 0));
    drop(guards);
    assert_eq!((counter.created(), counter.alive(), counter.dropped()), (5, 0, 5));
}

#[test]
fn call_counter_records_the_peak_in_flight() {
    let counter = CallCounter::new();
    let first = counter.enter();
    let second = counter.enter();
    drop(first);
    let third = counter.enter();
    assert_eq!(counter.in_flight(), 2);
    drop((second, third));
    assert_eq!((counter.calls(), counter.peak(), counter.in_flight()), (3, 2, 0));
}

#[test]
fn database_url_reads_the_environment() {
    // xtask sets DATABASE_URL for the whole test run; outside it the helper must refuse loudly.
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            assert_eq!(aqueduct_testkit::postgres::database_url(), url);
        }
        _ => {
            let outcome = std::panic::catch_unwind(aqueduct_testkit::postgres::database_url);
            let message = outcome.expect_err("no database, no silent pass");
            let message = message
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| message.downcast_ref::<String>().cloned())
                .expect("a string message");
            assert!(message.contains("cargo xtask test"));
        }
    }
}
