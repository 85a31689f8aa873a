//! The typed builder (source, stages, options), its validation, and the built `Pipeline` with its three ways to run.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use aqueduct_core::Error;
use futures_core::Stream;
use tokio::sync::{Semaphore, mpsc};

use crate::config::{ConfigError, DEFAULT_CAPACITY, StageOptions};
use crate::control::{Control, ErrorSlot, PipelineHandle};
use crate::input::Input;
use crate::metrics::{Metrics, StageState, WorkerCounters};
use crate::queue::{self, Outlet};
use crate::running::Running;
use crate::source::SourceContext;
use crate::worker::{StagePolicy, Worker};

/// What the builder assembles at launch: the runtime to spawn on, the shared control, the stages.
pub(crate) struct Assembly<E> {
    runtime: tokio::runtime::Handle,
    control: Arc<Control>,
    errors: Arc<ErrorSlot<E>>,
    default_capacity: usize,
    window: Option<Arc<Semaphore>>,
    stages: Vec<Arc<StageState>>,
}

/// Builds the upstream part of a pipeline that ends in `Outlet<T>`, spawning its tasks.
type Connect<T, E> = Box<dyn FnOnce(&mut Assembly<E>, Outlet<T>) + Send>;

/// The typed builder of a pipeline: a source, then stages, then [`build`](Self::build).
///
/// `T` is the type of the items that come out of the pipeline as built so far, `E` the operation error
/// type shared by every stage (each stage function may return any error `X: Into<Error<E>>`). Nothing
/// runs until the built [`Pipeline`] is spawned or run.
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::{Error, PipelineBuilder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lengths: Vec<usize> = PipelineBuilder::from_items(vec!["a", "bb", "ccc"])
///     .stage(2, |word: &str| async move { Ok::<_, Error<std::io::Error>>(word.to_uppercase()) })
///     .stage(2, |word: String| async move { Ok::<_, std::io::Error>(word.len()) })
///     .ordered(16)
///     .build()?
///     .collect()
///     .await?;
/// assert_eq!(lengths, vec![1, 2, 3]);
/// # Ok(())
/// # }
/// ```
#[must_use = "a pipeline builder does nothing until it is built and run"]
pub struct PipelineBuilder<T, E> {
    connect: Connect<T, E>,
    stage_count: usize,
    capacity: usize,
    ordered_window: Option<usize>,
    problems: Vec<String>,
}

impl<T, E> fmt::Debug for PipelineBuilder<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PipelineBuilder")
            .field("stages", &self.stage_count)
            .field("capacity", &self.capacity)
            .field("ordered_window", &self.ordered_window)
            .finish_non_exhaustive()
    }
}

/// A validated pipeline, ready to run: [`spawn`](Self::spawn) it and read the [`Running`] stream,
/// [`collect`](Self::collect) its outputs, or [`run`](Self::run) it for its side effects.
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::PipelineBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pipeline = PipelineBuilder::<u32, ()>::from_items(1..=3u32)
///     .stage(2, |item| async move { Ok::<_, ()>(item * 10) })
///     .build()
///     .unwrap();
/// let mut outputs = pipeline.collect().await.unwrap();
/// outputs.sort_unstable();
/// assert_eq!(outputs, vec![10, 20, 30]);
/// # }
/// ```
#[must_use = "a pipeline does nothing until it is spawned or run"]
pub struct Pipeline<T, E> {
    connect: Connect<T, E>,
    control: Arc<Control>,
    errors: Arc<ErrorSlot<E>>,
    capacity: usize,
    ordered_window: Option<usize>,
}

impl<T, E> fmt::Debug for Pipeline<T, E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Pipeline")
            .field("capacity", &self.capacity)
            .field("ordered_window", &self.ordered_window)
            .finish_non_exhaustive()
    }
}

// ===== impl PipelineBuilder =====

