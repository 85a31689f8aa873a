//! The engine under every gather form: polls children in completion order, creates them lazily up to a limit.
//!
//! The engine knows nothing of policies or errors. It pulls futures from a source (an iterator or a stream),
//! turns each into a child through a backend (boxed in place, or spawned on tokio), keeps at most `limit`
//! children alive, and yields `(input index, outcome)` in the order the children finish.
//!
//! Two wake strategies, chosen once:
//! - small (at most [`SMALL`] children alive at once): every child shares the caller's waker and each poll sweeps
//!   all live children, as `join_all` does for small inputs. No allocation per child beyond the child itself.
//! - large: each slot owns a waker that pushes its slot number onto a shared ready list, so a wake-up re-polls
//!   only the children that were woken. Wakers belong to slots, not children, so a bounded gather allocates
//!   `limit` wakers in all.

use std::future::{Future, IntoFuture};
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use pin_project_lite::pin_project;
/// At most this many live children use the sweeping strategy; more get a waker each.
pub(crate) const SMALL: usize = 32;

pub(crate) mod sealed {
    //! The traits that connect sources and backends to the engine; public but unnameable (sealed).

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use std::any::Any;

    use tokio::task::JoinHandle;

    /// How a child ended.
    pub enum ChildOutcome<O> {
        /// The child finished with its output.
        Value(O),
        /// The child panicked; the payload is kept so it can be reported or re-raised.
        Panicked(Box<dyn Any + Send + 'static>),
        /// The child was cancelled (a spawned task aborted from outside, or by the engine).
        Cancelled,
    }

    /// A future polled in place, boxed so it can be pinned without `unsafe`.
    pub struct Boxed<F> {
        pub(crate) future: Pin<Box<F>>,
    }

    /// A spawned task; dropping it aborts the task.
    pub struct SpawnedChild<O> {
        pub(crate) handle: JoinHandle<O>,
    }

    impl<O> std::fmt::Debug for ChildOutcome<O> {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str(match self {
                Self::Value(_) => "Value(..)",
                Self::Panicked(_) => "Panicked(..)",
                Self::Cancelled => "Cancelled",
            })
        }
    }

