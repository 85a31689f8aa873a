//! The worker side of the process backend: typed entry points, their registry and the serving loop.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::{HELLO, IncomingRequest, Response, WORKER_ENV, frame, frame_length};

/// The typed name of a function that worker processes run: arguments of type `A`, a value of type `R`.
///
/// Declare it once as a `const` shared by the code that registers it ([`Registry::register`]) and the code that
/// calls it ([`ProcessPool::call`](super::ProcessPool::call)), so both sides agree on the types.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::process::Entry;
///
/// const CHECKSUM: Entry<Vec<u8>, u32> = Entry::new("checksum");
/// assert_eq!(CHECKSUM.name(), "checksum");
/// ```
pub struct Entry<A, R> {
    name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

/// The entry points a worker process serves; build it the same way in the parent and in the worker (one function
/// that returns it is the simplest way).
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::process::{Entry, Registry};
///
/// const DOUBLE: Entry<u64, u64> = Entry::new("double");
///
/// fn registry() -> Registry {
///     Registry::new().register(DOUBLE, |value| value * 2)
/// }
/// assert!(registry().contains("double"));
/// ```
#[derive(Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Handler>,
    initializer: Option<Box<dyn Fn() + Send + Sync>>,
}

type Handler = Box<dyn Fn(serde_json::Value) -> Response + Send + Sync>;

/// Serves jobs when the current process was started as a worker by a [`ProcessPool`](super::ProcessPool), and
/// returns at once otherwise.
///
/// Call it first thing in `main` (before anything that prints, parses arguments or starts a runtime). In a worker
/// it runs the registry's initialiser, answers jobs until the pool closes the connection, then exits the process
/// with status 0; it never returns there. In tests, call it from a dedicated `#[test]` and point the pool at that
/// test with [`ProcessPoolBuilder::libtest_worker`](super::ProcessPoolBuilder::libtest_worker).
///
/// # Panics
///
/// Never in the parent. A worker whose standard input is not the pool's socket prints why and exits with status 2.
///
/// # Examples
///
/// ```
/// use aqueduct_cpu_offload::process::{Entry, Registry, serve_if_worker};
///
/// const DOUBLE: Entry<u64, u64> = Entry::new("double");
///
/// fn main() {
///     serve_if_worker(&Registry::new().register(DOUBLE, |value| value * 2));
///     // Only the parent gets here.
/// }
/// ```
pub fn serve_if_worker(registry: &Registry) {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let code = match serve(registry) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("aqueduct-cpu-offload worker {}: {error}", std::process::id());
            2
        }
    };
    std::process::exit(code);
}

/// `true` when the current process is a worker started by a [`ProcessPool`](super::ProcessPool).
///
/// # Examples
///
/// ```
/// assert!(!aqueduct_cpu_offload::process::is_worker());
/// ```
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

fn serve(registry: &Registry) -> std::io::Result<()> {
    let socket = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut stream = UnixStream::from(socket);
    if let Some(initializer) = &registry.initializer {
        initializer();
    }
    stream.write_all(&frame(HELLO.as_bytes())?)?;
    loop {
        let mut prefix = [0_u8; 4];
        match stream.read_exact(&mut prefix) {
            Ok(()) => {}
            // The pool closed the connection: a graceful stop.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        }
        let mut payload = vec![0_u8; frame_length(prefix)?];
        stream.read_exact(&mut payload)?;
        let response = match serde_json::from_slice::<IncomingRequest>(&payload) {
            Ok(request) => registry.handle(&request.entry, request.argument),
            Err(error) => Response::BadArgument(error.to_string()),
        };
        let bytes = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
        stream.write_all(&frame(&bytes)?)?;
    }
}

// ===== impl Entry =====

impl<A, R> Entry<A, R> {
    /// Names an entry point; the name must be unique within a [`Registry`].
    ///
    /// # Examples
    ///
    /// See [`Entry`].
    pub const fn new(name: &'static str) -> Self {
        Self { name, _types: PhantomData }
    }

    /// The entry point's name.
    ///
    /// # Examples
    ///
    /// See [`Entry`].
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, R> Clone for Entry<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Entry<A, R> {}

impl<A, R> fmt::Debug for Entry<A, R> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_tuple("Entry").field(&self.name).finish()
    }
}

// ===== impl Registry =====

impl Registry {
    /// A registry with no entry points.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!aqueduct_cpu_offload::process::Registry::new().contains("anything"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `function` under `entry`'s name (replacing an earlier function of that name).
    ///
    /// A panic in `function` fails only that job, with [`Error::Panicked`](crate::Error::Panicked); the worker
    /// process lives on. A crash (abort, segfault, out of memory) fails only that job too, and the pool starts a
    /// new worker.
    ///
    /// # Examples
    ///
    /// See [`Registry`].
    pub fn register<A, R, F>(mut self, entry: Entry<A, R>, function: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let handler: Handler = Box::new(move |argument| {
            let argument = match serde_json::from_value::<A>(argument) {
                Ok(argument) => argument,
                Err(error) => return Response::BadArgument(error.to_string()),
            };
            match catch_unwind(AssertUnwindSafe(|| function(argument))) {
                Ok(value) => match serde_json::to_value(value) {
                    Ok(value) => Response::Returned(value),
                    Err(error) => Response::BadOutput(error.to_string()),
                },
                Err(payload) => Response::Panicked(panic_message(payload.as_ref())),
            }
        });
        self.handlers.insert(entry.name, handler);
        self
    }

    /// A per-worker initialiser (Python's `initializer`): each worker process runs it once, before its first job.
    ///
    /// # Examples
    ///
    /// ```
    /// let registry = aqueduct_cpu_offload::process::Registry::new().on_worker_start(|| {
    ///     // Load a model, warm a cache, set up logging for this worker.
    /// });
    /// # drop(registry);
    /// ```
    pub fn on_worker_start(mut self, initializer: impl Fn() + Send + Sync + 'static) -> Self {
        self.initializer = Some(Box::new(initializer));
        self
    }

    /// `true` when an entry point of this name is registered.
    ///
    /// # Examples
    ///
    /// See [`Registry`].
    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    fn handle(&self, entry: &str, argument: serde_json::Value) -> Response {
        match self.handlers.get(entry) {
            Some(handler) => handler(argument),
            None => Response::UnknownEntry(entry.to_owned()),
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort_unstable();
        formatter
            .debug_struct("Registry")
            .field("entries", &names)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic payload that is not a string".to_owned()
    }
}
