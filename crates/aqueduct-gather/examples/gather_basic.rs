//! Basic use of aqueduct-gather: collect-all, fail-fast, a bounded spawned gather and a task group.

use std::time::Duration;

use aqueduct_gather::{Error, GatherOptions, TaskGroup, first_error, gather, try_gather};

/// A stand-in for a network call: fails for odd ids above 6.
async fn fetch(id: u32) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(u64::from(10 + id % 5))).await;
    if id > 6 && id % 2 == 1 {
        Err(format!("item {id} not found"))
    } else {
        Ok(format!("item {id}"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Collect-all: every result, in input order.
    let all: Vec<Result<String, Error<String>>> = gather((0..10).map(fetch)).await;
    let failed = all.iter().filter(|result| result.is_err()).count();
    eprintln!("collect-all: {} results, {failed} failed", all.len());

    // Fail-fast: the first failure in time cancels the rest.
    let fast: Result<Vec<String>, Error<String>> = try_gather((0..10).map(fetch)).await;
    if let Err(error) = fast {
        eprintln!("fail-fast: {}", first_error(error));
    }

    // Spawned, at most 3 tasks at a time, results still in input order.
    let options = GatherOptions::builder().limit(3).build()?;
    let bounded: Vec<Result<String, Error<String>>> =
        gather((0..6).map(fetch)).with_options(options).spawned().await;
    eprintln!("bounded spawned: first is {:?}", bounded.first());

    // A task group: spawn as you go, join at the end.
    let mut group: TaskGroup<String, String> = TaskGroup::new();
    for id in [1, 2, 4] {
        group.spawn(fetch(id));
    }
    eprintln!("task group: {:?}", group.join().await);
    Ok(())
}
