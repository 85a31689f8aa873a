//! aqueduct-gather: gather futures in three policies, in place or spawned, and a task group.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod as_completed;
mod engine;
mod gather;
mod options;
mod race;
mod task_group;

pub use aqueduct_core::{Aggregate, Error};

pub use crate::as_completed::{AsCompleted, as_completed, as_completed_stream};
pub use crate::engine::{InPlace, IntoGatherResult, IterSource, Spawned, StreamSource};
pub use crate::gather::{
    CollectAll, FailFast, Gather, NoHook, Policy, Supervise, Supervised, first_error, gather,
    gather_stream, supervise, try_gather,
};
pub use crate::options::{ConfigError, GatherOptions, GatherOptionsBuilder, PanicPolicy};
pub use crate::race::{Race, race, race_ok};
pub use crate::task_group::{Join, Shutdown, TaskGroup};
