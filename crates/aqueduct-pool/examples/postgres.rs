//! A PostgreSQL pool (the seed's `ConnectionPool` over asyncpg) and `with_connection` (its
//! `managed_connection`), against the database in `DATABASE_URL`.

use std::time::Duration;

use aqueduct_pool::postgres::{PgManager, RecyclingMethod, with_connection};
use aqueduct_pool::{Error, Pool};

#[tokio::main]
async fn main() -> Result<(), Error<tokio_postgres::Error>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("set DATABASE_URL=postgres://user@host:port/database to run this example");
        return Ok(());
    };

    // async with managed_connection(url) as conn: ...
    let version: String = with_connection(&url, async |connection| {
        connection.query_one("SELECT version()", &[]).await.map(|row| row.get(0))
    })
    .await?;
    eprintln!("connected to {version}");

    // pool = ConnectionPool(dsn, min_size=5, max_size=20); await pool.initialize()
    let manager = PgManager::from_url(&url)?
        .application_name("aqueduct-pool-example")
        .recycling_method(RecyclingMethod::Verified)
        .on_connect(|connection| {
            Box::pin(async move { connection.batch_execute("SET statement_timeout = '5s'").await })
        });
    let pool = Pool::builder(manager)
        .min_size(5)
        .max_size(20)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .await?;

    let mut tasks = Vec::new();
    for n in 0..100_i32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let connection = pool.acquire().await?;
            let row = connection.query_one("SELECT $1::int * 2", &[&n]).await?;
            Ok::<i32, Error<tokio_postgres::Error>>(row.get(0))
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("no task panics")?;
    }
    eprintln!("sum of doubles: {total}; pool: {:?}", pool.status());

    let terminated = pool.close(Duration::from_secs(5)).await;
    eprintln!("closed ({terminated} terminated)");
    Ok(())
}
