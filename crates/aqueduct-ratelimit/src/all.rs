//! All-or-nothing acquisition across several limiters: either every limiter admits the call, or none is charged.

use std::time::Duration;

use aqueduct_core::Error;

use crate::limiter::{Limiter, Permit};

/// Takes a permit of weight `weight` from every limiter in `limiters`, or from none of them.
///
/// Composite limits (a per-user limit and a global one, a per-second and a per-hour one) otherwise burn
/// quota on the limiters that said yes when a later one says no. Here every limiter is checked first,
/// spending nothing; only when all would admit are they charged, in order. If a concurrent caller wins a
/// race in between, the limiters already charged are refunded before the error is returned.
///
/// The refund of a rate charge takes its cost off the limiter's state even if another caller was admitted
/// just after it; that caller keeps its admission, so the total admitted never exceeds what the limits
/// allow over time, but in that narrow race a waiter queued behind may start marginally early.
///
/// # Errors
///
/// [`Error::Full`] when a concurrency limit is at capacity; [`Error::RateLimited`] with the *longest*
/// retry-after among the limiters that refused (retrying earlier cannot succeed);
/// [`Error::ContractViolation`] when `weight` can never be admitted by one of them.
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{try_acquire_all, Limiter, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let per_user = Limiter::rate_limit(Rate::per_second(1), 1).unwrap();
/// let global = Limiter::rate_limit(Rate::per_second(100), 2).unwrap();
/// let _spent = per_user.try_acquire::<()>().unwrap();
///
/// // The per-user limit refuses, so the global limit is not charged.
/// assert!(try_acquire_all::<()>(&[&global, &per_user], 1).is_err());
/// assert_eq!(global.available_tokens(), Some(2));
/// # }
/// ```
pub fn try_acquire_all<'a, E>(
    limiters: &[&'a Limiter],
    weight: u32,
) -> Result<Vec<Permit<'a>>, Error<E>> {
    for limiter in limiters {
        limiter.check_weight_for::<E>(weight)?;
    }
    let mut permits = Vec::with_capacity(limiters.len());
    // Concurrency slots are exact to give back: take them first.
    for limiter in limiters {
        match limiter.try_concurrency(weight) {
            Ok(permit) => permits.push(permit),
            Err(capacity) => return Err(Error::Full { capacity }),
        }
    }
    if weight == 0 {
        return Ok(permits);
    }
    let tokens = u64::from(weight);
    // Check every rate limit without spending.
    let mut longest_wait = 0;
    for limiter in limiters {
        longest_wait = longest_wait.max(limiter.rate_wait_ns(tokens, limiter.now_ns()));
    }
    if longest_wait > 0 {
        return Err(Error::RateLimited { retry_after: Duration::from_nanos(longest_wait) });
    }
    // Charge them in order, rolling back on a lost race.
    let mut charged: Vec<&Limiter> = Vec::with_capacity(limiters.len());
    for limiter in limiters {
        if let Some((state, params, queued)) = limiter.rate_parts() {
            let now = limiter.now_ns();
            // Callers queued on this limiter go first: never take tokens ahead of them.
            let booked = if queued {
                Err(limiter.rate_wait_ns(tokens, now).max(1))
            } else {
                state
                    .book(params, now, tokens, 0)
                    .map(|_| ())
                    .map_err(|refused| refused.start_at - now)
            };
            if let Err(wait) = booked {
                for done in charged {
                    if let Some((state, params, _)) = done.rate_parts() {
                        state.refund_any(params.cost_ns(tokens));
                    }
                }
                return Err(Error::RateLimited { retry_after: Duration::from_nanos(wait) });
            }
            charged.push(limiter);
        }
    }
    Ok(permits)
}