impl<T, E> PipelineBuilder<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    fn with_source(connect: Connect<T, E>) -> Self {
        Self {
            connect,
            stage_count: 0,
            capacity: DEFAULT_CAPACITY,
            ordered_window: None,
            problems: Vec::new(),
        }
    }

    /// A pipeline whose source is an iterator, pulled as the first stage takes items.
    ///
    /// The first stage's workers pull the iterator themselves, one item at a time, when they need an item
    /// and its queue is empty: no producer task, no hand-off between tasks. With ordered output (or no
    /// stage) a runtime task pulls it into the first queue instead. Either way the iterator runs on the
    /// async runtime: it must not block (use [`from_stream`](Self::from_stream) for a source that waits).
    /// A panic in it, in `next` or in its `Drop` once it has ended, is a fatal error ([`Error::Panicked`]).
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub fn from_items<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let items = items.into_iter();
        Self::with_source(Box::new(move |assembly: &mut Assembly<E>, outlet: Outlet<T>| {
            let source = assembly.source_context(outlet);
            if let Err((source, items)) = source.feed_stage_queue(items) {
                assembly.control.tracker.spawn_on(source.iterate(items), &assembly.runtime);
            }
        }))
    }

    /// A pipeline whose source is a stream, polled on a runtime task as the first queue has room.
    ///
    /// A panic while polling the stream is a fatal error ([`Error::Panicked`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let items = futures_util::stream::iter(vec![1u32, 2, 3]);
    /// let total: u32 = PipelineBuilder::<u32, ()>::from_stream(items)
    ///     .stage(2, |item| async move { Ok::<_, ()>(item * 2) })
    ///     .build()
    ///     .unwrap()
    ///     .collect()
    ///     .await
    ///     .unwrap()
    ///     .into_iter()
    ///     .sum();
    /// assert_eq!(total, 12);
    /// # }
    /// ```
    pub fn from_stream<S>(items: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        Self::with_source(Box::new(move |assembly: &mut Assembly<E>, outlet: Outlet<T>| {
            let source = assembly.source_context(outlet);
            assembly.control.tracker.spawn_on(source.stream(items), &assembly.runtime);
        }))
    }

    /// A pipeline fed through an [`Input`] whose queue holds `capacity` items (a zero capacity is
    /// rejected by [`build`](Self::build)).
    ///
    /// The source ends when every `Input` is dropped. Drain closes the input (further sends get their
    /// item back in [`InputClosed`](crate::InputClosed)) and still processes what it accepted; abort
    /// counts what it accepted as unprocessed.
    ///
    /// # Examples
    ///
    /// See [`Input`].
    pub fn from_channel(capacity: usize) -> (Input<T>, Self) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let mut builder =
            Self::with_source(Box::new(move |assembly: &mut Assembly<E>, outlet: Outlet<T>| {
                let source = assembly.source_context(outlet);
                assembly.control.tracker.spawn_on(source.channel(receiver), &assembly.runtime);
            }));
        if capacity == 0 {
            builder
                .problems
                .push("the input channel capacity must be at least 1, got 0".to_owned());
        }
        (Input { sender }, builder)
    }

    /// Adds a stage of `workers` concurrent workers that each take an item, await `function(item)` and
    /// pass its output on. The stage fails fast: the first error cancels the pipeline.
    ///
    /// `function` is shared by the workers (`Fn`, `Send + Sync`). Its error may be `E` or
    /// [`Error<E>`](Error): both convert. A panic fails only its item ([`Error::Panicked`] with the item's
    /// index); the worker goes on. A zero worker count is rejected by [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub fn stage<O, F, Fut, X>(self, workers: usize, function: F) -> PipelineBuilder<O, E>
    where
        O: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, X>> + Send + 'static,
        X: Into<Error<E>> + Send + 'static,
    {
        self.stage_with(StageOptions::new(workers), function)
    }

    /// Adds a stage configured by `options`: worker count, queue capacity, retry, and what to do with a
    /// failed item (fail fast, skip with a callback, dead letter).
    ///
    /// # Examples
    ///
    /// See [`StageOptions`].
    pub fn stage_with<O, F, Fut, X>(
        mut self,
        options: StageOptions<T, E>,
        function: F,
    ) -> PipelineBuilder<O, E>
    where
        O: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, X>> + Send + 'static,
        X: Into<Error<E>> + Send + 'static,
    {
        let index = self.stage_count;
        if options.workers == 0 {
            self.problems
                .push(format!("stage {index}: the number of workers must be at least 1, got 0"));
        }
        if options.capacity == Some(0) {
            self.problems
                .push(format!("stage {index}: the queue capacity must be at least 1, got 0"));
        }
        let upstream = self.connect;
        let StageOptions { workers, capacity, retry, failure, clone_item } = options;
        let policy = Arc::new(StagePolicy { retry, failure, clone_item });
        let function = Arc::new(function);
        let connect: Connect<O, E> =
            Box::new(move |assembly: &mut Assembly<E>, outlet: Outlet<O>| {
                let capacity = capacity.unwrap_or(assembly.default_capacity);
                let (sender, receiver) = queue::bounded::<T>(capacity);
                let worker_counters: Vec<Arc<WorkerCounters>> =
                    (0..workers).map(|_| Arc::default()).collect();
                let depth = receiver.depth();
                let state = Arc::new(StageState {
                    index,
                    workers,
                    capacity,
                    workers_alive: AtomicUsize::new(workers),
                    worker_counters: worker_counters.clone(),
                    queue_depth: Box::new(move || depth.len()),
                });
                assembly.stages.push(state.clone());
                let ordered = assembly.window.is_some();
                for counters in worker_counters {
                    let worker = Worker {
                        stage: index,
                        function: function.clone(),
                        input: receiver.clone(),
                        outlet: outlet.clone(),
                        policy: policy.clone(),
                        counters,
                        state: state.clone(),
                        control: assembly.control.clone(),
                        errors: assembly.errors.clone(),
                        ordered,
                    };
                    assembly.control.tracker.spawn_on(worker.run(), &assembly.runtime);
                }
                // Downstream before upstream: consumers are waiting when the first items arrive.
                upstream(assembly, Outlet::Queue(sender));
            });
        PipelineBuilder {
            connect,
            stage_count: index + 1,
            capacity: self.capacity,
            ordered_window: self.ordered_window,
            problems: self.problems,
        }
    }

    /// The capacity of every queue whose stage does not set its own (default 100; zero is rejected by
    /// [`build`](Self::build)). Also the capacity of the output queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let builder = PipelineBuilder::<u32, ()>::from_items(0..3u32).capacity(1000);
    /// assert!(format!("{builder:?}").contains("1000"));
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Delivers the outputs in source order, with at most `window` items between the source and the
    /// consumer (zero is rejected by [`build`](Self::build)).
    ///
    /// The source waits when the window is full, so a slow item delays the others by at most `window`
    /// items and memory stays bounded (head-of-line blocking is the price of order). Failed and skipped
    /// items leave a gap that is passed over. Only [`spawn`](Pipeline::spawn) and
    /// [`collect`](Pipeline::collect) use the order; [`run`](Pipeline::run) ignores it.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub fn ordered(mut self, window: usize) -> Self {
        self.ordered_window = Some(window);
        self
    }

    /// Checks the configuration and returns the pipeline, ready to run.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying what to change when a stage has zero workers, a capacity is zero, or the
    /// ordered window is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let error = PipelineBuilder::<u32, ()>::from_items(0..3u32).ordered(0).build().unwrap_err();
    /// assert!(error.message().contains("window"));
    /// ```
    pub fn build(self) -> Result<Pipeline<T, E>, ConfigError> {
        let mut problems = self.problems;
        if self.capacity == 0 {
            problems.push("the default queue capacity must be at least 1, got 0".to_owned());
        }
        if self.ordered_window == Some(0) {
            problems.push("the ordered window must be at least 1, got 0".to_owned());
        }
        if !problems.is_empty() {
            return Err(ConfigError::new(problems.join("; ")));
        }
        Ok(Pipeline {
            connect: self.connect,
            control: Arc::new(Control::new()),
            errors: Arc::new(ErrorSlot::new()),
            capacity: self.capacity,
            ordered_window: self.ordered_window,
        })
    }
}

