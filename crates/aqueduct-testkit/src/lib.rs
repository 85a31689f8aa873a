//! aqueduct-testkit: test doubles shared by the tests of every aqueduct crate.
//!
//! - [`Flaky`]: an operation that fails a set number of times, then succeeds.
//! - [`with_latency`]: delays a future by a fixed time from its first poll (use it on paused tokio time).
//! - [`DropCounter`] and [`DropGuard`]: prove that futures, items and resources were dropped.
//! - [`CallCounter`]: counts calls and tracks how many are in flight at once.
//! - [`postgres`]: finds the PostgreSQL that `cargo xtask test` provides.
//! - [`FakeDatabase`]: an in-process database server for pool tests (latency, refusal, restarts).
//! - [`TcpProxy`]: forwards TCP to a real server and can cut every connection, to simulate a restart.
#![forbid(unsafe_code)]

mod counters;
mod fake_database;
mod flaky;
mod latency;
pub mod postgres;
mod tcp_proxy;

pub use crate::counters::{CallCounter, DropCounter, DropGuard, InFlight};
pub use crate::fake_database::{FakeConnection, FakeDatabase, FakeError};
pub use crate::flaky::{Flaky, FlakyError};
pub use crate::latency::{Latency, with_latency};
pub use crate::tcp_proxy::TcpProxy;
