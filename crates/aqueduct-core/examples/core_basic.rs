//! Shows the error vocabulary and the ambient deadline of aqueduct-core in one small program.

use std::time::Duration;

use aqueduct_core::{Classify, Error, remaining, with_deadline};
use tokio::time::Instant;

async fn fetch(attempt: u32) -> Result<&'static str, Error<std::io::Error>> {
    if attempt == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
    }
    Ok("payload")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let deadline = Instant::now() + Duration::from_millis(500);
    let outcome = with_deadline(deadline, async {
        let error = fetch(0).await.expect_err("the first attempt fails");
        eprintln!("first attempt: {error} (transient: {})", error.transience().is_transient());
        eprintln!("time left: {:?}", remaining());
        fetch(1).await
    })
    .await;
    eprintln!("outcome: {outcome:?}");
}
