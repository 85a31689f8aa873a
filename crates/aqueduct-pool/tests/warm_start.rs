//! `build()` opens exactly `min_size` connections, fails fast with the connect error, or starts lazy.

mod common;

use std::time::Duration;

use aqueduct_pool::{Backend, Error};
use aqueduct_testkit::FakeError;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn build_opens_exactly_min_size_connections_concurrently() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_connect_latency(Duration::from_millis(150));
        let started = Instant::now();
        let pool = builder.min_size(5).max_size(20).build().await.expect("builds");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(150),
            "the connects run at once ({backend:?})"
        );
        assert_eq!(database.opened(), 5);
        let status = pool.status();
        assert_eq!((status.size, status.idle, status.created), (5, 5, 5), "{backend:?}");

        // The warm connections are handed out without a new connect.
        let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.acquire())).await;
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(database.opened(), 5, "{backend:?}");
        drop(held);
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn build_fails_fast_with_the_connect_error() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_refusing(true);
        let started = Instant::now();
        let error = builder.min_size(3).build().await.expect_err("the server refuses");
        assert!(started.elapsed() < Duration::from_secs(1), "fails fast, not after a timeout");
        assert_eq!(error.operation(), Some(&FakeError::Refused), "{error:?}");
        assert_eq!(error.to_string(), "connection refused");
        assert_eq!(database.open(), 0, "nothing left open ({backend:?})");
    }
}

#[tokio::test(start_paused = true)]
async fn lazy_build_opens_nothing_and_ignores_a_refusing_server() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_refusing(true);
        let pool = builder.min_size(3).lazy(true).build().await.expect("lazy never connects");
        assert_eq!(pool.status().size, 0);
        assert_eq!(database.attempts(), 0);
        database.set_refusing(false);
        assert!(pool.acquire().await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_warm_up_fails_with_elapsed_after_create_timeout() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_connect_latency(Duration::from_secs(10));
        let error = builder
            .min_size(1)
            .create_timeout(Duration::from_secs(2))
            .build()
            .await
            .expect_err("too slow");
        assert!(matches!(error, Error::Elapsed { .. }), "{error:?}");
    }
}
