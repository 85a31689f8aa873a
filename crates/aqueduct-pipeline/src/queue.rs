//! The queues between stages (a bounded MPMC queue of our own, chosen by benchmark) and the sends into them.
//!
//! Two kinds of queue exist. Between stages: [`bounded`], a bounded multi-producer multi-consumer queue of
//! items tagged with their source index, behind a short lock. Sends into it are never cancelled: a worker
//! finishes every send it starts, and cancellation works by draining instead (every worker of a cancelled
//! pipeline keeps receiving and counting items until its upstream closes), so no item is ever lost inside a
//! dropped send future. Into the output: a tokio `mpsc` queue of [`Envelope`]s (one consumer), sent with
//! reserve-then-commit so that a send racing cancellation never owns the item.
//!
//! # Why a queue of our own
//!
//! The pipeline moves every item with its source index, which ordered output, failure callbacks and panic
//! reports need. Through kanal, the fastest of the channels we benchmarked, a value wider than a pointer
//! goes through the send future's own memory: it is written there field by field and read back at once as
//! one wide load, which the CPU cannot forward from the pending stores. With tiny items that stall alone
//! made a hand-written kanal loop carrying `(u64, u64)` 1.5–1.9× slower than the same loop carrying a `u64`.
//! This queue takes the index and the item by value in a synchronous, always-inlined `try_send` and hands
//! them back from an always-inlined `try_recv`, so the fast path builds no future and keeps the pair in
//! registers; the gaps of ordered mode wait in a list of their own, so the hot type carries no `Option`.
//!
//! # Design
//!
//! One [`spin`] lock guards a `VecDeque` ring (allocated once at its capacity), the list of gaps, the items
//! handed to waiting receivers and two FIFO lists of waiting tasks. Every operation holds the lock for a few
//! loads and stores and never runs user code under it (wakers are woken after unlocking). A task that finds
//! the lock taken backs off for 64 to 191 spin-loop hints before it looks again, and now and then yields its
//! thread to the OS scheduler, in case the holder was preempted. The back-off is what makes the queue fast on
//! several cores: retrying at once pulled the lock's cache line away from its holder after every operation,
//! and with one producer and four workers on two cores that ping-pong made a one-stage pipeline 3× slower
//! than kanal, whose lock backs off the same way.
//!
//! A push that finds receivers waiting hands the item to the first one directly, and only it can take it:
//! a receiver woken for an item always finds it, instead of waking to an empty queue because a worker already
//! running on another core took the item first. Only one receiver is on its way at a time: while a handed
//! item waits for its receiver, pushes queue their items and wake nobody, because the receiver that arrives
//! takes everything queued in one go. Waking a receiver for every push moved the workers of a cheap stage from
//! core to core (each wake-up a task switch and often a thread park and unpark), which cost 1.5× in the
//! one-stage benchmark. More receivers join in when one cannot keep up: a receiver that stops taking items
//! (its stage future waits, its output is full, it used up its budget of items per poll) calls
//! [`QueueReceiver::nudge`], which hands the next queued item to a waiting peer. A pop wakes the first
//! waiting sender once the queue has drained to half its capacity (empty, for a capacity of 1), so a blocked
//! producer refills half a queue per wake-up instead of one slot. A waiter woken and then dropped before it
//! took its turn passes the wake-up (or the item handed to it) on, so nothing is lost. Dropping the last
//! sender closes the queue for receivers (they drain what is left, then see the
//! end); dropping the last receiver closes it for senders (their sends fail and hand the message back).
//!
//! # Pulled queues
//!
//! The first queue of a pipeline whose source is an iterator (unordered) holds no items: its sender is
//! turned into a feeder ([`QueueSender::feed_from`]) and the receivers, stage 1's workers, call it
//! themselves, one at a time, under a lock of its own. When both locks are held, the feeder's is always
//! taken first (a metrics read from inside the iterator takes the state's lock), never the other way round.
//! With a producer task, every refill of the queue was a hand-off between tasks, often between threads
//! (a wake-up, a park, an unpark); pulled, an item goes from the iterator to the worker that wants it in
//! one lock and one call. The `pipeline` benchmark's one-stage workload went from 1.03–1.46× the time of
//! hand-written kanal workers to 0.56–0.60× in four full runs (see the crate's README).
//!
//! A receiver that finds another one pulling looks again with the lock's back-off, and after
//! [`PULL_LOOKS`] looks waits for its turn, registered among the waiting receivers: behind a slow
//! iterator, a waiting receiver spins for those looks once per turn, not for as long as the pull takes.
//! Each pull then looks, without a fence, whether a receiver
//! waits, and wakes the first. That look can miss a receiver that registers at the very moment of the
//! pull; so [`QueueReceiver::nudge`], which every worker calls when it stops taking items for a while
//! (its stage future waits, its output is full, it yields), looks again behind a fence that pairs with
//! the one the waiting receiver passes after registering (and before its last look at the feeder). A
//! receiver waits for its turn, at worst, until the receiver that missed it pulls again or stops taking
//! items. The feeder counts as the queue's one sender: once it returns `None` (ended, stopped, or
//! panicked: the source decides), it is dropped and every waiting receiver is woken to see the end; the
//! last receiver leaving drops it too.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::task::{Context, Poll, Waker};

use spin::RelaxStrategy;
use spin::mutex::SpinMutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::control::Signal;
use crate::metrics::{bump, nanos};

/// An item with its position in the source, as the output queue carries it. `item` is `None` for a gap: in
/// ordered mode, a stage that fails or skips an item sends a gap so that the reorder buffer does not wait
/// for it.
#[derive(Debug)]
pub(crate) struct Envelope<T> {
    pub(crate) index: u64,
    pub(crate) item: Option<T>,
}

/// What a stage queue carries: an item with its source index, or the gap of a failed item (ordered mode).
///
/// Items and gaps are kept apart inside the queue, so the hot path moves a plain `(index, item)` pair.
#[derive(Debug)]
pub(crate) enum Message<T> {
    Item(u64, T),
    Gap(u64),
}

/// The sending half of a stage queue; cloning it adds a sender.
pub(crate) struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half of a stage queue; cloning it adds a receiver.
pub(crate) struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// Reads how many envelopes wait in a queue, without counting as a receiver (so it never keeps senders blocked).
pub(crate) struct QueueDepth<T> {
    shared: Arc<Shared<T>>,
}

/// A bounded queue of `capacity` envelopes (at least one).
pub(crate) fn bounded<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        pulled: AtomicBool::new(false),
        pull_waiting: AtomicBool::new(false),
        feeder: SpinMutex::new(None),
        state: SpinMutex::new(State {
            slots: VecDeque::with_capacity(capacity),
            gaps: VecDeque::new(),
            handed: VecDeque::new(),
            capacity,
            receivers_waiting: VecDeque::new(),
            senders_waiting: VecDeque::new(),
            next_waiter: 0,
            senders: 1,
            receivers: 1,
        }),
    });
    (QueueSender { shared: shared.clone() }, QueueReceiver { shared })
}

/// Why [`QueueSender::try_send`] handed the item back (with its index).
#[derive(Debug)]
pub(crate) enum TrySendError<T> {
    /// The queue is full: wait with [`QueueSender::send`].
    Full(u64, T),
    /// Every receiver is gone. The item comes back so that it is dropped by the caller, not under the lock.
    Closed(Message<T>),
}

