//! `cargo xtask demo`: every aqueduct crate on one job — fetch pages from a flaky server, hash them, store them.
//!
//! A local HTTP server answers with latency, 5 % errors, 429s with `Retry-After` and some very slow pages.
//! Pages are fetched through the rate limiter with retries and per-attempt timeouts, hashed on the CPU pool,
//! streamed through a pipeline, and written in batches to PostgreSQL through the pool (or to memory, with a
//! notice, when no database is reachable). A final table says what each crate did.
#![allow(clippy::print_stdout)] // A demo prints its report.

mod server;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aqueduct::batch::{Batcher, Flush};
use aqueduct::cpu_offload::CpuPool;
use aqueduct::gather::gather;
use aqueduct::pipeline::{PipelineBuilder, StageOptions};
use aqueduct::pool::Pool;
use aqueduct::pool::postgres::PgManager;
use aqueduct::ratelimit::{Limiter, Rate};
use aqueduct::retry::{RetryPolicy, retry};
use aqueduct::timeout::timeout;
use aqueduct::{Classify, Error, Transience};
use indicatif::{ProgressBar, ProgressStyle};

/// How many pages the demo fetches.
const PAGES: u32 = 3_000;
/// Fetch workers, and requests in flight at most.
const FETCH_WORKERS: usize = 48;
/// The table the demo writes to (created if missing, rows of this run deleted first).
const TABLE: &str = "aqueduct_demo_pages";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let counts = Arc::new(server::ServerCounts::default());
    let address = server::start(Arc::clone(&counts)).await?;
    let base = format!("http://{address}");
    println!("aqueduct demo: {PAGES} pages from a flaky server at {base}");

    let store = Store::connect().await;
    println!("storage: {}", store.describe());
    let run_id = format!("run-{}", std::process::id());
    store.prepare(&run_id).await?;

    let stats = Arc::new(Stats::default());
    let client = reqwest::Client::builder().pool_max_idle_per_host(FETCH_WORKERS).build()?;
    // Ratelimit: at most 48 requests in flight and 400 started per second, 40 at once from idle.
    let limiter = Limiter::builder()
        .max_concurrent(FETCH_WORKERS)
        .rate(Rate::per_second(400))
        .burst(40)
        .build()?;
    // Retry: exponential backoff with full jitter, the server's Retry-After honoured up to 1 s,
    // each attempt under 250 ms, the whole page under 5 s.
    let policy = RetryPolicy::builder()
        .exponential(Duration::from_millis(20), 2.0)
        .max_delay(Duration::from_millis(500))
        .max_attempts(8)
        .attempt_timeout(Duration::from_millis(250))
        .deadline(Duration::from_secs(5))
        .hints(aqueduct::retry::HintMode::Clamp {
            min: Duration::from_millis(10),
            max: Duration::from_secs(1),
        })
        .build()?;
    let cpu = CpuPool::builder().build()?;
    let batcher = store.batcher()?;

    let progress = ProgressBar::new(u64::from(PAGES));
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} pages  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let fetched = {
        let (client, limiter, policy, stats, base) =
            (client.clone(), limiter.clone(), policy.clone(), Arc::clone(&stats), base.clone());
        move |page: u32| {
            let (client, limiter, policy, stats) =
                (client.clone(), limiter.clone(), policy.clone(), Arc::clone(&stats));
            let url = format!("{base}/page/{page}");
            async move {
                let begun = Instant::now();
                let body = retry(&policy, || {
                    let (client, limiter, stats, url) = (&client, &limiter, &stats, &url);
                    async move {
                        let waited = Instant::now();
                        let _permit = limiter.acquire().await?;
                        stats.record_rate_wait(waited.elapsed());
                        fetch(client, url).await.map_err(Error::Operation)
                    }
                })
                .classified()
                .notify(|state| stats.record_retry(state.error.is_some_and(Error::is_elapsed)))
                .await?;
                stats.record_latency(begun.elapsed());
                Ok::<_, Error<DemoError>>((page, body))
            }
        }
    };
    let hashed = {
        let cpu = cpu.clone();
        move |(page, body): (u32, String)| {
            let cpu = cpu.clone();
            async move {
                let bytes = body.len();
                let digest = cpu.run(move || digest(body.as_bytes())).await?;
                Ok::<_, Error<DemoError>>(Row { page, digest, bytes })
            }
        }
    };
    let stored = {
        let (batcher, progress) = (batcher.clone(), progress.clone());
        move |row: Row| {
            let (batcher, progress) = (batcher.clone(), progress.clone());
            async move {
                batcher.submit(row).await?;
                progress.inc(1);
                Ok::<_, Error<DemoError>>(())
            }
        }
    };

    let failed_pages = Arc::new(AtomicU64::new(0));
    let failures = Arc::clone(&failed_pages);
    let metrics = PipelineBuilder::<_, DemoError>::from_items(0..PAGES)
        .stage_with(
            StageOptions::new(FETCH_WORKERS).skip(move |failure| {
                failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("page {} given up: {}", failure.index, failure.error);
            }),
            fetched,
        )
        .stage(2, hashed)
        .stage(8, stored)
        .build()?
        .run()
        .await?;
    progress.finish_and_clear();
    batcher.shutdown().await;
    let wall = started.elapsed();

    // Gather: check the storage and read the server's counters side by side.
    let checks: Vec<Result<u64, Error<tokio_postgres::Error>>> = gather(vec![
        store.scalar(&run_id, "count(*)"),
        store.scalar(&run_id, "count(DISTINCT page)"),
    ])
    .await;
    let [rows_counted, distinct] =
        <[_; 2]>::try_from(checks).map_err(|_| "gather returns one result per check")?;
    let (rows_counted, distinct) = (rows_counted?, distinct?);
    // Timeout: the shutdown of the pools is bounded.
    let _ = timeout(Duration::from_secs(5), cpu.shutdown()).await;
    store.close().await;

    let failed = failed_pages.load(Ordering::Relaxed);
    let latencies = stats.latencies();
    let table = Report {
        pages: PAGES,
        stored: u64::from(PAGES) - failed,
        failed,
        retries: stats.retries.load(Ordering::Relaxed),
        timeouts: stats.timeouts.load(Ordering::Relaxed),
        rate_waits: stats.rate_waits.load(Ordering::Relaxed),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        wall,
        rows_counted,
        distinct,
        server_requests: counts.requests.load(Ordering::Relaxed),
        server_errors: counts.errors.load(Ordering::Relaxed),
        server_throttled: counts.throttled.load(Ordering::Relaxed),
        server_slow: counts.slow.load(Ordering::Relaxed),
        batches: batcher.metrics().batches,
        stages: metrics.stages.len(),
    };
    println!("{table}");
    if table.rows_counted != table.stored {
        return Err(format!(
            "stored {} pages but counted {} rows",
            table.stored, table.rows_counted
        )
        .into());
    }
    Ok(())
}

