//! `Limited<C>`: any client behind a `Limiter`, the seed's `RateLimitedClient`.

use std::future::IntoFuture;

use aqueduct_core::Error;

use crate::limiter::Limiter;

/// A client behind a [`Limiter`]: every call through [`call`](Self::call) first waits for a permit and
/// holds it until the call finishes. This is the Python seed's `RateLimitedClient`, whose `get` ran under
/// `async with self.semaphore`, grown to add a rate limit.
///
/// `Limited` is `Clone` when the client is: clones share the limiter, so the limit holds across clones
/// (unlike a per-clone limit that silently multiplies, tower #794 / axum #2634).
///
/// # Examples
///
/// ```
/// use aqueduct_ratelimit::{Error, Limited, Limiter, Rate};
///
/// struct Client;
/// impl Client {
///     async fn get(&self, path: &str) -> Result<String, std::io::Error> {
///         Ok(format!("body of {path}"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Error<std::io::Error>> {
/// let limiter = Limiter::builder().max_concurrent(5).rate(Rate::per_second(10)).build().unwrap();
/// let client = Limited::new(Client, limiter);
/// let body = client.call(|client| client.get("/a")).await?;
/// assert_eq!(body, "body of /a");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Limited<C> {
    client: C,
    limiter: Limiter,
}

impl<C> Limited<C> {
    /// Puts `client` behind `limiter`.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limited, Limiter};
    /// let limited = Limited::new(vec![1, 2, 3], Limiter::concurrency(2).unwrap());
    /// assert_eq!(limited.get_ref().len(), 3);
    /// ```
    pub fn new(client: C, limiter: Limiter) -> Self {
        Self { client, limiter }
    }

    /// Runs `call(&client)` under a permit of weight 1, flattening its error into [`Error<E>`].
    ///
    /// # Cancellation
    ///
    /// Dropping the future while it waits for a permit leaks nothing (see [`Acquire`](crate::Acquire));
    /// dropping it during the call drops the call's future, then gives the permit back.
    ///
    /// # Errors
    ///
    /// Those of [`Limiter::acquire`] (only with a deadline), then the call's own error as
    /// [`Error::Operation`] (or as is, if the call already returns an [`Error<E>`]).
    ///
    /// # Panics
    ///
    /// A panic in `call` propagates; the permit is given back while unwinding.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Error, Limited, Limiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limited = Limited::new(21_u32, Limiter::concurrency(1).unwrap());
    /// let doubled: Result<u32, Error<std::io::Error>> = limited.call(|value| async move { Ok::<_, std::io::Error>(value * 2) }).await;
    /// assert_eq!(doubled.unwrap(), 42);
    /// # }
    /// ```
    pub async fn call<'c, T, E, X, F, Fut>(&'c self, call: F) -> Result<T, Error<E>>
    where
        F: FnOnce(&'c C) -> Fut,
        Fut: IntoFuture<Output = Result<T, X>>,
        X: Into<Error<E>>,
    {
        self.call_n(1, call).await
    }

    /// Runs `call(&client)` under a permit of weight `weight` (for calls that cost more than one).
    ///
    /// # Cancellation
    ///
    /// As [`call`](Self::call).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), plus [`Error::ContractViolation`] when `weight` can never be admitted.
    ///
    /// # Panics
    ///
    /// As [`call`](Self::call).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Error, Limited, Limiter, Rate};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limited = Limited::new((), Limiter::rate_limit(Rate::per_second(10), 10).unwrap());
    /// let result: Result<(), Error<std::io::Error>> = limited.call_n(4, |_| async { Ok::<_, std::io::Error>(()) }).await;
    /// assert!(result.is_ok());
    /// assert_eq!(limited.limiter().available_tokens(), Some(6));
    /// # }
    /// ```
    pub async fn call_n<'c, T, E, X, F, Fut>(&'c self, weight: u32, call: F) -> Result<T, Error<E>>
    where
        F: FnOnce(&'c C) -> Fut,
        Fut: IntoFuture<Output = Result<T, X>>,
        X: Into<Error<E>>,
    {
        let _permit = self.limiter.acquire_n::<E>(weight).await?;
        call(&self.client).await.map_err(Into::into)
    }

    /// The client.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limited, Limiter};
    /// let limited = Limited::new("client", Limiter::concurrency(2).unwrap());
    /// assert_eq!(*limited.get_ref(), "client");
    /// ```
    pub fn get_ref(&self) -> &C {
        &self.client
    }

    /// The limiter.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limited, Limiter};
    /// let limited = Limited::new((), Limiter::concurrency(2).unwrap());
    /// assert_eq!(limited.limiter().max_concurrent(), Some(2));
    /// ```
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The client and the limiter, taken apart.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_ratelimit::{Limited, Limiter};
    /// let (client, _limiter) = Limited::new(5_u8, Limiter::concurrency(2).unwrap()).into_parts();
    /// assert_eq!(client, 5);
    /// ```
    pub fn into_parts(self) -> (C, Limiter) {
        (self.client, self.limiter)
    }
}
