//! Property tests: no jittered delay exceeds the cap or falls below its jitter's floor, whatever the numbers.

use std::time::Duration;

use aqueduct_retry::{Backoff, Error, Jitter, RetryPolicy, retry_blocking};
use proptest::prelude::*;

fn backoff_strategy() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        (0_u64..5_000)
            .prop_map(|millis| Backoff::Constant { delay: Duration::from_millis(millis) }),
        (0_u64..5_000, 1.0_f64..10.0).prop_map(|(millis, factor)| Backoff::Exponential {
            initial: Duration::from_millis(millis),
            factor
        }),
        (0_u64..5_000)
            .prop_map(|millis| Backoff::Fibonacci { initial: Duration::from_millis(millis) }),
    ]
}

fn jitter_strategy() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated)
    ]
}

/// The delays the blocking loop sleeps for an always-failing operation.
fn delays(policy: &RetryPolicy) -> Vec<Duration> {
    let mut slept = Vec::new();
    let _: Result<(), Error<()>> =
        retry_blocking(policy, || Err(())).sleep_with(|delay| slept.push(delay)).call();
    slept
}

proptest! {
    #[test]
    fn no_delay_exceeds_the_cap_or_its_floor(
        backoff in backoff_strategy(),
        jitter in jitter_strategy(),
        extra_cap_millis in 0_u64..100_000,
        attempts in 1_u32..40,
        seed in any::<u64>(),
    ) {
        let initial = match backoff {
            Backoff::Constant { delay } => delay,
            Backoff::Exponential { initial, .. } | Backoff::Fibonacci { initial } => initial,
            _ => unreachable!("the strategies build only these"),
        };
        let cap = initial + Duration::from_millis(extra_cap_millis);
        let policy = RetryPolicy::builder()
            .backoff(backoff)
            .jitter(jitter)
            .max_delay(cap)
            .max_attempts(attempts)
            .seed(seed)
            .build()
            .expect("valid policy");
        let slept = delays(&policy);
        // Zero delays are not slept, so at most attempts - 1 sleeps happen.
        prop_assert!(slept.len() < attempts as usize);
        for (retry_index, delay) in slept.iter().enumerate() {
            prop_assert!(*delay <= cap, "{delay:?} exceeds the cap {cap:?}");
            let base = backoff.base_delay(u32::try_from(retry_index).unwrap_or(u32::MAX), cap);
            match jitter {
                Jitter::None => prop_assert_eq!(*delay, base),
                Jitter::Full => prop_assert!(*delay <= base),
                Jitter::Equal => prop_assert!(*delay >= base / 2 && *delay <= base),
                Jitter::Decorrelated => prop_assert!(*delay >= initial.min(cap)),
                _ => unreachable!("the strategies build only these"),
            }
        }
    }

    #[test]
    fn base_delays_never_decrease_and_stay_capped(backoff in backoff_strategy(), extra_cap_millis in 0_u64..1_000_000) {
        let cap = Duration::from_millis(5_000 + extra_cap_millis);
        let mut previous = Duration::ZERO;
        for retry_index in 0..200 {
            let delay = backoff.base_delay(retry_index, cap);
            prop_assert!(delay <= cap);
            prop_assert!(delay >= previous);
            previous = delay;
        }
    }
}
