//! Typed errors of score-core: every variant carries the values that made the input invalid.

use thiserror::Error;

/// Errors raised when building schedules, SDEs, targets and time grids, or when a computation
/// produces a non-finite value.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A σ range that is not `0 < sigma_min < sigma_max` (both finite).
    #[error(
        "invalid sigma range: need 0 < sigma_min < sigma_max, got sigma_min = {sigma_min}, sigma_max = {sigma_max}"
    )]
    InvalidSchedule {
        /// Smallest noise level given.
        sigma_min: f64,
        /// Largest noise level given.
        sigma_max: f64,
    },
    /// A β range that is not `0 < beta_min <= beta_max` (and `< 1` for discrete betas).
    #[error("invalid beta range: need 0 < beta_min <= beta_max{}, got beta_min = {beta_min}, beta_max = {beta_max}", if *.discrete { " < 1" } else { "" })]
    InvalidBetas {
        /// Smallest β given.
        beta_min: f64,
        /// Largest β given.
        beta_max: f64,
        /// Whether these are per-step (discrete) betas, which must also stay below 1.
        discrete: bool,
    },
    /// A quantity that must be positive and finite was not.
    #[error("{name} must be positive and finite, got {value}")]
    NonPositive {
        /// Which quantity.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// Too few steps or levels were requested.
    #[error("{what} needs at least {min} steps, got {got}")]
    TooFewSteps {
        /// What was being built.
        what: &'static str,
        /// Smallest accepted count.
        min: usize,
        /// The count given.
        got: usize,
    },
    /// A time outside `[0, t_max]`.
    #[error("time t = {t} lies outside [0, {t_max}]")]
    TimeOutOfRange {
        /// The offending time.
        t: f64,
        /// The SDE's terminal time.
        t_max: f64,
    },
    /// A mixture weight that is not positive and finite.
    #[error("mixture weight {index} must be positive and finite, got {weight}")]
    InvalidWeight {
        /// Component index.
        index: usize,
        /// The offending weight.
        weight: f64,
    },
    /// A variance that is not positive and finite.
    #[error(
        "variance of component {component}, coordinate {coord} must be positive and finite, got {value}"
    )]
    InvalidVariance {
        /// Component index (0 for a single Gaussian).
        component: usize,
        /// Coordinate index.
        coord: usize,
        /// The offending variance.
        value: f64,
    },
    /// Two inputs whose dimensions must agree do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Where the mismatch was found.
        what: &'static str,
        /// The dimension required.
        expected: usize,
        /// The dimension given.
        got: usize,
    },
    /// A score that cannot be evaluated at time `t`: its conversion from the network output
    /// divides by the marginal standard deviation, which is zero there.
    #[error("the score is undefined at t = {t}: {reason}")]
    UndefinedAt {
        /// The time asked for.
        t: f64,
        /// Why.
        reason: &'static str,
    },
    /// Two parts built for different SDEs (e.g. a loss and the model it trains).
    #[error("SDE mismatch: {what} uses {expected}, but {other} uses {found}")]
    SdeMismatch {
        /// The part whose SDE is taken as the reference.
        what: &'static str,
        /// Its SDE, as text.
        expected: String,
        /// The other part.
        other: &'static str,
        /// The other part's SDE, as text.
        found: String,
    },
    /// A mixture with no components.
    #[error("a Gaussian mixture needs at least one component")]
    EmptyMixture,
    /// A NaN or infinity appeared in a computation.
    #[error("non-finite value at step {step} (t = {t})")]
    NonFinite {
        /// Step index at which it appeared.
        step: usize,
        /// Time of that step.
        t: f64,
    },
}

/// Result alias of score-core.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Checks that `value` is positive and finite, naming it in the error otherwise.
pub fn ensure_positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(CoreError::NonPositive { name, value })
    }
}

/// Checks that at least `min` steps were asked for.
pub fn ensure_steps(what: &'static str, got: usize, min: usize) -> Result<usize> {
    if got >= min {
        Ok(got)
    } else {
        Err(CoreError::TooFewSteps { what, min, got })
    }
}