/// The demo's one error type; the batcher hands a whole-batch error to every item, so it is `Clone`.
#[derive(Debug, Clone)]
enum DemoError {
    /// The server answered with an error status.
    Status { code: u16, retry_after: Option<Duration> },
    /// The request did not complete.
    Transport(String),
    /// Writing to the store failed.
    Store(String),
}

impl fmt::Display for DemoError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, .. } => write!(formatter, "server answered {code}"),
            Self::Transport(message) => write!(formatter, "request failed: {message}"),
            Self::Store(message) => write!(formatter, "store failed: {message}"),
        }
    }
}

impl std::error::Error for DemoError {}

impl Classify for DemoError {
    fn transience(&self) -> Transience {
        match self {
            Self::Status { code, .. } if *code == 429 || *code >= 500 => Transience::Transient,
            Self::Transport(_) => Transience::Transient,
            Self::Status { .. } | Self::Store(_) => Transience::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One GET; an error status becomes [`DemoError::Status`] with the server's `Retry-After`.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, DemoError> {
    let response =
        client.get(url).send().await.map_err(|error| DemoError::Transport(error.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after =
            response.headers().get("retry-after").and_then(|value| value.to_str().ok()).and_then(
                |value| aqueduct::retry::parse_retry_after(value, std::time::SystemTime::now()),
            );
        return Err(DemoError::Status { code: status.as_u16(), retry_after });
    }
    response.text().await.map_err(|error| DemoError::Transport(error.to_string()))
}

/// A page as stored.
#[derive(Debug, Clone)]
struct Row {
    page: u32,
    digest: u64,
    bytes: usize,
}

/// CPU work worth offloading: 64 rounds of FNV-1a over the body.
fn digest(bytes: &[u8]) -> u64 {
    (0..64).fold(0xcbf2_9ce4_8422_2325_u64, |seed, round: u64| {
        bytes.iter().fold(seed ^ round, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
    })
}

/// Where rows go: PostgreSQL through the pool, or memory when no database is reachable.
#[derive(Clone)]
enum Store {
    Postgres(Pool<PgManager>, String),
    Memory(Arc<Mutex<Vec<(String, Row)>>>),
}

impl Store {
    async fn connect() -> Self {
        let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
            return Self::memory(
                "DATABASE_URL is unset (run through `cargo xtask demo`, which provides one)",
            );
        };
        let pool = match PgManager::from_url(&url) {
            Ok(manager) => {
                Pool::builder(manager.application_name("aqueduct-demo"))
                    .min_size(2)
                    .max_size(8)
                    .build()
                    .await
            }
            Err(error) => Err(error),
        };
        match pool {
            Ok(pool) => Self::Postgres(pool, url),
            Err(error) => Self::memory(&format!("PostgreSQL at {url} is unreachable: {error}")),
        }
    }

    fn memory(reason: &str) -> Self {
        eprintln!("NOTICE: {reason}; writing to an in-memory store instead of PostgreSQL");
        Self::Memory(Arc::default())
    }

    fn describe(&self) -> String {
        match self {
            Self::Postgres(_, url) => format!("PostgreSQL at {url}, table {TABLE}"),
            Self::Memory(_) => "in memory (no PostgreSQL)".to_owned(),
        }
    }

    async fn prepare(&self, run_id: &str) -> Result<(), Error<tokio_postgres::Error>> {
        let Self::Postgres(pool, _) = self else { return Ok(()) };
        let connection = pool.acquire().await?;
        connection
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT NOT NULL, page INT4 NOT NULL, digest INT8 NOT NULL, bytes INT4 NOT NULL)"
            ))
            .await?;
        connection.execute(&format!("DELETE FROM {TABLE} WHERE run_id = $1"), &[&run_id]).await?;
        Ok(())
    }

