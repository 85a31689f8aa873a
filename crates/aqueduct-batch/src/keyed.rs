//! Keyed batching: one queue and one concurrency limit per key, so a batch only holds items of one key.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use aqueduct_core::Error;

use crate::batcher::{Batcher, BatcherBuilder, Flush, Settings, Submit, WhenFull, current_runtime};
use crate::config::ConfigError;
use crate::metrics::BatcherMetrics;
use crate::outputs::BatchOutputs;

/// A [`Batcher`] per key: items submitted under one key are batched together, and each key has its own
/// queue, its own `max_batch_size` and its own limit of `max_concurrent_batches` (batch-aint-one's
/// `max_key_concurrency`). Use it to batch per tenant, per table or per shard.
///
/// Keys are created on first use. A key whose queue is empty, with no batch running and no caller waiting,
/// is evicted when the number of keys doubles, so memory follows the keys in use, not every key ever seen.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::{Error, KeyedBatcher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher: KeyedBatcher<&'static str, u32, String, ()> =
///     KeyedBatcher::builder(|table: &'static str, ids: Vec<u32>| async move {
///         Ok::<_, ()>(ids.into_iter().map(|id| format!("{table}/{id}")).collect::<Vec<_>>())
///     })
///     .build()
///     .unwrap();
/// let (user, order) = tokio::join!(batcher.submit("users", 1), batcher.submit("orders", 1));
/// assert_eq!(user.unwrap(), "users/1");
/// assert_eq!(order.unwrap(), "orders/1");
/// # }
/// ```
pub struct KeyedBatcher<K, T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    inner: Arc<KeyedInner<K, T, O, E>>,
}

/// Builds a [`KeyedBatcher`]; the settings apply to each key (defaults as for [`BatcherBuilder`]).
///
/// # Examples
///
/// ```
/// use aqueduct_batch::KeyedBatcher;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let built: Result<KeyedBatcher<u8, u8, u8, ()>, _> =
///     KeyedBatcher::builder(|_key: u8, items: Vec<u8>| async move { Ok::<_, ()>(items) })
///         .max_batch_size(0)
///         .build();
/// assert!(built.is_err());
/// # }
/// ```
pub struct KeyedBatcherBuilder<K, T, O, E> {
    make: Arc<MakeBatcher<K, T, O, E>>,
    settings: Settings,
}

type MakeBatcher<K, T, O, E> = dyn Fn(K) -> BatcherBuilder<T, O, E> + Send + Sync;

struct KeyedInner<K, T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    keys: Mutex<Keys<K, T, O, E>>,
    make: Arc<MakeBatcher<K, T, O, E>>,
    settings: Settings,
    runtime: tokio::runtime::Handle,
}

struct Keys<K, T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    batchers: HashMap<K, Batcher<T, O, E>>,
    sweep_at: usize,
    closed: bool,
}

/// The fewest keys at which idle keys are swept.
const FIRST_SWEEP: usize = 64;

// ===== impl KeyedBatcher =====

