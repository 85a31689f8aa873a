//! The FIFO waiter queue of a rate limit: waiters take tokens in arrival order, only the head sleeps on a timer.
//!
//! A waiter enters the queue only when tokens are short. The head books its tokens in the GCRA state as soon
//! as they are there and sleeps until then otherwise; when it is admitted or leaves, it wakes the next head.
//! Nothing is booked while a waiter queues, so a waiter that leaves gives back exactly what it took: nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use crate::gcra::{AtomicTat, Params};

/// The queue, with a count readable without the lock so the uncontended path never takes it.
#[derive(Debug, Default)]
pub(crate) struct RateQueue {
    state: Mutex<QueueState>,
    queued: AtomicUsize,
}

#[derive(Debug, Default)]
struct QueueState {
    next_ticket: u64,
    waiters: BTreeMap<u64, Waiter>,
    queued_tokens: u64,
}

#[derive(Debug)]
struct Waiter {
    tokens: u64,
    waker: Option<Waker>,
}

/// What happened when a caller tried to enter the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enter {
    /// The queue was empty and the tokens were there: admitted without queueing.
    Admitted,
    /// The predicted start (after everyone ahead) is later than the caller accepts.
    Refused { start_at: u64 },
    /// Queued with this ticket.
    Queued { ticket: u64 },
}

/// What a queued waiter should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuePoll {
    /// Its tokens were booked: it is admitted and has left the queue.
    Admitted,
    /// It must wait; as the head, until `start_at` (then poll again), otherwise until it is woken.
    Wait { head_start_at: Option<u64> },
}

impl RateQueue {
    /// `true` when nobody queues, read without the lock.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.load(Ordering::SeqCst) == 0
    }

    /// How many waiters queue now.
    pub(crate) fn len(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// The tokens all queued waiters wait for (0 without taking the lock when nobody queues).
    pub(crate) fn queued_tokens(&self) -> u64 {
        if self.is_empty() { 0 } else { self.lock().queued_tokens }
    }

    /// Enters the queue, or is admitted at once when nobody queues and the tokens are there, or is refused
    /// when the predicted start is more than `max_wait` away.
    pub(crate) fn enter(
        &self,
        tat: &AtomicTat,
        params: Params,
        now: u64,
        tokens: u64,
        max_wait: u64,
    ) -> Enter {
        let mut queue = self.lock();
        if queue.waiters.is_empty() && tat.book(params, now, tokens, 0).is_ok() {
            return Enter::Admitted;
        }
        let predicted =
            params.decide(tat.load(), now, queue.queued_tokens.saturating_add(tokens)).start_at;
        if predicted.saturating_sub(now) > max_wait {
            return Enter::Refused { start_at: predicted };
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiters.insert(ticket, Waiter { tokens, waker: None });
        queue.queued_tokens = queue.queued_tokens.saturating_add(tokens);
        self.queued.fetch_add(1, Ordering::SeqCst);
        Enter::Queued { ticket }
    }

    /// Polls the waiter holding `ticket`: the head books its tokens if they are there.
    ///
    /// # Panics
    ///
    /// If `ticket` is not queued: only its owner removes it, by this call returning `Admitted` or by `leave`.
    pub(crate) fn poll(
        &self,
        ticket: u64,
        waker: &Waker,
        tat: &AtomicTat,
        params: Params,
        now: u64,
    ) -> QueuePoll {
        let mut queue = self.lock();
        let head = *queue.waiters.keys().next().expect("a queued waiter is in the queue");
        let waiter = queue.waiters.get_mut(&ticket).expect("a queued waiter is in the queue");
        if ticket != head {
            store_waker(&mut waiter.waker, waker);
            return QueuePoll::Wait { head_start_at: None };
        }
        match tat.book(params, now, waiter.tokens, 0) {
            Ok(_) => {
                let tokens = waiter.tokens;
                queue.waiters.remove(&ticket);
                queue.queued_tokens -= tokens;
                self.queued.fetch_sub(1, Ordering::SeqCst);
                wake_head(&mut queue);
                QueuePoll::Admitted
            }
            Err(decision) => {
                store_waker(&mut waiter.waker, waker);
                QueuePoll::Wait { head_start_at: Some(decision.start_at) }
            }
        }
    }

    /// Removes a waiter that gives up; wakes the next head if it was the head.
    pub(crate) fn leave(&self, ticket: u64) {
        let mut queue = self.lock();
        let was_head = queue.waiters.keys().next() == Some(&ticket);
        if let Some(waiter) = queue.waiters.remove(&ticket) {
            queue.queued_tokens -= waiter.tokens;
            self.queued.fetch_sub(1, Ordering::SeqCst);
            if was_head {
                wake_head(&mut queue);
            }
        }
    }

    /// Wakes the head so it recomputes its start (after a reconfiguration).
    pub(crate) fn wake_head(&self) {
        if !self.is_empty() {
            wake_head(&mut self.lock());
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // No critical section panics midway through an update, so a poisoned lock holds valid data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn store_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(existing) if existing.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

fn wake_head(queue: &mut QueueState) {
    if let Some(waiter) = queue.waiters.values_mut().next()
        && let Some(waker) = waiter.waker.take()
    {
        waker.wake();
    }
}
