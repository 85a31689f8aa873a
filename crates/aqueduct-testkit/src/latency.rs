//! `with_latency`: delays a future by a fixed time, for tests on paused tokio time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};

/// Sleeps for `latency`, counted from the first poll, then runs `future` to completion.
///
/// The clock starts when the returned future is first polled, as a real call's latency would, not when
/// it is built: futures built up front and started later (a queue, a bounded `buffered`) each wait the
/// full `latency`. Building it needs no runtime.
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
    Latency { latency, sleep: None, slept: false, future }
}

pin_project! {
    /// The future returned by [`with_latency`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Latency<F> {
        latency: Duration,
        // Created at the first poll, so that the latency counts from there.
        #[pin]
        sleep: Option<Sleep>,
        slept: bool,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Latency<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if !*this.slept {
            if this.sleep.is_none() {
                this.sleep.set(Some(sleep(*this.latency)));
            }
            let sleep = this.sleep.as_mut().as_pin_mut().expect("the sleep was just created");
            if sleep.poll(context).is_pending() {
                return Poll::Pending;
            }
            *this.slept = true;
            this.sleep.set(None);
        }
        this.future.poll(context)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, sleep};

    use super::with_latency;

    #[tokio::test(start_paused = true)]
    async fn the_latency_counts_from_the_first_poll_not_from_construction() {
        let delayed = with_latency(Duration::from_millis(250), async { "done" });
        sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        assert_eq!(delayed.await, "done");
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn building_it_needs_no_runtime() {
        let delayed = with_latency(Duration::from_millis(5), async { 1 });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build();
        assert_eq!(runtime.expect("a runtime builds").block_on(delayed), 1);
    }
}
