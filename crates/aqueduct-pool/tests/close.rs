//! `close(grace)`: rejects new acquires, closes idle connections, waits for checked-out ones up to
//! `grace`, then terminates the rest.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct_pool::{Backend, Manager, Pool, Terminator};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn close_waits_for_checked_out_connections_within_the_grace() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.min_size(3).max_size(3).build().await.expect("builds");
        let busy = pool.acquire().await.expect("room");
        let returning = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(busy);
        });
        let closer = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.close(Duration::from_secs(10)).await })
        };
        common::settle().await;
        assert!(pool.is_closed());
        assert!(pool.acquire().await.expect_err("closed").is_closed(), "{backend:?}");
        assert_eq!(pool.status().size, 1, "idle ones closed at once ({backend:?})");
        let started = Instant::now();
        assert_eq!(closer.await.expect("no panic"), 0, "nothing to terminate");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "returned as soon as the last came back"
        );
        returning.await.expect("no panic");
        assert_eq!(pool.status().size, 0);
        assert_eq!(database.open(), 0, "{backend:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_at_once() {
    for &backend in Backend::all() {
        let (builder, _database) = common::builder(backend);
        let pool = builder.max_size(1).build().await.expect("builds");
        let busy = pool.acquire().await.expect("room");
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire().await.map(|_| ()) })
        };
        common::settle().await;
        let closer = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.close(Duration::from_secs(1)).await })
        };
        let error = waiter.await.expect("no panic").expect_err("the pool closed");
        assert!(error.is_closed(), "{backend:?}: {error:?}");
        drop(busy);
        assert_eq!(closer.await.expect("no panic"), 0);
    }
}

/// A manager whose connections can be terminated from outside, counting terminations.
#[derive(Debug, Default, Clone)]
struct Terminable {
    terminated: Arc<AtomicUsize>,
}

impl Manager for Terminable {
    type Connection = u32;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u32, std::io::Error> {
        Ok(0)
    }

    fn terminator(&self, _connection: &u32) -> Option<Terminator> {
        let terminated = Arc::clone(&self.terminated);
        Some(Terminator::new(move || {
            terminated.fetch_add(1, Ordering::SeqCst);
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn connections_still_out_after_the_grace_are_terminated() {
    for &backend in Backend::all() {
        let manager = Terminable::default();
        let terminated = Arc::clone(&manager.terminated);
        let pool =
            Pool::builder(manager).backend(backend).min_size(2).build().await.expect("builds");
        let stuck = pool.acquire().await.expect("room");
        let started = Instant::now();
        assert_eq!(pool.close(Duration::from_secs(5)).await, 1, "{backend:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(terminated.load(Ordering::SeqCst), 1, "only the stuck one ({backend:?})");
        drop(stuck);
        assert_eq!(pool.status().size, 0, "closed when it finally came back");
    }
}
