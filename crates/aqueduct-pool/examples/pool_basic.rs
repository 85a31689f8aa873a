//! The seed's `ConnectionPool(dsn, min_size=5, max_size=20)` with an in-process manager: acquire,
//! use, return, status, close.

use std::time::Duration;

use aqueduct_pool::{Error, Manager, Pool};

/// A manager whose "connections" are numbered sessions; swap in `postgres::PgManager` for a database.
#[derive(Debug, Default)]
struct Sessions {
    opened: std::sync::atomic::AtomicU32,
}

impl Manager for Sessions {
    type Connection = u32;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<u32, std::io::Error> {
        Ok(self.opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error<std::io::Error>> {
    let pool = Pool::builder(Sessions::default()).min_size(5).max_size(20).build().await?;
    eprintln!("warm: {:?}", pool.status());

    let mut tasks = Vec::new();
    for job in 0..50 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let session = pool.acquire().await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, Error<std::io::Error>>((job, *session))
        }));
    }
    for task in tasks {
        let (job, session) = task.await.expect("no task panics")?;
        eprintln!("job {job} ran on session {session}");
    }

    let status = pool.status();
    eprintln!("after the burst: {status:?}");
    assert!(status.size <= 20);
    let terminated = pool.close(Duration::from_secs(5)).await;
    eprintln!("closed, {terminated} terminated");
    Ok(())
}
