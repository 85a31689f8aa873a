//! Shared helpers of the integration tests: an in-process manager over the testkit's `FakeDatabase`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use aqueduct_pool::{Backend, Manager, Pool, PoolBuilder};
use aqueduct_testkit::{FakeConnection, FakeDatabase, FakeError};

/// A manager over a fake database: `recycle` pings only when asked to validate, and `is_broken`
/// cannot see a killed connection (like a real socket), so only validation or use detects it.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    pub database: FakeDatabase,
}

impl Manager for Fake {
    type Connection = FakeConnection;
    type Error = FakeError;

    async fn connect(&self) -> Result<FakeConnection, FakeError> {
        self.database.connect().await
    }

    async fn recycle(
        &self,
        connection: &mut FakeConnection,
        validate: bool,
    ) -> Result<(), FakeError> {
        if validate { connection.ping().await } else { Ok(()) }
    }

    fn is_fatal(&self, error: &FakeError) -> bool {
        *error == FakeError::Dead
    }
}

/// A manager whose validation (`recycle` asked to validate) takes the given time, so that a
/// checkout can be cancelled in the middle of it or outlast a caller's patience.
#[derive(Debug, Clone, Copy)]
pub struct SlowValidation(pub Duration);

impl Manager for SlowValidation {
    type Connection = u32;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u32, std::io::Error> {
        Ok(1)
    }

    async fn recycle(&self, _: &mut u32, validate: bool) -> Result<(), std::io::Error> {
        if validate {
            tokio::time::sleep(self.0).await;
        }
        Ok(())
    }
}

/// A pool of one [`SlowValidation`] connection that validates at every checkout after its first,
/// already checked out once and returned: the next checkout validates for `validation`.
pub async fn validating_pool(backend: Backend, validation: Duration) -> Pool<SlowValidation> {
    let pool = Pool::builder(SlowValidation(validation))
        .backend(backend)
        .max_size(1)
        .validate_after_idle(Duration::ZERO)
        .build()
        .await
        .expect("builds");
    drop(pool.acquire().await.expect("the first checkout"));
    pool
}

/// A builder over a fresh fake database, with maintenance rare enough not to interfere.
pub fn builder(backend: Backend) -> (PoolBuilder<Fake>, FakeDatabase) {
    let fake = Fake::default();
    let database = fake.database.clone();
    (Pool::builder(fake).backend(backend).maintenance_interval(Duration::from_secs(3600)), database)
}

/// Lets spawned tasks and timers run until nothing is left to do at this instant.
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Asserts that nothing is checked out or waiting, and that the pool's size matches the server's.
pub fn assert_at_rest(pool: &Pool<Fake>, database: &FakeDatabase) {
    let status = pool.status();
    assert_eq!(status.in_use, 0, "nothing checked out: {status:?}");
    assert_eq!(status.waiters, 0, "nobody waiting: {status:?}");
    assert_eq!(status.size, status.idle, "every connection idle: {status:?}");
    assert_eq!(status.size, database.open(), "the pool knows every open connection: {status:?}");
    assert!(status.size <= status.max_size, "never above max_size: {status:?}");
}
