//! aqueduct-pool: an async connection pool with warm start, honest timeouts and graceful close.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod backend;
mod config;
mod core;
mod expiry;
mod guard;
mod manager;
mod pool;
#[cfg(feature = "postgres")]
pub mod postgres;
mod status;

pub use crate::config::{Backend, MAX_POOL_SIZE, PoolBuilder, PoolConfig};
pub use crate::guard::PooledConnection;
pub use crate::manager::{Manager, Terminator};
pub use crate::pool::Pool;
pub use crate::status::PoolStatus;
pub use aqueduct_core::{Deadline, Elapsed, Error, with_deadline};
