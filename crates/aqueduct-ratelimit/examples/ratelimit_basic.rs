//! The basic example: a combined concurrency and rate limit in front of simulated calls, with the timing shown.

use std::time::Duration;

use aqueduct_ratelimit::{Error, Limiter, Rate};
use tokio::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error<std::io::Error>> {
    // At most 2 calls in flight, at most 20 started per second, 5 at once from idle.
    let limiter =
        Limiter::builder().max_concurrent(2).rate(Rate::per_second(20)).burst(5).build().unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for call in 0..10 {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            let result: Result<Duration, Error<std::io::Error>> = limiter
                .run(async {
                    let started = start.elapsed();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok::<_, std::io::Error>(started)
                })
                .await;
            (call, result)
        }));
    }
    for task in tasks {
        let (call, started) = task.await.expect("the task does not panic");
        eprintln!("call {call} started after {:?}", started?);
    }
    match limiter.try_acquire::<std::io::Error>() {
        Ok(_permit) => eprintln!("a token was left"),
        Err(error) => eprintln!("refused: {error}"),
    }
    Ok(())
}
