//! Options shared by every gather form: the concurrency limit and what to do with panics.

use std::num::NonZeroUsize;

/// What a gather does when a child panics.
///
/// # Examples
///
/// ```
/// use aqueduct_gather::PanicPolicy;
///
/// assert_eq!(PanicPolicy::default(), PanicPolicy::Capture);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// The panic becomes [`Error::Panicked`](crate::Error::Panicked) with the child's input index and message.
    /// Under fail-fast it counts as the failure that cancels the siblings.
    #[default]
    Capture,
    /// The siblings are cancelled (and, spawned, awaited until they stopped), then the panic is resumed in the
    /// task that awaits the gather, as `join_all` would.
    Resume,
}

/// Validated options for a gather: concurrency limit and panic policy.
///
/// Build them with [`GatherOptions::builder`]; `build()` rejects a zero limit with a message saying what to
/// change. The defaults are no limit and [`PanicPolicy::Capture`].
///
/// # Examples
///
/// ```
/// use aqueduct_gather::{GatherOptions, PanicPolicy};
///
/// let options = GatherOptions::builder().limit(8).panics(PanicPolicy::Resume).build()?;
/// assert_eq!(options.limit().map(|limit| limit.get()), Some(8));
/// assert!(GatherOptions::builder().limit(0).build().is_err());
/// # Ok::<(), aqueduct_gather::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GatherOptions {
    limit: Option<NonZeroUsize>,
    panics: PanicPolicy,
}

/// Builds [`GatherOptions`]; see [`GatherOptions::builder`].
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct GatherOptionsBuilder {
    limit: Option<usize>,
    panics: PanicPolicy,
}

pub use aqueduct_core::ConfigError;

// ===== impl GatherOptions =====

impl GatherOptions {
    /// A builder with no limit and [`PanicPolicy::Capture`].
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::GatherOptions;
    ///
    /// let options = GatherOptions::builder().build()?;
    /// assert_eq!(options, GatherOptions::default());
    /// # Ok::<(), aqueduct_gather::ConfigError>(())
    /// ```
    pub fn builder() -> GatherOptionsBuilder {
        GatherOptionsBuilder::default()
    }

    /// The most children alive at once, or `None` for no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::GatherOptions;
    /// assert_eq!(GatherOptions::default().limit(), None);
    /// ```
    pub fn limit(&self) -> Option<NonZeroUsize> {
        self.limit
    }

    /// What happens when a child panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{GatherOptions, PanicPolicy};
    /// assert_eq!(GatherOptions::default().panics(), PanicPolicy::Capture);
    /// ```
    pub fn panics(&self) -> PanicPolicy {
        self.panics
    }

    /// The limit as a plain number, `usize::MAX` without one.
    pub(crate) fn limit_or_max(&self) -> usize {
        self.limit.map_or(usize::MAX, NonZeroUsize::get)
    }
}

// ===== impl GatherOptionsBuilder =====

impl GatherOptionsBuilder {
    /// At most `limit` children exist at once; the next one is created (pulled from the iterator or stream,
    /// or spawned) only when one finishes. Zero is rejected by [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::GatherOptions;
    /// let options = GatherOptions::builder().limit(4).build()?;
    /// assert_eq!(options.limit().map(|limit| limit.get()), Some(4));
    /// # Ok::<(), aqueduct_gather::ConfigError>(())
    /// ```
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Removes the limit (the default): every child is created at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::GatherOptions;
    /// let options = GatherOptions::builder().limit(4).unlimited().build()?;
    /// assert_eq!(options.limit(), None);
    /// # Ok::<(), aqueduct_gather::ConfigError>(())
    /// ```
    pub fn unlimited(mut self) -> Self {
        self.limit = None;
        self
    }

    /// What to do when a child panics (default [`PanicPolicy::Capture`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::{GatherOptions, PanicPolicy};
    /// let options = GatherOptions::builder().panics(PanicPolicy::Resume).build()?;
    /// assert_eq!(options.panics(), PanicPolicy::Resume);
    /// # Ok::<(), aqueduct_gather::ConfigError>(())
    /// ```
    pub fn panics(mut self, panics: PanicPolicy) -> Self {
        self.panics = panics;
        self
    }

    /// Validates the options.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the limit is zero (a gather that may run nothing would hang).
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_gather::GatherOptions;
    /// assert!(GatherOptions::builder().limit(1).build().is_ok());
    /// ```
    pub fn build(self) -> Result<GatherOptions, ConfigError> {
        let limit = match self.limit {
            None => None,
            Some(limit) => Some(NonZeroUsize::new(limit).ok_or_else(|| {
                ConfigError::new(
                    "the concurrency limit must be at least 1 (a limit of 0 would never run anything); \
                     call `unlimited()` for no limit",
                )
            })?),
        };
        Ok(GatherOptions { limit, panics: self.panics })
    }
}
