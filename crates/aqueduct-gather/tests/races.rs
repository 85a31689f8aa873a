//! `race` and `race_ok`: the winner, the losers stopped, the aggregate of failures, the empty input.

use std::time::Duration;

use aqueduct_gather::{Error, race, race_ok};
use aqueduct_testkit::DropCounter;
use tokio::time::sleep;

async fn after(
    ms: u64,
    outcome: Result<u64, &'static str>,
    guard: aqueduct_testkit::DropGuard,
) -> Result<u64, &'static str> {
    let _guard = guard;
    sleep(Duration::from_millis(ms)).await;
    outcome
}

#[tokio::test(start_paused = true)]
async fn race_returns_the_first_to_finish_even_a_failure_and_drops_the_losers() {
    let guards = DropCounter::new();
    let first: Result<u64, Error<&str>> = race([
        after(30, Ok(30), guards.guard()),
        after(10, Err("fast failure"), guards.guard()),
        after(20, Ok(20), guards.guard()),
    ])
    .await;
    assert_eq!(first.unwrap_err().operation(), Some(&"fast failure"));
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn race_ok_skips_failures_and_returns_the_first_success() {
    for spawned in [false, true] {
        let guards = DropCounter::new();
        let contenders = [
            after(5, Err("a"), guards.guard()),
            after(30, Ok(30), guards.guard()),
            after(20, Ok(20), guards.guard()),
            after(3_600_000, Ok(0), guards.guard()),
        ];
        let started = tokio::time::Instant::now();
        let winner: Result<u64, Error<&str>> =
            if spawned { race_ok(contenders).spawned().await } else { race_ok(contenders).await };
        assert_eq!(winner.ok(), Some(20));
        assert_eq!(started.elapsed(), Duration::from_millis(20));
        assert_eq!(
            guards.alive(),
            0,
            "the losers stopped before the race returned (spawned: {spawned})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn race_ok_reports_every_failure_in_time_order_when_all_fail() {
    let guards = DropCounter::new();
    let result: Result<u64, Error<&str>> =
        race_ok([after(30, Err("slow"), guards.guard()), after(10, Err("fast"), guards.guard())])
            .await;
    let Err(Error::Aggregate(failures)) = result else { panic!("expected an aggregate") };
    let order: Vec<(usize, &str)> =
        failures.iter().map(|(index, error)| (*index, *error.operation().unwrap())).collect();
    assert_eq!(order, [(1, "fast"), (0, "slow")]);
}

#[tokio::test(start_paused = true)]
async fn racing_nothing_is_a_contract_violation_not_a_hang() {
    let empty: Vec<std::future::Ready<Result<u8, ()>>> = Vec::new();
    let result: Result<u8, Error<()>> = race(empty.clone()).await;
    assert!(matches!(result, Err(Error::ContractViolation { .. })));
    let result: Result<u8, Error<()>> = race_ok(empty).await;
    assert!(matches!(result, Err(Error::ContractViolation { .. })));
}
