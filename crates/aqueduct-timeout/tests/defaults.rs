//! `timeout_or`, `timeout_or_else`, `timeout_or_default` and their method forms: the value in time, the default after.

use std::time::Duration;

use aqueduct_testkit::{CallCounter, DropCounter};
use aqueduct_timeout::{TimeoutExt, timeout_or, timeout_or_default, timeout_or_else};
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

async fn answer_after(latency: Duration, value: &'static str) -> &'static str {
    sleep(latency).await;
    value
}

#[tokio::test(start_paused = true)]
async fn timeout_or_returns_the_value_in_time_and_the_default_after() {
    assert_eq!(timeout_or(50 * MS, answer_after(10 * MS, "fresh"), "cached").await, "fresh");
    let start = Instant::now();
    assert_eq!(timeout_or(50 * MS, answer_after(80 * MS, "fresh"), "cached").await, "cached");
    assert_eq!(start.elapsed(), 50 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_ready_future_wins_over_the_default_even_with_a_zero_duration() {
    assert_eq!(timeout_or(Duration::ZERO, async { 1 }, 0).await, 1);
    assert_eq!(timeout_or_else(Duration::ZERO, async { 1 }, |_| 0).await, 1);
    assert_eq!(timeout_or_default(Duration::ZERO, async { 1 }).await, 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_or_else_calls_the_fallback_only_on_timeout_with_the_elapsed() {
    let calls = CallCounter::new();
    let counted = calls.clone();
    let value = timeout_or_else(50 * MS, answer_after(10 * MS, "fresh"), move |_| {
        counted.record();
        "fallback"
    })
    .await;
    assert_eq!(value, "fresh");
    assert_eq!(calls.calls(), 0, "the fallback is lazy");

    let counted = calls.clone();
    let value = timeout_or_else(50 * MS, answer_after(80 * MS, "fresh"), move |elapsed| {
        counted.record();
        assert_eq!(elapsed.waited(), 50 * MS);
        assert_eq!(elapsed.timeout(), Some(50 * MS));
        "fallback"
    })
    .await;
    assert_eq!(value, "fallback");
    assert_eq!(calls.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_or_default_uses_the_type_default() {
    let value: Vec<u8> = timeout_or_default(5 * MS, std::future::pending()).await;
    assert!(value.is_empty());
    let value = timeout_or_default(5 * MS, async { vec![1_u8] }).await;
    assert_eq!(value, vec![1]);
}

#[tokio::test(start_paused = true)]
async fn the_method_forms_chain_from_timeout() {
    assert_eq!(answer_after(80 * MS, "fresh").timeout(50 * MS).or("cached").await, "cached");
    assert_eq!(
        answer_after(80 * MS, "fresh").timeout(50 * MS).or_else(|_| "computed").await,
        "computed"
    );
    assert_eq!(std::future::pending::<u32>().timeout(50 * MS).or_default().await, 0);
    let deadline = Instant::now() + 20 * MS;
    assert_eq!(std::future::pending::<u32>().timeout_at(deadline).or(4).await, 4);
}

#[tokio::test(start_paused = true)]
async fn the_work_is_dropped_before_the_default_is_returned() {
    let drops = DropCounter::new();
    let guard = drops.guard();
    let observed = drops.clone();
    let value = timeout_or_else(
        10 * MS,
        async move {
            let _guard = guard;
            std::future::pending::<usize>().await
        },
        move |_| observed.dropped(),
    )
    .await;
    assert_eq!(value, 1, "the fallback saw the work already dropped");
}

#[tokio::test(start_paused = true)]
async fn an_unused_default_is_dropped_with_the_future() {
    let drops = DropCounter::new();
    let value = timeout_or(50 * MS, async { None }, Some(drops.guard())).await;
    assert!(value.is_none());
    assert_eq!(drops.alive(), 0);
}