impl<E> Assembly<E> {
    fn source_context<T>(&self, outlet: Outlet<T>) -> SourceContext<T, E> {
        SourceContext {
            outlet,
            control: self.control.clone(),
            errors: self.errors.clone(),
            window: self.window.clone(),
        }
    }
}

// ===== impl Pipeline =====

impl<T, E> Pipeline<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// A handle to drain, abort or observe the pipeline, usable before and after it starts.
    ///
    /// # Examples
    ///
    /// See [`PipelineHandle`].
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle { control: self.control.clone() }
    }

    fn launch(self, outlet: Outlet<T>, window: Option<Arc<Semaphore>>, discard: bool) {
        let mut assembly = Assembly {
            runtime: tokio::runtime::Handle::current(),
            control: self.control.clone(),
            errors: self.errors,
            default_capacity: self.capacity,
            window,
            stages: Vec::new(),
        };
        self.control.set_discard_outputs(discard);
        (self.connect)(&mut assembly, outlet);
        let mut stages = assembly.stages;
        stages.sort_by_key(|stage| stage.index);
        let _ = self.control.stages.set(stages);
        self.control.tracker.close();
    }

    /// Starts the pipeline on the current tokio runtime and returns its output as a [`Running`] stream.
    ///
    /// Dropping the `Running` before the end cancels the pipeline (the consumer stopped early).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut running = PipelineBuilder::<u32, ()>::from_items(0..3u32)
    ///     .stage(1, |item| async move { Ok::<_, ()>(item) })
    ///     .ordered(4)
    ///     .build()
    ///     .unwrap()
    ///     .spawn();
    /// assert_eq!(running.recv().await, Some(0));
    /// assert_eq!(running.recv().await, Some(1));
    /// assert_eq!(running.recv().await, Some(2));
    /// assert_eq!(running.recv().await, None);
    /// assert!(running.finish().await.is_ok());
    /// # }
    /// ```
    pub fn spawn(self) -> Running<T, E> {
        let capacity = self.ordered_window.unwrap_or(self.capacity);
        let (sender, receiver) = mpsc::channel(capacity);
        let window = self.ordered_window.map(|window| Arc::new(Semaphore::new(window)));
        let control = self.control.clone();
        let errors = self.errors.clone();
        let runtime = tokio::runtime::Handle::current();
        self.launch(Outlet::Output(sender), window.clone(), false);
        Running::new(receiver, window, control, errors, runtime)
    }

    /// Runs the pipeline to the end and returns its outputs (in source order if built
    /// [`ordered`](PipelineBuilder::ordered)).
    ///
    /// # Cancellation
    ///
    /// Dropping the future cancels the pipeline, as [`abort`](PipelineHandle::abort) does.
    ///
    /// # Errors
    ///
    /// The first fatal error: a fail-fast stage's error, [`Error::Panicked`] from the source or a
    /// callback, or [`Error::Exhausted`] from a retrying fail-fast stage.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub async fn collect(self) -> Result<Vec<T>, Error<E>> {
        self.spawn().collect_all().await
    }

    /// Runs the pipeline to the end, dropping the last stage's outputs, and returns the final [`Metrics`].
    ///
    /// Use it when the last stage is the sink (it writes somewhere and returns `()`): no output queue
    /// is involved, so this is the fastest way to run.
    ///
    /// # Cancellation
    ///
    /// Dropping the future cancels the pipeline, as [`abort`](PipelineHandle::abort) does.
    ///
    /// # Errors
    ///
    /// The first fatal error, as for [`collect`](Self::collect).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use aqueduct_pipeline::PipelineBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let total = Arc::new(AtomicU64::new(0));
    /// let sink = total.clone();
    /// let metrics = PipelineBuilder::<u64, ()>::from_items(1..=100u64)
    ///     .stage(4, move |item| {
    ///         let sink = sink.clone();
    ///         async move { sink.fetch_add(item, Ordering::Relaxed); Ok::<_, ()>(()) }
    ///     })
    ///     .build()
    ///     .unwrap()
    ///     .run()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(total.load(Ordering::Relaxed), 5050);
    /// assert_eq!(metrics.delivered, 100);
    /// # }
    /// ```
    pub async fn run(self) -> Result<Metrics, Error<E>> {
        let control = self.control.clone();
        let errors = self.errors.clone();
        let guard = CancelOnDrop { control: Some(control.clone()) };
        self.launch(Outlet::Discard, None, true);
        control.tracker.wait().await;
        drop(guard.disarm());
        match errors.take() {
            Some(error) => Err(error),
            None => Ok(control.metrics()),
        }
    }
}

