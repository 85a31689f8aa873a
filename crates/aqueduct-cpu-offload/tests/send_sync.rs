//! Every public type that crosses tasks or threads is `Send` (and `Sync` where shared), checked at compile time.

use aqueduct_cpu_offload::{
    Backend, CancelToken, ConfigError, CpuPool, CpuPoolBuilder, JobHandle, Run, Status, Submit,
};

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send::<CpuPool>();
    assert_sync::<CpuPool>();
    assert_send::<CpuPoolBuilder>();
    assert_send::<CancelToken>();
    assert_sync::<CancelToken>();
    assert_send::<Status>();
    assert_sync::<Status>();
    assert_send::<Backend>();
    assert_sync::<ConfigError>();
}

#[cfg(unix)]
#[test]
fn process_types_are_send_and_sync() {
    use aqueduct_cpu_offload::process::{
        Entry, ProcessPool, ProcessPoolBuilder, ProcessStatus, Registry,
    };
    assert_send::<ProcessPool>();
    assert_sync::<ProcessPool>();
    assert_send::<ProcessPoolBuilder>();
    assert_send::<ProcessStatus>();
    assert_send::<Registry>();
    assert_sync::<Registry>();
    assert_send::<Entry<Vec<u8>, u64>>();
    assert_sync::<Entry<Vec<u8>, u64>>();
}

#[test]
fn futures_and_handles_are_send_and_unpin() {
    type Job = fn() -> u64;
    assert_send::<JobHandle<u64, std::io::Error>>();
    assert_unpin::<JobHandle<u64, std::io::Error>>();
    assert_send::<Submit<Job, std::io::Error>>();
    assert_unpin::<Submit<Job, std::io::Error>>();
    assert_send::<Run<Job, u64, std::io::Error>>();
    assert_unpin::<Run<Job, u64, std::io::Error>>();
}

#[cfg(unix)]
#[test]
fn the_process_pool_call_future_is_send() {
    use aqueduct_cpu_offload::process::{Entry, ProcessPool};
    fn assert_send_future<F: std::future::Future + Send>(_: F) {}
    const DOUBLE: Entry<u64, u64> = Entry::new("double");
    // Only built, never polled: it proves the future can be spawned on a multi-threaded runtime.
    let builder = ProcessPool::builder();
    assert_send_future(builder.build());
    fn call_is_send(pool: &ProcessPool) {
        assert_send_future(pool.call::<u64, u64, std::io::Error>(&DOUBLE, &1));
    }
    let _ = call_is_send;
}