impl<K, T, O, E> KeyedBatcher<K, T, O, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    /// Starts a builder around the batch function `f`, which receives the key and that key's items.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::KeyedBatcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: KeyedBatcher<u8, u8, (u8, u8), ()> =
    ///     KeyedBatcher::builder(|key: u8, items: Vec<u8>| async move {
    ///         Ok::<_, ()>(items.into_iter().map(|item| (key, item)).collect::<Vec<_>>())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(batcher.submit(3, 4).await.unwrap(), (3, 4));
    /// # }
    /// ```
    pub fn builder<F, Fut, R, X>(f: F) -> KeyedBatcherBuilder<K, T, O, E>
    where
        F: Fn(K, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, X>> + Send + 'static,
        R: BatchOutputs<E, Output = O> + 'static,
        X: Into<Error<E>> + 'static,
    {
        let f = Arc::new(f);
        let make = move |key: K| {
            let f = Arc::clone(&f);
            Batcher::builder(move |items: Vec<T>| f(key.clone(), items))
        };
        KeyedBatcherBuilder { make: Arc::new(make), settings: Settings::new() }
    }

    /// Queues `item` under `key` and resolves to its own result; see [`Batcher::submit`].
    ///
    /// # Cancellation
    ///
    /// As for [`Batcher::submit`]: dropping the future before dispatch removes the item.
    ///
    /// # Errors
    ///
    /// As for [`Batcher::submit`]; `Error::Full` counts the key's own queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::KeyedBatcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: KeyedBatcher<char, u8, u8, ()> =
    ///     KeyedBatcher::builder(|_shard: char, items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// assert_eq!(batcher.submit('a', 9).await.unwrap(), 9);
    /// # }
    /// ```
    pub fn submit(&self, key: K, item: T) -> Submit<T, O, E> {
        let batcher = {
            let mut keys = self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner);
            match keys.batchers.get(&key) {
                Some(batcher) => batcher.clone(),
                None => {
                    if keys.batchers.len() >= keys.sweep_at {
                        // Only the map refers to an idle key's batcher: no caller, no batch, no timer.
                        keys.batchers.retain(|_, batcher| batcher.references() != (1, 1));
                        keys.sweep_at = FIRST_SWEEP.max(keys.batchers.len() * 2);
                    }
                    let mut builder = (self.inner.make)(key.clone());
                    *builder.settings_mut() = self.inner.settings;
                    let batcher = builder.build_on(self.inner.runtime.clone());
                    if keys.closed {
                        // After shutdown a new key gets a closed batcher, which answers `Error::Closed`.
                        batcher.close();
                    } else {
                        keys.batchers.insert(key, batcher.clone());
                    }
                    batcher
                }
            }
        };
        batcher.submit(item)
    }

    /// Flushes every key's queue; see [`Batcher::flush`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::{Flush, KeyedBatcher};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: KeyedBatcher<u8, u8, u8, ()> =
    ///     KeyedBatcher::builder(|_key: u8, items: Vec<u8>| async move { Ok::<_, ()>(items) })
    ///         .flush(Flush::Size)
    ///         .build()
    ///         .unwrap();
    /// let pending = tokio::spawn(batcher.submit(1, 1));
    /// tokio::task::yield_now().await;
    /// batcher.flush();
    /// assert_eq!(pending.await.unwrap().unwrap(), 1);
    /// # }
    /// ```
    pub fn flush(&self) {
        for batcher in self.batchers() {
            batcher.flush();
        }
    }

    /// Shuts every key down and waits for their batches; see [`Batcher::shutdown`]. New keys are refused too.
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops the waiting only.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::KeyedBatcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: KeyedBatcher<u8, u8, u8, ()> =
    ///     KeyedBatcher::builder(|_key: u8, items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// batcher.submit(1, 1).await.unwrap();
    /// batcher.shutdown().await;
    /// assert!(batcher.submit(1, 2).await.unwrap_err().is_closed());
    /// assert!(batcher.submit(2, 2).await.unwrap_err().is_closed());
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        for batcher in self.batchers() {
            batcher.shutdown().await;
        }
    }

    /// How many keys currently have a batcher.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::KeyedBatcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: KeyedBatcher<u8, u8, u8, ()> =
    ///     KeyedBatcher::builder(|_key: u8, items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// batcher.submit(1, 1).await.unwrap();
    /// assert_eq!(batcher.key_count(), 1);
    /// # }
    /// ```
    pub fn key_count(&self) -> usize {
        self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner).batchers.len()
    }

    /// The counters of one key, if it has a batcher.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::KeyedBatcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let batcher: KeyedBatcher<u8, u8, u8, ()> =
    ///     KeyedBatcher::builder(|_key: u8, items: Vec<u8>| async move { Ok::<_, ()>(items) }).build().unwrap();
    /// batcher.submit(1, 1).await.unwrap();
    /// assert_eq!(batcher.metrics(&1).map(|metrics| metrics.items), Some(1));
    /// assert!(batcher.metrics(&2).is_none());
    /// # }
    /// ```
    pub fn metrics(&self, key: &K) -> Option<BatcherMetrics> {
        let keys = self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.batchers.get(key).map(Batcher::metrics)
    }

    fn batchers(&self) -> Vec<Batcher<T, O, E>> {
        let keys = self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.batchers.values().cloned().collect()
    }
}

impl<K, T, O, E> Clone for KeyedBatcher<K, T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<K, T, O, E> fmt::Debug for KeyedBatcher<K, T, O, E>
where
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyedBatcher")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

// ===== impl KeyedBatcherBuilder =====

impl<K, T, O, E> KeyedBatcherBuilder<K, T, O, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + 'static,
    O: Send + 'static,
    E: Clone + Send + 'static,
{
    /// Sets the most items per batch call, per key; see [`BatcherBuilder::max_batch_size`].
    #[must_use]
    pub fn max_batch_size(mut self, max_batch_size: usize) -> Self {
        self.settings.set_max_batch_size(max_batch_size);
        self
    }

    /// Sets the most batch calls running at once, per key; see [`BatcherBuilder::max_concurrent_batches`].
    #[must_use]
    pub fn max_concurrent_batches(mut self, max_concurrent_batches: usize) -> Self {
        self.settings.set_max_concurrent_batches(max_concurrent_batches);
        self
    }

    /// Sets the queue capacity, per key; see [`BatcherBuilder::max_pending`].
    #[must_use]
    pub fn max_pending(mut self, max_pending: usize) -> Self {
        self.settings.set_max_pending(max_pending);
        self
    }

    /// Sets when a partial batch is dispatched; see [`Flush`].
    #[must_use]
    pub fn flush(mut self, flush: Flush) -> Self {
        self.settings.set_flush(flush);
        self
    }

    /// Sets what a submitter does when its key's queue is full; see [`WhenFull`].
    #[must_use]
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.settings.set_when_full(when_full);
        self
    }

    /// Validates the settings and returns the keyed batcher, bound to the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] as for [`BatcherBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::KeyedBatcher;
    ///
    /// let built: Result<KeyedBatcher<u8, u8, u8, ()>, _> =
    ///     KeyedBatcher::builder(|_key: u8, items: Vec<u8>| async move { Ok::<_, ()>(items) }).build();
    /// assert!(built.unwrap_err().to_string().contains("tokio runtime"));
    /// ```
    pub fn build(self) -> Result<KeyedBatcher<K, T, O, E>, ConfigError> {
        self.settings.validate()?;
        let runtime = current_runtime()?;
        Ok(KeyedBatcher {
            inner: Arc::new(KeyedInner {
                keys: Mutex::new(Keys {
                    batchers: HashMap::new(),
                    sweep_at: FIRST_SWEEP,
                    closed: false,
                }),
                make: self.make,
                settings: self.settings,
                runtime,
            }),
        })
    }
}

impl<K, T, O, E> fmt::Debug for KeyedBatcherBuilder<K, T, O, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyedBatcherBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