/// What [`QueueReceiver::try_recv`] found.
#[derive(Debug)]
pub(crate) enum TryRecv<T> {
    Item(u64, T),
    Gap(u64),
    /// Nothing now, but senders remain: wait with [`QueueReceiver::recv`].
    Empty,
    /// Every sender is gone and the queue is drained.
    Closed,
}

struct Shared<T> {
    state: SpinMutex<State<T>, SpinThenYield>,
    /// Set once a feeder is attached ([`QueueSender::feed_from`]): from then on receivers pull from it, and
    /// the ring stays empty.
    pulled: AtomicBool,
    /// In a pulled queue: whether receivers wait (in `receivers_waiting`) for their turn to pull. Written
    /// under the state's lock; read by the receiver that has just pulled (before it releases the feeder),
    /// and behind a fence by one that stops taking items or leaves.
    pull_waiting: AtomicBool,
    /// The feeder of a pulled queue, `None` once it has ended. Its lock is held while it runs, by one
    /// receiver at a time. Taken before the state's lock when both are held, never after it.
    feeder: SpinMutex<Option<Feeding<T>>, SpinThenYield>,
}

/// The next item of a source that a queue's receivers pull themselves (see [`QueueSender::feed_from`]);
/// `None` once it has ended or been stopped.
pub(crate) type Feeder<T> = Box<dyn FnMut() -> Option<T> + std::marker::Send>;

/// A feeder and how many items it gave (the source index of the next one).
struct Feeding<T> {
    next: Feeder<T>,
    fed: u64,
}

/// How often a receiver that finds another one pulling looks again before it waits for its turn, and how
/// many spin-loop hints it pauses between looks. A pull is usually a few nanoseconds (an iterator's `next`),
/// far less than a task switch; a receiver behind a slow one waits without spinning.
const PULL_LOOKS: u32 = 32;

/// How a task waits for the queue's lock: back off for a randomised 64 to 191 spin-loop hints between looks
/// (see the module docs), and every [`SPINS_BEFORE_YIELD`] back-offs yield the thread to the OS scheduler, in
/// case the holder was preempted.
///
/// Yielding at once (`spin::relax::Yield`) would give the CPU away on every brief contention, and on a loaded
/// machine a `sched_yield` may hand over a whole time slice; spinning forever (`spin::relax::Spin`) burns the
/// time slice of a waiter whose holder was preempted. kanal's lock backs off the same way.
struct SpinThenYield;

/// See [`SpinThenYield`].
const SPINS_BEFORE_YIELD: u32 = 16;

impl RelaxStrategy for SpinThenYield {
    #[inline]
    fn relax() {
        thread_local! {
            static WAITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let waits = WAITS.with(|waits| {
            let next = waits.get().wrapping_add(1);
            waits.set(next);
            next
        });
        if waits % SPINS_BEFORE_YIELD == 0 {
            std::thread::yield_now();
        } else {
            // Back off for a while: an immediate retry would pull the lock's cache line away from its holder
            // after every operation, and a holder that keeps the line runs many operations in a row.
            let pauses = BACKOFF_PAUSES + (waits.wrapping_mul(0x9E37_79B9) >> 25);
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
        }
    }
}

/// The shortest back-off of a task that found the lock taken, in spin-loop hints (plus up to 127 more).
const BACKOFF_PAUSES: u32 = 64;

struct State<T> {
    /// Items with their source index.
    slots: VecDeque<(u64, T)>,
    /// Indices of failed items (ordered mode only); they count against the capacity too.
    gaps: VecDeque<u64>,
    /// Items handed straight to a receiver that was waiting, by its waiter id, until it runs and takes them.
    /// Nobody else can take them, so the receiver woken for an item always finds it.
    handed: VecDeque<Handed<T>>,
    capacity: usize,
    receivers_waiting: VecDeque<Waiter>,
    senders_waiting: VecDeque<Waiter>,
    next_waiter: u64,
    senders: usize,
    receivers: usize,
}

/// A task waiting for an envelope (receivers) or for room (senders), identified by its future's id.
struct Waiter {
    id: u64,
    waker: Waker,
}

/// An item handed to the waiting receiver `waiter`.
struct Handed<T> {
    waiter: u64,
    index: u64,
    item: T,
}

/// Puts the waiter `id` in `list` with `waker`, or refreshes its waker if it is already there.
fn register(list: &mut VecDeque<Waiter>, id: u64, waker: &Waker) {
    match list.iter_mut().find(|waiter| waiter.id == id) {
        Some(waiter) => {
            if !waiter.waker.will_wake(waker) {
                waiter.waker.clone_from(waker);
            }
        }
        None => list.push_back(Waiter { id, waker: waker.clone() }),
    }
}

impl<T> Shared<T> {
    #[inline(always)]
    fn is_pulled(&self) -> bool {
        self.pulled.load(Ordering::Acquire)
    }

    /// Calls the feeder under its lock: the next item with its index, or `None` once the feeder has ended
    /// (then it is dropped, as the queue's sender). Afterwards wakes a receiver waiting for its turn.
    ///
    /// `None` means the queue is closed: the feeder is uncounted as a sender before its lock is released,
    /// so no receiver can find it gone while the queue still counts it.
    #[inline(always)]
    fn pull_locked(
        &self,
        mut feeder: spin::mutex::SpinMutexGuard<'_, Option<Feeding<T>>>,
    ) -> Option<(u64, T)> {
        let feeding = feeder.as_mut()?;
        if let Some(item) = (feeding.next)() {
            let index = feeding.fed;
            feeding.fed += 1;
            let waiting = self.pull_waiting.load(Ordering::Relaxed);
            drop(feeder);
            if waiting {
                self.wake_puller();
            }
            return Some((index, item));
        }
        let ended = feeder.take();
        // Close while still holding the feeder's lock (feeder then state, the order `poll_pull` uses):
        // no receiver sees the feeder gone while `senders` still counts it. Then wake, then drop the
        // source, whose `Drop` is user code that may panic.
        let woken = self.close_feeder_locked();
        drop(feeder);
        for waiter in woken {
            waiter.waker.wake();
        }
        drop(ended);
        None
    }

    /// The fenced look for a waiting receiver that a pull may have missed (see the module docs): taken
    /// by every receiver that stops taking items, or leaves.
    fn wake_missed_puller(&self) {
        fence(Ordering::SeqCst);
        if self.pull_waiting.load(Ordering::Relaxed) {
            self.wake_puller();
        }
    }

    /// Wakes the first receiver waiting for its turn to pull, if any.
    #[cold]
    fn wake_puller(&self) {
        let woken = {
            let mut state = self.state.lock();
            let woken = state.receivers_waiting.pop_front();
            self.pull_waiting.store(!state.receivers_waiting.is_empty(), Ordering::Relaxed);
            woken
        };
        if let Some(waiter) = woken {
            waiter.waker.wake();
        }
    }

