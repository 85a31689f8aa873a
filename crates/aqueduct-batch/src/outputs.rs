//! What a batch function returns, and how its outcome fans out to the items of the batch.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use aqueduct_core::Error;
use futures::FutureExt as _;

/// The outputs of one batch call, one per input item, in input order.
///
/// Two shapes implement it:
/// - `Vec<O>`: every item succeeded with its output;
/// - [`PerItem`]`(Vec<Result<O, Y>>)`: each item succeeded or failed on its own; a failed item receives
///   its error (converted with `Into<Error<E>>`), the others their outputs.
///
/// A whole-batch failure is the `Err` of the batch function's `Result`, not a shape of this trait: it
/// reaches every item of the batch.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{BatchOutputs, Error, PerItem};
///
/// let outputs = PerItem(vec![Ok(1), Err("bad")]);
/// assert_eq!(BatchOutputs::<&str>::len(&outputs), 2);
/// let results: Vec<Result<i32, Error<&str>>> = outputs.into_results().collect();
/// assert!(results[1].as_ref().is_err_and(|error| error.operation() == Some(&"bad")));
/// ```
pub trait BatchOutputs<E> {
    /// The output of one item.
    type Output;
    /// The per-item results, in input order.
    type Results: Iterator<Item = Result<Self::Output, Error<E>>>;

    /// How many outputs the batch function returned; it must equal the number of inputs.
    fn len(&self) -> usize;

    /// Returns `true` when the batch function returned no output at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Turns the outputs into per-item results, in input order.
    fn into_results(self) -> Self::Results;
}

/// Per-item outcomes of a batch call: each item succeeded or failed on its own.
///
/// Return it from a batch function when some items can fail while the others succeed (a bulk insert
/// reporting one constraint violation, a bulk lookup with a missing key).
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{batch, Error, PerItem};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let results: Vec<Result<u32, Error<String>>> = batch(1..=4u32, 2, 1, |ids: Vec<u32>| async move {
///     Ok::<_, String>(PerItem(
///         ids.into_iter().map(|id| if id == 3 { Err(format!("no row {id}")) } else { Ok(id * 10) }).collect(),
///     ))
/// })
/// .await;
/// assert_eq!(results[0].as_ref().ok(), Some(&10));
/// assert_eq!(results[2].as_ref().unwrap_err().operation().map(String::as_str), Some("no row 3"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerItem<O, Y>(pub Vec<Result<O, Y>>);

/// The per-item results of a `Vec<O>`: every item succeeded.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{BatchOutputs, Error};
///
/// let mut results = BatchOutputs::<()>::into_results(vec![1, 2]);
/// assert!(matches!(results.next(), Some(Ok(1))));
/// ```
#[derive(Debug)]
pub struct OkResults<O, E> {
    outputs: std::vec::IntoIter<O>,
    error: PhantomData<fn() -> E>,
}

/// The per-item results of a [`PerItem`], each error converted into [`Error<E>`].
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{BatchOutputs, Error, PerItem};
///
/// let mut results = BatchOutputs::<&str>::into_results(PerItem(vec![Err::<u8, _>("bad")]));
/// assert!(matches!(results.next(), Some(Err(Error::Operation("bad")))));
/// ```
#[derive(Debug)]
pub struct PerItemResults<O, Y, E> {
    results: std::vec::IntoIter<Result<O, Y>>,
    error: PhantomData<fn() -> E>,
}

impl<O, E> Iterator for OkResults<O, E> {
    type Item = Result<O, Error<E>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.outputs.next().map(Ok)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.outputs.size_hint()
    }
}

impl<O, E> ExactSizeIterator for OkResults<O, E> {}

impl<O, Y: Into<Error<E>>, E> Iterator for PerItemResults<O, Y, E> {
    type Item = Result<O, Error<E>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.results.next().map(|result| result.map_err(Into::into))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.results.size_hint()
    }
}

impl<O, Y: Into<Error<E>>, E> ExactSizeIterator for PerItemResults<O, Y, E> {}

impl<O, E> BatchOutputs<E> for Vec<O> {
    type Output = O;
    type Results = OkResults<O, E>;

    fn len(&self) -> usize {
        Self::len(self)
    }

    fn into_results(self) -> Self::Results {
        OkResults { outputs: self.into_iter(), error: PhantomData }
    }
}

