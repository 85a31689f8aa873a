//! The GCRA core: the arithmetic on theoretical arrival times and the one-word atomic state that holds one.
//!
//! Everything here is integer nanoseconds measured from the limiter's origin, with saturating math, so a
//! limit from one call per day to 1e9 calls per second never overflows or loses precision.
//! The clock is not read here: callers pass `now`, which keeps this module deterministic and easy to test.

use std::sync::atomic::{AtomicU64, Ordering};

/// The numbers GCRA needs: the emission interval `T` (time between two tokens) and the window `burst × T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Params {
    /// Nanoseconds between two tokens (`T`, the emission interval); at least 1.
    pub(crate) emission_ns: u64,
    /// How many tokens the bucket holds when full; at least 1.
    pub(crate) burst: u64,
}

/// What GCRA decided for a request of `cost` tokens at time `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The theoretical arrival time after this request is booked.
    pub(crate) new_tat: u64,
    /// When the request may start: `now` or later. Later means the caller must wait (or was refused).
    pub(crate) start_at: u64,
}

impl Params {
    /// The window `burst × T`: how far ahead of `now` the TAT may be after an admission.
    #[inline]
    pub(crate) fn window_ns(self) -> u64 {
        self.burst.saturating_mul(self.emission_ns)
    }

    /// The cost in nanoseconds of `tokens` tokens.
    #[inline]
    pub(crate) fn cost_ns(self, tokens: u64) -> u64 {
        tokens.saturating_mul(self.emission_ns)
    }

    /// GCRA with reservations: book `tokens` after the current TAT and say when they may start.
    ///
    /// `start_at <= now` means admitted at once; otherwise the tokens are usable at `start_at`.
    #[inline]
    pub(crate) fn decide(self, tat: u64, now: u64, tokens: u64) -> Decision {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.cost_ns(tokens));
        let start_at = new_tat.saturating_sub(self.window_ns()).max(now);
        Decision { new_tat, start_at }
    }

    /// How many whole tokens are available at `now` for a TAT of `tat`.
    pub(crate) fn available(self, tat: u64, now: u64) -> u64 {
        let debt = tat.saturating_sub(now);
        self.window_ns().saturating_sub(debt) / self.emission_ns
    }

    /// The TAT of a bucket that holds `tokens` of `burst` tokens at time `now`.
    pub(crate) fn tat_with_tokens(self, tokens: u64, now: u64) -> u64 {
        let missing = self.burst.saturating_sub(tokens);
        now.saturating_add(self.cost_ns(missing))
    }

    /// Moves a TAT from these parameters to `next` without granting a burst and without letting a new
    /// arrival overtake a waiter that already booked its slot.
    ///
    /// The debt `tat - now` splits into the bucket part (at most one window) and the queue part (slots
    /// already booked by waiters). The bucket part keeps its fill ratio; the queue part keeps its wall-clock
    /// length, so every waiter's start time stays valid and the next booking lands after the last one.
    pub(crate) fn rescale_tat(self, next: Self, tat: u64, now: u64) -> u64 {
        let debt = tat.saturating_sub(now);
        let window = self.window_ns();
        let bucket = debt.min(window);
        let queue = debt - bucket;
        let scaled_bucket = if window == 0 {
            0
        } else {
            let scaled = u128::from(bucket) * u128::from(next.window_ns()) / u128::from(window);
            u64::try_from(scaled).unwrap_or(u64::MAX)
        };
        now.saturating_add(queue).saturating_add(scaled_bucket)
    }
}

/// The whole state of a GCRA limiter: one TAT in one `AtomicU64`, updated by compare-and-swap.
///
/// Aligned to 128 bytes (two cache lines, for adjacent-line prefetching) so that the compare-and-swap of
/// one thread does not evict the read-mostly configuration that other threads read on every admission.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct AtomicTat {
    tat: AtomicU64,
}