    /// The feeder ended: it no longer counts as a sender, and once no sender is left every waiting
    /// receiver is woken to see the end.
    #[cold]
    fn close_feeder_locked(&self) -> VecDeque<Waiter> {
        let mut state = self.state.lock();
        state.senders -= 1;
        if state.senders == 0 {
            self.pull_waiting.store(false, Ordering::Relaxed);
            std::mem::take(&mut state.receivers_waiting)
        } else {
            VecDeque::new()
        }
    }
}

/// Takes the waiter `id` out of `list`; `false` when it was no longer there (it was woken).
fn unregister(list: &mut VecDeque<Waiter>, id: u64) -> bool {
    match list.iter().position(|waiter| waiter.id == id) {
        Some(position) => {
            list.remove(position);
            true
        }
        None => false,
    }
}

impl<T> State<T> {
    fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.gaps.is_empty()
    }

    /// Whether a waiting sender should be woken: the queue has drained to half its capacity (empty, for a
    /// capacity of 1). Waking a sender at every pop of a full queue let a fast producer push one item per
    /// wake-up: a task switch and two clock reads (its blocked time) per item.
    #[inline(always)]
    fn wants_senders(&self) -> bool {
        self.slots.len() + self.gaps.len() <= self.capacity / 2
    }

    #[inline(always)]
    fn is_full(&self) -> bool {
        self.slots.len() + self.gaps.len() >= self.capacity
    }

    /// Queues `message`, or hands an item straight to the first waiting receiver; returns the waker to wake
    /// once the lock is released.
    #[inline(always)]
    fn push(&mut self, message: Message<T>) -> Option<Waker> {
        match message {
            Message::Item(index, item) => self.hand_or_push(index, item, false),
            Message::Gap(index) => {
                self.gaps.push_back(index);
                self.receivers_waiting.pop_front().map(|waiter| waiter.waker)
            }
        }
    }

    /// Hands the item to the first waiting receiver, or queues it (at the front when `front`, for an item
    /// given back); returns the waker to wake once the lock is released.
    #[inline(always)]
    fn hand_or_push(&mut self, index: u64, item: T, front: bool) -> Option<Waker> {
        let waiter = if self.handed.is_empty() { self.receivers_waiting.pop_front() } else { None };
        match waiter {
            Some(waiter) => {
                self.handed.push_back(Handed { waiter: waiter.id, index, item });
                Some(waiter.waker)
            }
            None if front => {
                self.slots.push_front((index, item));
                None
            }
            None => {
                self.slots.push_back((index, item));
                None
            }
        }
    }

    /// Takes the item handed to the receiver `waiter`, if any.
    fn take_handed(&mut self, waiter: u64) -> Option<(u64, T)> {
        let position = self.handed.iter().position(|handed| handed.waiter == waiter)?;
        self.handed.remove(position).map(|handed| (handed.index, handed.item))
    }

    /// Gaps first: they are rare, and the reorder buffer may be waiting for one.
    fn pop(&mut self) -> Option<Message<T>> {
        if let Some(index) = self.gaps.pop_front() {
            return Some(Message::Gap(index));
        }
        self.slots.pop_front().map(|(index, item)| Message::Item(index, item))
    }

    fn new_waiter_id(&mut self) -> u64 {
        let id = self.next_waiter;
        self.next_waiter = self.next_waiter.wrapping_add(1);
        id
    }
}

// ===== impl QueueSender =====

impl<T> QueueSender<T> {
    /// Pushes `envelope` if there is room now, waking one waiting receiver.
    ///
    /// Always inlined: called out of line, the envelope went through memory written field by field and
    /// was read back as one wide load, a store-forwarding stall that cost more than the push itself.
    #[inline(always)]
    pub(crate) fn try_send(&self, index: u64, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.state.lock();
        if state.receivers == 0 {
            return Err(TrySendError::Closed(Message::Item(index, item)));
        }
        if state.receivers_waiting.is_empty() || !state.handed.is_empty() {
            if state.is_full() {
                return Err(TrySendError::Full(index, item));
            }
            state.slots.push_back((index, item));
            return Ok(());
        }
        let woken = state.hand_or_push(index, item, false);
        drop(state);
        if let Some(waker) = woken {
            waker.wake();
        }
        Ok(())
    }

    /// Turns this sender, which must be the queue's only one, into a feeder: from then on a receiver that
    /// wants an item calls `feeder` itself (one receiver at a time, under a lock of its own) and takes what
    /// it returns, numbered in the order of the calls, instead of popping it from the ring. The feeder
    /// counts as the sender: once it returns `None` it is dropped and the queue is closed.
    ///
    /// For a source that is cheap to pull (an iterator), this replaces a producer task and every hand-off
    /// between it and the receivers: see the module docs.
    pub(crate) fn feed_from(self, next: Feeder<T>) {
        *self.shared.feeder.lock() = Some(Feeding { next, fed: 0 });
        let woken = {
            let mut state = self.shared.state.lock();
            debug_assert_eq!(state.senders, 1, "a pulled queue has no other sender");
            // The feeder takes this sender's place.
            state.senders += 1;
            self.shared.pulled.store(true, Ordering::Release);
            self.shared.pull_waiting.store(false, Ordering::Relaxed);
            // Receivers that waited for the first item pull it now.
            std::mem::take(&mut state.receivers_waiting)
        };
        drop(self);
        for waiter in woken {
            waiter.waker.wake();
        }
    }

    /// Waits for room and pushes `message`; `Err` with the message when every receiver is gone.
    ///
    /// Dropping the future before it completes drops the message with it: sends into a stage queue are
    /// never abandoned (see the module docs).
    pub(crate) fn send(&self, message: Message<T>) -> Send<'_, T> {
        Send { sender: self, message: Some(message), waiter: None }
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Self { shared: self.shared.clone() }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let woken = {
            let mut state = self.shared.state.lock();
            state.senders -= 1;
            if state.senders == 0 {
                std::mem::take(&mut state.receivers_waiting)
            } else {
                VecDeque::new()
            }
        };
        for waiter in woken {
            waiter.waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("QueueSender").finish_non_exhaustive()
    }
}

/// The future of [`QueueSender::send`].
#[must_use = "futures do nothing unless awaited"]
pub(crate) struct Send<'a, T> {
    sender: &'a QueueSender<T>,
    message: Option<Message<T>>,
    waiter: Option<u64>,
}

impl<T> Unpin for Send<'_, T> {}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), Message<T>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(message) = this.message.take() else {
            return Poll::Ready(Ok(()));
        };
        let mut state = this.sender.shared.state.lock();
        if state.receivers == 0 || !state.is_full() {
            if let Some(id) = this.waiter.take() {
                unregister(&mut state.senders_waiting, id);
            }
            if state.receivers == 0 {
                return Poll::Ready(Err(message));
            }
            let receiver = state.push(message);
            // Woken for room that a hand-over to a waiting receiver did not use: the room is still free, so
            // the wake-up goes on to the next waiting sender.
            let sender =
                if state.wants_senders() { state.senders_waiting.pop_front() } else { None };
            drop(state);
            if let Some(waker) = receiver {
                waker.wake();
            }
            if let Some(waiter) = sender {
                waiter.waker.wake();
            }
            return Poll::Ready(Ok(()));
        }
        let id = match this.waiter {
            Some(id) => id,
            None => *this.waiter.insert(state.new_waiter_id()),
        };
        register(&mut state.senders_waiting, id, context.waker());
        this.message = Some(message);
        Poll::Pending
    }
}

impl<T> Drop for Send<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.waiter else { return };
        let woken = {
            let mut state = self.sender.shared.state.lock();
            let was_waiting = unregister(&mut state.senders_waiting, id);
            // Woken for room it never used: pass the wake-up on so another sender takes the room.
            if !was_waiting && self.message.is_some() && !state.is_full() {
                state.senders_waiting.pop_front()
            } else {
                None
            }
        };
        if let Some(waiter) = woken {
            waiter.waker.wake();
        }
    }
}

