//! Exhaustion, FIFO fairness, acquire timeouts that carry the connect error, and the ambient deadline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_pool::{Backend, Error, with_deadline};
use aqueduct_testkit::FakeError;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn an_exhausted_pool_makes_callers_wait_then_hands_over_in_arrival_order() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(2).build().await.expect("builds");
        let first = pool.acquire().await.expect("room");
        let second = pool.acquire().await.expect("room");
        assert!(pool.try_acquire().await.expect_err("full").is_full());

        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for index in 0..6 {
            let pool = pool.clone();
            let order = Arc::clone(&order);
            waiters.push(tokio::spawn(async move {
                let connection = pool.acquire().await.expect("served in turn");
                order.lock().unwrap().push(index);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(connection);
            }));
            // Arrival order is spawn order.
            common::settle().await;
        }
        assert_eq!(pool.status().waiters, 6, "{backend:?}");
        drop((first, second));
        for waiter in waiters {
            waiter.await.expect("no panic");
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5], "FIFO ({backend:?})");
        assert_eq!(database.opened(), 2, "no connection beyond max_size");
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_arriving_as_a_connection_comes_back_never_overtakes_a_waiter() {
    use futures::FutureExt;
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(1).build().await.expect("builds");
        let held = pool.acquire().await.expect("room");
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire().await.map(|connection| connection.id()) })
        };
        common::settle().await;
        assert_eq!(pool.status().waiters, 1, "{backend:?}");
        let id = held.id();
        drop(held);
        // The waiter has not run yet: the connection is its own, so a newcomer finds none free.
        assert!(pool.acquire().now_or_never().is_none(), "the newcomer waits ({backend:?})");
        assert!(pool.try_acquire().await.expect_err("taken").is_full(), "{backend:?}");
        assert_eq!(waiter.await.expect("no panic").expect("served"), id, "{backend:?}");
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_times_out_after_acquire_timeout_without_a_connect_error() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_size(1)
            .acquire_timeout(Duration::from_secs(2))
            .build()
            .await
            .expect("builds");
        let held = pool.acquire().await.expect("room");
        let started = Instant::now();
        let error = pool.acquire().await.expect_err("nothing comes back");
        assert_eq!(started.elapsed(), Duration::from_secs(2), "{backend:?}");
        let Error::Elapsed { elapsed, last_error } = &error else { panic!("{error:?}") };
        assert_eq!(elapsed.timeout(), Some(Duration::from_secs(2)));
        assert!(last_error.is_none(), "no connect failed");
        assert_eq!(pool.status().timeouts, 1);
        drop(held);
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_connect_fails_within_the_timeout_with_the_connect_error() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .acquire_timeout(Duration::from_secs(3))
            .lazy(true)
            .build()
            .await
            .expect("builds");
        database.set_refusing(true);
        let started = Instant::now();
        let error = pool.acquire().await.expect_err("the server refuses");
        assert!(
            started.elapsed() <= Duration::from_secs(3),
            "{backend:?}: {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() >= Duration::from_secs(2), "retries until the deadline");
        let Error::Elapsed { last_error, .. } = &error else { panic!("{error:?}") };
        assert_eq!(last_error.as_ref(), Some(&FakeError::Refused), "{backend:?}");
        assert!(database.attempts() > 2, "connects were retried ({backend:?})");
        assert!(pool.status().connect_errors >= 2);
        // The error chain names the cause.
        let source = std::error::Error::source(&error).expect("has a source");
        assert_eq!(source.to_string(), "connection refused");

        // Once the server accepts again, so does the pool.
        database.set_refusing(false);
        assert!(pool.acquire().await.is_ok(), "{backend:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_comes_back_inside_the_timeout_serves_the_waiter() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.acquire_timeout(Duration::from_secs(5)).build().await.expect("builds");
        database.set_refusing(true);
        let recovering = database.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            recovering.set_refusing(false);
        });
        let started = Instant::now();
        assert!(pool.acquire().await.is_ok(), "{backend:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }
}