impl<O, Y, E> BatchOutputs<E> for PerItem<O, Y>
where
    Y: Into<Error<E>>,
{
    type Output = O;
    type Results = PerItemResults<O, Y, E>;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn into_results(self) -> Self::Results {
        PerItemResults { results: self.0.into_iter(), error: PhantomData }
    }
}

/// The outcome of one batch call, normalised; `P` is the outputs, raw or collected into per-item results.
pub(crate) enum Outcome<P, E> {
    /// One output (or per-item result) per input item, in input order; the count was checked.
    Items(P),
    /// The whole batch failed (an `Err` from the batch function or a panic); every item gets this error.
    Failed(Error<E>),
    /// The batch function returned the wrong number of outputs.
    Violation(String),
}

/// Calls `call` on `items`, catching panics, and normalises the outcome, checking the output count.
pub(crate) async fn invoke<T, Fut, R, X, E>(
    call: impl FnOnce(Vec<T>) -> Fut,
    items: Vec<T>,
) -> Outcome<R, E>
where
    Fut: Future<Output = Result<R, X>>,
    R: BatchOutputs<E>,
    X: Into<Error<E>>,
{
    let expected = items.len();
    match start(call, items) {
        Ok(future) => finish_raw(future, expected).await,
        Err(error) => Outcome::Failed(error),
    }
}

/// Calls `call` on `items` to build the batch future, turning a panic into `Error::Panicked`.
pub(crate) fn start<T, Fut, E>(
    call: impl FnOnce(Vec<T>) -> Fut,
    items: Vec<T>,
) -> Result<Fut, Error<E>> {
    std::panic::catch_unwind(AssertUnwindSafe(|| call(items)))
        .map_err(|payload| Error::from_panic(None, payload))
}

/// Awaits a batch future, catching panics, checks the output count, and collects per-item results.
pub(crate) async fn finish<Fut, R, X, E>(
    future: Fut,
    expected: usize,
) -> Outcome<Vec<Result<R::Output, Error<E>>>, E>
where
    Fut: Future<Output = Result<R, X>>,
    R: BatchOutputs<E>,
    X: Into<Error<E>>,
{
    match finish_raw(future, expected).await {
        Outcome::Items(outputs) => Outcome::Items(outputs.into_results().collect()),
        Outcome::Failed(error) => Outcome::Failed(error),
        Outcome::Violation(message) => Outcome::Violation(message),
    }
}

/// Awaits a batch future, catching panics, and checks that it returned `expected` outputs.
pub(crate) async fn finish_raw<Fut, R, X, E>(future: Fut, expected: usize) -> Outcome<R, E>
where
    Fut: Future<Output = Result<R, X>>,
    R: BatchOutputs<E>,
    X: Into<Error<E>>,
{
    match AssertUnwindSafe(future).catch_unwind().await {
        Err(payload) => Outcome::Failed(Error::from_panic(None, payload)),
        Ok(Err(error)) => Outcome::Failed(error.into()),
        Ok(Ok(outputs)) => {
            let returned = outputs.len();
            if returned == expected {
                Outcome::Items(outputs)
            } else {
                Outcome::Violation(violation_message(expected, returned))
            }
        }
    }
}

pub(crate) fn violation_message(expected: usize, returned: usize) -> String {
    format!(
        "the batch function returned {returned} outputs for {expected} inputs; it must return exactly one output per input, in input order"
    )
}

/// Copies one per-item result for a duplicate item (dedup), with `clone_output` for the output.
pub(crate) fn clone_result<O, E: Clone>(
    result: &Result<O, Error<E>>,
    clone_output: fn(&O) -> O,
) -> Result<O, Error<E>> {
    match result {
        Ok(output) => Ok(clone_output(output)),
        Err(error) => Err(error.clone()),
    }
}

/// Pushes `count` copies of `error` (the original last) onto `results`.
pub(crate) fn broadcast<O, E: Clone>(
    results: &mut Vec<Result<O, Error<E>>>,
    error: Error<E>,
    count: usize,
) {
    if count == 0 {
        return;
    }
    results.reserve(count);
    for _ in 1..count {
        results.push(Err(error.clone()));
    }
    results.push(Err(error));
}

/// Pushes `count` contract-violation errors carrying `message` onto `results`.
pub(crate) fn broadcast_violation<O, E>(
    results: &mut Vec<Result<O, Error<E>>>,
    message: &str,
    count: usize,
) {
    results
        .extend((0..count).map(|_| Err(Error::ContractViolation { message: message.to_owned() })));
}