    impl<F> std::fmt::Debug for Boxed<F> {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.debug_struct("Boxed").finish_non_exhaustive()
        }
    }

    impl<O> std::fmt::Debug for SpawnedChild<O> {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.debug_struct("SpawnedChild").field("id", &self.handle.id()).finish()
        }
    }

    /// A running child of the engine.
    pub trait Child: Unpin {
        /// What the child's future returns.
        type Output;

        /// Polls the child, catching a panic of an in-place future.
        fn poll_child(&mut self, cx: &mut Context<'_>) -> Poll<ChildOutcome<Self::Output>>;

        /// Starts cancelling the child; returns `true` when it must still be polled until it has stopped.
        fn start_abort(&mut self) -> bool;
    }

    /// Where the engine gets its children: a source of futures behind a backend.
    pub trait ChildSource {
        /// The children this source makes.
        type Child: Child;

        /// The next child, if the source has one now.
        fn poll_next_child(self: Pin<&mut Self>, cx: &mut Context<'_>)
        -> Poll<Option<Self::Child>>;

        /// Bounds on how many futures remain, as `Iterator::size_hint`.
        fn size_hint(&self) -> (usize, Option<usize>);

        /// `true` when children make progress without being polled (spawned tasks).
        const RUNS_ON_ITS_OWN: bool;
    }

    /// A source of raw futures: an iterator or a stream.
    pub trait FutureSource {
        /// The futures it yields.
        type Future: std::future::Future;

        /// The next future, if the source has one now.
        fn poll_next_future(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Self::Future>>;

        /// Bounds on how many futures remain.
        fn size_hint(&self) -> (usize, Option<usize>);
    }
}

pub(crate) use sealed::ChildOutcome;
use sealed::{Boxed, Child, ChildSource, FutureSource, SpawnedChild};

// ===== sources =====

pin_project! {
    /// A source of futures read from an iterator, one future at a time as slots free up.
    ///
    /// Made by [`gather`](crate::gather) and the other free functions; you only name it in type annotations.
    #[derive(Debug)]
    pub struct IterSource<I> {
        // Not pinned: an iterator may move freely, so `IterSource` is always `Unpin`.
        iter: I,
    }
}

pin_project! {
    /// A source of futures read from a [`Stream`], one future at a time as slots free up.
    ///
    /// Made by [`gather_stream`](crate::gather_stream) and the other `*_stream` functions.
    #[derive(Debug)]
    pub struct StreamSource<S> {
        #[pin]
        stream: S,
    }
}

impl<I> IterSource<I> {
    pub(crate) fn new(iter: I) -> Self {
        Self { iter }
    }
}

impl<S> StreamSource<S> {
    pub(crate) fn new(stream: S) -> Self {
        Self { stream }
    }
}

impl<I> FutureSource for IterSource<I>
where
    I: Iterator,
    I::Item: IntoFuture,
{
    type Future = <I::Item as IntoFuture>::IntoFuture;

    fn poll_next_future(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Future>> {
        Poll::Ready(self.project().iter.next().map(IntoFuture::into_future))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

impl<S> FutureSource for StreamSource<S>
where
    S: Stream,
    S::Item: IntoFuture,
{
    type Future = <S::Item as IntoFuture>::IntoFuture;

    fn poll_next_future(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Future>> {
        self.project().stream.poll_next(cx).map(|item| item.map(IntoFuture::into_future))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

// ===== backends =====

pin_project! {
    /// The in-place backend: children are polled inside the gathering future, on its task.
    ///
    /// Borrowing is allowed and nothing needs to be `'static` or `Send`; the children run concurrently but not
    /// in parallel. Each child is boxed once so it can be pinned without `unsafe`.
    #[derive(Debug)]
    pub struct InPlace<R> {
        #[pin]
        source: R,
    }
}

pin_project! {
    /// The spawned backend: each child is a tokio task, so children run in parallel on the runtime.
    ///
    /// Children must be `Send + 'static`. Results still come back in input order where the policy says so.
    /// The ambient deadline ([`aqueduct_core::current_deadline`]) in force when a child is spawned is carried
    /// into its task.
    #[derive(Debug)]
    pub struct Spawned<R> {
        #[pin]
        source: R,
    }
}

impl<R> InPlace<R> {
    pub(crate) fn new(source: R) -> Self {
        Self { source }
    }

    pub(crate) fn into_spawned(self) -> Spawned<R> {
        Spawned { source: self.source }
    }
}

impl<F: Future> Child for Boxed<F> {
    type Output = F::Output;

    fn poll_child(&mut self, cx: &mut Context<'_>) -> Poll<ChildOutcome<F::Output>> {
        match catch_unwind(AssertUnwindSafe(|| self.future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(ChildOutcome::Value(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(ChildOutcome::Panicked(payload)),
        }
    }

    fn start_abort(&mut self) -> bool {
        // Dropping is the cancellation; the engine drops the child right away.
        false
    }
}

impl<O> Drop for SpawnedChild<O> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl<O> Child for SpawnedChild<O> {
    type Output = O;

    fn poll_child(&mut self, cx: &mut Context<'_>) -> Poll<ChildOutcome<O>> {
        Pin::new(&mut self.handle).poll(cx).map(|joined| match joined {
            Ok(output) => ChildOutcome::Value(output),
            Err(error) => match error.try_into_panic() {
                Ok(payload) => ChildOutcome::Panicked(payload),
                Err(_) => ChildOutcome::Cancelled,
            },
        })
    }

    fn start_abort(&mut self) -> bool {
        self.handle.abort();
        true
    }
}

/// Spawns `future` on the current runtime, carrying the ambient deadline into the task.
pub(crate) fn spawn_with_deadline<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match aqueduct_core::current_deadline() {
        Some(at) => tokio::spawn(aqueduct_core::with_deadline(at, future)),
        None => tokio::spawn(future),
    }
}

impl<R: FutureSource> ChildSource for InPlace<R> {
    type Child = Boxed<R::Future>;

    const RUNS_ON_ITS_OWN: bool = false;

    fn poll_next_child(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Child>> {
        self.project()
            .source
            .poll_next_future(cx)
            .map(|next| next.map(|future| Boxed { future: Box::pin(future) }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.source.size_hint()
    }
}

impl<R> ChildSource for Spawned<R>
where
    R: FutureSource,
    R::Future: Send + 'static,
    <R::Future as Future>::Output: Send + 'static,
{
    type Child = SpawnedChild<<R::Future as Future>::Output>;

    const RUNS_ON_ITS_OWN: bool = true;

    fn poll_next_child(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Child>> {
        self.project()
            .source
            .poll_next_future(cx)
            .map(|next| next.map(|future| SpawnedChild { handle: spawn_with_deadline(future) }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.source.size_hint()
    }
}

// ===== the engine =====

/// The ready list shared by the wakers of a large engine.
#[derive(Default)]
struct Shared {
    state: Mutex<SharedState>,
}

#[derive(Default)]
struct SharedState {
    /// Slots woken since the engine last looked, each at most once.
    ready: Vec<usize>,
    /// The waker of the task polling the engine, registered when it goes idle.
    parent: Option<Waker>,
}

/// The waker of one slot: pushes the slot onto the ready list once, then wakes the parent.
struct SlotWaker {
    slot: usize,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let parent = {
            let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.ready.push(self.slot);
            state.parent.take()
        };
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}

/// A finished child: its input index and how it ended.
pub(crate) type Finished<S> = (usize, ChildOutcome<<<S as ChildSource>::Child as Child>::Output>);

struct Slot<C> {
    child: Option<C>,
    index: usize,
}

/// The wakers of a large engine: the shared ready list and one waker per slot, reused across gathers.
///
/// Allocating a waker per child costs about as much as the rest of the gather, so an engine hands its
/// wakers back to a per-thread pool when it is dropped, provided nothing else still holds one of them.
struct Wakers {
    shared: Arc<Shared>,
    slots: Vec<(Arc<SlotWaker>, Waker)>,
}

/// Wakers are pooled only up to this many slots, so a huge one-off gather does not pin its memory.
const POOLED_WAKERS_MAX: usize = 1 << 16;

thread_local! {
    static WAKER_POOL: std::cell::RefCell<Option<Wakers>> = const { std::cell::RefCell::new(None) };
}

impl Wakers {
    /// Pooled wakers if this thread has some, else a fresh set.
    fn take() -> Self {
        WAKER_POOL
            .try_with(|pool| pool.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_else(|| Self { shared: Arc::default(), slots: Vec::new() })
    }

    /// The waker of `slot_number`, made on first use.
    fn waker(&mut self, slot_number: usize) -> &(Arc<SlotWaker>, Waker) {
        while self.slots.len() <= slot_number {
            let slot_waker = Arc::new(SlotWaker {
                slot: self.slots.len(),
                queued: AtomicBool::new(false),
                shared: Arc::clone(&self.shared),
            });
            let waker = Waker::from(Arc::clone(&slot_waker));
            self.slots.push((slot_waker, waker));
        }
        &self.slots[slot_number]
    }

    /// Returns the wakers to this thread's pool when no child kept a clone of any of them.
    fn recycle(self) {
        let unshared = self.slots.len() <= POOLED_WAKERS_MAX
            && Arc::strong_count(&self.shared) == 1 + self.slots.len()
            && self.slots.iter().all(|(slot_waker, _)| Arc::strong_count(slot_waker) == 2);
        if !unshared {
            return;
        }
        {
            let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.ready.clear();
            state.parent = None;
        }
        for (slot_waker, _) in &self.slots {
            slot_waker.queued.store(false, Ordering::Relaxed);
        }
        let _ = WAKER_POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.as_ref().is_none_or(|pooled| pooled.slots.len() < self.slots.len()) {
                *pool = Some(self);
            }
        });
    }
}

pin_project! {
    /// Polls children in completion order, creating them lazily up to `limit` at once.
    #[project = EngineProjection]
    pub(crate) struct Engine<S> where S: ChildSource {
        #[pin]
        source: Option<S>,
        limit: usize,
        slots: Vec<Slot<S::Child>>,
        free: Vec<usize>,
        live: usize,
        next_index: usize,
        // Slots to poll now, and how far through them we are.
        local: Vec<usize>,
        cursor: usize,
        // `true` in the large strategy; its wakers are taken from the pool at the first poll that needs them.
        large: bool,
        // `None` in the small strategy and until the first poll of a large engine.
        wakers: Option<Wakers>,
        // Children are awaited newest first with the caller's waker (spawned, unlimited, order-free policy);
        // see `await_newest_first`.
        newest_first: bool,
    }

    impl<S> PinnedDrop for Engine<S> where S: ChildSource {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Children first: their drop may release clones of our wakers.
            this.slots.clear();
            if let Some(wakers) = this.wakers.take() {
                wakers.recycle();
            }
        }
    }
}

impl<S: ChildSource> Engine<S> {
    /// An engine over `source` with at most `limit` children alive (`usize::MAX` for no limit).
    pub(crate) fn new(source: S, limit: usize) -> Self {
        let most_alive = source.size_hint().1.unwrap_or(usize::MAX).min(limit);
        Self {
            source: Some(source),
            limit,
            // Reserved at the first poll, once the limit and the strategy are known.
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_index: 0,
            local: Vec::new(),
            cursor: 0,
            large: most_alive > SMALL,
            wakers: None,
            newest_first: false,
        }
    }

    /// A lower bound on the number of children, for reserving output space.
    pub(crate) fn expected_len(&self) -> usize {
        self.source.as_ref().map_or(0, |source| source.size_hint().0)
    }

    /// How many children were created so far (the next input index).
    pub(crate) fn created(&self) -> usize {
        self.next_index
    }

    /// Cancels everything: drops the source and the in-place children now, aborts the spawned ones.
    ///
    /// Returns the input indices of the children dropped here, in input order. Spawned children come back
    /// from [`poll_next`](Self::poll_next) once they have stopped, usually as [`ChildOutcome::Cancelled`].
    pub(crate) fn abort_all(self: Pin<&mut Self>) -> Vec<usize> {
        let mut this = self.project();
        this.source.set(None);
        let mut dropped = Vec::new();
        for (slot_number, slot) in this.slots.iter_mut().enumerate() {
            let Some(child) = slot.child.as_mut() else { continue };
            if child.start_abort() {
                // Poll it soon even if its waker stays quiet.
                this.local.push(slot_number);
            } else {
                slot.child = None;
                *this.live -= 1;
                this.free.push(slot_number);
                dropped.push(slot.index);
            }
        }
        dropped.sort_unstable();
        dropped
    }

    /// The next child to finish, with its input index; `None` once all finished and the source is empty.
    pub(crate) fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Finished<S>>> {
        let mut this = self.project();
        if *this.next_index == 0 && this.slots.capacity() == 0 {
            // The first poll: room for as many children as will be alive at once, as far as the source tells.
            let lower =
                this.source.as_ref().get_ref().as_ref().map_or(0, |source| source.size_hint().0);
            let capacity = lower.min(*this.limit);
            this.slots.reserve_exact(capacity);
            if !*this.newest_first {
                this.local.reserve_exact(capacity);
            }
        }
        if *this.newest_first {
            return Self::poll_newest_first(this, cx);
        }
        if *this.large && this.wakers.is_none() {
            *this.wakers = Some(Wakers::take());
        }
        let mut swept = false;
        let mut repolls = 0_usize;
        let mut self_wakes = 0_usize;
        loop {
            // 1. Create children while there is room.
            while *this.live < *this.limit {
                let Some(source) = this.source.as_mut().as_pin_mut() else { break };
                match source.poll_next_child(cx) {
                    Poll::Ready(Some(child)) => {
                        let index = *this.next_index;
                        *this.next_index += 1;
                        *this.live += 1;
                        let slot_number = match this.free.pop() {
                            Some(slot_number) => {
                                let slot = &mut this.slots[slot_number];
                                slot.child = Some(child);
                                slot.index = index;
                                slot_number
                            }
                            None => {
                                this.slots.push(Slot { child: Some(child), index });
                                this.slots.len() - 1
                            }
                        };
                        this.local.push(slot_number);
                    }
                    Poll::Ready(None) => {
                        this.source.set(None);
                        break;
                    }
                    Poll::Pending => break,
                }
            }

            // 2. Poll the children due now.
            while let Some(&slot_number) = this.local.get(*this.cursor) {
                *this.cursor += 1;
                let slot = &mut this.slots[slot_number];
                let Some(child) = slot.child.as_mut() else { continue };
                let polled = match this.wakers {
                    None => child.poll_child(cx),
                    Some(wakers) => {
                        let (slot_waker, waker) = wakers.waker(slot_number);
                        slot_waker.queued.store(false, Ordering::Release);
                        let polled = child.poll_child(&mut Context::from_waker(waker));
                        if polled.is_pending() && slot_waker.queued.load(Ordering::Acquire) {
                            // The child woke itself: it yielded, or tokio's co-op budget ran out. Give the worker
                            // back once the budget is spent or after `SMALL` such children in one poll.
                            // (FuturesUnordered yields after 2, which costs a scheduler round trip per two
                            // yielding children; 32 keeps one gather's turn short and those trips rare.)
                            self_wakes += 1;
                            if self_wakes >= SMALL || !tokio::task::coop::has_budget_remaining() {
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                        }
                        polled
                    }
                };
                if let Poll::Ready(outcome) = polled {
                    slot.child = None;
                    *this.live -= 1;
                    this.free.push(slot_number);
                    return Poll::Ready(Some((slot.index, outcome)));
                }
            }
            this.local.clear();
            *this.cursor = 0;

            // 3. Find what to poll next.
            match this.wakers {
                None => {
                    if !swept && *this.live > 0 {
                        swept = true;
                        this.local.extend(
                            this.slots
                                .iter()
                                .enumerate()
                                .filter(|(_, slot)| slot.child.is_some())
                                .map(|(n, _)| n),
                        );
                        continue;
                    }
                }
                Some(wakers) => {
                    let mut state =
                        wakers.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                    if !state.ready.is_empty() {
                        repolls += state.ready.len();
                        if repolls > *this.live + SMALL {
                            // Children keep waking each other: yield to the runtime once in a while,
                            // as FuturesUnordered does, so one gather cannot starve the worker.
                            drop(state);
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        mem::swap(&mut state.ready, this.local);
                        continue;
                    }
                    if *this.live > 0 {
                        match &state.parent {
                            Some(parent) if parent.will_wake(cx.waker()) => {}
                            _ => state.parent = Some(cx.waker().clone()),
                        }
                    }
                }
            }
            if *this.live == 0 && this.source.is_none() {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
    }
}

impl<S: ChildSource> Engine<S> {
    /// Changes the limit; only before the first poll.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        debug_assert_eq!(self.next_index, 0, "the limit is set before the engine starts");
        let upper = self.source.as_ref().and_then(|source| source.size_hint().1);
        self.limit = limit;
        self.large = upper.unwrap_or(usize::MAX).min(limit) > SMALL;
    }

    /// Swaps the source for another made from it; only before the first poll.
    pub(crate) fn map_source<T: ChildSource>(mut self, map: impl FnOnce(S) -> T) -> Engine<T> {
        debug_assert_eq!(self.next_index, 0, "the backend is chosen before the engine starts");
        // `Engine` has a destructor, so its fields are taken rather than moved out.
        let source = self.source.take().map(map);
        Engine {
            source,
            limit: self.limit,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_index: 0,
            local: Vec::new(),
            cursor: 0,
            large: self.large,
            wakers: self.wakers.take(),
            newest_first: false,
        }
    }

    /// Awaits the children one by one, newest first, with the caller's waker, instead of tracking which one
    /// woke; only before the first poll.
    ///
    /// Only for children that run on their own (spawned) and without a limit, where the order of observation
    /// cannot change what a collect-all gather returns; the caller checks that. No waker is made and no slot
    /// is reused, so the slots are a stack in input order.
    ///
    /// Newest first, for two reasons. Tasks mostly finish in the order they were spawned, so the newest is
    /// among the last to finish: by the time it has, the older ones are done too, and the gathering task is
    /// woken about once, instead of each time it catches up with the running tasks when it waits on the
    /// oldest. And the task cells are freed in the reverse of the order they were allocated in: with glibc's
    /// malloc the newest cells, on top of the heap, then stay in the thread's cache and the older ones are
    /// kept below them for the next gather, where freeing the oldest first merged all of them into the top
    /// of the heap, which malloc trimmed and the next gather regrew page by page (in the 10 000-task bench
    /// about 1 000 page faults and 30 `brk` calls per gather, and twice the time). A tendency of the
    /// allocator, not a guarantee.
    pub(crate) fn await_newest_first(self: Pin<&mut Self>) {
        let this = self.project();
        debug_assert!(S::RUNS_ON_ITS_OWN && *this.limit == usize::MAX);
        debug_assert_eq!(*this.next_index, 0, "the strategy is chosen before the engine starts");
        *this.newest_first = true;
        *this.large = false;
        if let Some(wakers) = this.wakers.take() {
            wakers.recycle();
        }
    }

    /// [`poll_next`](Self::poll_next) when children are awaited newest first.
    fn poll_newest_first(
        mut this: EngineProjection<'_, S>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Finished<S>>> {
        // Create every child the source has now, each in a new slot at the end.
        while let Some(source) = this.source.as_mut().as_pin_mut() {
            match source.poll_next_child(cx) {
                Poll::Ready(Some(child)) => {
                    this.slots.push(Slot { child: Some(child), index: *this.next_index });
                    *this.next_index += 1;
                    *this.live += 1;
                }
                Poll::Ready(None) => this.source.set(None),
                Poll::Pending => break,
            }
        }
        // Then take finished children from the end, until one is still running: its task wakes us.
        while let Some(slot) = this.slots.last_mut() {
            let Some(child) = slot.child.as_mut() else {
                this.slots.pop();
                continue;
            };
            let Poll::Ready(outcome) = child.poll_child(cx) else { return Poll::Pending };
            let index = slot.index;
            this.slots.pop();
            *this.live -= 1;
            return Poll::Ready(Some((index, outcome)));
        }
        if this.source.is_none() { Poll::Ready(None) } else { Poll::Pending }
    }

    /// The concurrency limit (`usize::MAX` for none).
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// Converts a child's `Result<T, X>` into `Result<T, Error<E>>`; sealed.
pub trait IntoGatherResult<T, E>: sealed_result::Sealed {
    /// Performs the conversion.
    #[doc(hidden)]
    fn into_gather_result(self) -> Result<T, aqueduct_core::Error<E>>;
}

mod sealed_result {
    pub trait Sealed {}
    impl<T, X> Sealed for Result<T, X> {}
}

impl<T, X, E> IntoGatherResult<T, E> for Result<T, X>
where
    X: Into<aqueduct_core::Error<E>>,
{
    fn into_gather_result(self) -> Result<T, aqueduct_core::Error<E>> {
        self.map_err(Into::into)
    }
}
