//! Configuration: invalid options are clear errors at build time; public types are Send and Sync.

use std::future::Ready;

use aqueduct_gather::{
    AsCompleted, ConfigError, Error, Gather, GatherOptions, InPlace, IterSource, Join, PanicPolicy,
    Race, Shutdown, Spawned, Supervised, TaskGroup,
};

#[test]
fn a_zero_limit_is_rejected_with_a_message_saying_what_to_change() {
    let error: ConfigError = GatherOptions::builder().limit(0).build().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("at least 1"), "{message}");
    assert!(message.contains("unlimited()"), "{message}");
}

#[test]
fn defaults_are_unlimited_and_capture_panics() {
    let options = GatherOptions::builder().build().unwrap();
    assert_eq!(options.limit(), None);
    assert_eq!(options.panics(), PanicPolicy::Capture);
    let options = GatherOptions::builder().limit(3).unlimited().build().unwrap();
    assert_eq!(options.limit(), None);
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    type Source = std::vec::IntoIter<Ready<Result<u8, ()>>>;
    assert_send_sync::<GatherOptions>();
    assert_send_sync::<ConfigError>();
    assert_send_sync::<PanicPolicy>();
    assert_send_sync::<Supervised<u8, std::io::Error>>();
    assert_send_sync::<TaskGroup<u8, std::io::Error>>();
    assert_send::<Join<u8, std::io::Error>>();
    assert_send_sync::<Shutdown<u8, std::io::Error>>();
    assert_send::<Gather<InPlace<IterSource<Source>>, aqueduct_gather::CollectAll<u8, ()>>>();
    assert_send::<Gather<Spawned<IterSource<Source>>, aqueduct_gather::FailFast<u8, ()>>>();
    assert_send::<AsCompleted<InPlace<IterSource<Source>>, u8, ()>>();
    assert_send::<Race<Spawned<IterSource<Source>>, u8, ()>>();
    assert_send_sync::<Error<std::io::Error>>();
}
