//! The worker loop of a stage: receive, process with panic isolation and retries, apply the failure policy, send.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use aqueduct_core::Error;
use futures_util::FutureExt;
use tokio::time::Instant;

use crate::DeadLetter;
use crate::config::{Failure, FailurePolicy, RetryDecider};
use crate::control::{Control, ErrorSlot};
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

/// How many items a worker takes in one poll before it yields to the other tasks of its thread (tokio's own
/// cooperative budget is 128 operations per poll).
const ITEMS_PER_POLL: u32 = 128;

/// Where the synchronous hot path ([`Worker::run_ready`]) stopped.
enum Step<I, O, E> {
    /// The input queue is empty: wait for it.
    Empty,
    /// Every sender of the input queue is gone and it is drained.
    Closed,
    /// A gap from upstream (ordered mode), to pass on.
    Gap(u64),
    /// The next stage queue is full: wait for room for this output.
    Full(u64, O),
    /// The output goes to the [`Running`](crate::Running) consumer, through the waiting send.
    Deliver(u64, O),
    /// The stage future of this item is not ready: it waits in the slot.
    Pending(u64),
    /// The stage function failed or panicked on this item.
    Failed(u64, Error<E>),
    /// This poll has taken [`ITEMS_PER_POLL`] items: let the other tasks of this thread run.
    Yield,
    /// The stage retries or keeps dead letters: this item takes the slow path.
    Slow(u64, I),
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
    ///
    /// The hot path is [`run_ready`](Self::run_ready): a synchronous loop inside one poll that takes items,
    /// calls the stage function and polls its future once, and pushes the outputs, for as long as nothing
    /// has to wait. Everything that waits (for input, for room, for a stage future that is not ready yet)
    /// and everything rare (gaps, failures, retries) happens out here, between two runs of that loop.
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
        // The stage future of the current item, in this task's own state, reused for every item.
        let mut slot: Pin<&mut Option<Fut>> = std::pin::pin!(None);
        let mut received: Option<(u64, I)> = None;
        loop {
            let step = std::future::poll_fn(|context| {
                Poll::Ready(self.run_ready(&mut slot, received.take(), context))
            })
            .await;
            if !matches!(step, Step::Empty | Step::Closed) {
                // This worker stops taking items for a while: let a waiting peer take the next one.
                self.input.nudge();
            }
            match step {
                Step::Yield => tokio::task::yield_now().await,
                Step::Empty => {
                    let started = Instant::now();
                    let message = self.input.recv().await;
                    bump(&self.counters.idle_nanos, nanos(started.elapsed()));
                    match message {
                        Some(Message::Item(index, item)) => received = Some((index, item)),
                        Some(Message::Gap(index)) => Box::pin(self.send_gap(index)).await,
                        None => break,
                    }
                }
                Step::Closed => break,
                Step::Gap(index) => Box::pin(self.send_gap(index)).await,
                Step::Full(index, output) => {
                    let Outlet::Queue(sender) = &self.outlet else { continue };
                    let started = Instant::now();
                    let sent = sender.send(Message::Item(index, output)).await;
                    bump(&self.counters.blocked_nanos, nanos(started.elapsed()));
                    if sent.is_ok() {
                        bump(&self.counters.items_out, 1);
                    } else {
                        bump(&self.counters.unprocessed, 1);
                    }
                }
                Step::Deliver(index, output) => {
                    Box::pin(self.settle(index, Outcome::Done(output))).await;
                }
                Step::Pending(index) => {
                    let outcome = self.finish_pending(&mut slot, index).await;
                    Box::pin(self.settle(index, outcome)).await;
                }
                Step::Failed(index, error) => Box::pin(self.fail(index, error, None)).await,
                Step::Slow(index, item) => {
                    // Retries or dead letters: the slow path, on the heap.
                    let outcome = Box::pin(self.process(index, item)).await;
                    Box::pin(self.settle(index, outcome)).await;
                }
            }
        }
    }

    /// The hot path: takes items (first `received`, if any), processes and pushes them without waiting,
    /// and returns the first thing that needs to wait or is rare.
    #[inline(always)]
    fn run_ready<Fut, X>(
        &self,
        slot: &mut Pin<&mut Option<Fut>>,
        mut received: Option<(u64, I)>,
        context: &mut Context<'_>,
    ) -> Step<I, O, E>
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, X>> + Send,
        X: Into<Error<E>> + Send,
    {
        let cancel = &*self.control.cancel;
        let plain = self.policy.retry.is_none() && self.policy.clone_item.is_none();
        let mut budget = ITEMS_PER_POLL;
        loop {
            let (index, item) = match received.take() {
                Some(received) => received,
                None if budget == 0 => return Step::Yield,
                None => match self.input.try_recv() {
                    TryRecv::Item(index, item) => (index, item),
                    TryRecv::Empty => return Step::Empty,
                    TryRecv::Gap(index) => return Step::Gap(index),
                    TryRecv::Closed => return Step::Closed,
                },
            };
            budget -= 1;
            bump(&self.counters.items_in, 1);
            if cancel.is_cancelled() {
                bump(&self.counters.unprocessed, 1);
                continue;
            }
            if !plain {
                return Step::Slow(index, item);
            }
            // Building the future and its first poll, both with panics caught.
            let function = &*self.function;
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                slot.set(Some(function(item)));
                match slot.as_mut().as_pin_mut() {
                    Some(future) => future.poll(context),
                    None => Poll::Pending,
                }
            }));
            // A finished future stays in the slot until the next item replaces it: it holds nothing any more.
            let output = match polled {
                Ok(Poll::Ready(Ok(output))) => output,
                Ok(Poll::Ready(Err(error))) => return Step::Failed(index, error.into()),
                Ok(Poll::Pending) => return Step::Pending(index),
                Err(payload) => {
                    // A future that panicked is dropped too; a panic in its drop is caught as well.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| slot.set(None)));
                    bump(&self.counters.panics, 1);
                    return Step::Failed(
                        index,
                        Error::from_panic(usize::try_from(index).ok(), payload),
                    );
                }
            };
            if cancel.is_cancelled() {
                bump(&self.counters.unprocessed, 1);
                continue;
            }
            match &self.outlet {
                Outlet::Discard => bump(&self.counters.items_out, 1),
                Outlet::Queue(sender) => match sender.try_send(index, output) {
                    Ok(()) => bump(&self.counters.items_out, 1),
                    Err(TrySendError::Full(index, output)) => return Step::Full(index, output),
                    Err(TrySendError::Closed(message)) => {
                        drop(message);
                        bump(&self.counters.unprocessed, 1);
                    }
                },
                Outlet::Output(_) => return Step::Deliver(index, output),
            }
        }
    }

    /// Awaits the stage future left pending in `slot` with panics caught, racing cancellation, then empties
    /// the slot.
    async fn finish_pending<Fut, X>(
        &self,
        slot: &mut Pin<&mut Option<Fut>>,
        index: u64,
    ) -> Outcome<I, O, E>
    where
        Fut: Future<Output = Result<O, X>> + Send,
        X: Into<Error<E>> + Send,
    {
        let cancel = &*self.control.cancel;
        let mut cancelled: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        let result = std::future::poll_fn(|context| {
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| match slot.as_mut().as_pin_mut() {
                    Some(future) => future.poll(context),
                    None => Poll::Pending,
                }));
            match polled {
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
        .await;
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| slot.set(None)));
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
    }

    /// Sends an output through the outlet, waiting for room if needed.
    async fn deliver(&self, index: u64, output: O) -> Sent {
        match self.outlet.try_send(index, output) {
            Ok(sent) => sent,
            Err((index, output)) => {
                self.outlet
                    .send_waiting(
                        Message::Item(index, output),
                        &self.control.cancel,
                        &self.counters.blocked_nanos,
                    )
                    .await
            }
        }
    }

    /// What the slow path does with the outcome of [`process`](Self::process).
    async fn settle(&self, index: u64, outcome: Outcome<I, O, E>) {
        match outcome {
            Outcome::Done(output) => {
                if self.control.cancel.is_cancelled() {
                    bump(&self.counters.unprocessed, 1);
                    return;
                }
                match self.deliver(index, output).await {
                    Sent::Delivered => bump(&self.counters.items_out, 1),
                    Sent::Unprocessed => bump(&self.counters.unprocessed, 1),
                }
            }
            Outcome::Failed { error, item } => self.fail(index, error, item).await,
            Outcome::Cancelled => bump(&self.counters.unprocessed, 1),
        }
    }

    /// Counts a failed item, applies the stage's failure policy, and leaves a gap in ordered mode.
    async fn fail(&self, index: u64, error: Error<E>, item: Option<I>) {
        bump(&self.counters.failed, 1);
        self.handle_failure(index, error, item);
        self.send_gap(index).await;
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
