//! The Python producer/consumer over `asyncio.Queue(maxsize=100)` with N workers, as a two-stage pipeline.

use std::time::Duration;

use aqueduct_pipeline::{Error, PipelineBuilder, StageOptions};

#[derive(Debug)]
struct ParseError(String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "not a number: {:?}", self.0)
    }
}

impl std::error::Error for ParseError {}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error<ParseError>> {
    let lines = (0..1_000)
        .map(|number| if number % 250 == 0 { format!("bad{number}") } else { number.to_string() });
    let total: u64 = PipelineBuilder::from_items(lines)
        // Stage 0: parse, skipping (and logging) what does not parse.
        .stage_with(
            StageOptions::new(4)
                .skip(|failure| eprintln!("skipped item {}: {}", failure.index, failure.error)),
            |line: String| async move { line.parse::<u64>().map_err(|_| ParseError(line)) },
        )
        // Stage 1: some slow I/O per item.
        .stage(8, |number: u64| async move {
            tokio::time::sleep(Duration::from_micros(100)).await;
            Ok::<_, ParseError>(number * 2)
        })
        .build()
        .expect("a valid configuration")
        .collect()
        .await?
        .into_iter()
        .sum();
    eprintln!("total of the doubled numbers: {total}");
    Ok(())
}
