//! bb8 can leave a waiting caller with no connect of its own (it still counts a failed connect as
//! pending when the caller asks): the caller's restart of its `get` rescues it, even while another
//! caller's checkout is stuck validating. The race is made deterministic by a waker that stalls.
#![cfg(feature = "bb8")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use aqueduct_pool::{Backend, Pool};

/// Refuses connects once `refuse`; validation never answers once `hang` (a server that hangs).
#[derive(Debug, Clone, Default)]
struct OnceThenRefuse {
    refuse: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
}

impl aqueduct_pool::Manager for OnceThenRefuse {
    type Connection = u32;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u32, std::io::Error> {
        if self.refuse.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(std::io::Error::other("refused"))
        } else {
            Ok(1)
        }
    }

    async fn recycle(&self, _: &mut u32, validate: bool) -> Result<(), std::io::Error> {
        if validate && self.hang.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// A waker whose first wake (from the adapter's `notify_waiters`, inside bb8's connect task, after
/// `bb8_failures` is counted and before bb8's `connect_failed`) stalls that thread until told:
/// the preemption a multi-thread runtime can do there, made deterministic.
struct Stall {
    first: AtomicBool,
    woke: Mutex<Option<mpsc::Sender<()>>>,
    resume: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Wake for Stall {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.first.swap(false, Ordering::AcqRel) {
            let woke = self.woke.lock().expect("not poisoned").take().expect("set once");
            let resume = self.resume.lock().expect("not poisoned").take().expect("set once");
            woke.send(()).expect("the test waits");
            resume.recv().expect("the test resumes it");
        }
    }
}

/// What the stranded caller's `try_acquire` ended with (an outer `Err` if it waited 10 s).
async fn stranded_caller_outcome(
    with_hung_validation: bool,
) -> Result<Result<(), aqueduct_pool::Error<std::io::Error>>, tokio::time::error::Elapsed> {
    let manager = OnceThenRefuse::default();
    let pool = Pool::builder(manager.clone())
        .backend(Backend::Bb8)
        .max_size(2)
        .lazy(true)
        .validate_after_idle(Duration::ZERO)
        .recycle_timeout(None)
        .maintenance_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("builds");
    let _parked = if with_hung_validation {
        // The one connection the server accepts...
        drop(pool.acquire().await.expect("the first connect succeeds"));
        manager.refuse.store(true, Ordering::Release);
        manager.hang.store(true, Ordering::Release);
        // ...which another caller's checkout is validating: its future was polled once and is
        // kept, not polled again (e.g. `&mut acquiring` in a `select!` whose other branch runs on).
        let mut parked: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin({
            let pool = pool.clone();
            async move { pool.try_acquire().await.map(drop) }
        });
        assert!(parked.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
        Some(parked)
    } else {
        // Control: no connection, no validation anywhere.
        manager.refuse.store(true, Ordering::Release);
        None
    };

    // Caller A asks bb8 for a connect, which is refused; A is woken from bb8's connect task.
    let (woke_tx, woke_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    let stall = Arc::new(Stall {
        first: AtomicBool::new(true),
        woke: Mutex::new(Some(woke_tx)),
        resume: Mutex::new(Some(resume_rx)),
    });
    let waker = Waker::from(Arc::clone(&stall));
    let mut a: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin({
        let pool = pool.clone();
        async move { pool.try_acquire().await.map(drop) }
    });
    let first = a.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(first.is_pending(), "{first:?} {:?}", pool.status());
    tokio::task::spawn_blocking(move || {
        woke_rx.recv_timeout(Duration::from_secs(5)).expect("A woken by the failure");
    })
    .await
    .expect("no panic");
    // A gives up (or takes its error) and frees its gate permit while bb8 still counts the
    // refused connect as pending; caller B arrives right then.
    drop(a);
    let b = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), pool.try_acquire())
                .await
                .map(|r| r.map(drop))
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    resume_tx.send(()).expect("the stalled thread waits");
    b.await.expect("no panic")
}

/// With no validation anywhere, the restart gives the stranded caller its own connect, and it
/// gets the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranded_caller_gets_its_error() {
    let outcome = stranded_caller_outcome(false).await;
    assert!(matches!(outcome, Ok(Err(aqueduct_pool::Error::Operation(_)))), "{outcome:?}");
}

/// Another caller's checkout stuck validating against a hung server does not hold the stranded
/// caller's restart back: only a caller's own validation does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_validation_elsewhere_does_not_strand_a_caller() {
    let outcome = stranded_caller_outcome(true).await;
    assert!(matches!(outcome, Ok(Err(aqueduct_pool::Error::Operation(_)))), "{outcome:?}");
}
