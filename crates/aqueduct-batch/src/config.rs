//! The error `build()` returns when a batch plan or a batcher is configured wrongly.

use std::fmt;

/// A batch plan or batcher was configured with values that cannot work (a zero size, a zero concurrency, …).
///
/// The message says which setting to change and why; it is meant to be shown to the developer at start-up.
///
/// # Examples
///
/// ```
/// use aqueduct_batch::Batch;
///
/// let error = Batch::<u32>::builder().size(0).build().unwrap_err();
/// assert!(error.to_string().contains("size"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// What is wrong and what to change, in lowercase.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_batch::Batch;
    ///
    /// let error = Batch::<u32>::builder().concurrency(0).build().unwrap_err();
    /// assert!(error.message().starts_with("concurrency"));
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