    fn batcher(&self) -> Result<Batcher<Row, (), DemoError>, Box<dyn std::error::Error>> {
        let store = self.clone();
        let run_id = format!("run-{}", std::process::id());
        let batcher = Batcher::builder(move |rows: Vec<Row>| {
            let (store, run_id) = (store.clone(), run_id.clone());
            async move { store.insert(&run_id, rows).await }
        })
        .max_batch_size(100)
        .max_concurrent_batches(4)
        .flush(Flush::MaxWait(Duration::from_millis(20)))
        .build()?;
        Ok(batcher)
    }

    /// Inserts a batch in one statement; one output per input, as the batcher's contract asks.
    async fn insert(&self, run_id: &str, rows: Vec<Row>) -> Result<Vec<()>, DemoError> {
        let count = rows.len();
        match self {
            Self::Memory(rows_in_memory) => {
                let mut stored =
                    rows_in_memory.lock().map_err(|_| DemoError::Store("poisoned".into()))?;
                stored.extend(rows.into_iter().map(|row| (run_id.to_owned(), row)));
            }
            Self::Postgres(pool, _) => {
                let connection =
                    pool.acquire().await.map_err(|error| DemoError::Store(error.to_string()))?;
                let pages: Vec<i32> =
                    rows.iter().map(|row| i32::try_from(row.page).unwrap_or(i32::MAX)).collect();
                let digests: Vec<i64> =
                    rows.iter().map(|row| i64::from_ne_bytes(row.digest.to_ne_bytes())).collect();
                let sizes: Vec<i32> =
                    rows.iter().map(|row| i32::try_from(row.bytes).unwrap_or(i32::MAX)).collect();
                connection
                    .execute(
                        &format!(
                            "INSERT INTO {TABLE} (run_id, page, digest, bytes) \
                             SELECT $1, * FROM UNNEST($2::INT4[], $3::INT8[], $4::INT4[])"
                        ),
                        &[&run_id, &pages, &digests, &sizes],
                    )
                    .await
                    .map_err(|error| DemoError::Store(error.to_string()))?;
            }
        }
        Ok(vec![(); count])
    }

