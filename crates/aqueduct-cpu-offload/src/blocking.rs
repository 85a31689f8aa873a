//! The spawn_blocking backend: a queue drained by at most `threads` runners on tokio's blocking pool.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::pool::Initializer;

/// A job erased to run on a blocking thread.
pub(crate) type BlockingJob = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a runner, and how many runners are working on tokio's blocking pool.
///
/// A runner is one `spawn_blocking` call that keeps taking jobs from the queue until it is empty, so a burst of
/// jobs costs one blocking-pool dispatch per runner, not one per job, and never more than `threads` run at once.
pub(crate) struct BlockingQueue {
    state: Mutex<QueueState>,
    runtime: tokio::runtime::Handle,
    threads: usize,
    initializer: Option<Initializer>,
    id: u64,
    next_worker_index: AtomicUsize,
}

struct QueueState {
    jobs: VecDeque<BlockingJob>,
    runners: usize,
}

thread_local! {
    /// The queues whose initialiser already ran on this blocking thread.
    static INITIALISED_FOR: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// One runner on the blocking pool; if tokio drops it unrun (the runtime is shutting down) it gives its place back
/// and drops the queued jobs, whose callers then see `Error::Cancelled` instead of waiting forever.
struct Runner {
    queue: Arc<BlockingQueue>,
    started: bool,
}

impl Runner {
    fn run(mut self, first: BlockingJob) {
        self.started = true;
        self.queue.run_jobs(first);
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        let orphaned = {
            let mut state = self.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.runners -= 1;
            std::mem::take(&mut state.jobs)
        };
        // Dropped outside the lock: each job drops its sender (its caller sees `Cancelled`) and returns its slot.
        drop(orphaned);
    }
}

impl BlockingQueue {
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        threads: usize,
        initializer: Option<Initializer>,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            state: Mutex::new(QueueState { jobs: VecDeque::new(), runners: 0 }),
            runtime,
            threads,
            initializer,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            next_worker_index: AtomicUsize::new(0),
        }
    }

    /// Queues `job`, starting a runner when fewer than `threads` are working.
    pub(crate) fn push(self: &Arc<Self>, job: BlockingJob) {
        let start_runner = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.runners < self.threads {
                state.runners += 1;
                true
            } else {
                state.jobs.push_back(job);
                return;
            }
        };
        if start_runner {
            let runner = Runner { queue: Arc::clone(self), started: false };
            // The JoinHandle is not needed: jobs report through their own channels. If the runtime is shutting
            // down, the closure is dropped unrun: the runner's guard then fails the queued jobs (see `Runner`).
            drop(self.runtime.spawn_blocking(move || runner.run(job)));
        }
    }

    fn run_jobs(&self, first: BlockingJob) {
        self.initialise_this_thread();
        let mut job = first;
        loop {
            // Jobs catch their own panics, so this never unwinds past the runner count.
            job();
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match state.jobs.pop_front() {
                Some(next) => job = next,
                None => {
                    state.runners -= 1;
                    return;
                }
            }
        }
    }

    fn initialise_this_thread(&self) {
        let Some(initializer) = &self.initializer else { return };
        let first_time = INITIALISED_FOR.with(|done| {
            let mut done = done.borrow_mut();
            if done.contains(&self.id) {
                false
            } else {
                done.push(self.id);
                true
            }
        });
        if first_time {
            initializer(self.next_worker_index.fetch_add(1, Ordering::Relaxed));
        }
    }
}
