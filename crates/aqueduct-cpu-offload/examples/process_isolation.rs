//! Runs a crashy job in worker processes: the crash fails only its own job, and a hung job is killed on timeout.
//!
//! The worker processes are this same binary: `serve_if_worker` at the top of `main` turns a process started by the
//! pool into a worker and returns at once in the parent.

use std::time::Duration;

use aqueduct_cpu_offload::Error;
use aqueduct_cpu_offload::process::{Entry, ProcessPool, Registry, serve_if_worker};

/// Parses a number; aborts the whole process on the input "crash", like a buggy native library would.
const PARSE: Entry<String, u64> = Entry::new("parse");
/// Never returns.
const HANG: Entry<(), ()> = Entry::new("hang");

fn registry() -> Registry {
    Registry::new()
        .register(PARSE, |text: String| {
            if text == "crash" {
                std::process::abort();
            }
            text.parse::<u64>().unwrap_or(0)
        })
        .register(HANG, |()| {
            loop {
                std::thread::park();
            }
        })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    serve_if_worker(&registry());

    let pool =
        ProcessPool::builder().workers(2).job_timeout(Duration::from_secs(2)).build().await?;
    for input in ["1", "crash", "3"] {
        let parsed: Result<u64, Error<std::convert::Infallible>> =
            pool.call(&PARSE, &input.to_owned()).await;
        match parsed {
            Ok(value) => eprintln!("{input:>6} -> {value}"),
            Err(error) => eprintln!("{input:>6} -> failed alone: {error}"),
        }
    }
    let hung: Result<(), Error<std::convert::Infallible>> =
        pool.call_with_timeout(&HANG, &(), Duration::from_millis(300)).await;
    eprintln!(
        "  hang -> {}",
        hung.map_or_else(|error| error.to_string(), |()| "returned".to_owned())
    );

    let status = pool.status();
    eprintln!(
        "workers started {}, crashed {}, killed {}",
        status.started, status.crashed, status.killed
    );
    pool.shutdown().await;
    Ok(())
}
