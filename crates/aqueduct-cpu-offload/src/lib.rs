//! aqueduct-cpu-offload: a bounded CPU pool whose jobs are awaited, keeping the async runtime responsive.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod blocking;
mod config;
mod global;
mod job;
mod pool;
#[cfg(unix)]
pub mod process;

pub use aqueduct_core::{Deadline, Elapsed, Error};

pub use crate::config::{Backend, ConfigError, default_threads};
pub use crate::global::run;
pub use crate::job::{CancelToken, JobHandle};
pub use crate::pool::{
    CpuPool, CpuPoolBuilder, DEFAULT_CAPACITY_PER_THREAD, DEFAULT_THREAD_NICENESS, Run, Status,
    Submit,
};
