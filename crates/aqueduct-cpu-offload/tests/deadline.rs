//! The ambient deadline: `run` yields `Error::Elapsed` when it passes first and lets go of the job, which then never
//! runs if it had not started; a job that finishes in time is unaffected.

mod support;

use std::time::Duration;

use aqueduct_core::with_deadline;
use aqueduct_cpu_offload::{CpuPool, Error};
use aqueduct_testkit::CallCounter;
use support::{Blocker, Outcome, drain};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_run_waiting_past_the_ambient_deadline_elapses_and_its_job_never_runs() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let blocker = Blocker::start(&pool).await;
    let calls = CallCounter::new();
    let job_calls = calls.clone();
    let at = Instant::now() + Duration::from_millis(50);
    let outcome: Outcome<()> = with_deadline(at, pool.run(move || job_calls.record())).await;
    match outcome {
        Err(Error::Elapsed { elapsed, last_error: None }) => {
            assert!(elapsed.is_ambient());
            assert_eq!(elapsed.deadline(), at);
            assert_eq!(elapsed.timeout(), None);
            assert_eq!(elapsed.waited(), Duration::from_millis(50));
        }
        other => panic!("expected an elapsed error, got {other:?}"),
    }
    assert!(blocker.release().await);
    drain(&pool).await;
    assert_eq!(calls.calls(), 0, "the job had not started, so it never runs");
    assert_eq!(pool.status().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_run_waiting_for_room_past_the_deadline_elapses_without_submitting() {
    let pool = CpuPool::builder().threads(1).capacity(1).build().unwrap();
    let blocker = Blocker::start(&pool).await;
    let at = Instant::now() + Duration::from_millis(5);
    let outcome: Outcome<u8> = with_deadline(at, pool.run(|| 1)).await;
    assert!(outcome.unwrap_err().is_elapsed());
    assert_eq!(pool.status().in_flight, 1, "only the blocker holds a slot");
    assert!(blocker.release().await);
    assert_eq!(pool.status().in_flight, 0);
}

// Real time on purpose: with paused time, a runtime waiting only for a pool thread is idle, so tokio would jump the
// clock straight to the deadline.
#[tokio::test]
async fn a_job_that_finishes_in_time_is_unaffected_by_the_deadline() {
    let pool = CpuPool::builder().threads(1).build().unwrap();
    let at = Instant::now() + Duration::from_secs(3_600);
    let outcome: Outcome<u8> = with_deadline(at, pool.run(|| 4)).await;
    assert_eq!(outcome.unwrap(), 4);
}
