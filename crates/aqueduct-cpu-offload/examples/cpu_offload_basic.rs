//! Offloads CPU-heavy hashing to a `CpuPool` while a timer keeps ticking on the runtime.

use std::time::Duration;

use aqueduct_cpu_offload::{CpuPool, Error};

/// A deliberately slow hash (FNV-1a, repeated) standing in for real CPU work.
fn slow_hash(seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for round in 0..200_000_u64 {
        hash ^= round;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = CpuPool::builder().build()?;
    eprintln!("pool of {} threads (available_parallelism, cgroup-aware)", pool.threads());

    // A ticker on the runtime: it stays on time because the hashing runs on the pool's threads.
    let ticker = tokio::spawn(async {
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        let mut ticks = 0_u32;
        while ticks < 50 {
            interval.tick().await;
            ticks += 1;
        }
        ticks
    });

    let hashes: Result<Vec<u64>, Error<std::convert::Infallible>> =
        pool.map(0..64_u64, 8, slow_hash).await;
    let hashes = hashes?;
    eprintln!("hashed {} seeds; first = {:#x}", hashes.len(), hashes[0]);
    eprintln!("the runtime ticked {} times meanwhile", ticker.await?);

    pool.shutdown().await;
    Ok(())
}
