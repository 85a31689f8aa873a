//! Dropping any gather future mid-way drops (in place) or aborts (spawned) every child: drop counters prove it.

use std::time::Duration;

use aqueduct_gather::{
    Error, GatherOptions, TaskGroup, as_completed, gather, gather_stream, race, race_ok,
};
use aqueduct_testkit::{DropCounter, DropGuard};
use futures::StreamExt;
use tokio::time::{sleep, timeout};

/// A child with three await points: 10 ms, 10 ms and `index` ms.
async fn child(index: u64, guard: DropGuard) -> Result<u64, ()> {
    let _guard = guard;
    sleep(Duration::from_millis(10)).await;
    sleep(Duration::from_millis(10)).await;
    sleep(Duration::from_millis(index)).await;
    Ok(index)
}

/// Lets aborted tasks be dropped by the runtime.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn limit(limit: usize) -> GatherOptions {
    GatherOptions::builder().limit(limit).build().expect("a valid limit")
}

/// Drops the gather made by `make` after `cut` ms, for every cut from before the first poll to after the end.
async fn drop_at_every_point<F, Fut>(name: &str, make: F)
where
    F: Fn(DropCounter) -> Fut,
    Fut: Future,
{
    for cut in (0..=60).step_by(3) {
        let guards = DropCounter::new();
        let _ = timeout(Duration::from_millis(cut), make(guards.clone())).await;
        settle().await;
        assert_eq!(guards.alive(), 0, "{name}: a child outlived the gather dropped at {cut} ms");
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_an_in_place_gather_drops_every_child() {
    drop_at_every_point("collect-all", |guards| async move {
        let _: Vec<Result<u64, Error<()>>> =
            gather((0..40).map(|index| child(index, guards.guard()))).await;
    })
    .await;
    drop_at_every_point("fail-fast with a limit", |guards| async move {
        let _: Result<Vec<u64>, Error<()>> =
            gather((0..40).map(|index| child(index, guards.guard())))
                .with_options(limit(7))
                .fail_fast()
                .await;
    })
    .await;
    drop_at_every_point("supervise", |guards| async move {
        let _ = gather::<_, _, _, ()>((0..5).map(|index| child(index, guards.guard())))
            .supervise()
            .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropping_a_spawned_gather_aborts_every_task() {
    drop_at_every_point("spawned", |guards| async move {
        let _: Vec<Result<u64, Error<()>>> =
            gather((0..40).map(|index| child(index, guards.guard()))).spawned().await;
    })
    .await;
    drop_at_every_point("spawned with a limit", |guards| async move {
        let _: Vec<Result<u64, Error<()>>> =
            gather((0..40).map(|index| child(index, guards.guard())))
                .with_options(limit(3))
                .spawned()
                .await;
    })
    .await;
    // A stream that makes one child every 2 ms: children are created across polls while others finish.
    drop_at_every_point("spawned from a slow stream", |guards| async move {
        let source = futures::stream::unfold(0_u64, move |index| {
            let guard = guards.guard();
            async move {
                if index == 20 {
                    return None;
                }
                sleep(Duration::from_millis(2)).await;
                Some((child(index, guard), index + 1))
            }
        });
        let _: Vec<Result<u64, Error<()>>> = gather_stream(Box::pin(source)).spawned().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropping_as_completed_midway_drops_the_rest() {
    for taken in 0..6 {
        for spawned in [false, true] {
            let guards = DropCounter::new();
            let futures = (0..5).map(|index| child(index, guards.guard()));
            let items: Vec<(usize, Result<u64, Error<()>>)> = if spawned {
                as_completed(futures).spawned().take(taken).collect().await
            } else {
                as_completed(futures).take(taken).collect().await
            };
            assert_eq!(items.len(), taken.min(5));
            settle().await;
            assert_eq!(guards.alive(), 0, "taken {taken}, spawned {spawned}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_race_drops_every_contender() {
    drop_at_every_point("race", |guards| async move {
        let _: Result<u64, Error<()>> =
            race((5..9).map(|index| child(index, guards.guard()))).await;
    })
    .await;
    drop_at_every_point("race_ok spawned", |guards| async move {
        let _: Result<u64, Error<()>> =
            race_ok((5..9).map(|index| child(index, guards.guard()))).spawned().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropping_a_task_group_or_its_join_aborts_the_children() {
    let guards = DropCounter::new();
    let mut group: TaskGroup<u64, ()> = TaskGroup::new();
    for index in 0..4 {
        group.spawn(child(index, guards.guard()));
    }
    sleep(Duration::from_millis(5)).await;
    drop(group);
    settle().await;
    assert_eq!(guards.alive(), 0);

    drop_at_every_point("join", |guards| async move {
        let mut group: TaskGroup<u64, ()> = TaskGroup::new();
        for index in 0..4 {
            group.spawn(child(index, guards.guard()));
        }
        let _ = group.join().await;
    })
    .await;
}
