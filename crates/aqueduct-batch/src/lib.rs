//! aqueduct-batch: ordered chunked batches with bounded concurrency, and DataLoader-style auto-batching.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod batcher;
mod config;
mod keyed;
mod metrics;
mod outputs;
mod static_batch;

pub use aqueduct_core::Error;

pub use crate::batcher::{Batcher, BatcherBuilder, Flush, Submit, WhenFull};
pub use crate::config::ConfigError;
pub use crate::keyed::{KeyedBatcher, KeyedBatcherBuilder};
pub use crate::metrics::BatcherMetrics;
pub use crate::outputs::{BatchOutputs, OkResults, PerItem, PerItemResults};
pub use crate::static_batch::{Batch, BatchBuilder, OnFailure, batch};
