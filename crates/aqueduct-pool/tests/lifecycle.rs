//! Max lifetime with jitter, idle timeout that respects min_size, validation after an idle window,
//! eviction of broken connections, expire_all, and the background top-up.

mod common;

use std::time::Duration;

use aqueduct_pool::Backend;
use aqueduct_testkit::FakeError;

#[tokio::test(start_paused = true)]
async fn connections_are_replaced_after_their_jittered_max_lifetime() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_lifetime(Duration::from_secs(60))
            .lifetime_jitter(Duration::from_secs(10))
            .validate_after_idle(None)
            .build()
            .await
            .expect("builds");
        let first = pool.acquire().await.expect("room").id();
        tokio::time::sleep(Duration::from_secs(49)).await;
        assert_eq!(pool.acquire().await.expect("room").id(), first, "still young ({backend:?})");
        tokio::time::sleep(Duration::from_secs(12)).await;
        let replaced = pool.acquire().await.expect("room");
        assert_ne!(replaced.id(), first, "expired after at most 60 s ({backend:?})");
        drop(replaced);
        assert_eq!(pool.status().evicted, 1);
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_connection_in_use_is_closed_when_it_comes_back() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_lifetime(Duration::from_secs(10))
            .lifetime_jitter(Duration::ZERO)
            .build()
            .await
            .expect("builds");
        let held = pool.acquire().await.expect("room");
        tokio::time::sleep(Duration::from_secs(11)).await;
        drop(held);
        assert_eq!(pool.status().size, 0, "{backend:?}");
        assert_eq!(database.open(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_idle_connections_but_never_below_min_size() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .min_size(2)
            .max_size(6)
            .idle_timeout(Duration::from_secs(30))
            .maintenance_interval(Duration::from_secs(5))
            .build()
            .await
            .expect("builds");
        let burst: Vec<_> = futures::future::join_all((0..6).map(|_| pool.acquire())).await;
        assert_eq!(pool.status().size, 6);
        drop(burst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(pool.status().size, 6, "not idle long enough yet ({backend:?})");
        tokio::time::sleep(Duration::from_secs(20)).await;
        common::settle().await;
        assert_eq!(pool.status().size, 2, "shrunk to min_size, not below ({backend:?})");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(pool.status().size, 2, "{backend:?}");
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn validation_runs_only_after_the_idle_window() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_size(1)
            .validate_after_idle(Duration::from_millis(500))
            .build()
            .await
            .expect("builds");
        drop(pool.acquire().await.expect("room"));
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(pool.acquire().await.expect("room"));
        }
        assert_eq!(database.pings(), 0, "busy connections skip validation ({backend:?})");
        tokio::time::sleep(Duration::from_millis(600)).await;
        drop(pool.acquire().await.expect("room"));
        assert_eq!(database.pings(), 1, "an idle connection is validated ({backend:?})");
        assert_eq!(pool.status().validated, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_hold_does_not_count_as_idle_time_once_a_maintenance_tick_passed() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_size(1)
            .validate_after_idle(Duration::from_millis(500))
            .maintenance_interval(Duration::from_millis(200))
            .build()
            .await
            .expect("builds");
        let held = pool.acquire().await.expect("room");
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(pool.acquire().await.expect("room"));
        assert_eq!(database.pings(), 0, "held 2 s but idle 100 ms: not validated ({backend:?})");
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn dead_idle_connections_are_detected_at_the_next_checkout() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.min_size(3).max_size(3).build().await.expect("builds");
        tokio::time::sleep(Duration::from_secs(1)).await;
        database.kill_all();
        let connection = pool.acquire().await.expect("a fresh connection replaces the dead ones");
        assert!(connection.is_alive(), "{backend:?}");
        assert_eq!(connection.ping().await, Ok(()));
        drop(connection);
        assert!(pool.status().evicted >= 1, "{backend:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_and_mark_broken_evict_on_return() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.build().await.expect("builds");
        let mut connection = pool.acquire().await.expect("room");
        database.kill_all();
        let result = connection.ping().await;
        assert_eq!(connection.observe(result), Err(FakeError::Dead));
        assert!(connection.is_marked_broken());
        drop(connection);
        assert_eq!(pool.status().size, 0, "{backend:?}");

        let mut connection = pool.acquire().await.expect("room");
        assert!(connection.observe(Err::<(), _>(FakeError::Refused)).is_err());
        assert!(!connection.is_marked_broken(), "a non-fatal error keeps the connection");
        connection.mark_broken();
        drop(connection);
        assert_eq!(pool.status().size, 0, "{backend:?}");
        assert_eq!(database.open(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn expire_all_retires_idle_at_once_and_busy_on_return() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.min_size(3).build().await.expect("builds");
        let busy = pool.acquire().await.expect("room");
        let busy_id = busy.id();
        pool.expire_all();
        assert_eq!(pool.status().size, 1, "idle ones closed at once ({backend:?})");
        drop(busy);
        assert_eq!(pool.status().size, 0, "the busy one closed on return ({backend:?})");
        let fresh = pool.acquire().await.expect("room");
        assert_ne!(fresh.id(), busy_id);
        drop(fresh);
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn the_background_task_restores_min_size_after_a_restart() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .min_size(4)
            .max_size(8)
            .maintenance_interval(Duration::from_secs(1))
            .build()
            .await
            .expect("builds");
        pool.expire_all();
        assert_eq!(pool.status().size, 0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        common::settle().await;
        assert_eq!(pool.status().size, 4, "topped up in the background ({backend:?})");
        let before = database.opened();
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| pool.acquire())).await;
        assert_eq!(database.opened(), before, "callers got the prepared connections ({backend:?})");
        drop(held);
        common::assert_at_rest(&pool, &database);
    }
}

/// Dropping the last handle without `close` closes every connection, the warm ones included (they
/// wait for deadpool in a stash that would otherwise keep the pool alive).
#[tokio::test(start_paused = true)]
async fn dropping_the_pool_closes_its_connections() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.min_size(3).max_size(3).build().await.expect("builds");
        assert_eq!(database.open(), 3, "{backend:?}");
        drop(pool);
        common::settle().await;
        assert_eq!(database.open(), 0, "{backend:?}");
    }
}

/// The background top-up and callers' own connects, finishing together, never leave more than
/// `max_size` connections open.
#[tokio::test(start_paused = true)]
async fn top_up_and_caller_connects_never_exceed_max_size() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        database.set_connect_latency(Duration::from_millis(500));
        let pool = builder
            .min_size(2)
            .max_size(2)
            .lazy(true)
            .maintenance_interval(Duration::from_millis(100))
            .build()
            .await
            .expect("builds");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.acquire().await.map(drop) })
            })
            .collect();
        for caller in callers {
            caller.await.expect("no panic").expect("served");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        common::assert_at_rest(&pool, &database);
        assert_eq!(pool.status().size, 2, "{backend:?}: {:?}", pool.status());
        let status = pool.status();
        assert_eq!(status.created - status.evicted, status.size as u64, "{backend:?}: {status:?}");
    }
}

