//! Typed errors of score-sample: bad configurations name the offending value, and a run that
//! produces NaN or ±∞ names the step and time at which it happened.

use score_core::CoreError;
use thiserror::Error;

/// Errors raised when building a sampler or while running one.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SampleError {
    /// An error from score-core (invalid SDE, schedule or time).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A configuration value outside its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidConfig {
        /// Which setting.
        name: &'static str,
        /// The offending value.
        value: f64,
        /// What it must satisfy.
        reason: &'static str,
    },
    /// A time grid that is not strictly monotone, not finite, or too short.
    #[error("invalid time grid at index {index} (t = {t}): {reason}")]
    InvalidGrid {
        /// Index of the offending time.
        index: usize,
        /// The offending time.
        t: f64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A time grid that runs the wrong way for the requested operation.
    #[error("time grid runs from {start} to {end}, but {what} needs it {direction}")]
    WrongDirection {
        /// The operation.
        what: &'static str,
        /// First time of the grid.
        start: f64,
        /// Last time of the grid.
        end: f64,
        /// "decreasing" or "increasing".
        direction: &'static str,
    },
    /// Tensors whose shapes must agree do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Where.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },
    /// A NaN or infinity appeared in the sampler state.
    #[error("non-finite value in the sampler state at step {step} (t = {t})")]
    NonFinite {
        /// Step index at which it appeared.
        step: usize,
        /// Time of the state at that step.
        t: f64,
    },
    /// The adaptive ODE solver's step size fell below what floating point can resolve.
    #[error("ODE step size {h} at t = {t} is too small to make progress")]
    StepSizeTooSmall {
        /// Time reached.
        t: f64,
        /// The rejected step size.
        h: f64,
    },
    /// A sampler given an SDE it does not sample correctly.
    #[error("{sampler} cannot run on this SDE at t = {t}: {reason}")]
    UnsupportedSde {
        /// The sampler.
        sampler: &'static str,
        /// The first time at which the SDE fails the requirement.
        t: f64,
        /// What the sampler needs.
        reason: &'static str,
    },
    /// The adaptive ODE solver used up its step budget.
    #[error("ODE solver reached its limit of {max_steps} steps at t = {t}")]
    TooManySteps {
        /// The configured budget.
        max_steps: usize,
        /// Time reached.
        t: f64,
    },
}

/// Result alias of score-sample.
pub type Result<T> = std::result::Result<T, SampleError>;

/// `value` when it is positive and finite, else [`SampleError::InvalidConfig`].
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(SampleError::InvalidConfig {
            name,
            value,
            reason: "must be positive and finite",
        })
    }
}

/// `value` when it is at least 1, else [`SampleError::InvalidConfig`].
pub(crate) fn at_least_one(name: &'static str, value: usize) -> Result<usize> {
    if value >= 1 {
        Ok(value)
    } else {
        Err(SampleError::InvalidConfig {
            name,
            value: value as f64,
            reason: "must be at least 1",
        })
    }
}
