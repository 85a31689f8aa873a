//! Helpers shared by the integration tests: a batcher that records every batch it receives, and when.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different part of the helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aqueduct_batch::{Batcher, BatcherBuilder};
use tokio::time::Instant;

/// One batch: when it reached the function, and its items.
pub type Batch = (Duration, Vec<u32>);

/// Every batch the function received: when (since the log was made) and which items.
#[derive(Clone)]
pub struct Log {
    start: Instant,
    batches: Arc<Mutex<Vec<Batch>>>,
}

impl Log {
    pub fn new() -> Self {
        Self { start: Instant::now(), batches: Arc::default() }
    }

    pub fn batches(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }

    pub fn items(&self) -> Vec<Vec<u32>> {
        self.batches().into_iter().map(|(_, items)| items).collect()
    }

    fn record(&self, items: &[u32]) {
        self.batches.lock().unwrap().push((self.start.elapsed(), items.to_vec()));
    }
}

pub type TestBatcher = Batcher<u32, u32, String>;

/// A batcher whose function records each batch, sleeps `latency`, and returns every item times ten.
pub fn recording(
    latency: Duration,
    configure: impl FnOnce(BatcherBuilder<u32, u32, String>) -> BatcherBuilder<u32, u32, String>,
) -> (TestBatcher, Log) {
    let log = Log::new();
    let recorder = log.clone();
    let builder = Batcher::builder(move |items: Vec<u32>| {
        recorder.record(&items);
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok::<_, String>(items.into_iter().map(|item| item * 10).collect::<Vec<_>>())
        }
    });
    (configure(builder).build().expect("valid test settings"), log)
}

/// Lets spawned tasks run without moving paused time forward by more than a tick.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}