    async fn scalar(
        &self,
        run_id: &str,
        expression: &str,
    ) -> Result<u64, Error<tokio_postgres::Error>> {
        match self {
            Self::Memory(rows) => {
                let rows = rows.lock().map_err(|_| Error::Closed { reconnecting: false })?;
                let mine = rows.iter().filter(|(id, _)| id == run_id);
                let count = if expression.contains("DISTINCT") {
                    mine.map(|(_, row)| row.page).collect::<std::collections::HashSet<_>>().len()
                } else {
                    mine.count()
                };
                Ok(count as u64)
            }
            Self::Postgres(pool, _) => {
                let connection = pool.acquire().await?;
                let row = connection
                    .query_one(
                        &format!("SELECT {expression} FROM {TABLE} WHERE run_id = $1"),
                        &[&run_id],
                    )
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            }
        }
    }

    async fn close(&self) {
        if let Self::Postgres(pool, _) = self {
            pool.close(Duration::from_secs(2)).await;
        }
    }
}

/// Counters the closures update as the pages go through.
#[derive(Debug, Default)]
struct Stats {
    retries: AtomicU64,
    timeouts: AtomicU64,
    rate_waits: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl Stats {
    fn record_retry(&self, timed_out: bool) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_rate_wait(&self, waited: Duration) {
        if waited >= Duration::from_micros(100) {
            self.rate_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_latency(&self, latency: Duration) {
        if let Ok(mut latencies) = self.latencies_us.lock() {
            latencies.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        }
    }

    fn latencies(&self) -> Vec<u64> {
        let mut latencies =
            self.latencies_us.lock().map(|latencies| latencies.clone()).unwrap_or_default();
        latencies.sort_unstable();
        latencies
    }
}

fn percentile(sorted: &[u64], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    // The index lies within the slice.
    let index = (((sorted.len() - 1) as f64) * quantile).round() as usize;
    Duration::from_micros(sorted[index.min(sorted.len() - 1)])
}

/// The final table.
struct Report {
    pages: u32,
    stored: u64,
    failed: u64,
    retries: u64,
    timeouts: u64,
    rate_waits: u64,
    p50: Duration,
    p99: Duration,
    wall: Duration,
    rows_counted: u64,
    distinct: u64,
    server_requests: u64,
    server_errors: u64,
    server_throttled: u64,
    server_slow: u64,
    batches: u64,
    stages: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let throughput = f64::from(self.pages) / self.wall.as_secs_f64().max(f64::EPSILON);
        writeln!(formatter)?;
        writeln!(formatter, "| figure | value |")?;
        writeln!(formatter, "|---|---:|")?;
        writeln!(formatter, "| pages | {} |", self.pages)?;
        writeln!(formatter, "| stored | {} |", self.stored)?;
        writeln!(formatter, "| given up | {} |", self.failed)?;
        writeln!(formatter, "| retries | {} |", self.retries)?;
        writeln!(formatter, "| attempt timeouts | {} |", self.timeouts)?;
        writeln!(formatter, "| rate-limit waits | {} |", self.rate_waits)?;
        writeln!(formatter, "| fetch latency p50 | {:?} |", self.p50)?;
        writeln!(formatter, "| fetch latency p99 | {:?} |", self.p99)?;
        writeln!(formatter, "| throughput | {throughput:.0} pages/s |")?;
        writeln!(formatter, "| wall time | {:.2?} |", self.wall)?;
        writeln!(formatter, "| rows counted by SELECT count(*) | {} |", self.rows_counted)?;
        writeln!(formatter, "| distinct pages stored | {} |", self.distinct)?;
        writeln!(formatter)?;
        writeln!(formatter, "what each crate did:")?;
        writeln!(
            formatter,
            "- ratelimit: admitted {} requests, {} of them after a wait",
            self.server_requests, self.rate_waits
        )?;
        writeln!(
            formatter,
            "- retry: {} retries over {} server errors, {} 429s and {} slow answers",
            self.retries, self.server_errors, self.server_throttled, self.server_slow
        )?;
        writeln!(
            formatter,
            "- timeout: {} attempts cut at 250 ms (inside retry), shutdown bounded to 5 s",
            self.timeouts
        )?;
        writeln!(
            formatter,
            "- cpu-offload: {} page digests computed off the runtime",
            self.stored
        )?;
        writeln!(
            formatter,
            "- pipeline: {} stages joined by bounded queues, drained by closing",
            self.stages
        )?;
        writeln!(formatter, "- batch: {} rows written in {} batches", self.stored, self.batches)?;
        writeln!(formatter, "- pool: every batch and check ran on a pooled connection")?;
        write!(formatter, "- gather: the two storage checks ran side by side")
    }
}
