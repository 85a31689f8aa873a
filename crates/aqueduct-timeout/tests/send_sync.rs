//! The public types are `Send` and `Sync` whenever what they hold is, so they cross `tokio::spawn`.

use std::future::Ready;
use std::rc::Rc;

use aqueduct_timeout::{
    DetachOutcome, Elapsed, Error, IdleTimeout, Timeout, TimeoutOr, TimeoutOrDefault,
    TimeoutOrDetach, TimeoutOrElse, TryIdleTimeout, TryTimeout,
};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn futures_and_streams_are_send_and_sync_when_their_contents_are() {
    assert_send_sync::<Timeout<Ready<u8>>>();
    assert_send_sync::<TimeoutOr<Ready<u8>>>();
    assert_send_sync::<TimeoutOrElse<Ready<u8>, fn(Elapsed) -> u8>>();
    assert_send_sync::<TimeoutOrDefault<Ready<u8>>>();
    assert_send_sync::<TimeoutOrDetach<Ready<u8>>>();
    assert_send_sync::<IdleTimeout<futures::stream::Iter<std::vec::IntoIter<u8>>>>();
    assert_send_sync::<DetachOutcome<u8>>();
    assert_send_sync::<Elapsed>();
    assert_send_sync::<Error<std::io::Error>>();
}

#[test]
fn try_timeout_does_not_inherit_the_auto_traits_of_its_error_type() {
    // No `E` is stored, so an `E` that is neither `Send` nor `Sync` does not matter.
    assert_send_sync::<TryTimeout<Ready<Result<u8, ()>>, Rc<u8>>>();
    assert_send_sync::<
        TryIdleTimeout<futures::stream::Iter<std::vec::IntoIter<Result<u8, ()>>>, Rc<u8>>,
    >();
}

#[tokio::test(start_paused = true)]
async fn a_timeout_can_be_spawned() {
    let handle =
        tokio::spawn(aqueduct_timeout::timeout(std::time::Duration::from_secs(1), async { 3 }));
    assert_eq!(handle.await.unwrap(), Ok(3));
}