#[tokio::test(start_paused = true)]
async fn the_ambient_deadline_shortens_the_acquire_timeout() {
    for &backend in Backend::all() {
        let (builder, _database) = common::builder(backend);
        let pool = builder.max_size(1).build().await.expect("builds");
        let held = pool.acquire().await.expect("room");
        let started = Instant::now();
        let at = started + Duration::from_millis(300);
        let error =
            with_deadline(at, pool.acquire()).await.expect_err("the ambient deadline passes first");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        let Error::Elapsed { elapsed, .. } = &error else { panic!("{error:?}") };
        assert!(elapsed.is_ambient(), "{backend:?}");
        drop(held);
    }
}

#[tokio::test(start_paused = true)]
async fn waiters_time_out_each_at_its_own_deadline_whatever_the_order_they_queued_in() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .max_size(1)
            .acquire_timeout(Duration::from_secs(2))
            .build()
            .await
            .expect("builds");
        let held = pool.acquire().await.expect("room");
        let started = Instant::now();
        let waiter = |ambient: Option<Duration>| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let result = match ambient {
                    Some(limit) => with_deadline(Instant::now() + limit, pool.acquire()).await,
                    None => pool.acquire().await,
                };
                assert!(result.expect_err("nothing comes back").is_elapsed());
                Instant::now()
            })
        };
        // Queued first with the longest deadline, then with ever earlier ones.
        let own = waiter(None);
        common::settle().await;
        let ambient_late = waiter(Some(Duration::from_millis(1500)));
        common::settle().await;
        let ambient_early = waiter(Some(Duration::from_millis(300)));
        assert_eq!(ambient_early.await.expect("no panic") - started, Duration::from_millis(300));
        assert_eq!(ambient_late.await.expect("no panic") - started, Duration::from_millis(1500));
        assert_eq!(own.await.expect("no panic") - started, Duration::from_secs(2), "{backend:?}");
        assert_eq!(pool.status().timeouts, 3);
        drop(held);
        common::assert_at_rest(&pool, &database);
    }
}

#[test]
fn acquire_still_times_out_after_the_runtime_that_built_the_pool_is_gone() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let building = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let pool = building
            .block_on(builder.max_size(1).acquire_timeout(Duration::from_secs(2)).build())
            .expect("builds");
        // Its background tasks, the deadline watch among them, end with it.
        drop(building);
        let using = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        using.block_on(async {
            let held = pool.acquire().await.expect("room");
            let started = Instant::now();
            let error = pool.acquire().await.expect_err("nothing comes back");
            assert!(error.is_elapsed(), "{backend:?}: {error:?}");
            assert_eq!(started.elapsed(), Duration::from_secs(2), "{backend:?}");
            drop(held);
        });
        common::assert_at_rest(&pool, &database);
    }
}

#[tokio::test(start_paused = true)]
async fn try_acquire_creates_when_there_is_room_and_rejects_when_full() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.max_size(1).build().await.expect("builds");
        let held = pool.try_acquire().await.expect("room");
        let Err(Error::Full { capacity }) = pool.try_acquire().await else { panic!("full") };
        assert_eq!(capacity, 1);
        drop(held);
        assert!(pool.try_acquire().await.is_ok());
        assert_eq!(database.opened(), 1, "{backend:?}");
    }
}

/// `try_acquire` reports a refused connect at once, on bb8 too (which tells only its error sink).
#[tokio::test(start_paused = true)]
async fn try_acquire_reports_a_refused_connect_at_once() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder.lazy(true).build().await.expect("builds");
        database.set_refusing(true);
        let started = Instant::now();
        let error = pool.try_acquire().await.expect_err("the connect is refused");
        assert!(matches!(error, Error::Operation(FakeError::Refused)), "{backend:?}: {error:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "{backend:?}: {:?}", started.elapsed());
    }
}

