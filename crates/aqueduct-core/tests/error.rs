//! Behaviour of `Error<E>`: messages, source chains, helpers, classification and flattening.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use aqueduct_core::{Aggregate, Classify, Elapsed, Error, StopReason, Transience};
use tokio::time::Instant;

fn io_error(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, "connection dropped")
}

#[test]
fn messages_are_lowercase_and_do_not_repeat_the_source() {
    let now = Instant::now();
    let cases: Vec<Error<io::Error>> = vec![
        Error::Elapsed {
            elapsed: Elapsed::new(Some(Duration::from_secs(1)), now, Duration::from_secs(1)),
            last_error: Some(io_error(io::ErrorKind::ConnectionRefused)),
        },
        Error::RateLimited { retry_after: Duration::from_millis(3) },
        Error::Full { capacity: 10 },
        Error::Closed { reconnecting: false },
        Error::Closed { reconnecting: true },
        Error::Cancelled,
        Error::Panicked { index: Some(1), message: "boom".into() },
        Error::Exhausted {
            attempts: 3,
            elapsed: Duration::from_millis(70),
            reason: StopReason::Attempts,
            last_error: Some(Box::new(Error::Operation(io_error(io::ErrorKind::ConnectionReset)))),
        },
        Error::Aggregate(Aggregate::new(vec![(
            4,
            Error::Operation(io_error(io::ErrorKind::Other)),
        )])),
        Error::ContractViolation { message: "expected 3 outputs, got 2".into() },
    ];
    for error in &cases {
        let message = error.to_string();
        let first = message.chars().next().expect("a message is never empty");
        assert!(first.is_lowercase() || first.is_ascii_digit(), "{message:?} starts in lowercase");
        assert!(!message.ends_with('.'), "{message:?} has no trailing punctuation");
        assert!(!message.contains("connection dropped"), "{message:?} repeats its source");
    }
}

#[test]
fn source_chains_to_the_last_error() {
    let error: Error<io::Error> = Error::Exhausted {
        attempts: 2,
        elapsed: Duration::from_millis(5),
        reason: StopReason::Deadline,
        last_error: Some(Box::new(Error::Operation(io_error(io::ErrorKind::TimedOut)))),
    };
    let source = error.source().expect("exhausted chains to its last error");
    assert_eq!(source.to_string(), "connection dropped");
    assert_eq!(error.to_string(), "gave up after 2 attempts in 5ms: deadline reached");

    let aggregate: Error<io::Error> = Error::Aggregate(Aggregate::new(vec![
        (2, Error::Cancelled),
        (0, Error::Full { capacity: 1 }),
    ]));
    assert_eq!(aggregate.source().map(ToString::to_string), Some("cancelled".to_owned()));
    assert_eq!(aggregate.to_string(), "2 operations failed, first at index 2");
}

#[test]
fn operation_is_transparent() {
    let inner = io::Error::other("refused");
    let error: Error<io::Error> = inner.into();
    assert_eq!(error.to_string(), "refused");
    assert!(error.source().is_none());
    assert_eq!(error.operation().map(io::Error::kind), Some(io::ErrorKind::Other));
}

#[test]
fn helpers_find_the_operation_error_through_exhaustion() {
    let error: Error<&str> = Error::Exhausted {
        attempts: 5,
        elapsed: Duration::ZERO,
        reason: StopReason::Attempts,
        last_error: Some(Box::new(Error::Operation("last"))),
    };
    assert_eq!(error.operation(), Some(&"last"));
    let mapped = error.map_operation(str::len);
    assert_eq!(mapped.into_operation(), Some(4));
}

#[test]
fn map_operation_keeps_other_variants() {
    let error: Error<u8> = Error::Aggregate(Aggregate::new(vec![
        (0, Error::Operation(1)),
        (1, Error::RateLimited { retry_after: Duration::from_secs(1) }),
    ]));
    let mapped: Error<String> = error.map_operation(|code| code.to_string());
    let Error::Aggregate(aggregate) = mapped else { panic!("still an aggregate") };
    let errors = aggregate.into_vec();
    assert_eq!(errors[0].1.operation().map(String::as_str), Some("1"));
    assert_eq!(errors[1].1.retry_after(), Some(Duration::from_secs(1)));
}

