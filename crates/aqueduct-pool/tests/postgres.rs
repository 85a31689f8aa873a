//! Against a real PostgreSQL (`DATABASE_URL`, provided by `cargo xtask test`): warm start, fairness,
//! timeouts, cancellation, killed backends, a restart mid-load, refused connects, close, and the
//! PostgreSQL manager's recycling, hook, statement cache and `with_connection`.
//!
//! Every pool tags its connections with a unique `application_name`, and only those are counted or
//! terminated: other tests and other sessions share the server.
#![cfg(feature = "postgres")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_pool::postgres::{PgConnection, PgManager, RecyclingMethod, with_connection};
use aqueduct_pool::{Backend, Error, Pool};
use aqueduct_testkit::TcpProxy;
use tokio::time::Instant;

fn url() -> String {
    aqueduct_testkit::postgres::database_url()
}

/// A name unique to this test, process and backend.
fn tag(test: &str, backend: Backend) -> String {
    format!("aqueduct-pool-{test}-{backend:?}-{}", std::process::id()).to_lowercase()
}

fn manager(name: &str) -> PgManager {
    PgManager::from_url(&url()).expect("DATABASE_URL parses").application_name(name)
}

async fn admin() -> PgConnection {
    manager("aqueduct-pool-admin").open().await.expect("the test database accepts connections")
}

/// How many backends carry this application name.
async fn backends(admin: &PgConnection, name: &str) -> i64 {
    let row = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&name])
        .await
        .expect("counts");
    row.get(0)
}

/// Waits (up to 5 s) until the server counts `expected` backends with this name; returns the last count.
async fn backends_settle(admin: &PgConnection, name: &str, expected: i64) -> i64 {
    let mut count = backends(admin, name).await;
    for _ in 0..100 {
        if count == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        count = backends(admin, name).await;
    }
    count
}

/// Terminates this name's backends (idle ones only if asked); returns how many.
async fn terminate(admin: &PgConnection, name: &str, only_idle: bool) -> usize {
    let sql = if only_idle {
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'"
    } else {
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1"
    };
    admin.query(sql, &[&name]).await.expect("terminates").len()
}

/// The current value of a setting.
async fn show(connection: &PgConnection, setting: &str) -> String {
    let row = connection
        .query_one(&format!("SELECT current_setting('{setting}')"), &[])
        .await
        .expect("shows");
    row.get(0)
}

async fn select_one(connection: &PgConnection) -> Result<i32, tokio_postgres::Error> {
    connection.query_one("SELECT 1", &[]).await.map(|row| row.get(0))
}

#[tokio::test]
async fn warm_start_opens_exactly_min_size_backends() {
    let admin = admin().await;
    for &backend in Backend::all() {
        let name = tag("warm", backend);
        let pool = Pool::builder(manager(&name))
            .backend(backend)
            .min_size(3)
            .max_size(6)
            .build()
            .await
            .expect("builds");
        assert_eq!(backends(&admin, &name).await, 3, "{backend:?}");
        assert_eq!(pool.status().size, 3);
        let connection = pool.acquire().await.expect("room");
        assert_eq!(select_one(&connection).await.expect("queries"), 1);
        drop(connection);
        assert_eq!(backends(&admin, &name).await, 3, "no extra connect ({backend:?})");
        pool.close(Duration::from_secs(1)).await;
        assert_eq!(backends_settle(&admin, &name, 0).await, 0, "close closes them ({backend:?})");
    }
}

