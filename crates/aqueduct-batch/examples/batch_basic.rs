//! The seed's `process_batch(items, batch_size=100, max_concurrent=5)`, then the same lookups auto-batched.
//!
//! Run with `cargo run -p aqueduct-batch --example batch_basic`.

use std::time::Duration;

use aqueduct_batch::{Batcher, Error, Flush, batch};

/// The error of our pretend backend; `Clone` so one whole-batch failure can reach every item.
#[derive(Debug, Clone)]
struct BackendError(String);

impl std::fmt::Display for BackendError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for BackendError {}

/// A backend call that takes 20 ms whatever the batch size, so batching pays.
async fn lookup(ids: Vec<u32>) -> Result<Vec<String>, BackendError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if ids.contains(&666) {
        return Err(BackendError("id 666 is cursed".to_owned()));
    }
    Ok(ids.into_iter().map(|id| format!("record {id}")).collect())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Static: 1 000 known ids, batches of 100, at most 5 calls in flight.
    let results: Vec<Result<String, Error<BackendError>>> =
        batch(0..1_000u32, 100, 5, lookup).await;
    let failed = results.iter().filter(|result| result.is_err()).count();
    eprintln!("static: {} results, {failed} failed (the batch holding id 666)", results.len());

    // Dynamic: many tasks ask for one id each; the batcher coalesces them.
    let batcher: Batcher<u32, String, BackendError> = Batcher::builder(lookup)
        .max_batch_size(100)
        .max_concurrent_batches(5)
        .flush(Flush::MaxWait(Duration::from_millis(2)))
        .build()?;
    let tasks: Vec<_> = (0..500u32).map(|id| tokio::spawn(batcher.submit(id))).collect();
    for task in tasks {
        task.await??;
    }
    let metrics = batcher.metrics();
    eprintln!(
        "dynamic: {} items in {} batches (mean size {:.1}, fill {:.0}%), mean queue wait {:?}",
        metrics.items,
        metrics.batches,
        metrics.mean_batch_size(),
        metrics.fill_ratio() * 100.0,
        metrics.mean_queue_wait()
    );
    batcher.shutdown().await;
    Ok(())
}
