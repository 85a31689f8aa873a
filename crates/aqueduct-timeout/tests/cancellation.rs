//! Dropping every future of the crate at every await point: the work, the defaults and the fallbacks never leak.

use std::future::Future;
use std::time::Duration;

use aqueduct_testkit::{CallCounter, DropCounter, DropGuard};
use aqueduct_timeout::{
    Error, IdleTimeoutExt, TimeoutExt, timeout, timeout_at, timeout_or, timeout_or_default,
    timeout_or_detach, timeout_or_else, try_timeout,
};
use futures::StreamExt;
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);

/// Work that holds `guard` and waits at three await points, 10 ms apart, before answering.
async fn guarded_work(guard: DropGuard) -> u32 {
    let _guard = guard;
    sleep(10 * MS).await;
    sleep(10 * MS).await;
    sleep(10 * MS).await;
    1
}

/// Polls `future` `polls` times, 10 ms of paused time apart, drops it, and returns how many guards are still alive.
async fn drop_after<F: Future>(future: F, polls: usize, drops: &DropCounter) -> usize {
    let mut future = Box::pin(future);
    for _ in 0..polls {
        if futures::poll!(future.as_mut()).is_ready() {
            break;
        }
        sleep(10 * MS).await;
    }
    drop(future);
    drops.alive()
}

#[tokio::test(start_paused = true)]
async fn timeout_drops_its_work_at_every_await_point() {
    for polls in 0..6 {
        let drops = DropCounter::new();
        let alive = drop_after(timeout(25 * MS, guarded_work(drops.guard())), polls, &drops).await;
        assert_eq!(alive, 0, "leaked after {polls} polls");
        assert_eq!(drops.created(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_at_and_try_timeout_drop_their_work_at_every_await_point() {
    for polls in 0..6 {
        let drops = DropCounter::new();
        let deadline = Instant::now() + 25 * MS;
        assert_eq!(
            drop_after(timeout_at(deadline, guarded_work(drops.guard())), polls, &drops).await,
            0
        );
        let drops = DropCounter::new();
        let fallible = async { Ok::<u32, ()>(guarded_work(drops.guard()).await) };
        let flattened = async {
            try_timeout::<_, _, _, ()>(25 * MS, fallible)
                .await
                .map_err(|error: Error<()>| error.is_elapsed())
        };
        assert_eq!(drop_after(flattened, polls, &drops).await, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_forms_drop_work_default_and_fallback_at_every_await_point() {
    for polls in 0..6 {
        let drops = DropCounter::new();
        let default = drops.guard();
        let work = async { (guarded_work(drops.guard()).await, None) };
        assert_eq!(
            drop_after(timeout_or(25 * MS, work, (0, Some(default))), polls, &drops).await,
            0
        );

        let drops = DropCounter::new();
        let calls = CallCounter::new();
        let captured = drops.guard();
        let counted = calls.clone();
        let fallback = move |_| {
            counted.record();
            drop(captured);
            0
        };
        assert_eq!(
            drop_after(
                timeout_or_else(15 * MS, guarded_work(drops.guard()), fallback),
                polls,
                &drops
            )
            .await,
            0
        );
        // The fallback ran only when a poll found the deadline passed: the third one, at 20 ms.
        assert_eq!(calls.calls(), usize::from(polls >= 3));

        let drops = DropCounter::new();
        assert_eq!(
            drop_after(timeout_or_default(25 * MS, guarded_work(drops.guard())), polls, &drops)
                .await,
            0
        );
        let drops = DropCounter::new();
        assert_eq!(
            drop_after(guarded_work(drops.guard()).timeout(25 * MS).or(5), polls, &drops).await,
            0
        );
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_or_detach_drops_its_work_before_the_deadline_and_leaves_it_running_after() {
    for polls in 0..3 {
        let drops = DropCounter::new();
        assert_eq!(
            drop_after(timeout_or_detach(25 * MS, guarded_work(drops.guard()), 0), polls, &drops)
                .await,
            0
        );
    }
    // Past the deadline the work belongs to its own task: it runs to completion, then drops its guard.
    let drops = DropCounter::new();
    let outcome = timeout_or_detach(15 * MS, guarded_work(drops.guard()), 0).await;
    assert!(outcome.is_detached());
    drop(outcome);
    assert_eq!(drops.alive(), 1);
    sleep(30 * MS).await;
    assert_eq!(drops.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_drops_its_stream_at_every_await_point() {
    for polls in 0..6 {
        let drops = DropCounter::new();
        let guard = drops.guard();
        let stream = futures::stream::unfold((0_u32, guard), |(count, guard)| async move {
            sleep(Duration::from_millis(u64::from(count) * 10)).await;
            Some((count, (count + 1, guard)))
        })
        .idle_timeout(25 * MS);
        let collected = stream.collect::<Vec<_>>();
        assert_eq!(drop_after(collected, polls, &drops).await, 0, "leaked after {polls} polls");
    }
}
