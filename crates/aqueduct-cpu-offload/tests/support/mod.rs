//! Helpers shared by the integration tests: a job that blocks a worker until released, and polling a future once.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use aqueduct_cpu_offload::{CpuPool, Error, JobHandle};

pub type Outcome<T> = Result<T, Error<std::io::Error>>;

/// Occupies one worker until [`Blocker::release`]: returns once the job has really started.
pub struct Blocker {
    release: std::sync::mpsc::Sender<()>,
    pub handle: JobHandle<bool, std::io::Error>,
}

impl Blocker {
    pub async fn start(pool: &CpuPool) -> Self {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = tokio::sync::oneshot::channel::<()>();
        let handle = pool
            .submit(move || {
                let _ = started.send(());
                gate.recv().is_ok()
            })
            .await
            .expect("the pool has room for the blocker");
        has_started.await.expect("the blocker starts");
        Self { release, handle }
    }

    /// Lets the job finish and waits for it.
    pub async fn release(self) -> bool {
        let _ = self.release.send(());
        self.handle.await.expect("the blocker finishes")
    }
}

/// Polls `future` once with a no-op waker.
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    Pin::new(future).poll(&mut context)
}

/// Waits until every job queued so far on a one-thread pool has been taken by its worker (the queues are FIFO).
pub async fn drain(pool: &CpuPool) {
    let done: Outcome<()> = pool.run(|| ()).await;
    done.expect("the drain job runs");
}
