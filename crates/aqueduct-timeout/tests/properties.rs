//! Property tests on paused time: whatever the own deadline, the ambient one and the work's latency, the earliest deadline decides.

use std::time::Duration;

use aqueduct_timeout::{idle_timeout, timeout, with_deadline};
use futures::StreamExt;
use proptest::prelude::*;
use tokio::time::{Instant, sleep};

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whole milliseconds, so tokio's millisecond rounding does not blur the expected instants.
    #[test]
    fn the_earliest_deadline_decides(own_ms in 0_u64..500, ambient_ms in proptest::option::of(0_u64..500), work_ms in 0_u64..500) {
        let runtime = paused_runtime();
        let (result, waited_total) = runtime.block_on(async {
            let start = Instant::now();
            let guarded = timeout(Duration::from_millis(own_ms), sleep(Duration::from_millis(work_ms)));
            let result = match ambient_ms {
                Some(ambient_ms) => with_deadline(start + Duration::from_millis(ambient_ms), guarded).await,
                None => guarded.await,
            };
            (result, start.elapsed())
        });
        let effective_ms = ambient_ms.map_or(own_ms, |ambient_ms| ambient_ms.min(own_ms));
        if work_ms == 0 || work_ms <= effective_ms {
            // A ready future wins, and on a tie the inner future is polled first.
            prop_assert!(result.is_ok(), "expected the work to finish: {result:?}");
            prop_assert_eq!(waited_total, Duration::from_millis(work_ms));
        } else {
            let elapsed = result.expect_err("expected a timeout");
            prop_assert_eq!(elapsed.waited(), Duration::from_millis(effective_ms));
            prop_assert_eq!(waited_total, Duration::from_millis(effective_ms));
            prop_assert_eq!(elapsed.is_ambient(), ambient_ms.is_some_and(|ambient_ms| ambient_ms < own_ms));
            prop_assert_eq!(elapsed.timeout(), Some(Duration::from_millis(own_ms)));
        }
    }

    /// A stream whose gaps are all shorter than `idle` passes whole; the first longer gap ends it there.
    #[test]
    fn idle_timeout_cuts_at_the_first_long_gap(idle_ms in 1_u64..100, gaps in proptest::collection::vec(0_u64..150, 0..12)) {
        let runtime = paused_runtime();
        let gaps_for_stream = gaps.clone();
        let items: Vec<_> = runtime.block_on(async move {
            let stream = futures::stream::iter(gaps_for_stream.into_iter().enumerate()).then(|(index, gap)| async move {
                sleep(Duration::from_millis(gap)).await;
                index
            });
            idle_timeout(Duration::from_millis(idle_ms), stream).collect().await
        });
        match gaps.iter().position(|gap| *gap > idle_ms) {
            None => {
                prop_assert_eq!(items.len(), gaps.len());
                prop_assert!(items.iter().all(Result::is_ok));
            }
            Some(first_long) => {
                prop_assert_eq!(items.len(), first_long + 1);
                prop_assert!(items[..first_long].iter().all(Result::is_ok));
                prop_assert_eq!(items[first_long].unwrap_err().waited(), Duration::from_millis(idle_ms));
            }
        }
    }
}
