//! Panics in children: captured as `Error::Panicked { index, message }` or resumed; under fail-fast they cancel.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use aqueduct_gather::{
    Error, GatherOptions, PanicPolicy, TaskGroup, as_completed, first_error, gather, race,
};
use aqueduct_testkit::DropCounter;
use futures::{FutureExt, StreamExt};
use tokio::time::sleep;

fn resume() -> GatherOptions {
    GatherOptions::builder().panics(PanicPolicy::Resume).build().expect("valid options")
}

async fn child(index: u32, panics_at: u32, guard: aqueduct_testkit::DropGuard) -> Result<u32, ()> {
    let _guard = guard;
    if index == panics_at {
        sleep(Duration::from_millis(1)).await;
        panic!("child {index} exploded");
    }
    sleep(Duration::from_secs(60)).await;
    Ok(index)
}

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_panicked_with_index_and_message() {
    let guards = DropCounter::new();
    let results: Vec<Result<u32, Error<()>>> =
        gather((0..4).map(|index| child(index, 2, guards.guard()))).await;
    match &results[2] {
        Err(Error::Panicked { index, message }) => {
            assert_eq!(*index, Some(2));
            assert_eq!(message, "child 2 exploded");
        }
        other => panic!("expected a captured panic, got {other:?}"),
    }
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 3, "the siblings went on");
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spawned_panic_is_captured_with_its_index() {
    let guards = DropCounter::new();
    let results: Vec<Result<u32, Error<()>>> =
        gather((0..3).map(|index| child(index, 1, guards.guard()))).spawned().await;
    assert!(
        matches!(&results[1], Err(Error::Panicked { index: Some(1), message }) if message == "child 1 exploded")
    );
    assert!(results[0].is_ok() && results[2].is_ok());
}

#[tokio::test(start_paused = true)]
async fn under_fail_fast_a_panic_cancels_the_siblings() {
    for spawned in [false, true] {
        let guards = DropCounter::new();
        let futures = (0..5).map(|index| child(index, 3, guards.guard()));
        let result: Result<Vec<u32>, Error<()>> = if spawned {
            gather(futures).spawned().fail_fast().await
        } else {
            gather(futures).fail_fast().await
        };
        assert_eq!(guards.alive(), 0, "siblings stopped (spawned: {spawned})");
        let Err(Error::Aggregate(aggregate)) = result else { panic!("expected an aggregate") };
        assert!(matches!(aggregate.first(), Some((3, Error::Panicked { index: Some(3), .. }))));
        assert_eq!(aggregate.iter().filter(|(_, error)| error.is_cancelled()).count(), 4);
    }
}

#[tokio::test(start_paused = true)]
async fn the_resume_policy_re_raises_after_dropping_the_siblings() {
    let guards = DropCounter::new();
    let gathered =
        gather((0..4).map(|index| child(index, 0, guards.guard()))).with_options(resume());
    let outcome = AssertUnwindSafe(gathered).catch_unwind().await;
    let payload = outcome.expect_err("the panic was resumed");
    assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("child 0 exploded"));
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_resume_policy_waits_for_spawned_siblings_before_re_raising() {
    let guards = DropCounter::new();
    let gathered = gather((0..4).map(|index| child(index, 1, guards.guard())))
        .with_options(resume())
        .spawned();
    let outcome: Result<Vec<Result<u32, Error<()>>>, _> =
        AssertUnwindSafe(gathered).catch_unwind().await;
    assert!(outcome.is_err());
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn as_completed_and_race_capture_panics_too() {
    let guards = DropCounter::new();
    let items: Vec<(usize, Result<u32, Error<()>>)> =
        as_completed((0..3).map(|index| child(index, 0, guards.guard()))).collect().await;
    assert!(matches!(items[0], (0, Err(Error::Panicked { index: Some(0), .. }))));

    let first: Result<u32, Error<()>> =
        race((0..3).map(|index| child(index, 2, guards.guard()))).await;
    assert!(first.unwrap_err().is_panicked());
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_group_panic_cancels_the_siblings() {
    let guards = DropCounter::new();
    let mut group: TaskGroup<u32, ()> = TaskGroup::new();
    for index in 0..4 {
        group.spawn(child(index, 2, guards.guard()));
    }
    let error = group.join().await.unwrap_err();
    assert_eq!(guards.alive(), 0);
    assert!(matches!(first_error(error), Error::Panicked { index: Some(2), .. }));
}

#[tokio::test(start_paused = true)]
async fn a_task_group_can_resume_the_panic_in_the_joining_task() {
    let mut group: TaskGroup<u32, ()> = TaskGroup::with_options(resume());
    let guards = DropCounter::new();
    group.spawn(child(0, 0, guards.guard()));
    group.spawn(child(1, 0, guards.guard()));
    let outcome = AssertUnwindSafe(group.join()).catch_unwind().await;
    assert!(outcome.is_err());
    assert_eq!(guards.alive(), 0);
}
