//! Typed errors of score-nets: invalid network configurations and unreadable weight files. Every
//! variant carries the values that made the input invalid.

use std::path::PathBuf;

use thiserror::Error;

/// Errors raised when validating a network configuration or saving/loading weights.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NetsError {
    /// A size that must be positive was zero (hidden width, embedding dimension, channel count…).
    #[error("{name} must be positive, got 0")]
    ZeroSize {
        /// Which size.
        name: &'static str,
    },
    /// A size that must be even (sinusoidal and Fourier embeddings are cos/sin pairs) was odd.
    #[error("{name} must be even, got {value}")]
    OddSize {
        /// Which size.
        name: &'static str,
        /// The offending value.
        value: usize,
    },
    /// A channel count that GroupNorm cannot split into its groups.
    #[error("{channels} channels ({what}) are not divisible into {groups} GroupNorm groups")]
    GroupsDoNotDivide {
        /// Where the channel count appears.
        what: String,
        /// The channel count.
        channels: usize,
        /// The number of groups.
        groups: usize,
    },
    /// A parameter that must be positive and finite was not.
    #[error("{name} must be positive and finite, got {value}")]
    NonPositive {
        /// Which parameter.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// An attention level index beyond the network's number of resolutions.
    #[error("attention level {level} does not exist: the network has {levels} resolution levels")]
    InvalidLevel {
        /// The level asked for.
        level: usize,
        /// Number of levels (length of the channel multipliers).
        levels: usize,
    },
    /// Reading or writing a weight file failed at the OS level.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A weight file that is not a valid record of the module (bad magic, checksum, encoding).
    #[error("corrupt weight file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A weight file whose record has another structure than the module loading it (another
    /// number of layers, say), found by comparing the record with the module before loading.
    #[error("weight file {path} does not fit the module: {reason}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Where the two differ and how.
        reason: String,
    },
    /// A weight file whose parameters do not have the shapes of the module loading it.
    #[error(
        "weight file {path} does not fit the module: parameter {param} has shape {found:?}, expected {expected:?}"
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// Path of the parameter inside the module (e.g. `layers.0.weight`), or `#count` when
        /// the number of parameters differs.
        param: String,
        /// The shape the module expects.
        expected: Vec<usize>,
        /// The shape found in the file.
        found: Vec<usize>,
    },
    /// A key-mapping pattern of a weight import that is not a valid regex.
    #[error("invalid key-mapping pattern {pattern:?}: {reason}")]
    InvalidKeyMap {
        /// The pattern.
        pattern: String,
        /// The regex parser's message.
        reason: String,
    },
}

/// Result alias of score-nets.
pub type Result<T> = std::result::Result<T, NetsError>;

/// `Ok(value)` when `value > 0`, else [`NetsError::ZeroSize`].
pub(crate) fn ensure_nonzero(name: &'static str, value: usize) -> Result<usize> {
    if value == 0 {
        Err(NetsError::ZeroSize { name })
    } else {
        Ok(value)
    }
}

/// `Ok(value)` when `value` is positive and even.
pub(crate) fn ensure_even(name: &'static str, value: usize) -> Result<usize> {
    ensure_nonzero(name, value)?;
    if value % 2 == 1 {
        Err(NetsError::OddSize { name, value })
    } else {
        Ok(value)
    }
}

/// `Ok(value)` when `value` is positive and finite.
pub(crate) fn ensure_positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(NetsError::NonPositive { name, value })
    }
}
