//! Typed errors of score-train: invalid loss or trainer settings, a non-finite loss, and checkpoint
//! files that cannot be written or read back.

use std::path::PathBuf;

use score_core::CoreError;
use thiserror::Error;

/// Errors raised when building losses and trainers, while training, and by checkpoints.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrainError {
    /// An invalid setting of a loss or of the trainer.
    #[error("invalid setting {name} = {value}: {reason}")]
    InvalidConfig {
        /// Which setting.
        name: &'static str,
        /// The offending value, printed.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// An invalid schedule or SDE from score-core.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The loss became NaN or infinite; training stopped before the update.
    #[error("non-finite loss {loss} at training step {step}")]
    NonFinite {
        /// The training step whose loss was not finite.
        step: u64,
        /// The value read back.
        loss: f64,
    },
    /// The loss was finite but its gradient was not (NaN or infinite global norm); training stopped
    /// before the update.
    #[error("non-finite gradient norm {grad_norm} at training step {step} (loss {loss})")]
    NonFiniteGradient {
        /// The training step whose gradient was not finite.
        step: u64,
        /// The (finite) loss of that step.
        loss: f64,
        /// The global gradient norm read back.
        grad_norm: f64,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint that fails validation (magic, version, length, checksum) or does not match the
    /// model it is loaded into.
    #[error("corrupt checkpoint {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A data-parallel collective operation failed, timed out, or found the workers in
    /// disagreement (module [`distributed`](crate::distributed)).
    #[cfg(feature = "distributed")]
    #[error("data-parallel worker {rank}, {op}: {failure}")]
    Collective {
        /// This worker's rank.
        rank: usize,
        /// What the workers were doing ("all-reduce of the gradients", "joining", …).
        op: &'static str,
        /// How it failed.
        failure: crate::distributed::CollectiveFailure,
    },
}

impl TrainError {
    pub(crate) fn invalid(name: &'static str, value: impl ToString, reason: &'static str) -> Self {
        Self::InvalidConfig {
            name,
            value: value.to_string(),
            reason,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of score-train.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Checks `0 < value < ∞`.
pub(crate) fn ensure_positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(TrainError::invalid(
            name,
            value,
            "must be positive and finite",
        ))
    }
}
