//! The sending side of a channel source: `send`, and the cancel-safe `reserve` then `InputPermit::send`.

use std::fmt;

use tokio::sync::mpsc;

/// The sending half of a pipeline built with [`PipelineBuilder::from_channel`](crate::PipelineBuilder::from_channel).
///
/// Cloneable; the source ends when every `Input` is dropped (or on drain or abort, after which sends are
/// refused and hand the item back).
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::PipelineBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (input, builder) = PipelineBuilder::<u32, ()>::from_channel(8);
/// let running = builder.stage(2, |item| async move { Ok::<_, ()>(item + 1) }).build().unwrap().spawn();
/// input.send(1).await.unwrap();
/// let permit = input.reserve().await.unwrap(); // cancel safe: no item is owned while waiting
/// permit.send(2);
/// drop(input);
/// let mut outputs = running.collect_all().await.unwrap();
/// outputs.sort_unstable();
/// assert_eq!(outputs, vec![2, 3]);
/// # }
/// ```
#[derive(Debug)]
pub struct Input<T> {
    pub(crate) sender: mpsc::Sender<T>,
}

impl<T> Clone for Input<T> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone() }
    }
}

/// A reserved slot in the pipeline's input, from [`Input::reserve`]; [`send`](Self::send) commits an item.
///
/// Dropping the permit releases the slot.
#[derive(Debug)]
#[must_use = "a permit holds a slot of the input until it is used or dropped"]
pub struct InputPermit<'a, T> {
    permit: mpsc::Permit<'a, T>,
}

/// The pipeline no longer accepts input (it was drained, aborted or has ended); the refused item is inside.
///
/// # Examples
///
/// ```
/// use aqueduct_pipeline::InputClosed;
/// let refused = InputClosed(7);
/// assert_eq!(refused.to_string(), "pipeline input closed");
/// assert_eq!(refused.0, 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InputClosed<T>(pub T);

impl<T> fmt::Debug for InputClosed<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("InputClosed(..)")
    }
}

impl<T> fmt::Display for InputClosed<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("pipeline input closed")
    }
}

impl<T> std::error::Error for InputClosed<T> {}

impl<T> Input<T> {
    /// Sends `item` into the pipeline, waiting while the input queue is full.
    ///
    /// # Cancellation
    ///
    /// Not cancel safe: if the future is dropped while it waits for room, `item` is dropped with it and
    /// never enters the pipeline. Inside `select!` or under a timeout, use [`reserve`](Self::reserve)
    /// and then [`InputPermit::send`], which never owns the item while waiting.
    ///
    /// # Errors
    ///
    /// [`InputClosed`] with the item when the pipeline was drained, aborted, or has ended.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub async fn send(&self, item: T) -> Result<(), InputClosed<T>> {
        self.sender.send(item).await.map_err(|refused| InputClosed(refused.0))
    }

    /// Waits for room in the input and reserves one slot.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: dropping the future gives up the place in line and loses nothing. This is the
    /// reserve-then-commit pattern; do not hold the returned permit across an unrelated `.await` in a
    /// `select!` branch, since a held permit keeps its slot from everyone else.
    ///
    /// # Errors
    ///
    /// [`InputClosed`] when the pipeline was drained, aborted, or has ended.
    ///
    /// # Examples
    ///
    /// See the type's example.
    pub async fn reserve(&self) -> Result<InputPermit<'_, T>, InputClosed<()>> {
        self.sender
            .reserve()
            .await
            .map(|permit| InputPermit { permit })
            .map_err(|_| InputClosed(()))
    }

    /// `true` once the pipeline stopped accepting input.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_pipeline::PipelineBuilder;
    /// let (input, builder) = PipelineBuilder::<u32, ()>::from_channel(1);
    /// assert!(!input.is_closed());
    /// drop(builder);
    /// assert!(input.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl<T> InputPermit<'_, T> {
    /// Commits `item` into the reserved slot; never waits and never fails.
    ///
    /// # Examples
    ///
    /// See [`Input`].
    pub fn send(self, item: T) {
        self.permit.send(item);
    }
}
