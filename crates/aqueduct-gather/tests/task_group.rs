//! `TaskGroup`: spawn, join in spawn order, immediate fail-fast, cancel, shutdown, limit.

use std::time::Duration;

use aqueduct_gather::{Error, GatherOptions, TaskGroup};
use aqueduct_testkit::{CallCounter, DropCounter};
use tokio::time::sleep;

#[tokio::test(start_paused = true)]
async fn join_returns_values_in_spawn_order() {
    let mut group: TaskGroup<u64, ()> = TaskGroup::new();
    for ms in [30_u64, 10, 20] {
        group.spawn(async move {
            sleep(Duration::from_millis(ms)).await;
            Ok::<_, ()>(ms)
        });
    }
    assert_eq!(group.len(), 3);
    assert_eq!(group.join().await.ok(), Some(vec![30, 10, 20]));
}

#[tokio::test(start_paused = true)]
async fn a_failure_cancels_the_siblings_before_anyone_joins() {
    let guards = DropCounter::new();
    let mut group: TaskGroup<u64, String> = TaskGroup::new();
    for index in 0..5_u64 {
        let guard = guards.guard();
        group.spawn(async move {
            let _guard = guard;
            if index == 4 {
                sleep(Duration::from_millis(10)).await;
                return Err(format!("child {index} failed"));
            }
            sleep(Duration::from_secs(3600)).await;
            Ok(index)
        });
    }
    // Nobody awaits the group yet: the failure alone stops the siblings.
    sleep(Duration::from_millis(11)).await;
    assert!(group.is_cancelled());
    assert_eq!(guards.alive(), 0);
    let Err(Error::Aggregate(aggregate)) = group.join().await else {
        panic!("expected an aggregate")
    };
    let (index, first) = aggregate.first().unwrap();
    assert_eq!(*index, 4);
    assert_eq!(first.operation().map(String::as_str), Some("child 4 failed"));
    let cancelled: Vec<usize> = aggregate.iter().skip(1).map(|(index, _)| *index).collect();
    assert_eq!(cancelled, [0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn failures_are_ordered_by_time_not_by_spawn_index() {
    let mut group: TaskGroup<(), u64> = TaskGroup::with_options(GatherOptions::default());
    // Both fail at once in time order 20 ms then 10 ms is impossible; spawn the slower first.
    group.spawn(async {
        sleep(Duration::from_millis(20)).await;
        Err::<(), _>(20_u64)
    });
    group.spawn(async {
        sleep(Duration::from_millis(10)).await;
        Err::<(), _>(10_u64)
    });
    let Err(Error::Aggregate(aggregate)) = group.join().await else {
        panic!("expected an aggregate")
    };
    assert_eq!(aggregate.first().and_then(|(_, error)| error.operation()), Some(&10));
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_every_child_and_join_reports_cancelled() {
    let guards = DropCounter::new();
    let mut group: TaskGroup<(), ()> = TaskGroup::new();
    for _ in 0..3 {
        let guard = guards.guard();
        group.spawn(async move {
            let _guard = guard;
            std::future::pending::<Result<(), ()>>().await
        });
    }
    group.cancel();
    assert!(matches!(group.join().await, Err(Error::Cancelled)));
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_child_spawned_after_cancel_never_runs() {
    let runs = CallCounter::new();
    let mut group: TaskGroup<(), ()> = TaskGroup::new();
    group.cancel();
    let counter = runs.clone();
    group.spawn(async move {
        counter.record();
        Ok::<_, ()>(())
    });
    assert!(matches!(group.join().await, Err(Error::Cancelled)));
    assert_eq!(runs.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_once_every_child_has_stopped() {
    let guards = DropCounter::new();
    let mut group: TaskGroup<(), ()> = TaskGroup::new();
    for _ in 0..4 {
        let guard = guards.guard();
        group.spawn(async move {
            let _guard = guard;
            sleep(Duration::from_secs(3600)).await;
            Ok::<_, ()>(())
        });
    }
    sleep(Duration::from_millis(1)).await;
    assert_eq!(guards.alive(), 4);
    group.shutdown().await;
    assert_eq!(guards.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_limit_bounds_the_children_running_at_once() {
    let running = CallCounter::new();
    let mut group: TaskGroup<u32, ()> =
        TaskGroup::with_options(GatherOptions::builder().limit(2).build().unwrap());
    for n in 0..10 {
        let running = running.clone();
        group.spawn(async move {
            let _in_flight = running.enter();
            sleep(Duration::from_millis(u64::from(n % 3) + 1)).await;
            Ok::<_, ()>(n)
        });
    }
    assert_eq!(group.join().await.ok(), Some((0..10).collect()));
    assert_eq!(running.peak(), 2);
}
