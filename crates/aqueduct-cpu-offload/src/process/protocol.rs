//! The wire protocol between a process pool and its workers: length-prefixed JSON frames over a Unix socket.
//!
//! Each frame is a little-endian `u32` byte count followed by that many bytes of JSON. The socket is the worker's
//! standard input, so nothing the worker prints (libtest's own output included) can corrupt the channel.

use serde::{Deserialize, Serialize};

/// The environment variable that turns a process started by a [`ProcessPool`](super::ProcessPool) into a worker.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::process::{WORKER_ENV, is_worker};
///
/// assert_eq!(WORKER_ENV, "AQUEDUCT_CPU_OFFLOAD_WORKER");
/// assert_eq!(is_worker(), std::env::var_os(WORKER_ENV).is_some());
/// ```
pub const WORKER_ENV: &str = "AQUEDUCT_CPU_OFFLOAD_WORKER";

/// The largest frame either side accepts (256 MiB); a larger one is a protocol error.
pub(crate) const MAX_FRAME: usize = 256 * 1024 * 1024;

/// The first frame a worker sends, so the pool knows the program really serves jobs.
pub(crate) const HELLO: &str = "aqueduct-cpu-offload worker v1";

/// A job sent to a worker.
#[derive(Serialize)]
pub(crate) struct Request<'a, A: ?Sized> {
    pub(crate) entry: &'a str,
    pub(crate) argument: &'a A,
}

/// A job as a worker reads it.
#[derive(Deserialize)]
pub(crate) struct IncomingRequest {
    pub(crate) entry: String,
    pub(crate) argument: serde_json::Value,
}

/// A worker's answer to one job.
#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    /// The entry point returned this value.
    Returned(serde_json::Value),
    /// The entry point panicked with this message; the worker lives on.
    Panicked(String),
    /// The worker has no entry point of this name.
    UnknownEntry(String),
    /// The argument did not deserialise into the entry point's argument type.
    BadArgument(String),
    /// The entry point's value could not be serialised.
    BadOutput(String),
}

/// Prefixes `payload` with its length.
pub(crate) fn frame(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|&length| length as usize <= MAX_FRAME)
        .ok_or_else(|| {
        std::io::Error::other(format!("a frame of {} bytes exceeds {MAX_FRAME}", payload.len()))
    })?;
    let mut bytes = Vec::with_capacity(4 + payload.len());
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// Checks a received length prefix.
pub(crate) fn frame_length(prefix: [u8; 4]) -> std::io::Result<usize> {
    let length = u32::from_le_bytes(prefix) as usize;
    if length > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a frame of {length} bytes exceeds {MAX_FRAME}"
        )));
    }
    Ok(length)
}