// ===== impl QueueReceiver =====

impl<T> QueueReceiver<T> {
    /// Pops the oldest envelope if there is one now, waking one waiting sender (always inlined, as
    /// [`QueueSender::try_send`]).
    #[inline(always)]
    pub(crate) fn try_recv(&self) -> TryRecv<T> {
        if self.shared.is_pulled() {
            return self.try_pull();
        }
        let mut state = self.shared.state.lock();
        if !state.gaps.is_empty() {
            drop(state);
            return self.try_recv_gap();
        }
        let Some((index, item)) = state.slots.pop_front() else {
            return if state.senders == 0 { TryRecv::Closed } else { TryRecv::Empty };
        };
        if state.senders_waiting.is_empty() || !state.wants_senders() {
            return TryRecv::Item(index, item);
        }
        let woken = state.senders_waiting.pop_front();
        drop(state);
        if let Some(waiter) = woken {
            waiter.waker.wake();
        }
        TryRecv::Item(index, item)
    }

    /// [`try_recv`](Self::try_recv) from a pulled queue: pulls the next item, or, while another receiver
    /// is pulling, looks again a few times before it reports `Empty` (then the caller waits with
    /// [`recv`](Self::recv) for its turn, and the receiver that pulls next wakes it).
    #[inline(always)]
    fn try_pull(&self) -> TryRecv<T> {
        let mut looks = 0;
        loop {
            if let Some(feeder) = self.shared.feeder.try_lock() {
                return match self.shared.pull_locked(feeder) {
                    Some((index, item)) => TryRecv::Item(index, item),
                    None => TryRecv::Closed,
                };
            }
            if looks == PULL_LOOKS {
                return TryRecv::Empty;
            }
            looks += 1;
            SpinThenYield::relax();
        }
    }

    /// The rare path of [`try_recv`](Self::try_recv): a gap, or whatever the queue holds by now.
    #[cold]
    fn try_recv_gap(&self) -> TryRecv<T> {
        let mut state = self.shared.state.lock();
        let popped = state.pop();
        let woken = if popped.is_some() && state.wants_senders() {
            state.senders_waiting.pop_front()
        } else {
            None
        };
        let closed = state.senders == 0;
        drop(state);
        if let Some(waiter) = woken {
            waiter.waker.wake();
        }
        match popped {
            Some(Message::Item(index, item)) => TryRecv::Item(index, item),
            Some(Message::Gap(index)) => TryRecv::Gap(index),
            None if closed => TryRecv::Closed,
            None => TryRecv::Empty,
        }
    }

    /// Waits for the next message; `None` once every sender is gone and the queue is drained.
    ///
    /// Cancel safe: dropping the future loses no envelope.
    pub(crate) fn recv(&self) -> Recv<'_, T> {
        Recv { receiver: self, waiter: None }
    }

    /// Passes the next queued item to a waiting receiver when none is on its way: called by a receiver that
    /// stops taking items for a while (its stage future waits, its output queue is full), so that the items
    /// behind it do not wait for it while other receivers sleep. See the module docs.
    pub(crate) fn nudge(&self) {
        if self.shared.is_pulled() {
            // Nothing is queued in a pulled queue, but a receiver may wait for its turn to pull, missed
            // by a pull that looked just before it registered.
            self.shared.wake_missed_puller();
            return;
        }
        let mut state = self.shared.state.lock();
        if !state.handed.is_empty() || state.receivers_waiting.is_empty() {
            return;
        }
        let Some((index, item)) = state.slots.pop_front() else { return };
        let receiver = state.hand_or_push(index, item, true);
        // The item left the ring: its room goes to a waiting sender, as after any pop.
        let sender = if state.wants_senders() { state.senders_waiting.pop_front() } else { None };
        drop(state);
        if let Some(waker) = receiver {
            waker.wake();
        }
        if let Some(waiter) = sender {
            waiter.waker.wake();
        }
    }

    /// A handle that reads the number of waiting envelopes without counting as a receiver.
    pub(crate) fn depth(&self) -> QueueDepth<T> {
        QueueDepth { shared: self.shared.clone() }
    }
}

impl<T> Clone for QueueReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().receivers += 1;
        Self { shared: self.shared.clone() }
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let (woken, last) = {
            let mut state = self.shared.state.lock();
            state.receivers -= 1;
            if state.receivers == 0 {
                (std::mem::take(&mut state.senders_waiting), true)
            } else {
                (VecDeque::new(), false)
            }
        };
        for waiter in woken {
            waiter.waker.wake();
        }
        if !self.shared.is_pulled() {
            return;
        }
        if last {
            // Nobody will pull again: drop the source now rather than with the last metrics handle.
            let feeder = self.shared.feeder.lock().take();
            drop(feeder);
        } else {
            // This receiver may be the one that missed a waiter and will never pull or nudge again
            // (its task ended, e.g. by a panic): look once more, as `nudge` does.
            self.shared.wake_missed_puller();
        }
    }
}

impl<T> std::fmt::Debug for QueueReceiver<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("QueueReceiver").finish_non_exhaustive()
    }
}

/// The future of [`QueueReceiver::recv`].
#[must_use = "futures do nothing unless awaited"]
pub(crate) struct Recv<'a, T> {
    receiver: &'a QueueReceiver<T>,
    waiter: Option<u64>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<Message<T>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.receiver.shared.is_pulled() {
            return this.poll_pull(context);
        }
        let mut state = this.receiver.shared.state.lock();
        if this.receiver.shared.is_pulled() {
            // A feeder was attached since the look above (it is attached under this lock).
            drop(state);
            return this.poll_pull(context);
        }
        if let Some(id) = this.waiter
            && let Some((index, item)) = state.take_handed(id)
        {
            // Handed over by a sender: this receiver was taken off the waiting list then.
            this.waiter = None;
            return Poll::Ready(Some(Message::Item(index, item)));
        }
        let popped = state.pop();
        if popped.is_some() || state.senders == 0 {
            if let Some(id) = this.waiter.take() {
                unregister(&mut state.receivers_waiting, id);
            }
            let woken = if popped.is_some() && state.wants_senders() {
                state.senders_waiting.pop_front()
            } else {
                None
            };
            drop(state);
            if let Some(waiter) = woken {
                waiter.waker.wake();
            }
            return Poll::Ready(popped);
        }
        let id = match this.waiter {
            Some(id) => id,
            None => *this.waiter.insert(state.new_waiter_id()),
        };
        register(&mut state.receivers_waiting, id, context.waker());
        Poll::Pending
    }
}