/// A checkout's validation runs to its end, however long it takes within `recycle_timeout`: it is
/// never cancelled and started again (bb8's `get` is not cut into slices).
#[tokio::test(start_paused = true)]
async fn try_acquire_waits_out_a_validation_longer_than_a_second() {
    for &backend in Backend::all() {
        let pool = common::validating_pool(backend, Duration::from_millis(1500)).await;
        let validated = pool.status().validated;
        let started = Instant::now();
        let tried = tokio::time::timeout(Duration::from_secs(60), pool.try_acquire()).await;
        assert!(matches!(tried, Ok(Ok(_))), "{backend:?}: {tried:?}; {:?}", pool.status());
        assert_eq!(started.elapsed(), Duration::from_millis(1500), "{backend:?}");
        assert_eq!(pool.status().validated, validated + 1, "{backend:?}: one validation, run once");
    }
}

/// A connect error the background top-up saw long ago is no caller's failure: a later
/// `try_acquire` whose own connect is merely slow succeeds.
#[tokio::test(start_paused = true)]
async fn try_acquire_does_not_report_a_stale_top_up_error() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .min_size(1)
            .lazy(true)
            .maintenance_interval(Duration::from_secs(3600))
            .build()
            .await
            .expect("builds");
        database.set_refusing(true);
        // The top-up at 1 h is refused.
        tokio::time::sleep(Duration::from_millis(3_600_500)).await;
        assert_eq!(pool.status().connect_errors, 1, "{backend:?}");
        database.set_refusing(false);
        database.set_connect_latency(Duration::from_millis(100));
        let tried = pool.try_acquire().await.map(drop);
        assert!(tried.is_ok(), "{backend:?}: {tried:?}");
    }
}

/// The background top-up's connect running out of `create_timeout` is no caller's failure either.
#[tokio::test(start_paused = true)]
async fn a_top_up_timing_out_does_not_fail_a_caller_connecting_on_time() {
    for &backend in Backend::all() {
        let (builder, database) = common::builder(backend);
        let pool = builder
            .min_size(1)
            .lazy(true)
            .create_timeout(Duration::from_secs(1))
            .maintenance_interval(Duration::from_secs(1))
            .build()
            .await
            .expect("builds");
        database.set_connect_latency(Duration::from_secs(2));
        // The top-up starting at 1 s times out at 2 s, while the caller below connects.
        tokio::time::sleep(Duration::from_millis(1900)).await;
        database.set_connect_latency(Duration::from_millis(300));
        let tried = pool.try_acquire().await.map(drop);
        assert!(tried.is_ok(), "{backend:?}: {tried:?}");
    }
}

/// A manager whose every connect is refused at once.
#[derive(Debug, Clone, Copy)]
struct Refusing;

impl aqueduct_pool::Manager for Refusing {
    type Connection = u32;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u32, std::io::Error> {
        Err(std::io::Error::other("refused"))
    }
}

/// Callers racing against a refusing server on several threads always get their error: none is
/// left waiting for a connect that nobody started (bb8 gives a waiter no connect of its own while
/// it still counts a failed one as pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn try_acquire_against_a_refusing_server_never_hangs() {
    for &backend in Backend::all() {
        let pool = aqueduct_pool::Pool::builder(Refusing)
            .backend(backend)
            .max_size(4)
            .lazy(true)
            .build()
            .await
            .expect("a lazy pool builds");
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for round in 0..5_000u32 {
                        let tried =
                            tokio::time::timeout(Duration::from_secs(10), pool.try_acquire()).await;
                        match tried {
                            Ok(result) => assert!(result.is_err(), "the server refuses"),
                            Err(_) => return Some(round),
                        }
                    }
                    None
                })
            })
            .collect();
        for caller in callers {
            let hung = caller.await.expect("no panic");
            assert_eq!(hung, None, "{backend:?}: a try_acquire hung; {:?}", pool.status());
        }
    }
}
