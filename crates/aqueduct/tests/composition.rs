//! The crates composed in single calls, as a service would: the error type stays flat, capacity comes back.

use std::time::Duration;

use aqueduct::batch::Batcher;
use aqueduct::cpu_offload::CpuPool;
use aqueduct::pipeline::PipelineBuilder;
use aqueduct::pool::Pool;
use aqueduct::pool::postgres::PgManager;
use aqueduct::ratelimit::{Limiter, Rate};
use aqueduct::retry::{RetryPolicy, retry};
use aqueduct::timeout::try_timeout;

/// Pool, rate limit, retry and timeout stacked in one call. The signature is the compile-time check:
/// it would not type-check if any layer nested the error (`Error<Error<tokio_postgres::Error>>`).
async fn select_through_every_layer(
    pool: &Pool<PgManager>,
    limiter: &Limiter,
    policy: &RetryPolicy,
    value: i64,
) -> Result<i64, aqueduct::Error<tokio_postgres::Error>> {
    retry(policy, || async {
        let _permit = limiter.acquire().await?;
        let connection = try_timeout(Duration::from_secs(5), pool.acquire()).await?;
        let row =
            try_timeout(Duration::from_secs(5), connection.query_one("SELECT $1::INT8", &[&value]))
                .await?;
        // `?` inside an async block needs the block's error type spelled once, as anywhere in Rust.
        Ok::<_, aqueduct::Error<tokio_postgres::Error>>(row.get::<_, i64>(0))
    })
    .await
}

/// The headline stack without a closure body: only the outer annotation picks `E`.
async fn acquire_with_retry_and_timeout(
    pool: &Pool<PgManager>,
    policy: &RetryPolicy,
) -> Result<aqueduct::pool::PooledConnection<PgManager>, aqueduct::Error<tokio_postgres::Error>> {
    retry(policy, || try_timeout(Duration::from_secs(5), pool.acquire())).await
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .exponential(Duration::from_millis(10), 2.0)
        .max_attempts(3)
        .build()
        .expect("a valid retry policy")
}

#[tokio::test]
async fn pool_ratelimit_retry_and_timeout_stack_into_one_error_type() {
    let url = aqueduct_testkit::postgres::database_url();
    let manager = PgManager::from_url(&url).expect("DATABASE_URL parses");
    let pool =
        Pool::builder(manager).min_size(1).max_size(4).build().await.expect("the pool warms up");
    let limiter = Limiter::builder()
        .max_concurrent(2)
        .rate(Rate::per_second(1_000))
        .build()
        .expect("a valid limiter");
    let policy = policy();

    let mut tasks = Vec::new();
    for value in 0..16_i64 {
        let (pool, limiter, policy) = (pool.clone(), limiter.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            select_through_every_layer(&pool, &limiter, &policy, value).await
        }));
    }
    for (value, task) in tasks.into_iter().enumerate() {
        let selected = task.await.expect("no task panics").expect("every call succeeds");
        assert_eq!(selected, i64::try_from(value).expect("small"));
    }
    let status = pool.status();
    assert_eq!(status.in_use, 0, "every connection came back: {status:?}");
    let connection = acquire_with_retry_and_timeout(&pool, &policy).await.expect("a connection");
    assert_eq!(pool.status().in_use, 1);
    drop(connection);
    assert_eq!(pool.status().in_use, 0);

    // A failing statement surfaces as the operation's own error, not wrapped by the layers above.
    let failing: Result<i64, aqueduct::Error<tokio_postgres::Error>> = retry(&policy, || async {
        let _permit = limiter.acquire().await?;
        let connection = try_timeout(Duration::from_secs(5), pool.acquire()).await?;
        let row =
            try_timeout(Duration::from_secs(5), connection.query_one("SELECT 1/0", &[])).await?;
        Ok::<_, aqueduct::Error<tokio_postgres::Error>>(row.get::<_, i64>(0))
    })
    .await;
    let error = failing.expect_err("division by zero fails");
    let database_error = error.operation().and_then(tokio_postgres::Error::as_db_error);
    assert_eq!(database_error.map(|db| db.code().code()), Some("22012"), "{error:?}");
    pool.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_pipeline_hashes_on_the_cpu_pool_and_stores_through_the_batcher() {
    let cpu = CpuPool::builder().threads(2).build().expect("a valid CPU pool");
    let stored = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&stored);
    let batcher = Batcher::builder(move |rows: Vec<(u32, u64)>| {
        let sink = std::sync::Arc::clone(&sink);
        async move {
            let count = rows.len();
            sink.lock().expect("not poisoned").push(count);
            Ok::<_, StoreError>(rows.into_iter().map(|(id, _)| id).collect::<Vec<u32>>())
        }
    })
    .max_batch_size(25)
    .max_concurrent_batches(2)
    .build()
    .expect("a valid batcher");

    let ids = PipelineBuilder::<_, StoreError>::from_items(0..200_u32)
        .stage(4, {
            let cpu = cpu.clone();
            move |id: u32| {
                let cpu = cpu.clone();
                async move {
                    let digest = cpu.run(move || fnv1a(&id.to_le_bytes())).await?;
                    Ok::<_, aqueduct::Error<StoreError>>((id, digest))
                }
            }
        })
        .stage(4, {
            let batcher = batcher.clone();
            move |row: (u32, u64)| {
                let batcher = batcher.clone();
                async move { batcher.submit(row).await }
            }
        })
        .build()
        .expect("a valid pipeline")
        .collect()
        .await
        .expect("every item goes through");

    let mut sorted = ids;
    sorted.sort_unstable();
    assert_eq!(sorted, (0..200).collect::<Vec<u32>>());
    let batches = stored.lock().expect("not poisoned").clone();
    assert_eq!(batches.iter().sum::<usize>(), 200, "every row reached the batch function once");
    assert!(batches.iter().all(|size| *size <= 25), "no batch exceeds its size: {batches:?}");
    batcher.shutdown().await;
}

/// The pipeline's one error type; the batcher hands a whole-batch error to every item, so it is `Clone`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreError(String);

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
