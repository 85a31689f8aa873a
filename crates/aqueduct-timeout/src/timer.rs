//! The lazy deadline timer behind every timeout: it reads the clock and clamps to the ambient deadline on
//! the first poll, and creates its `Sleep` only when the inner future first returns `Pending`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aqueduct_core::{Deadline, Elapsed};
use pin_project_lite::pin_project;
use tokio::task::coop::{has_budget_remaining, unconstrained};
use tokio::time::{Instant, Sleep, sleep_until};

/// What the caller asked for: a duration counted from the first poll, or an absolute deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Fires `Duration` after the first poll.
    After(Duration),
    /// Fires at this instant.
    At(Instant),
}

pin_project! {
    /// The state of one timeout's timer.
    ///
    /// The states only move forward: `Unstarted` on construction; `Started` on the first poll for a
    /// duration, on the first `Pending` for an absolute deadline; `Armed` when the inner future first
    /// returns `Pending` and a deadline is in force.
    #[project = TimerProjection]
    #[derive(Debug)]
    pub(crate) enum Timer {
        // Not polled yet: neither the clock nor the ambient deadline has been read.
        Unstarted {
            limit: Limit,
        },
        // Polled at least once, no `Sleep` yet. `start` is known for a duration only (an absolute
        // deadline needs no clock read until the inner future waits); `deadline` is `None` when
        // there is no deadline at all (a duration too long to represent and no ambient deadline).
        Started {
            timeout: Option<Duration>,
            start: Option<Instant>,
            deadline: Option<Deadline>,
        },
        // The inner future is waiting and the `Sleep` is registered (or will be at its first poll).
        Armed {
            #[pin]
            sleep: Sleep,
            timeout: Option<Duration>,
            start: Instant,
            ambient: bool,
        },
    }
}

impl Timer {
    /// A timer that has read nothing yet.
    pub(crate) fn new(limit: Limit) -> Self {
        Self::Unstarted { limit }
    }

    /// Called at the start of every poll, before the inner future is polled.
    ///
    /// On the first poll of a duration it reads the clock, so that the duration counts from there, and
    /// clamps to the ambient deadline. An absolute deadline needs neither yet: it is clamped (in the same
    /// poll) only if the inner future returns `Pending`, so a ready future costs one comparison.
    #[inline(always)]
    pub(crate) fn start(mut self: Pin<&mut Self>) {
        if let Self::Unstarted { limit: limit @ Limit::After(_) } = *self {
            self.set(Self::started(limit));
        }
    }

    #[inline]
    fn started(limit: Limit) -> Self {
        match limit {
            Limit::After(duration) => {
                let start = Instant::now();
                Self::Started {
                    timeout: Some(duration),
                    start: Some(start),
                    deadline: Deadline::clamp(start.checked_add(duration)),
                }
            }
            Limit::At(at) => {
                Self::Started { timeout: None, start: None, deadline: Deadline::clamp(Some(at)) }
            }
        }
    }

    /// Called after the inner future returned `Pending` (in the same poll): arms the `Sleep` if needed and polls it.
    pub(crate) fn poll_elapsed(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Elapsed> {
        match self.as_mut().project() {
            TimerProjection::Armed { sleep, timeout, start, ambient } => {
                let at = sleep.deadline();
                match poll_sleep(sleep, context) {
                    Poll::Ready(()) => {
                        Poll::Ready(elapsed(*timeout, at, *start, Instant::now(), *ambient))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            TimerProjection::Started { timeout, start, deadline } => {
                let Some(deadline) = *deadline else {
                    return Poll::Pending;
                };
                let timeout = *timeout;
                // A duration read the clock on the first poll; an absolute deadline reads it now, once,
                // so that the measured wait has a start.
                let start = start.unwrap_or_else(Instant::now);
                if deadline.at() <= start {
                    // Already passed (a zero duration, a deadline in the past, an expired ambient
                    // deadline): no need to touch the timer wheel.
                    let now = Instant::now();
                    return Poll::Ready(elapsed(
                        timeout,
                        deadline.at(),
                        start,
                        now,
                        deadline.is_ambient(),
                    ));
                }
                self.set(Self::Armed {
                    sleep: sleep_until(deadline.at()),
                    timeout,
                    start,
                    ambient: deadline.is_ambient(),
                });
                self.poll_elapsed(context)
            }
            TimerProjection::Unstarted { limit } => {
                let limit = *limit;
                self.set(Self::started(limit));
                self.poll_elapsed(context)
            }
        }
    }

    /// The effective deadline: the requested one before the first poll (`None` for a duration), the
    /// clamped one after.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Unstarted { limit: Limit::At(at) } => Some(*at),
            Self::Unstarted { limit: Limit::After(_) } => None,
            Self::Started { deadline, .. } => deadline.map(|deadline| deadline.at()),
            Self::Armed { sleep, .. } => Some(sleep.deadline()),
        }
    }
}

/// Polls `sleep`, outside the cooperative budget when the budget is spent, so that an inner future that
/// spends the whole budget cannot keep the deadline from being noticed (tokio#4314).
#[inline]
pub(crate) fn poll_sleep(sleep: Pin<&mut Sleep>, context: &mut Context<'_>) -> Poll<()> {
    if has_budget_remaining() {
        sleep.poll(context)
    } else {
        Pin::new(&mut unconstrained(sleep)).poll(context)
    }
}

fn elapsed(
    timeout: Option<Duration>,
    at: Instant,
    start: Instant,
    now: Instant,
    ambient: bool,
) -> Elapsed {
    Elapsed::new(timeout, at, now.saturating_duration_since(start)).with_ambient(ambient)
}