#[tokio::test]
async fn exhausted_pool_serves_waiters_in_arrival_order() {
    for &backend in Backend::all() {
        let name = tag("fifo", backend);
        let pool = Pool::builder(manager(&name))
            .backend(backend)
            .min_size(2)
            .max_size(2)
            .build()
            .await
            .expect("builds");
        let held = (pool.acquire().await.expect("room"), pool.acquire().await.expect("room"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for index in 0..8 {
            let waiter_pool = pool.clone();
            let order = Arc::clone(&order);
            waiters.push(tokio::spawn(async move {
                let connection = waiter_pool.acquire().await.expect("served in turn");
                order.lock().unwrap().push(index);
                select_one(&connection).await.expect("queries");
            }));
            while pool.status().waiters < index + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for waiter in waiters {
            waiter.await.expect("no panic");
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>(), "FIFO ({backend:?})");
        assert_eq!(pool.status().created, 2, "{backend:?}");
    }
}

#[tokio::test]
async fn acquire_times_out_when_the_pool_stays_full() {
    for &backend in Backend::all() {
        let name = tag("timeout", backend);
        let pool = Pool::builder(manager(&name))
            .backend(backend)
            .max_size(1)
            .acquire_timeout(Duration::from_millis(200))
            .build()
            .await
            .expect("builds");
        let held = pool.acquire().await.expect("room");
        let started = Instant::now();
        let error = pool.acquire().await.expect_err("full");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        assert!(matches!(error, Error::Elapsed { last_error: None, .. }), "{backend:?}: {error:?}");
        drop(held);
        assert!(pool.acquire().await.is_ok());
    }
}

#[tokio::test]
async fn cancelled_acquires_and_cancelled_work_return_capacity_exactly() {
    let admin = admin().await;
    for &backend in Backend::all() {
        let name = tag("cancel", backend);
        let pool = Pool::builder(manager(&name).recycling_method(RecyclingMethod::Clean))
            .backend(backend)
            .max_size(3)
            .validate_after_idle(Duration::ZERO)
            .build()
            .await
            .expect("builds");
        for step in 0..12 {
            // Acquires dropped while queued, connecting or recycling.
            let acquires = futures::future::join_all((0..5).map(|_| pool.acquire()));
            let _ = tokio::time::timeout(Duration::from_micros(500 * step), acquires).await;
            // Work dropped mid-query and mid-transaction.
            let work = async {
                let connection = pool.acquire().await.expect("room");
                connection
                    .batch_execute("BEGIN; SET LOCAL work_mem = '1234kB'")
                    .await
                    .expect("begins");
                connection.simple_query("SELECT pg_sleep(0.05)").await.map(|_| ())
            };
            let _ = tokio::time::timeout(Duration::from_millis(2 * step), work).await;
        }
        // Every connection is clean: no transaction left open, the right answer to the next query.
        let all: Vec<_> = futures::future::join_all((0..3).map(|_| pool.acquire())).await;
        for connection in &all {
            let connection = connection.as_ref().expect("full capacity is back");
            assert_eq!(select_one(connection).await.expect("in sync"), 1);
            assert_ne!(
                show(connection, "work_mem").await,
                "1234kB",
                "no dirty session reused ({backend:?})"
            );
        }
        drop(all);
        let status = pool.status();
        assert_eq!((status.in_use, status.waiters), (0, 0), "{backend:?}: {status:?}");
        assert!(status.size <= 3);
        let open =
            usize::try_from(backends_settle(&admin, &name, status.size as i64).await).unwrap_or(0);
        assert_eq!(open, pool.status().size, "no connection leaked ({backend:?})");
    }
}

#[tokio::test]
async fn terminated_idle_backends_are_detected_at_the_next_checkout() {
    let admin = admin().await;
    for &backend in Backend::all() {
        let name = tag("terminate", backend);
        let pool = Pool::builder(manager(&name))
            .backend(backend)
            .min_size(2)
            .max_size(2)
            .build()
            .await
            .expect("builds");
        assert_eq!(terminate(&admin, &name, true).await, 2);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let connection = pool.acquire().await.expect("a new connection replaces the killed ones");
        assert_eq!(select_one(&connection).await.expect("works"), 1, "{backend:?}");
        drop(connection);
        assert!(pool.status().evicted >= 1, "{backend:?}: {:?}", pool.status());
    }
}

#[tokio::test]
async fn a_fatal_error_on_a_busy_connection_evicts_it_on_return() {
    let admin = admin().await;
    for &backend in Backend::all() {
        let name = tag("fatal", backend);
        let pool = Pool::builder(manager(&name)).backend(backend).build().await.expect("builds");
        let connection = pool.acquire().await.expect("room");
        assert_eq!(terminate(&admin, &name, false).await, 1);
        let error = connection.simple_query("SELECT 1").await.expect_err("the backend is gone");
        assert!(aqueduct_pool::postgres::is_fatal(&error), "{error:?}");
        assert!(connection.is_broken());
        drop(connection);
        assert_eq!(pool.status().size, 0, "{backend:?}");
        assert_eq!(
            select_one(&pool.acquire().await.expect("a fresh one")).await.expect("works"),
            1
        );
    }
}

fn server_addr() -> SocketAddr {
    let config: tokio_postgres::Config = url().parse().expect("DATABASE_URL parses");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" { "127.0.0.1".to_owned() } else { host };
    format!("{host}:{port}").parse().expect("a TCP address")
}

fn manager_through(proxy: &TcpProxy, name: &str) -> PgManager {
    let mut config: tokio_postgres::Config = url().parse().expect("DATABASE_URL parses");
    config.host("127.0.0.1").port(proxy.addr().port()).application_name(name);
    PgManager::new(config)
}

#[tokio::test]
async fn a_server_restart_mid_load_is_survived_with_no_stuck_waiter() {
    for &backend in Backend::all() {
        let name = tag("restart", backend);
        let proxy = TcpProxy::start(server_addr()).await.expect("the proxy starts");
        let pool = Pool::builder(manager_through(&proxy, &name))
            .backend(backend)
            .min_size(2)
            .max_size(4)
            .acquire_timeout(Duration::from_secs(2))
            .validate_after_idle(Duration::from_millis(20))
            .build()
            .await
            .expect("builds");
        let successes = Arc::new(AtomicUsize::new(0));
        let successes_after = Arc::new(AtomicUsize::new(0));
        let recovered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_at = Instant::now() + Duration::from_millis(1500);
        let mut workers = Vec::new();
        for _ in 0..12 {
            let pool = pool.clone();
            let (successes, successes_after, recovered) =
                (Arc::clone(&successes), Arc::clone(&successes_after), Arc::clone(&recovered));
            workers.push(tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let Ok(mut connection) = pool.acquire().await else { continue };
                    let result = select_one(&connection).await;
                    if connection.observe(result).is_ok() {
                        successes.fetch_add(1, Ordering::SeqCst);
                        if recovered.load(Ordering::SeqCst) {
                            successes_after.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.refuse_new(true);
        proxy.cut_all();
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.refuse_new(false);
        recovered.store(true, Ordering::SeqCst);
        for worker in workers {
            tokio::time::timeout(Duration::from_secs(10), worker)
                .await
                .expect("no waiter is stuck")
                .expect("no panic");
        }
        assert!(successes_after.load(Ordering::SeqCst) > 0, "the pool recovered ({backend:?})");
        let status = pool.status();
        assert_eq!((status.in_use, status.waiters), (0, 0), "{backend:?}: {status:?}");
        let connection = pool.acquire().await.expect("healthy after the restart");
        assert_eq!(select_one(&connection).await.expect("works"), 1);
    }
}

/// A local port nobody listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    listener.local_addr().expect("an address").port()
}

#[tokio::test]
async fn a_refused_connect_fails_within_the_timeout_with_the_connect_error() {
    for &backend in Backend::all() {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(closed_port().await).user("postgres").dbname("test");
        let manager = PgManager::new(config);

        let error = Pool::builder(manager.clone())
            .backend(backend)
            .min_size(1)
            .build()
            .await
            .expect_err("refused");
        assert!(
            error.operation().is_some(),
            "warm-up fails fast with the connect error: {error:?}"
        );

        let pool = Pool::builder(manager)
            .backend(backend)
            .lazy(true)
            .acquire_timeout(Duration::from_millis(500))
            .build()
            .await
            .expect("lazy");
        let started = Instant::now();
        let error = pool.acquire().await.expect_err("refused");
        assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        let Error::Elapsed { last_error: Some(last_error), .. } = &error else {
            panic!("a timeout carrying the connect error ({backend:?}): {error:?}")
        };
        let cause =
            std::error::Error::source(last_error).map(ToString::to_string).unwrap_or_default();
        assert!(cause.to_lowercase().contains("refused"), "{last_error}: {cause}");
    }
}

#[tokio::test]
async fn close_waits_for_checked_out_connections_then_terminates_the_rest() {
    let admin = admin().await;
    for &backend in Backend::all() {
        let name = tag("close", backend);
        let pool = Pool::builder(manager(&name))
            .backend(backend)
            .min_size(3)
            .max_size(3)
            .build()
            .await
            .expect("builds");
        let returned_in_time = pool.acquire().await.expect("room");
        let stuck = pool.acquire().await.expect("room");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(returned_in_time);
        });
        let terminated = pool.close(Duration::from_millis(400)).await;
        assert_eq!(terminated, 1, "only the stuck one ({backend:?})");
        assert!(pool.acquire().await.expect_err("closed").is_closed());
        assert!(select_one(&stuck).await.is_err(), "the stuck connection was terminated");
        drop(stuck);
        assert_eq!(backends_settle(&admin, &name, 0).await, 0, "{backend:?}");
        assert_eq!(pool.status().size, 0);
    }
}

#[tokio::test]
async fn recycling_clean_resets_the_session_and_on_connect_sets_it_up_again() {
    for &backend in Backend::all() {
        let name = tag("clean", backend);
        let hooks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hooks);
        let manager =
            manager(&name).recycling_method(RecyclingMethod::Clean).on_connect(move |connection| {
                counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    connection.batch_execute("SET statement_timeout = '4321ms'").await
                })
            });
        let pool =
            Pool::builder(manager).backend(backend).max_size(1).build().await.expect("builds");
        let connection = pool.acquire().await.expect("room");
        assert_eq!(
            show(&connection, "statement_timeout").await,
            "4321ms",
            "the hook ran ({backend:?})"
        );
        connection.batch_execute("SET work_mem = '1234kB'").await.expect("sets");
        drop(connection);
        let connection = pool.acquire().await.expect("room");
        assert_ne!(
            show(&connection, "work_mem").await,
            "1234kB",
            "the clean reset undid the SET ({backend:?})"
        );
        assert_eq!(
            show(&connection, "statement_timeout").await,
            "4321ms",
            "the hook ran again after the reset"
        );
        assert_eq!(hooks.load(Ordering::SeqCst), 2, "one connect and one reset ({backend:?})");
        assert_eq!(pool.status().created, 1);
    }
}

#[tokio::test]
async fn the_statement_cache_is_bounded_and_reused() {
    let name = tag("cache", Backend::Deadpool);
    let pool = Pool::builder(manager(&name).statement_cache_capacity(2))
        .max_size(1)
        .build()
        .await
        .expect("builds");
    let connection = pool.acquire().await.expect("room");
    connection.prepare_cached("SELECT 1").await.expect("prepares");
    connection.prepare_cached("SELECT 1").await.expect("cached");
    assert_eq!(connection.statement_cache().len(), 1, "prepared once");
    connection.query("SELECT 2", &[]).await.expect("queries");
    connection.query("SELECT 3", &[]).await.expect("queries");
    assert_eq!(connection.statement_cache().len(), 2, "bounded at its capacity");
    assert!(
        connection.statement_cache().get("SELECT 1").is_none(),
        "the least recently used went first"
    );
    assert!(connection.statement_cache().get("SELECT 3").is_some());
}

#[tokio::test]
async fn with_connection_always_closes_its_connection() {
    let admin = admin().await;
    let name = "aqueduct-pool-with-connection-".to_owned() + &std::process::id().to_string();
    let separator = if url().contains('?') { '&' } else { '?' };
    let tagged = format!("{}{separator}application_name={name}", url());

    let one: i32 = with_connection(&tagged, async |connection| select_one(connection).await)
        .await
        .expect("works");
    assert_eq!(one, 1);
    assert_eq!(backends_settle(&admin, &name, 0).await, 0, "closed after success");

    let error = with_connection(&tagged, async |connection| {
        connection.simple_query("SELECT * FROM no_such_table").await.map(|_| ())
    })
    .await
    .expect_err("the query fails");
    assert!(error.operation().is_some_and(|error| error.code().is_some()), "{error:?}");
    assert_eq!(backends_settle(&admin, &name, 0).await, 0, "closed after an error");

    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        with_connection(&tagged, async |connection| {
            connection.simple_query("SELECT pg_sleep(5)").await.map(|_| ())
        }),
    )
    .await;
    assert!(cancelled.is_err(), "timed out");
    assert_eq!(backends_settle(&admin, &name, 0).await, 0, "closed after cancellation");
}
