//! Panics in user code: the inner future, a fallback or a stream; each propagates to the caller, nothing is swallowed.

use std::time::Duration;

use aqueduct_timeout::{IdleTimeoutExt, TimeoutExt, timeout, timeout_or_else};
use futures::StreamExt;
use tokio::time::sleep;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_inner_future_propagates() {
    let handle = tokio::spawn(timeout(Duration::from_secs(1), async {
        sleep(10 * MS).await;
        panic!("inner failure");
    }));
    let error = handle.await.unwrap_err();
    assert!(error.is_panic());
    let message = error.into_panic().downcast::<&str>().map(|message| *message);
    assert_eq!(message.ok(), Some("inner failure"));
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_fallback_propagates() {
    let handle = tokio::spawn(timeout_or_else(10 * MS, std::future::pending::<u8>(), |_| {
        panic!("fallback failure")
    }));
    assert!(handle.await.unwrap_err().is_panic());
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_stream_propagates() {
    let stream = futures::stream::iter([1, 2])
        .map(|item| if item == 2 { panic!("stream failure") } else { item });
    let handle = tokio::spawn(stream.idle_timeout(Duration::from_secs(1)).collect::<Vec<_>>());
    assert!(handle.await.unwrap_err().is_panic());
}

#[tokio::test(start_paused = true)]
async fn polling_a_timed_out_future_again_panics_with_a_clear_message() {
    let handle = tokio::spawn(async {
        let mut guarded = std::pin::pin!(std::future::pending::<()>().timeout(MS));
        assert!(guarded.as_mut().await.is_err());
        let _ = futures::poll!(guarded.as_mut());
    });
    let message = handle.await.unwrap_err().into_panic().downcast::<&str>().map(|message| *message);
    assert_eq!(message.ok(), Some("`Timeout` polled after it returned `Poll::Ready`"));
}
