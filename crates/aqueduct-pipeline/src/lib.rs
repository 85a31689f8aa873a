//! aqueduct-pipeline: typed multi-stage async pipelines over bounded MPMC queues, drained by closing.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod builder;
mod config;
mod control;
mod input;
mod metrics;
mod queue;
mod running;
mod source;
mod worker;

pub use aqueduct_core::{Error, StopReason};

pub use crate::builder::{Pipeline, PipelineBuilder, process};
pub use crate::config::{ConfigError, DEFAULT_CAPACITY, DeadLetter, Failure, StageOptions};
pub use crate::control::PipelineHandle;
pub use crate::input::{Input, InputClosed, InputPermit};
pub use crate::metrics::{Metrics, StageMetrics, WorkerMetrics};
pub use crate::running::Running;
