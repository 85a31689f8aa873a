//! The public types are `Send` and `Sync` (and the futures `Send`), so they work across tasks.

mod common;

use aqueduct_pool::{
    Backend, Pool, PoolBuilder, PoolConfig, PoolStatus, PooledConnection, Terminator,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>(_: &T) {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Pool<common::Fake>>();
    assert_send_sync::<PooledConnection<common::Fake>>();
    assert_send_sync::<PoolBuilder<common::Fake>>();
    assert_send_sync::<PoolConfig>();
    assert_send_sync::<PoolStatus>();
    assert_send_sync::<Backend>();
    assert_send_sync::<Terminator>();
    assert_send_sync::<aqueduct_pool::Error<aqueduct_testkit::FakeError>>();
    #[cfg(feature = "postgres")]
    {
        assert_send_sync::<aqueduct_pool::postgres::PgManager>();
        assert_send_sync::<aqueduct_pool::postgres::PgConnection>();
        assert_send_sync::<aqueduct_pool::postgres::StatementCache>();
        assert_send_sync::<Pool<aqueduct_pool::postgres::PgManager>>();
    }
}

#[tokio::test]
async fn the_futures_are_send() {
    let (builder, _database) = common::builder(Backend::Deadpool);
    let pool = builder.lazy(true).build().await.expect("builds");
    assert_send(&pool.acquire());
    assert_send(&pool.try_acquire());
    assert_send(&pool.close(std::time::Duration::ZERO));
    let (builder, _database) = common::builder(Backend::Deadpool);
    assert_send(&builder.build());
}