#[test]
fn classification_follows_the_documented_table() {
    let permanent_operation = |_: &&str| Transience::Permanent;
    let transient: Vec<Error<&str>> = vec![
        Error::elapsed(Elapsed::new(None, Instant::now(), Duration::ZERO)),
        Error::RateLimited { retry_after: Duration::ZERO },
        Error::Full { capacity: 1 },
        Error::Closed { reconnecting: true },
        Error::Aggregate(Aggregate::new(vec![(0, Error::Full { capacity: 1 })])),
    ];
    for error in &transient {
        assert_eq!(error.transience_with(permanent_operation), Transience::Transient, "{error}");
    }
    let permanent: Vec<Error<&str>> = vec![
        Error::Operation("bad"),
        Error::Closed { reconnecting: false },
        Error::Cancelled,
        Error::Panicked { index: None, message: String::new() },
        Error::ContractViolation { message: "wrong".into() },
        Error::Aggregate(Aggregate::new(vec![
            (0, Error::Full { capacity: 1 }),
            (1, Error::Cancelled),
        ])),
        Error::Aggregate(Aggregate::new(Vec::new())),
    ];
    for error in &permanent {
        assert_eq!(error.transience_with(permanent_operation), Transience::Permanent, "{error}");
    }
}

#[test]
fn classify_asks_the_operation_error() {
    let reset: Error<io::Error> = io_error(io::ErrorKind::ConnectionReset).into();
    assert_eq!(reset.transience(), Transience::Transient);
    let denied: Error<io::Error> = io_error(io::ErrorKind::PermissionDenied).into();
    assert_eq!(denied.transience(), Transience::Permanent);
    let limited: Error<io::Error> = Error::RateLimited { retry_after: Duration::from_millis(9) };
    assert_eq!(Classify::retry_after(&limited), Some(Duration::from_millis(9)));
}

#[test]
fn panics_keep_their_message() {
    let payload = std::panic::catch_unwind(|| panic!("formatted {}", 42)).expect_err("it panics");
    let error: Error<&str> = Error::from_panic(None, payload);
    assert_eq!(error.to_string(), "task panicked: formatted 42");
    let payload = std::panic::catch_unwind(|| std::panic::panic_any(17_u8)).expect_err("it panics");
    let error: Error<&str> = Error::from_panic(Some(0), payload);
    assert!(error.is_panicked());
    assert_eq!(error.to_string(), "task 0 panicked: non-string panic payload");
}

#[test]
fn elapsed_converts_to_io_timed_out() {
    let elapsed = Elapsed::new(None, Instant::now(), Duration::from_millis(2)).with_ambient(true);
    assert_eq!(elapsed.to_string(), "deadline elapsed after 2ms (ambient deadline)");
    let io_error = io::Error::from(elapsed);
    assert_eq!(io_error.kind(), io::ErrorKind::TimedOut);
}

/// Two stand-in combinators shaped like every aqueduct combinator: they accept `X: Into<Error<E>>`.
async fn outer_layer<T, E, X: Into<Error<E>>>(
    operation: impl Future<Output = Result<T, X>>,
) -> Result<T, Error<E>> {
    operation.await.map_err(Into::into)
}

async fn inner_layer<T, E, X: Into<Error<E>>>(
    operation: impl Future<Output = Result<T, X>>,
) -> Result<T, Error<E>> {
    match operation.await {
        Ok(value) => Ok(value),
        Err(error) => Err(error.into()),
    }
}

#[tokio::test]
async fn stacked_combinators_do_not_nest_errors() {
    let failing = async { Err::<u8, io::Error>(io::Error::other("refused")) };
    let result: Result<u8, Error<io::Error>> = outer_layer(inner_layer(failing)).await;
    let error = result.expect_err("the operation failed");
    // The type annotation above would not compile if nesting happened; check the value too.
    assert_eq!(error.into_operation().map(|error| error.to_string()), Some("refused".to_owned()));

    let elapsed = async {
        Err::<u8, Error<io::Error>>(Error::elapsed(Elapsed::new(
            None,
            Instant::now(),
            Duration::ZERO,
        )))
    };
    let result: Result<u8, Error<io::Error>> = outer_layer(inner_layer(outer_layer(elapsed))).await;
    assert!(result.expect_err("it elapsed").is_elapsed());
}

#[test]
fn public_types_are_send_sync_and_static() {
    fn assert_error<T: StdError + Send + Sync + 'static>() {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_error::<Error<io::Error>>();
    assert_error::<Elapsed>();
    assert_send_sync::<Aggregate<io::Error>>();
    assert_send_sync::<aqueduct_core::Deadline>();
    assert_send_sync::<aqueduct_core::WithDeadline<std::future::Ready<()>>>();
}