impl<T> Recv<'_, T> {
    /// [`poll`](Future::poll) on a pulled queue: pulls if the feeder is free, otherwise waits for its turn
    /// (woken by the receiver that pulls next, or by the feeder's end).
    fn poll_pull(&mut self, context: &mut Context<'_>) -> Poll<Option<Message<T>>> {
        let shared = &*self.receiver.shared;
        for registered in [false, true] {
            if let Some(feeder) = shared.feeder.try_lock() {
                if let Some(id) = self.waiter.take() {
                    let mut state = shared.state.lock();
                    unregister(&mut state.receivers_waiting, id);
                    shared
                        .pull_waiting
                        .store(!state.receivers_waiting.is_empty(), Ordering::Relaxed);
                }
                return Poll::Ready(
                    shared.pull_locked(feeder).map(|(index, item)| Message::Item(index, item)),
                );
            }
            if registered {
                break;
            }
            let mut state = shared.state.lock();
            if state.senders == 0 {
                if let Some(id) = self.waiter.take() {
                    unregister(&mut state.receivers_waiting, id);
                }
                return Poll::Ready(None);
            }
            let id = match self.waiter {
                Some(id) => id,
                None => *self.waiter.insert(state.new_waiter_id()),
            };
            register(&mut state.receivers_waiting, id, context.waker());
            shared.pull_waiting.store(true, Ordering::Relaxed);
            drop(state);
            // Pairs with the fence of `nudge`: look at the feeder once more after registering.
            fence(Ordering::SeqCst);
        }
        Poll::Pending
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.waiter else { return };
        if self.receiver.shared.is_pulled() {
            let shared = &*self.receiver.shared;
            let woken = {
                let mut state = shared.state.lock();
                let was_waiting = unregister(&mut state.receivers_waiting, id);
                // Woken for its turn to pull and never pulled: pass the turn on.
                let woken = if was_waiting { None } else { state.receivers_waiting.pop_front() };
                shared.pull_waiting.store(!state.receivers_waiting.is_empty(), Ordering::Relaxed);
                woken
            };
            if let Some(waiter) = woken {
                waiter.waker.wake();
            }
            return;
        }
        let woken = {
            let mut state = self.receiver.shared.state.lock();
            let was_waiting = unregister(&mut state.receivers_waiting, id);
            if let Some((index, item)) = state.take_handed(id) {
                // Handed an item it never took: give it to the next waiting receiver, or put it back first
                // in line.
                state.hand_or_push(index, item, true)
            } else if !was_waiting && !state.is_empty() {
                // Woken for an envelope it never took: pass the wake-up on so another receiver takes it.
                state.receivers_waiting.pop_front().map(|waiter| waiter.waker)
            } else {
                None
            }
        };
        if let Some(waker) = woken {
            waker.wake();
        }
    }
}

impl<T> QueueDepth<T> {
    /// The number of items and gaps waiting now.
    pub(crate) fn len(&self) -> usize {
        let state = self.shared.state.lock();
        state.slots.len() + state.gaps.len() + state.handed.len()
    }
}

// ===== the outlets =====

/// Where a stage (or the source) sends what it produced.
#[derive(Debug)]
pub(crate) enum Outlet<T> {
    /// The next stage's input queue.
    Queue(QueueSender<T>),
    /// The output consumed by [`Running`](crate::Running).
    Output(mpsc::Sender<Envelope<T>>),
    /// Nobody consumes the outputs ([`Pipeline::run`](crate::Pipeline::run)): they are dropped, and the
    /// last stage's `items_out` counts them as delivered (no shared counter on the hot path).
    Discard,
}

impl<T> Clone for Outlet<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Queue(sender) => Self::Queue(sender.clone()),
            Self::Output(sender) => Self::Output(sender.clone()),
            Self::Discard => Self::Discard,
        }
    }
}

/// What became of a send.
pub(crate) enum Sent {
    /// Handed over (or, for a discarding outlet, dropped as delivered).
    Delivered,
    /// Not handed over because the pipeline was cancelled or the receiving side is gone.
    Unprocessed,
}

