//! The three gather policies: collect-all order, fail-fast by time with siblings stopped, supervise isolation.

use std::time::Duration;

use aqueduct_gather::{Error, first_error, gather, supervise, try_gather};
use aqueduct_testkit::DropCounter;
use proptest::prelude::*;
use tokio::time::sleep;

#[tokio::test(start_paused = true)]
async fn collect_all_returns_every_result_in_input_order() {
    let delays = [50_u64, 10, 40, 20, 30];
    let results: Vec<Result<u64, Error<String>>> = gather(delays.map(|ms| async move {
        sleep(Duration::from_millis(ms)).await;
        if ms == 40 { Err(format!("{ms} failed")) } else { Ok(ms) }
    }))
    .await;
    assert_eq!(results.len(), 5);
    for (position, result) in results.iter().enumerate() {
        match result {
            Ok(value) => assert_eq!(*value, delays[position]),
            Err(error) => {
                assert_eq!(position, 2);
                assert_eq!(error.operation().map(String::as_str), Some("40 failed"));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn collect_all_of_nothing_is_empty() {
    let results: Vec<Result<(), Error<()>>> =
        gather(Vec::<std::future::Ready<Result<(), ()>>>::new()).await;
    assert!(results.is_empty());
}

/// 40 futures (more than `join_all`'s 30): the slow first one must not hide the fast failure of the last one.
#[tokio::test(start_paused = true)]
async fn fail_fast_reports_the_earliest_failure_even_when_it_is_the_last_input() {
    let guards = DropCounter::new();
    let started = tokio::time::Instant::now();
    let count = 40;
    let result: Result<Vec<usize>, Error<String>> = try_gather((0..count).map(|index| {
        let guard = guards.guard();
        async move {
            let _guard = guard;
            if index == count - 1 {
                sleep(Duration::from_millis(5)).await;
                Err(format!("input {index} failed"))
            } else {
                sleep(Duration::from_secs(60 + index as u64)).await;
                Ok(index)
            }
        }
    }))
    .await;
    // The call returned at the failure, not after the slow siblings, and every sibling was dropped by then.
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    assert_eq!(guards.created(), count);
    assert_eq!(guards.alive(), 0, "every sibling's drop guard ran before the call returned");
    let Err(Error::Aggregate(aggregate)) = result else { panic!("expected an aggregate") };
    let (index, error) = aggregate.first().expect("a first failure");
    assert_eq!(*index, count - 1);
    assert_eq!(error.operation().map(String::as_str), Some("input 39 failed"));
    assert_eq!(aggregate.len(), count);
    let cancelled: Vec<usize> = aggregate
        .iter()
        .skip(1)
        .map(|(index, error)| {
            assert!(error.is_cancelled());
            *index
        })
        .collect();
    assert_eq!(cancelled, (0..count - 1).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_spawned_waits_until_the_aborted_siblings_have_stopped() {
    let guards = DropCounter::new();
    let result: Result<Vec<u32>, Error<&str>> = gather((0..8_u32).map(|index| {
        let guard = guards.guard();
        async move {
            let _guard = guard;
            if index == 6 {
                sleep(Duration::from_millis(1)).await;
                return Err("boom");
            }
            sleep(Duration::from_secs(3600)).await;
            Ok(index)
        }
    }))
    .spawned()
    .fail_fast()
    .await;
    assert_eq!(
        guards.alive(),
        0,
        "the aborted tasks were awaited until their futures were dropped"
    );
    let error = first_error(result.unwrap_err());
    assert_eq!(error.operation(), Some(&"boom"));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_returns_all_values_in_input_order_on_success() {
    let values: Result<Vec<u64>, Error<()>> = try_gather([30_u64, 10, 20].map(|ms| async move {
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, ()>(ms)
    }))
    .await;
    assert_eq!(values.ok(), Some(vec![30, 10, 20]));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_accepts_aqueduct_errors_without_nesting() {
    // A child that already returns `Error<E>` (another aqueduct combinator) flattens into the same `Error<E>`.
    let result: Result<Vec<u8>, Error<&str>> =
        try_gather([async { Err::<u8, Error<&str>>(Error::Full { capacity: 3 }) }]).await;
    assert!(first_error(result.unwrap_err()).is_full());
}

#[tokio::test(start_paused = true)]
async fn supervise_isolates_failures_and_reports_them_in_time_order() {
    let mut heard = Vec::new();
    let report = supervise::<_, _, _, String>([40_u64, 10, 30, 20].map(|ms| async move {
        sleep(Duration::from_millis(ms)).await;
        if ms >= 30 { Err(format!("{ms}")) } else { Ok(ms) }
    }))
    .on_error(|index, _| heard.push(index))
    .await;
    assert_eq!(report.succeeded(), &[(1, 10), (3, 20)]);
    let failed: Vec<usize> = report.failures().iter().map(|(index, _)| *index).collect();
    assert_eq!(failed, [2, 0], "the 30 ms failure happened before the 40 ms one");
    assert_eq!(heard, [2, 0]);
    assert!(matches!(report.into_result(), Err(Error::Aggregate(failures)) if failures.len() == 2));
}

#[tokio::test(start_paused = true)]
async fn supervise_spawned_lets_the_others_finish() {
    let report = gather((0..6_u32).map(|n| async move {
        sleep(Duration::from_millis(u64::from(n))).await;
        if n == 0 { Err("first fails") } else { Ok(n) }
    }))
    .spawned()
    .supervise()
    .await;
    assert_eq!(report.succeeded().len(), 5);
    assert_eq!(report.failures().len(), 1);
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

proptest! {
    /// For any set of distinct delays and failing inputs: collect-all keeps input order, and fail-fast
    /// reports the failure with the shortest delay first, whatever its position.
    #[test]
    fn fail_fast_picks_the_failure_that_happened_first(
        delays in proptest::sample::subsequence((1_u64..200).collect::<Vec<_>>(), 1..60).prop_shuffle(),
        failing_mask in proptest::collection::vec(any::<bool>(), 60),
    ) {
        let failing: Vec<bool> = delays.iter().enumerate().map(|(index, _)| failing_mask[index]).collect();
        let runtime = paused_runtime();
        let make = |delays: Vec<u64>, failing: Vec<bool>| delays.into_iter().zip(failing).map(|(ms, fails)| async move {
            sleep(Duration::from_millis(ms)).await;
            if fails { Err(ms) } else { Ok(ms) }
        });

        let all: Vec<Result<u64, Error<u64>>> = runtime.block_on(gather(make(delays.clone(), failing.clone())));
        for (position, result) in all.iter().enumerate() {
            match result {
                Ok(ms) => prop_assert!(!failing[position] && *ms == delays[position]),
                Err(error) => prop_assert!(failing[position] && error.operation() == Some(&delays[position])),
            }
        }

        let fast: Result<Vec<u64>, Error<u64>> = runtime.block_on(try_gather(make(delays.clone(), failing.clone())));
        let earliest = delays.iter().zip(&failing).enumerate().filter(|(_, (_, fails))| **fails).min_by_key(|(_, (ms, _))| **ms);
        match (fast, earliest) {
            (Ok(values), None) => prop_assert_eq!(values, delays),
            (Err(Error::Aggregate(aggregate)), Some((index, (ms, _)))) => {
                let (first_index, first) = aggregate.first().expect("a first failure");
                prop_assert_eq!(*first_index, index);
                prop_assert_eq!(first.operation(), Some(ms));
            }
            (other, expected) => prop_assert!(false, "unexpected {:?} for {:?}", other.map(|v| v.len()), expected),
        }
    }
}