impl AtomicTat {
    pub(crate) fn new(tat: u64) -> Self {
        Self { tat: AtomicU64::new(tat) }
    }

    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.tat.load(Ordering::Acquire)
    }

    /// Books `tokens` if they can start no later than `now + max_wait`; returns the decision either way.
    ///
    /// `Ok` means the TAT now includes the booking (start at `start_at`); `Err` means nothing changed and
    /// `start_at` is the earliest start the request would have had.
    #[inline]
    pub(crate) fn book(
        &self,
        params: Params,
        now: u64,
        tokens: u64,
        max_wait: u64,
    ) -> Result<Decision, Decision> {
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let decision = params.decide(current, now, tokens);
            if decision.start_at.saturating_sub(now) > max_wait {
                return Err(decision);
            }
            match self.tat.compare_exchange_weak(
                current,
                decision.new_tat,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(decision),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back a booking whose TAT is still the latest one (nobody booked after it). Returns whether it did.
    ///
    /// A booking with later bookings behind it cannot be given back exactly (its slot sits between theirs),
    /// so it is left in place: that capacity is lost until the slot passes.
    pub(crate) fn refund_tail(&self, booked_tat: u64, cost_ns: u64) -> bool {
        self.tat
            .compare_exchange(
                booked_tat,
                booked_tat.saturating_sub(cost_ns),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Takes `cost_ns` off the TAT whatever it is now: the rollback of an all-or-nothing acquisition.
    pub(crate) fn refund_any(&self, cost_ns: u64) {
        // The closure never returns `None`, so the update cannot fail.
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            Some(tat.saturating_sub(cost_ns))
        });
    }

    /// Replaces the TAT with `update(current)` atomically.
    pub(crate) fn update(&self, mut update: impl FnMut(u64) -> u64) {
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| Some(update(tat)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn params(per_second: u64, burst: u64) -> Params {
        Params { emission_ns: SECOND / per_second, burst }
    }

    #[test]
    fn a_full_bucket_admits_burst_then_spaces_by_the_interval() {
        let params = params(10, 3);
        let state = AtomicTat::new(0);
        for _ in 0..3 {
            let decision = state.book(params, 0, 1, 0).expect("the burst is available");
            assert_eq!(decision.start_at, 0);
        }
        let refused = state.book(params, 0, 1, 0).expect_err("the bucket is empty");
        assert_eq!(refused.start_at, SECOND / 10);
        assert_eq!(state.load(), 3 * SECOND / 10);
    }

    #[test]
    fn a_tail_refund_restores_the_state_and_a_middle_one_does_not() {
        let params = params(10, 1);
        let state = AtomicTat::new(0);
        let first = state.book(params, 0, 1, u64::MAX).expect("booked");
        let second = state.book(params, 0, 1, u64::MAX).expect("booked");
        assert!(!state.refund_tail(first.new_tat, params.cost_ns(1)));
        assert!(state.refund_tail(second.new_tat, params.cost_ns(1)));
        assert_eq!(state.load(), first.new_tat);
    }

    #[test]
    fn rescaling_keeps_the_fill_ratio_and_the_queue() {
        let slow = params(10, 10);
        let fast = params(100, 10);
        // Full debt (empty bucket) plus one second of booked queue.
        let tat = SECOND + SECOND;
        let rescaled = slow.rescale_tat(fast, tat, 0);
        assert_eq!(rescaled, SECOND + SECOND / 10);
        // Half a bucket, no queue.
        assert_eq!(slow.rescale_tat(fast, SECOND / 2, 0), SECOND / 20);
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let per_day = Params { emission_ns: 86_400 * SECOND, burst: u64::MAX };
        let decision = per_day.decide(u64::MAX - 5, u64::MAX - 10, u64::MAX);
        assert_eq!(decision.new_tat, u64::MAX);
        let fastest = Params { emission_ns: 1, burst: 1 };
        assert_eq!(fastest.decide(0, 0, 1).start_at, 0);
        assert_eq!(fastest.decide(1, 0, 1).start_at, 1);
    }
}
