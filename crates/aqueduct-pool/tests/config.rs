//! Invalid settings fail `build()` with a message that says what to change, never a panic or a hang.

mod common;

use std::time::Duration;

use aqueduct_pool::{Backend, PoolConfig};

async fn rejection(
    configure: impl Fn(
        aqueduct_pool::PoolBuilder<common::Fake>,
    ) -> aqueduct_pool::PoolBuilder<common::Fake>,
) -> Vec<String> {
    let mut messages = Vec::new();
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let error = configure(builder).build().await.expect_err("invalid settings are rejected");
        assert!(matches!(error, aqueduct_pool::Error::ContractViolation { .. }), "{error:?}");
        assert_eq!(database.attempts(), 0, "nothing connects before the settings are valid");
        messages.push(error.to_string());
    }
    messages
}

#[tokio::test]
async fn zero_max_size_is_rejected() {
    for message in rejection(|builder| builder.max_size(0)).await {
        assert!(message.contains("max_size is 0"), "{message}");
    }
}

#[tokio::test]
async fn min_size_above_max_size_is_rejected() {
    for message in rejection(|builder| builder.min_size(5).max_size(2)).await {
        assert!(message.contains("lower min_size or raise max_size"), "{message}");
    }
}

#[tokio::test]
async fn zero_timeouts_are_rejected_with_the_alternative() {
    for message in rejection(|builder| builder.acquire_timeout(Duration::ZERO)).await {
        assert!(
            message.contains("acquire_timeout is zero") && message.contains("try_acquire"),
            "{message}"
        );
    }
    for message in rejection(|builder| builder.create_timeout(Duration::ZERO)).await {
        assert!(message.contains("create_timeout"), "{message}");
    }
    for message in rejection(|builder| builder.recycle_timeout(Duration::ZERO)).await {
        assert!(message.contains("recycle_timeout"), "{message}");
    }
    for message in rejection(|builder| builder.idle_timeout(Duration::ZERO)).await {
        assert!(message.contains("idle_timeout"), "{message}");
    }
    for message in rejection(|builder| builder.max_lifetime(Duration::ZERO)).await {
        assert!(message.contains("max_lifetime"), "{message}");
    }
    for message in rejection(|builder| builder.maintenance_interval(Duration::ZERO)).await {
        assert!(message.contains("maintenance_interval"), "{message}");
    }
}

#[tokio::test]
async fn jitter_as_long_as_the_lifetime_is_rejected() {
    let configure = |builder: aqueduct_pool::PoolBuilder<common::Fake>| {
        builder.max_lifetime(Duration::from_secs(10)).lifetime_jitter(Duration::from_secs(10))
    };
    for message in rejection(configure).await {
        assert!(message.contains("lower the jitter"), "{message}");
    }
}

#[tokio::test]
async fn defaults_follow_the_documented_values() {
    let config = PoolConfig::default();
    assert_eq!(config.acquire_timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.validate_after_idle, Some(Duration::from_millis(500)));
    assert_eq!(config.max_lifetime, Some(Duration::from_secs(1800)));
    assert_eq!(config.idle_timeout, Some(Duration::from_secs(600)));
    assert!(!config.lazy);
    for &backend in Backend::all() {
        let (builder, _database) = common::builder(backend);
        let pool = builder.build().await.expect("defaults are valid");
        assert_eq!(pool.config().backend, backend);
        assert_eq!(pool.config().max_size, 10);
    }
}

#[tokio::test]
async fn unbounded_timeouts_are_accepted() {
    for &backend in Backend::all() {
        let (builder, _database) = common::builder(backend);
        let pool = builder
            .acquire_timeout(None)
            .create_timeout(None)
            .recycle_timeout(None)
            .max_lifetime(None)
            .idle_timeout(None)
            .validate_after_idle(None)
            .build()
            .await
            .expect("None means no limit");
        assert!(pool.acquire().await.is_ok());
    }
}

#[tokio::test]
async fn a_max_size_beyond_the_limit_is_rejected_not_a_panic() {
    for max_size in [aqueduct_pool::MAX_POOL_SIZE + 1, usize::MAX] {
        for message in rejection(|builder| builder.max_size(max_size).lazy(true)).await {
            assert!(message.contains("lower max_size"), "{message}");
        }
    }
}

/// A timeout so long that it passes the end of time is no deadline of its own: no overflow panic in
/// the waiting caller or in the maintenance task.
#[tokio::test(start_paused = true)]
async fn timeouts_and_intervals_past_the_end_of_time_do_not_panic() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_size(1)
            .acquire_timeout(Duration::MAX)
            .maintenance_interval(Duration::MAX)
            .build()
            .await
            .expect("builds");
        let held = pool.acquire().await.expect("acquires");
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire().await.map(drop) }
        });
        common::settle().await;
        assert_eq!(pool.status().waiters, 1, "{backend:?}");
        drop(held);
        waiter.await.expect("no panic").expect("served when the holder returns");
        common::assert_at_rest(&pool, &database);
    }
}