impl<T: std::marker::Send + 'static> Outlet<T> {
    /// Hands the item over if there is room now: `Ok` with what became of it, or `Err` with the item
    /// when the queue is full and the caller must wait with [`send_waiting`](Self::send_waiting).
    ///
    /// Synchronous on purpose: the hot path builds no future at all.
    #[inline(always)]
    pub(crate) fn try_send(&self, index: u64, item: T) -> Result<Sent, (u64, T)> {
        match self {
            Self::Queue(sender) => match sender.try_send(index, item) {
                Ok(()) => Ok(Sent::Delivered),
                Err(TrySendError::Full(index, item)) => Err((index, item)),
                Err(TrySendError::Closed(message)) => {
                    drop(message);
                    Ok(Sent::Unprocessed)
                }
            },
            Self::Output(sender) => match sender.try_reserve() {
                Ok(permit) => {
                    permit.send(Envelope { index, item: Some(item) });
                    Ok(Sent::Delivered)
                }
                Err(mpsc::error::TrySendError::Closed(())) => Ok(Sent::Unprocessed),
                Err(mpsc::error::TrySendError::Full(())) => Err((index, item)),
            },
            Self::Discard => Ok(Sent::Delivered),
        }
    }

    /// Waits for room and sends `message` (an item or a gap); the time spent waiting is added to
    /// `blocked_nanos`.
    ///
    /// Into a stage queue the send is never abandoned (see the module docs). Into the output, the wait for
    /// room races `cancel`, with reserve-then-commit: the item stays here until a slot is reserved.
    pub(crate) async fn send_waiting(
        &self,
        message: Message<T>,
        cancel: &Signal,
        blocked_nanos: &AtomicU64,
    ) -> Sent {
        let started = Instant::now();
        let sent = match self {
            Self::Queue(sender) => {
                if sender.send(message).await.is_ok() {
                    Sent::Delivered
                } else {
                    Sent::Unprocessed
                }
            }
            Self::Output(sender) => {
                let permit = tokio::select! {
                    biased;
                    () = cancel.cancelled() => None,
                    permit = sender.reserve() => permit.ok(),
                };
                match permit {
                    Some(permit) => {
                        permit.send(match message {
                            Message::Item(index, item) => Envelope { index, item: Some(item) },
                            Message::Gap(index) => Envelope { index, item: None },
                        });
                        Sent::Delivered
                    }
                    None => Sent::Unprocessed,
                }
            }
            Self::Discard => Sent::Delivered,
        };
        bump(blocked_nanos, nanos(started.elapsed()));
        sent
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{Feeder, Message, QueueReceiver, TryRecv, TrySendError, bounded};

    /// A waker that counts how often it was woken.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        (counter.clone(), Waker::from(counter))
    }

    fn woken(counter: &CountingWaker) -> usize {
        counter.0.load(Ordering::SeqCst)
    }

    fn poll<F: std::future::Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    fn index_of(received: TryRecv<u64>) -> Option<u64> {
        match received {
            TryRecv::Item(index, item) => {
                assert_eq!(item, index * 10);
                Some(index)
            }
            TryRecv::Gap(_) | TryRecv::Empty | TryRecv::Closed => None,
        }
    }

    fn message_index(message: &Message<u64>) -> u64 {
        match message {
            Message::Item(index, _) | Message::Gap(index) => *index,
        }
    }

    #[test]
    fn items_come_out_in_order_and_a_full_queue_hands_the_item_back() {
        let (sender, receiver) = bounded::<u64>(2);
        assert!(sender.try_send(0, 0).is_ok());
        assert!(sender.try_send(1, 10).is_ok());
        assert!(matches!(sender.try_send(2, 20), Err(TrySendError::Full(2, 20))));
        assert_eq!(receiver.depth().len(), 2);
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        assert_eq!(index_of(receiver.try_recv()), Some(1));
        assert!(matches!(receiver.try_recv(), TryRecv::Empty));
        drop(sender);
        assert!(matches!(receiver.try_recv(), TryRecv::Closed));
    }

    #[test]
    fn gaps_take_room_and_come_out_before_items() {
        let (sender, receiver) = bounded::<u64>(2);
        sender.try_send(0, 0).unwrap();
        let (_counter, waker) = waker();
        assert!(matches!(poll(&mut sender.send(Message::Gap(1)), &waker), Poll::Ready(Ok(()))));
        assert!(
            matches!(sender.try_send(2, 20), Err(TrySendError::Full(2, 20))),
            "the gap takes room"
        );
        assert_eq!(receiver.depth().len(), 2);
        assert!(matches!(receiver.try_recv(), TryRecv::Gap(1)));
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        sender.try_send(3, 30).unwrap();
        assert!(matches!(poll(&mut sender.send(Message::Gap(4)), &waker), Poll::Ready(Ok(()))));
        assert!(matches!(poll(&mut receiver.recv(), &waker), Poll::Ready(Some(Message::Gap(4)))));
        assert!(matches!(
            poll(&mut receiver.recv(), &waker),
            Poll::Ready(Some(Message::Item(3, 30)))
        ));
    }

    #[test]
    fn a_send_without_receivers_hands_the_item_back() {
        let (sender, receiver) = bounded::<u64>(2);
        let depth = receiver.depth();
        drop(receiver);
        assert!(matches!(sender.try_send(0, 0), Err(TrySendError::Closed(Message::Item(0, 0)))));
        let (_counter, waker) = waker();
        let polled = poll(&mut sender.send(Message::Item(1, 10)), &waker);
        assert!(matches!(polled, Poll::Ready(Err(Message::Item(1, 10)))));
        assert_eq!(depth.len(), 0, "the depth handle does not count as a receiver");
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (sender, receiver) = bounded::<u64>(2);
        let (counter, waker) = waker();
        let mut first = receiver.recv();
        assert!(poll(&mut first, &waker).is_pending());
        sender.try_send(7, 70).unwrap();
        assert_eq!(woken(&counter), 1);
        assert!(matches!(poll(&mut first, &waker), Poll::Ready(Some(Message::Item(7, 70)))));
        let mut second = receiver.recv();
        assert!(poll(&mut second, &waker).is_pending());
        drop(sender);
        assert_eq!(woken(&counter), 2);
        assert!(matches!(poll(&mut second, &waker), Poll::Ready(None)));
    }

    #[test]
    fn a_waiting_sender_is_woken_by_a_receive_and_sends_after() {
        let (sender, receiver) = bounded::<u64>(1);
        sender.try_send(0, 0).unwrap();
        let (counter, waker) = waker();
        let mut send = sender.send(Message::Item(1, 10));
        assert!(poll(&mut send, &waker).is_pending());
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        assert_eq!(woken(&counter), 1);
        assert!(matches!(poll(&mut send, &waker), Poll::Ready(Ok(()))));
        assert_eq!(index_of(receiver.try_recv()), Some(1));
    }

    #[test]
    fn a_woken_receiver_dropped_before_taking_its_item_passes_the_wake_up_on() {
        let (sender, receiver) = bounded::<u64>(4);
        let (first_counter, first_waker) = waker();
        let (second_counter, second_waker) = waker();
        let mut first = receiver.recv();
        let mut second = receiver.recv();
        assert!(poll(&mut first, &first_waker).is_pending());
        assert!(poll(&mut second, &second_waker).is_pending());
        sender.try_send(3, 30).unwrap();
        assert_eq!(woken(&first_counter), 1);
        assert_eq!(woken(&second_counter), 0);
        drop(first);
        assert_eq!(woken(&second_counter), 1, "the wake-up was passed on");
        assert!(matches!(
            poll(&mut second, &second_waker),
            Poll::Ready(Some(Message::Item(3, 30)))
        ));
    }

    #[test]
    fn a_woken_sender_dropped_before_using_the_room_passes_the_wake_up_on() {
        let (sender, receiver) = bounded::<u64>(1);
        sender.try_send(0, 0).unwrap();
        let (first_counter, first_waker) = waker();
        let (second_counter, second_waker) = waker();
        let mut first = sender.send(Message::Item(1, 10));
        let mut second = sender.send(Message::Item(2, 20));
        assert!(poll(&mut first, &first_waker).is_pending());
        assert!(poll(&mut second, &second_waker).is_pending());
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        assert_eq!(woken(&first_counter), 1);
        drop(first);
        assert_eq!(woken(&second_counter), 1, "the wake-up was passed on");
        assert!(matches!(poll(&mut second, &second_waker), Poll::Ready(Ok(()))));
        assert_eq!(index_of(receiver.try_recv()), Some(2));
    }

    #[test]
    fn a_waiting_sender_gets_its_item_back_when_the_last_receiver_leaves() {
        let (sender, receiver) = bounded::<u64>(1);
        sender.try_send(0, 0).unwrap();
        let (counter, waker) = waker();
        let mut send = sender.send(Message::Item(1, 10));
        assert!(poll(&mut send, &waker).is_pending());
        drop(receiver);
        assert_eq!(woken(&counter), 1);
        assert!(matches!(poll(&mut send, &waker), Poll::Ready(Err(Message::Item(1, 10)))));
    }

    #[test]
    fn an_item_handed_to_a_waiting_receiver_is_not_taken_by_another() {
        let (sender, receiver) = bounded::<u64>(2);
        let (counter, waker) = waker();
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        sender.try_send(4, 40).unwrap();
        assert_eq!(woken(&counter), 1);
        assert_eq!(receiver.depth().len(), 1, "the handed item still counts as waiting");
        assert!(matches!(receiver.try_recv(), TryRecv::Empty), "another receiver cannot take it");
        sender.try_send(5, 50).unwrap();
        assert_eq!(index_of(receiver.try_recv()), Some(5), "later items go to the queue as usual");
        assert!(matches!(poll(&mut waiting, &waker), Poll::Ready(Some(Message::Item(4, 40)))));
        assert_eq!(receiver.depth().len(), 0);
    }

    #[test]
    fn a_receiver_dropped_with_a_handed_item_puts_it_back_first_in_line() {
        let (sender, receiver) = bounded::<u64>(4);
        let (_counter, waker) = waker();
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        sender.try_send(1, 10).unwrap();
        sender.try_send(2, 20).unwrap();
        drop(waiting);
        assert_eq!(index_of(receiver.try_recv()), Some(1), "the handed item comes back first");
        assert_eq!(index_of(receiver.try_recv()), Some(2));
        assert!(matches!(receiver.try_recv(), TryRecv::Empty));
    }

    #[test]
    fn a_handed_item_reaches_its_receiver_after_the_last_sender_left() {
        let (sender, receiver) = bounded::<u64>(2);
        let (_counter, waker) = waker();
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        sender.try_send(9, 90).unwrap();
        drop(sender);
        assert!(matches!(receiver.try_recv(), TryRecv::Closed), "nothing is left for others");
        assert!(matches!(poll(&mut waiting, &waker), Poll::Ready(Some(Message::Item(9, 90)))));
    }

    #[test]
    fn pushes_wake_one_receiver_at_a_time_and_a_nudge_brings_in_the_next() {
        let (sender, receiver) = bounded::<u64>(4);
        let (first_counter, first_waker) = waker();
        let (second_counter, second_waker) = waker();
        let mut first = receiver.recv();
        let mut second = receiver.recv();
        assert!(poll(&mut first, &first_waker).is_pending());
        assert!(poll(&mut second, &second_waker).is_pending());
        sender.try_send(0, 0).unwrap();
        sender.try_send(1, 10).unwrap();
        assert_eq!(woken(&first_counter), 1);
        assert_eq!(woken(&second_counter), 0, "one receiver is already on its way");
        assert!(matches!(poll(&mut first, &first_waker), Poll::Ready(Some(Message::Item(0, 0)))));
        receiver.nudge();
        assert_eq!(
            woken(&second_counter),
            1,
            "the nudge hands the queued item to the waiting peer"
        );
        assert!(matches!(
            poll(&mut second, &second_waker),
            Poll::Ready(Some(Message::Item(1, 10)))
        ));
        receiver.nudge();
        assert!(
            matches!(receiver.try_recv(), TryRecv::Empty),
            "a nudge with nothing queued does nothing"
        );
    }

    #[test]
    fn a_woken_sender_whose_item_went_to_a_receiver_passes_the_room_on() {
        let (sender, receiver) = bounded::<u64>(1);
        let (_receiver_counter, receiver_waker) = waker();
        let mut first = receiver.recv();
        let mut second = receiver.recv();
        assert!(poll(&mut first, &receiver_waker).is_pending());
        assert!(poll(&mut second, &receiver_waker).is_pending());
        sender.try_send(0, 0).unwrap(); // handed to `first`
        sender.try_send(1, 10).unwrap(); // queued: the ring is full
        let (first_sender_counter, first_sender_waker) = waker();
        let (second_sender_counter, second_sender_waker) = waker();
        let mut first_send = sender.send(Message::Item(2, 20));
        let mut second_send = sender.send(Message::Item(3, 30));
        assert!(poll(&mut first_send, &first_sender_waker).is_pending());
        assert!(poll(&mut second_send, &second_sender_waker).is_pending());
        assert!(matches!(
            poll(&mut first, &receiver_waker),
            Poll::Ready(Some(Message::Item(0, 0)))
        ));
        receiver.nudge(); // item 1 goes to `second`, its room to the first sender
        assert_eq!(woken(&first_sender_counter), 1);
        assert!(matches!(
            poll(&mut second, &receiver_waker),
            Poll::Ready(Some(Message::Item(1, 10)))
        ));
        let mut third = receiver.recv();
        assert!(poll(&mut third, &receiver_waker).is_pending());
        // The first sender's item goes straight to `third`, so the room it was woken for is still free.
        assert!(matches!(poll(&mut first_send, &first_sender_waker), Poll::Ready(Ok(()))));
        assert_eq!(woken(&second_sender_counter), 1, "the unused room went to the next sender");
        assert!(matches!(poll(&mut second_send, &second_sender_waker), Poll::Ready(Ok(()))));
        assert!(matches!(
            poll(&mut third, &receiver_waker),
            Poll::Ready(Some(Message::Item(2, 20)))
        ));
        assert_eq!(index_of(receiver.try_recv()), Some(3));
    }

    #[test]
    fn a_waiting_sender_is_woken_once_the_queue_has_drained_to_half() {
        let (sender, receiver) = bounded::<u64>(4);
        for index in 0..4 {
            sender.try_send(index, index * 10).unwrap();
        }
        let (counter, waker) = waker();
        let mut send = sender.send(Message::Item(4, 40));
        assert!(poll(&mut send, &waker).is_pending());
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        assert_eq!(woken(&counter), 0, "three of four still queued: the sender sleeps on");
        assert_eq!(index_of(receiver.try_recv()), Some(1));
        assert_eq!(woken(&counter), 1, "half drained: the sender is woken");
        assert!(matches!(poll(&mut send, &waker), Poll::Ready(Ok(()))));
    }

    #[test]
    fn a_cancelled_receive_loses_nothing() {
        let (sender, receiver) = bounded::<u64>(2);
        let (_counter, waker) = waker();
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        drop(waiting);
        sender.try_send(5, 50).unwrap();
        assert_eq!(index_of(receiver.try_recv()), Some(5));
    }

    /// Receives until the queue closes and returns the indices seen. Every `abandon_every`th receive is
    /// abandoned after one poll, woken or not (and then, when `nudge`, followed by the nudge of a worker
    /// that stops taking items); the others wait with `recv`, after a `try_recv` when `nudge`, as a
    /// worker does.
    async fn receive_abandoning_some(
        receiver: QueueReceiver<u64>,
        first_attempt: u64,
        abandon_every: u64,
        nudge: bool,
    ) -> Vec<u64> {
        let mut seen = Vec::new();
        let mut take = |message: Message<u64>| {
            if let Message::Item(index, item) = message {
                assert_eq!(item, index * 10);
            }
            seen.push(message_index(&message));
        };
        let mut attempt = first_attempt;
        loop {
            attempt += 1;
            if attempt % abandon_every == 0 {
                let mut receive = receiver.recv();
                let polled = std::future::poll_fn(|context| {
                    Poll::Ready(Pin::new(&mut receive).poll(context))
                })
                .await;
                match polled {
                    Poll::Ready(Some(message)) => take(message),
                    Poll::Ready(None) => break,
                    Poll::Pending => {
                        drop(receive);
                        if nudge {
                            receiver.nudge();
                        }
                        tokio::task::yield_now().await;
                    }
                }
                continue;
            }
            let received = if nudge {
                match receiver.try_recv() {
                    TryRecv::Item(index, item) => Some(Message::Item(index, item)),
                    TryRecv::Gap(index) => Some(Message::Gap(index)),
                    TryRecv::Closed => None,
                    TryRecv::Empty => receiver.recv().await,
                }
            } else {
                receiver.recv().await
            };
            match received {
                Some(message) => take(message),
                None => break,
            }
        }
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receives_cancelled_at_random_points_lose_no_item_and_no_wake_up() {
        let (sender, receiver) = bounded::<u64>(2);
        let producer = tokio::spawn(async move {
            for index in 0..20_000u64 {
                if let Err(TrySendError::Full(index, item)) = sender.try_send(index, index * 10) {
                    sender.send(Message::Item(index, item)).await.unwrap();
                }
                if index % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let receivers: Vec<_> = (0..4u64)
            .map(|worker| tokio::spawn(receive_abandoning_some(receiver.clone(), worker, 3, false)))
            .collect();
        drop(receiver);
        producer.await.unwrap();
        let mut all = Vec::new();
        for receiver in receivers {
            all.extend(receiver.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_and_receivers_move_every_item_and_gap_exactly_once() {
        let (sender, receiver) = bounded::<u64>(3);
        let mut senders = Vec::new();
        for producer in 0..4u64 {
            let sender = sender.clone();
            senders.push(tokio::spawn(async move {
                for offset in 0..5_000u64 {
                    let index = producer * 5_000 + offset;
                    if index % 7 == 0 {
                        sender.send(Message::Gap(index)).await.unwrap();
                    } else if let Err(TrySendError::Full(index, item)) =
                        sender.try_send(index, index * 10)
                    {
                        sender.send(Message::Item(index, item)).await.unwrap();
                    }
                }
            }));
        }
        drop(sender);
        let mut receivers = Vec::new();
        for _ in 0..3 {
            let receiver = receiver.clone();
            receivers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    match receiver.try_recv() {
                        TryRecv::Item(index, _) | TryRecv::Gap(index) => seen.push(index),
                        TryRecv::Closed => break,
                        TryRecv::Empty => match receiver.recv().await {
                            Some(message) => seen.push(message_index(&message)),
                            None => break,
                        },
                    }
                }
                seen
            }));
        }
        drop(receiver);
        for sender in senders {
            sender.await.unwrap();
        }
        let mut all = Vec::new();
        for receiver in receivers {
            all.extend(receiver.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>());
    }

    /// A feeder of `count` items, `index * 10` each, that counts how often it is dropped.
    fn counting_feeder(count: u64, dropped: &Arc<AtomicUsize>) -> Feeder<u64> {
        struct OnDrop(Arc<AtomicUsize>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let on_drop = OnDrop(dropped.clone());
        let mut next = 0;
        Box::new(move || {
            let _keep = &on_drop;
            (next < count).then(|| {
                next += 1;
                (next - 1) * 10
            })
        })
    }

    /// A queue whose receivers pull `count` items from a feeder.
    fn pulled(count: u64) -> (QueueReceiver<u64>, Arc<AtomicUsize>) {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (sender, receiver) = bounded::<u64>(4);
        sender.feed_from(counting_feeder(count, &dropped));
        (receiver, dropped)
    }

    #[test]
    fn a_pulled_queue_numbers_items_in_pull_order_and_closes_when_the_feeder_ends() {
        let (receiver, dropped) = pulled(3);
        let other = receiver.clone();
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        assert_eq!(index_of(other.try_recv()), Some(1));
        assert_eq!(receiver.depth().len(), 0, "nothing is queued");
        let (_counter, waker) = waker();
        assert!(matches!(
            poll(&mut receiver.recv(), &waker),
            Poll::Ready(Some(Message::Item(2, 20)))
        ));
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        assert!(matches!(other.try_recv(), TryRecv::Closed));
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the ended feeder is dropped at once");
        assert!(matches!(receiver.try_recv(), TryRecv::Closed));
        assert!(matches!(poll(&mut receiver.recv(), &waker), Poll::Ready(None)));
    }

    #[test]
    fn a_receiver_waiting_for_its_turn_is_woken_by_the_next_pull_or_by_a_nudge() {
        let (receiver, _dropped) = pulled(10);
        let (counter, waker) = waker();
        // Another receiver is pulling: the feeder's lock is held.
        let busy = receiver.shared.feeder.lock();
        assert!(
            matches!(receiver.try_recv(), TryRecv::Empty),
            "it looks a few times, then gives up"
        );
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        drop(busy);
        assert_eq!(woken(&counter), 0);
        // A pull by someone else wakes the waiting receiver.
        assert_eq!(index_of(receiver.clone().try_recv()), Some(0));
        assert_eq!(woken(&counter), 1);
        assert!(matches!(poll(&mut waiting, &waker), Poll::Ready(Some(Message::Item(1, 10)))));
        // So does a nudge, the look a receiver takes when it stops taking items.
        let busy = receiver.shared.feeder.lock();
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        drop(busy);
        receiver.nudge();
        assert_eq!(woken(&counter), 2);
        assert!(matches!(poll(&mut waiting, &waker), Poll::Ready(Some(Message::Item(2, 20)))));
        receiver.nudge();
        assert_eq!(woken(&counter), 2, "nobody waits any more");
    }

    #[test]
    fn a_receiver_woken_for_its_turn_and_dropped_passes_the_turn_on() {
        let (receiver, _dropped) = pulled(10);
        let (first_counter, first_waker) = waker();
        let (second_counter, second_waker) = waker();
        let busy = receiver.shared.feeder.lock();
        let mut first = receiver.recv();
        let mut second = receiver.recv();
        assert!(poll(&mut first, &first_waker).is_pending());
        assert!(poll(&mut second, &second_waker).is_pending());
        drop(busy);
        receiver.nudge();
        assert_eq!((woken(&first_counter), woken(&second_counter)), (1, 0));
        drop(first);
        assert_eq!(woken(&second_counter), 1, "the turn was passed on");
        assert!(matches!(poll(&mut second, &second_waker), Poll::Ready(Some(Message::Item(0, 0)))));
    }

    #[test]
    fn receivers_waiting_before_the_feeder_is_attached_are_woken_by_it() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (sender, receiver) = bounded::<u64>(4);
        let (counter, waker) = waker();
        let mut first = receiver.recv();
        let mut second = receiver.recv();
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut second, &waker).is_pending());
        sender.feed_from(counting_feeder(1, &dropped));
        assert_eq!(woken(&counter), 2);
        assert!(matches!(poll(&mut first, &waker), Poll::Ready(Some(Message::Item(0, 0)))));
        assert!(matches!(poll(&mut second, &waker), Poll::Ready(None)));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_feeder_whose_drop_panics_still_closes_the_queue() {
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("the source panics in drop");
            }
        }
        let (sender, receiver) = bounded::<u64>(4);
        let guard = PanicOnDrop;
        sender.feed_from(Box::new(move || {
            let _keep = &guard;
            None
        }));
        let other = receiver.clone();
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| receiver.try_recv()));
        assert!(ended.is_err(), "the panic reaches the receiver that dropped the feeder");
        assert!(matches!(other.try_recv(), TryRecv::Closed), "the queue is closed all the same");
    }

    #[test]
    fn a_receiver_dropped_after_missing_a_waiter_passes_the_turn_on() {
        let (receiver, _dropped) = pulled(10);
        let puller = receiver.clone();
        let (counter, waker) = waker();
        // `puller` is inside the feeder...
        let busy = receiver.shared.feeder.lock();
        let mut waiting = receiver.recv();
        assert!(poll(&mut waiting, &waker).is_pending());
        // ...its pull missed the registration, and its task ends before it pulls again or nudges.
        drop(busy);
        drop(puller);
        assert_eq!(woken(&counter), 1, "the receiver leaving looked for a waiter");
        assert!(matches!(poll(&mut waiting, &waker), Poll::Ready(Some(Message::Item(0, 0)))));
    }

    #[test]
    fn the_last_receiver_leaving_drops_the_feeder() {
        let (receiver, dropped) = pulled(u64::MAX);
        let depth = receiver.depth();
        let other = receiver.clone();
        assert_eq!(index_of(receiver.try_recv()), Some(0));
        drop(receiver);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(other);
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the depth handle does not keep the source");
        assert_eq!(depth.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn receivers_pulling_on_two_threads_take_every_item_exactly_once() {
        const COUNT: u64 = 20_000;
        let (sender, receiver) = bounded::<u64>(4);
        let mut next = 0;
        sender.feed_from(Box::new(move || {
            if next == COUNT {
                return None;
            }
            if next % 500 == 0 {
                // A slow pull now and then, so that the others wait for their turn.
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_micros(200) {
                    std::hint::spin_loop();
                }
            }
            next += 1;
            Some((next - 1) * 10)
        }));
        let receivers: Vec<_> = (0..4u64)
            .map(|worker| tokio::spawn(receive_abandoning_some(receiver.clone(), worker, 5, true)))
            .collect();
        drop(receiver);
        let mut all = Vec::new();
        for receiver in receivers {
            all.extend(receiver.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..COUNT).collect::<Vec<_>>());
    }
}
