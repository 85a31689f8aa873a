//! `ConfigError`: the one error every aqueduct builder returns for a setting it refuses.

use std::fmt;

/// A configuration value a builder refused at `build()`, with a message saying what to change.
///
/// Every aqueduct builder returns it, so invalid configuration is reported the same way everywhere, at
/// start-up, and never as a panic or a hang.
///
/// # Examples
///
/// ```
/// use aqueduct_core::ConfigError;
///
/// let error = ConfigError::new("capacity must be at least 1 (got 0)");
/// assert_eq!(error.message(), "capacity must be at least 1 (got 0)");
/// assert_eq!(error.to_string(), error.message());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// A refusal; the message names the setting, the value and what to change, in lowercase.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::ConfigError;
    /// let error = ConfigError::new("max_size must be at least min_size");
    /// assert!(error.message().contains("max_size"));
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// What is wrong and what to change.
    ///
    /// # Examples
    ///
    /// ```
    /// use aqueduct_core::ConfigError;
    /// assert_eq!(ConfigError::new("workers must be at least 1").message(), "workers must be at least 1");
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
