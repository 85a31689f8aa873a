//! `with_latency`: delays a future by a fixed time, for tests on paused tokio time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};

/// Sleeps for `latency`, then runs `future` to completion.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aqueduct_testkit::with_latency;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let start = Instant::now();
/// assert_eq!(with_latency(Duration::from_millis(30), async { 5 }).await, 5);
/// assert_eq!(start.elapsed(), Duration::from_millis(30));
/// # }
/// ```
pub fn with_latency<F: Future>(latency: Duration, future: F) -> Latency<F> {
    Latency { sleep: sleep(latency), slept: false, future }
}

pin_project! {
    /// The future returned by [`with_latency`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Latency<F> {
        #[pin]
        sleep: Sleep,
        slept: bool,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Latency<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.slept {
            if this.sleep.poll(context).is_pending() {
                return Poll::Pending;
            }
            *this.slept = true;
        }
        this.future.poll(context)
    }
}
