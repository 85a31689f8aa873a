//! The worker loop of a stage: receive, process with panic isolation and retries, apply the failure policy, send.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use aqueduct_core::Error;
use futures_util::FutureExt;
use tokio::time::Instant;

use crate::DeadLetter;
use crate::config::{Failure, FailurePolicy, RetryDecider};
use crate::control::{Control, ErrorSlot, Signal};
use crate::metrics::{StageState, WorkerCounters, bump, nanos};
use crate::queue::{Message, Outlet, QueueReceiver, Sent, TryRecv, TrySendError};

/// The parts of a stage's configuration the workers need at run time.
pub(crate) struct StagePolicy<I, E> {
    pub(crate) retry: Option<RetryDecider<E>>,
    pub(crate) failure: FailurePolicy<I, E>,
    pub(crate) clone_item: Option<fn(&I) -> I>,
}

/// One worker of one stage.
pub(crate) struct Worker<I, O, F, E> {
    pub(crate) stage: usize,
    pub(crate) function: Arc<F>,
    pub(crate) input: QueueReceiver<I>,
    pub(crate) outlet: Outlet<O>,
    pub(crate) policy: Arc<StagePolicy<I, E>>,
    pub(crate) counters: Arc<WorkerCounters>,
    pub(crate) state: Arc<StageState>,
    pub(crate) control: Arc<Control>,
    pub(crate) errors: Arc<ErrorSlot<E>>,
    /// In ordered mode failed items leave a gap marker so the reorder buffer does not wait for them.
    pub(crate) ordered: bool,
}

enum Outcome<I, O, E> {
    Done(O),
    Failed { error: Error<E>, item: Option<I> },
    Cancelled,
}