/// Cancels the pipeline when a `run` future is dropped before the pipeline ended.
struct CancelOnDrop {
    control: Option<Arc<Control>>,
}

impl CancelOnDrop {
    fn disarm(mut self) -> Option<Arc<Control>> {
        self.control.take()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(control) = &self.control {
            control.cancel.cancel();
        }
    }
}

/// Runs `items` through one stage of `workers` workers calling `function`, and returns the outputs in
/// completion order: the Python producer/consumer with `asyncio.Queue(maxsize=100)` in one call.
///
/// For several stages, ordering, error policies or metrics, use [`PipelineBuilder`].
///
/// # Cancellation
///
/// Dropping the future cancels the pipeline; items in flight are dropped.
///
/// # Errors
///
/// The first error of `function` (fail fast), [`Error::Panicked`] if it panicked, or
/// [`Error::ContractViolation`] when `workers` is zero.
///
/// # Panics
///
/// When called outside a tokio runtime.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut squares = aqueduct_pipeline::process(1..=4u64, 2, |n| async move { Ok::<_, ()>(n * n) }).await.unwrap();
/// squares.sort_unstable();
/// assert_eq!(squares, vec![1, 4, 9, 16]);
/// # }
/// ```
pub async fn process<I, O, F, Fut, X, E>(
    items: I,
    workers: usize,
    function: F,
) -> Result<Vec<O>, Error<E>>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    I::IntoIter: Send + 'static,
    O: Send + 'static,
    F: Fn(I::Item) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, X>> + Send + 'static,
    X: Into<Error<E>> + Send + 'static,
    E: Send + 'static,
{
    let pipeline = PipelineBuilder::from_items(items)
        .stage(workers, function)
        .build()
        .map_err(|error| Error::ContractViolation { message: error.message().to_owned() })?;
    pipeline.collect().await
}
