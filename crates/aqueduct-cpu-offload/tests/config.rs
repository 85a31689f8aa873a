//! Bad configuration is refused at build time with a message saying what to change; good configuration is kept.

#[cfg(unix)]
use aqueduct_cpu_offload::process::ProcessPool;
use aqueduct_cpu_offload::{Backend, CpuPool, DEFAULT_CAPACITY_PER_THREAD, default_threads};

#[test]
fn zero_threads_is_refused_with_a_hint() {
    let error = CpuPool::builder().threads(0).build().unwrap_err();
    assert!(error.message().contains("threads must be at least 1"), "{error}");
    assert!(error.message().contains("available_parallelism"), "{error}");
}

#[test]
fn zero_capacity_is_refused() {
    let error = CpuPool::builder().capacity(0).build().unwrap_err();
    assert!(error.message().contains("capacity must be at least 1"), "{error}");
}

#[test]
fn capacity_beyond_u32_is_refused() {
    let error = CpuPool::builder().capacity(usize::MAX).build().unwrap_err();
    assert!(error.message().contains("capacity must be at most"), "{error}");
}

#[test]
fn spawn_blocking_without_a_runtime_is_refused() {
    let error = CpuPool::builder().backend(Backend::SpawnBlocking).build().unwrap_err();
    assert!(error.message().contains("needs a tokio runtime"), "{error}");
}

#[test]
fn defaults_follow_available_parallelism() {
    let pool = CpuPool::builder().build().unwrap();
    assert_eq!(pool.threads(), default_threads());
    assert_eq!(pool.threads(), std::thread::available_parallelism().unwrap().get());
    assert_eq!(pool.capacity(), default_threads() * DEFAULT_CAPACITY_PER_THREAD);
    assert_eq!(pool.backend(), Backend::Rayon);
}

#[test]
fn explicit_settings_are_kept() {
    let pool = CpuPool::builder().threads(3).capacity(7).build().unwrap();
    let status = pool.status();
    assert_eq!(
        (status.threads, status.capacity, status.in_flight, status.closed),
        (3, 7, 0, false)
    );
}

#[tokio::test]
async fn spawn_blocking_inside_a_runtime_builds() {
    let pool = CpuPool::builder().backend(Backend::SpawnBlocking).threads(2).build().unwrap();
    assert_eq!(pool.backend(), Backend::SpawnBlocking);
    assert_eq!(pool.threads(), 2);
}

#[cfg(unix)]
#[tokio::test]
async fn process_pool_refuses_zero_workers_and_zero_capacity() {
    let error = ProcessPool::builder().workers(0).build().await.unwrap_err();
    assert!(error.message().contains("workers must be at least 1"), "{error}");
    let error = ProcessPool::builder().capacity(0).build().await.unwrap_err();
    assert!(error.message().contains("capacity must be at least 1"), "{error}");
    let error =
        ProcessPool::builder().start_timeout(std::time::Duration::ZERO).build().await.unwrap_err();
    assert!(error.message().contains("start_timeout"), "{error}");
}

#[cfg(unix)]
#[tokio::test]
async fn process_pool_with_a_program_that_does_not_serve_fails_at_build() {
    // `true` exits at once without serving: the pool says how to fix it instead of hanging.
    let error = ProcessPool::builder().workers(1).program("true").build().await.unwrap_err();
    assert!(error.message().contains("serve_if_worker"), "{error}");
}

#[cfg(unix)]
#[tokio::test]
async fn process_pool_with_a_missing_program_fails_at_build() {
    let error = ProcessPool::builder()
        .workers(1)
        .program("/nonexistent/aqueduct-worker")
        .build()
        .await
        .unwrap_err();
    assert!(error.message().contains("could not start worker program"), "{error}");
}

#[test]
fn thread_niceness_out_of_range_is_refused() {
    for bad in [-1, 20] {
        let error = CpuPool::builder().thread_niceness(bad).build().unwrap_err();
        assert!(error.message().contains("thread_niceness must be between 0"), "{error}");
    }
}

#[tokio::test]
async fn thread_niceness_on_shared_blocking_threads_is_refused() {
    let error =
        CpuPool::builder().backend(Backend::SpawnBlocking).thread_niceness(5).build().unwrap_err();
    assert!(error.message().contains("needs the rayon backend"), "{error}");
}

/// The nice value of the calling thread, from `/proc/thread-self/stat` (field 19).
#[cfg(target_os = "linux")]
fn current_thread_niceness() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // Fields after the name start at field 3 (state); nice is field 19.
    after_name.split_whitespace().nth(19 - 3).unwrap().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn thread_niceness_lowers_the_priority_of_pool_threads_only() {
    let before = current_thread_niceness();
    let pool = CpuPool::builder().threads(1).thread_niceness(7).build().unwrap();
    let inside: Result<i32, aqueduct_cpu_offload::Error<std::io::Error>> =
        pool.run(current_thread_niceness).await;
    assert_eq!(inside.unwrap(), (before + 7).min(19));
    assert_eq!(current_thread_niceness(), before, "the caller's thread is unchanged");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn pool_threads_run_at_the_default_lowered_priority_unless_told_otherwise() {
    let before = current_thread_niceness();
    let default = CpuPool::builder().threads(1).build().unwrap();
    let inside: Result<i32, aqueduct_cpu_offload::Error<std::io::Error>> =
        default.run(current_thread_niceness).await;
    assert_eq!(inside.unwrap(), (before + aqueduct_cpu_offload::DEFAULT_THREAD_NICENESS).min(19));
    let normal = CpuPool::builder().threads(1).thread_niceness(0).build().unwrap();
    let inside: Result<i32, aqueduct_cpu_offload::Error<std::io::Error>> =
        normal.run(current_thread_niceness).await;
    assert_eq!(inside.unwrap(), before, "thread_niceness(0) keeps the caller's priority");
}

#[tokio::test]
async fn the_default_niceness_does_not_apply_to_shared_blocking_threads() {
    let pool = CpuPool::builder().backend(Backend::SpawnBlocking).build();
    assert!(pool.is_ok(), "no niceness set means none for the blocking backend: {:?}", pool.err());
}

#[cfg(unix)]
#[tokio::test]
async fn process_pool_refuses_zero_jobs_per_worker() {
    let error = ProcessPool::builder().max_jobs_per_worker(0).build().await.unwrap_err();
    assert!(error.message().contains("max_jobs_per_worker must be at least 1"), "{error}");
}