/// Maintenance judges idle connections without a round trip (validation is for checkouts), and
/// closing one for idleness never opens a replacement nobody asked for.
#[tokio::test(start_paused = true)]
async fn maintenance_neither_validates_nor_replaces_idle_connections() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_size(2)
            .validate_after_idle(Duration::from_millis(500))
            .idle_timeout(Duration::from_secs(30))
            .maintenance_interval(Duration::from_secs(1))
            .build()
            .await
            .expect("builds");
        drop(pool.acquire().await.expect("acquires"));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let status = pool.status();
        assert_eq!((database.pings(), status.validated), (0, 0), "{backend:?}: {status:?}");
        assert_eq!(status.size, 1, "{backend:?}: still within its idle timeout");
        tokio::time::sleep(Duration::from_secs(110)).await;
        let status = pool.status();
        assert_eq!((database.open(), database.opened()), (0, 1), "{backend:?}: {status:?}");
        assert_eq!((status.size, status.evicted), (0, 1), "{backend:?}: {status:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn expire_all_opens_nothing() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(2).build().await.expect("builds");
        drop(pool.acquire().await.expect("acquires"));
        pool.expire_all();
        common::settle().await;
        assert_eq!(
            (database.open(), database.opened()),
            (0, 1),
            "{backend:?}: {:?}",
            pool.status()
        );
    }
}

/// Reaping closes what must close first (here, an expired connection) and only then what is idle
/// too long, within what `min_size` allows: whatever order the backend keeps its idle connections
/// in, the pool stays at `min_size` and opens nothing.
#[tokio::test(start_paused = true)]
async fn reaping_an_expired_and_an_idle_connection_keeps_min_size() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .min_size(1)
            .max_size(2)
            .idle_timeout(Duration::from_secs(30))
            .max_lifetime(Duration::from_secs(100))
            .lifetime_jitter(Duration::ZERO)
            .validate_after_idle(None)
            .maintenance_interval(Duration::from_secs(1))
            .build()
            .await
            .expect("builds");
        // The warm connection expires at 100 s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = pool.acquire().await.expect("the warm connection");
        tokio::time::sleep(Duration::from_secs(40)).await;
        let second = pool.acquire().await.expect("a new connection");
        tokio::time::sleep(Duration::from_secs(29)).await;
        // At 69.5 s: idle too long by the tick at 100 s.
        drop(second);
        tokio::time::sleep(Duration::from_secs(11)).await;
        // At 80.5 s: queued behind `second`, expired at 100 s.
        drop(first);
        tokio::time::sleep(Duration::from_secs(20)).await;
        let status = pool.status();
        assert_eq!(
            (status.size, status.evicted, database.opened()),
            (1, 1, 2),
            "{backend:?}: {status:?}"
        );
    }
}