/// Marks the worker as ended (and no longer alive) however its task ends.
struct AliveGuard {
    state: Arc<StageState>,
    counters: Arc<WorkerCounters>,
    control: Arc<Control>,
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.counters
            .ended
            .store(nanos(self.control.epoch.elapsed()).saturating_add(1), Ordering::Relaxed);
        self.state.workers_alive.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<I, O, F, E> Worker<I, O, F, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
{
    /// Runs until the input queue is closed and empty. After cancellation the worker keeps receiving and
    /// counts every item as unprocessed, so upstream senders never stay blocked.
    pub(crate) async fn run<Fut, X>(self)
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, X>> + Send,
        X: Into<Error<E>> + Send,
    {
        self.counters
            .started
            .store(nanos(self.control.epoch.elapsed()).saturating_add(1), Ordering::Relaxed);
        let _alive = AliveGuard {
            state: self.state.clone(),
            counters: self.counters.clone(),
            control: self.control.clone(),
        };
        loop {
            // Hot path: nothing but synchronous calls and the stage function's own future. Waiting for input
            // is inline (the receive future is two words, and workers that outpace their upstream wait
            // often); the rarer slow paths (retries, failures) are boxed.
            let (index, item) = match self.input.try_recv() {
                TryRecv::Item(index, item) => (index, item),
                TryRecv::Empty => {
                    let started = Instant::now();
                    let received = self.input.recv().await;
                    bump(&self.counters.idle_nanos, nanos(started.elapsed()));
                    match received {
                        Some(Message::Item(index, item)) => (index, item),
                        Some(Message::Gap(index)) => {
                            Box::pin(self.send_gap(index)).await;
                            continue;
                        }
                        None => break,
                    }
                }
                TryRecv::Gap(index) => {
                    // A gap left by an upstream failure (ordered mode): pass it on.
                    Box::pin(self.send_gap(index)).await;
                    continue;
                }
                TryRecv::Closed => break,
            };
            bump(&self.counters.items_in, 1);
            if self.control.cancel.is_cancelled() {
                bump(&self.counters.unprocessed, 1);
                continue;
            }
            let outcome = if self.policy.retry.is_none() && self.policy.clone_item.is_none() {
                let result = call_racing_cancel(&*self.function, item, &self.control.cancel).await;
                match result {
                    Some(Ok(Ok(output))) => Outcome::Done(output),
                    Some(Ok(Err(error))) => Outcome::Failed { error: error.into(), item: None },
                    Some(Err(payload)) => {
                        bump(&self.counters.panics, 1);
                        Outcome::Failed {
                            error: Error::from_panic(usize::try_from(index).ok(), payload),
                            item: None,
                        }
                    }
                    None => Outcome::Cancelled,
                }
            } else {
                Box::pin(self.process(index, item)).await
            };
            match outcome {
                Outcome::Done(output) => {
                    if self.control.cancel.is_cancelled() {
                        bump(&self.counters.unprocessed, 1);
                        continue;
                    }
                    let sent = match &self.outlet {
                        Outlet::Discard => Sent::Delivered,
                        // Into the next stage: a synchronous push, and an inline, timed wait when it is full.
                        Outlet::Queue(sender) => match sender.try_send(index, output) {
                            Ok(()) => Sent::Delivered,
                            Err(TrySendError::Closed(message)) => {
                                drop(message);
                                Sent::Unprocessed
                            }
                            Err(TrySendError::Full(index, output)) => {
                                let started = Instant::now();
                                let sent = sender.send(Message::Item(index, output)).await;
                                bump(&self.counters.blocked_nanos, nanos(started.elapsed()));
                                if sent.is_ok() { Sent::Delivered } else { Sent::Unprocessed }
                            }
                        },
                        Outlet::Output(_) => match self.outlet.try_send(index, output) {
                            Ok(sent) => sent,
                            Err((index, output)) => {
                                let waiting = self.outlet.send_waiting(
                                    Message::Item(index, output),
                                    &self.control.cancel,
                                    &self.counters.blocked_nanos,
                                );
                                Box::pin(waiting).await
                            }
                        },
                    };
                    match sent {
                        Sent::Delivered => bump(&self.counters.items_out, 1),
                        Sent::Unprocessed => bump(&self.counters.unprocessed, 1),
                    }
                }
                Outcome::Failed { error, item } => {
                    bump(&self.counters.failed, 1);
                    self.handle_failure(index, error, item);
                    Box::pin(self.send_gap(index)).await;
                }
                Outcome::Cancelled => bump(&self.counters.unprocessed, 1),
            }
        }
    }

    async fn send_gap(&self, index: u64) {
        if self.ordered && !self.control.cancel.is_cancelled() {
            // A gap that cannot be delivered only matters to an ordered consumer that is gone.
            let _ = self
                .outlet
                .send_waiting(
                    Message::Gap(index),
                    &self.control.cancel,
                    &self.counters.blocked_nanos,
                )
                .await;
        }
    }

    /// Calls the stage function, catching panics, retrying as the policy says, and racing cancellation.
    async fn process<Fut, X>(&self, index: u64, item: I) -> Outcome<I, O, E>
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, X>> + Send,
        X: Into<Error<E>> + Send,
    {
        let cancel = &self.control.cancel;
        let mut attempt: u32 = 0;
        let mut first_failure: Option<Instant> = None;
        let mut item = item;
        loop {
            attempt = attempt.saturating_add(1);
            let backup = self.policy.clone_item.map(|clone| clone(&item));
            let function = &*self.function;
            let call = AssertUnwindSafe(async move { function(item).await }).catch_unwind();
            let result = tokio::select! {
                biased;
                result = call => result,
                () = cancel.cancelled() => return Outcome::Cancelled,
            };
            let error: Error<E> = match result {
                Ok(Ok(output)) => return Outcome::Done(output),
                Ok(Err(error)) => error.into(),
                Err(payload) => {
                    bump(&self.counters.panics, 1);
                    Error::from_panic(usize::try_from(index).ok(), payload)
                }
            };
            let Some(decide) = &self.policy.retry else {
                return Outcome::Failed { error, item: backup };
            };
            let Some(next_item) = backup else {
                return Outcome::Failed { error, item: None };
            };
            let started = *first_failure.get_or_insert_with(Instant::now);
            let decision = std::panic::catch_unwind(AssertUnwindSafe(|| decide(attempt, &error)));
            match decision {
                Ok(Ok(delay)) => {
                    if delay.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::select! {
                            biased;
                            () = cancel.cancelled() => return Outcome::Cancelled,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    item = next_item;
                }
                Ok(Err(reason)) => {
                    let error = Error::Exhausted {
                        attempts: attempt,
                        elapsed: started.elapsed(),
                        reason,
                        last_error: Some(Box::new(error)),
                    };
                    return Outcome::Failed { error, item: Some(next_item) };
                }
                Err(payload) => {
                    self.errors.fail(
                        Error::from_panic(usize::try_from(index).ok(), payload),
                        &self.control,
                    );
                    return Outcome::Cancelled;
                }
            }
        }
    }

    fn handle_failure(&self, index: u64, error: Error<E>, item: Option<I>) {
        let outcome = match (&self.policy.failure, item) {
            (FailurePolicy::FailFast, _) => {
                self.errors.fail(error, &self.control);
                return;
            }
            (FailurePolicy::Skip(on_failure), _) => {
                let failure = Failure { stage: self.stage, index, error };
                std::panic::catch_unwind(AssertUnwindSafe(|| on_failure(failure)))
            }
            (FailurePolicy::DeadLetter(on_dead_letter), Some(item)) => {
                let letter = DeadLetter { stage: self.stage, index, item, error };
                std::panic::catch_unwind(AssertUnwindSafe(|| on_dead_letter(letter)))
            }
            (FailurePolicy::DeadLetter(_), None) => {
                // Unreachable by construction: the dead-letter policy always clones the item.
                let message = format!("stage {} lost the item of a dead letter", self.stage);
                self.errors.fail(Error::ContractViolation { message }, &self.control);
                return;
            }
        };
        if let Err(payload) = outcome {
            self.errors
                .fail(Error::from_panic(usize::try_from(index).ok(), payload), &self.control);
        }
    }
}

/// The outcome of one call of a stage function: its result, a caught panic, or `None` when cancelled.
type Called<O, X> = Option<Result<Result<O, X>, Box<dyn std::any::Any + Send>>>;

/// Calls `function(item)` and awaits it with panics caught, racing `cancel`.
///
/// Written as one `poll_fn` rather than `select!` over `catch_unwind`: no nested future is built or moved per
/// item, and the cancellation waiter is allocated only if the stage function actually has to wait.
async fn call_racing_cancel<I, O, F, Fut, X>(function: &F, item: I, cancel: &Signal) -> Called<O, X>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<O, X>>,
{
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| function(item))) {
        Ok(future) => future,
        Err(payload) => return Some(Err(payload)),
    };
    let mut future = std::pin::pin!(future);
    let mut cancelled: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    std::future::poll_fn(|context| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(context))) {
            Ok(Poll::Ready(result)) => return Poll::Ready(Some(Ok(result))),
            Err(payload) => return Poll::Ready(Some(Err(payload))),
            Ok(Poll::Pending) => {}
        }
        let waiter = cancelled.get_or_insert_with(|| Box::pin(cancel.cancelled()));
        match waiter.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
