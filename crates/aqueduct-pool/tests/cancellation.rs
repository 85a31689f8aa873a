//! Dropping `acquire` at every await point, and aborting or panicking work that holds a connection,
//! returns capacity exactly: nothing leaks, nothing dirty is reused.

mod common;

use std::time::Duration;

use aqueduct_pool::Backend;

#[tokio::test(start_paused = true)]
async fn dropping_acquire_at_every_point_leaks_nothing() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        // Connects take 100 ms and validation happens on every checkout, so an acquire can be dropped
        // while queued, while connecting, and while recycling.
        database.set_connect_latency(Duration::from_millis(100));
        let pool =
            builder.max_size(2).validate_after_idle(Duration::ZERO).build().await.expect("builds");
        for step_ms in (0..=250).step_by(10) {
            let holder = pool.acquire().await.ok();
            let attempts: Vec<_> = (0..4).map(|_| pool.acquire()).collect();
            let all = futures::future::join_all(attempts);
            let _ = tokio::time::timeout(Duration::from_millis(step_ms), all).await;
            drop(holder);
            common::settle().await;
            common::assert_at_rest(&pool, &database);
        }
        // Capacity is whole: both connections can be taken at once.
        let both = (pool.acquire().await, pool.acquire().await);
        assert!(both.0.is_ok() && both.1.is_ok(), "{backend:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn aborting_a_task_that_holds_a_connection_returns_it() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(1).build().await.expect("builds");
        let worker = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let _connection = pool.acquire().await.expect("room");
                tokio::time::sleep(Duration::from_secs(3600)).await;
            })
        };
        common::settle().await;
        assert_eq!(pool.status().in_use, 1);
        worker.abort();
        assert!(worker.await.expect_err("aborted").is_cancelled());
        common::assert_at_rest(&pool, &database);
        assert!(pool.try_acquire().await.is_ok(), "{backend:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_holding_a_connection_returns_it() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(1).build().await.expect("builds");
        let worker = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let _connection = pool.acquire().await.expect("room");
                panic!("user code failed while holding a connection");
            })
        };
        let error = worker.await.expect_err("the task panicked");
        assert!(error.is_panic());
        common::assert_at_rest(&pool, &database);
        let connection = pool.try_acquire().await.expect("the connection came back");
        assert_eq!(connection.uses(), 2, "the same connection, reused ({backend:?})");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_manager_does_not_poison_the_pool() {
    #[derive(Debug, Default)]
    struct Panicky {
        calls: std::sync::atomic::AtomicUsize,
    }
    impl aqueduct_pool::Manager for Panicky {
        type Connection = u32;
        type Error = std::io::Error;
        async fn connect(&self) -> Result<u32, std::io::Error> {
            if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("the first connect panics");
            }
            Ok(1)
        }
    }
    for &backend in Backend::all() {
        let pool = aqueduct_pool::Pool::builder(Panicky::default())
            .backend(backend)
            .max_size(1)
            .acquire_timeout(std::time::Duration::from_secs(1))
            .build()
            .await
            .expect("min_size 0 connects nothing");
        let first = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire().await.map(|connection| *connection) })
        };
        let outcome = first.await;
        if backend == Backend::Deadpool {
            // deadpool connects in the caller's task: the panic reaches the caller.
            assert!(outcome.expect_err("the connect panicked").is_panic());
        } else {
            // bb8 connects in a task of its own: the waiting caller gets the panic as an error.
            let error = outcome.expect("no panic in the caller").expect_err("no connection");
            assert!(error.is_panicked(), "{error:?}");
            assert!(error.to_string().contains("the first connect panics"), "{error}");
        }
        common::settle().await;
        let status = pool.status();
        assert_eq!((status.in_use, status.size), (0, 0), "{backend:?}");
        assert_eq!(*pool.acquire().await.expect("the next connect works"), 1);
    }
}

/// An acquire cancelled while validating leaves the counters exact, whatever the backend does with
/// the half-checked connection: every connection created is open or counted as evicted.
#[tokio::test(start_paused = true)]
async fn an_acquire_cancelled_during_validation_keeps_the_counters_exact() {
    for &backend in Backend::all() {
        let pool = common::validating_pool(backend, Duration::from_millis(100)).await;
        let cancelled = tokio::time::timeout(Duration::from_millis(50), pool.acquire()).await;
        assert!(cancelled.is_err(), "{backend:?}: cancelled during validation");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = pool.status();
        assert_eq!(status.created - status.evicted, status.size as u64, "{backend:?}: {status:?}");
        assert_eq!(status.in_use, 0, "{backend:?}: {status:?}");
        drop(pool.acquire().await.expect("the pool still serves"));
    }
}
