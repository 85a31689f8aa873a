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

/// A background top-up whose connect finishes after `close` began must not put its connection in
/// the closed pool.
#[tokio::test(start_paused = true)]
async fn a_top_up_finishing_after_close_closes_its_connection() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_connect_latency(Duration::from_millis(500));
        let pool = builder
            .min_size(1)
            .lazy(true)
            .maintenance_interval(Duration::from_secs(1))
            .build()
            .await
            .expect("builds");
        // The first tick (at 1 s) starts a top-up, which connects until 1.5 s.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(database.attempts(), 1, "{backend:?}: the top-up is connecting");
        pool.close(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!((pool.status().size, database.open()), (0, 0), "{backend:?}");
    }
}

/// A caller whose connect is under way when `close` begins gets `Closed`, not a connection of a
/// closed pool that nothing would ever terminate.
#[tokio::test(start_paused = true)]
async fn an_acquire_connecting_when_close_begins_fails_closed() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_connect_latency(Duration::from_millis(500));
        let pool = builder.build().await.expect("builds");
        let acquiring = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.close(Duration::from_secs(10)).await, 0, "{backend:?}");
        let error = acquiring.await.expect("no panic").expect_err("the pool closed");
        assert!(error.is_closed(), "{backend:?}: {error:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!((pool.status().size, database.open()), (0, 0), "{backend:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn close_counts_the_idle_connections_it_closes() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(2).build().await.expect("builds");
        drop((pool.acquire().await.expect("first"), pool.acquire().await.expect("second")));
        pool.close(Duration::from_secs(1)).await;
        common::settle().await;
        let status = pool.status();
        assert_eq!((status.created, status.evicted, status.size), (2, 2, 0), "{backend:?}");
        assert_eq!(database.open(), 0, "{backend:?}");
    }
}
