//! Typed errors of score-eval: every variant carries the values that made the input invalid.

use std::path::PathBuf;

use thiserror::Error;

/// Errors raised by the metrics when their input cannot be measured.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Points of dimension zero.
    #[error("the dimension of the points must be positive")]
    ZeroDimension,
    /// A row-major buffer whose length is not a multiple of the dimension.
    #[error("{what}: {len} values do not split into points of dimension {dim}")]
    Ragged {
        /// Which input.
        what: &'static str,
        /// Number of values given.
        len: usize,
        /// The dimension.
        dim: usize,
    },
    /// Fewer points than the metric needs.
    #[error("{what} needs at least {min} points, got {got}")]
    TooFewPoints {
        /// Which input.
        what: &'static str,
        /// Smallest accepted count.
        min: usize,
        /// The count given.
        got: usize,
    },
    /// A NaN or infinite coordinate.
    #[error("{what}: non-finite value {value} at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Index of the value in the row-major buffer.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Two inputs that must agree in size do not.
    #[error("{what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was compared.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A parameter outside its range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// Too few Monte Carlo replicates to resolve the requested level.
    #[error("a Monte Carlo test at level {alpha} needs at least {needed} replicates, got {got}")]
    TooFewReplicates {
        /// The level.
        alpha: f64,
        /// Smallest number of replicates that resolves it.
        needed: usize,
        /// The number given.
        got: usize,
    },
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text (so that the error stays `Clone` and comparable).
        reason: String,
    },
    /// A file exists but its content is damaged or of another kind (checksum, record, manifest).
    #[error("{} is damaged: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A data set could not be loaded (the error of score-data, as text).
    #[error("data: {reason}")]
    Data {
        /// What went wrong.
        reason: String,
    },
}

/// Result alias of score-eval.
pub type Result<T> = std::result::Result<T, EvalError>;

/// Checks a row-major point buffer and returns its number of points.
pub(crate) fn points(what: &'static str, x: &[f64], dim: usize, min: usize) -> Result<usize> {
    if dim == 0 {
        return Err(EvalError::ZeroDimension);
    }
    if !x.len().is_multiple_of(dim) {
        return Err(EvalError::Ragged {
            what,
            len: x.len(),
            dim,
        });
    }
    let n = x.len() / dim;
    if n < min {
        return Err(EvalError::TooFewPoints { what, min, got: n });
    }
    if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(EvalError::NonFinite { what, index, value });
    }
    Ok(n)
}

/// `Ok(value)` when `value` is finite and positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(EvalError::InvalidParameter {
            name,
            value,
            reason: "must be positive and finite",
        })
    }
}

/// `Ok(value)` when `value` lies in the open interval (0, 1).
pub(crate) fn probability(name: &'static str, value: f64) -> Result<f64> {
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(EvalError::InvalidParameter {
            name,
            value,
            reason: "must lie in (0, 1)",
        })
    }
}
