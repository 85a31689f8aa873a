//! The error `build()` returns when a batch plan or a batcher is configured wrongly.

pub use aqueduct_core::ConfigError;
