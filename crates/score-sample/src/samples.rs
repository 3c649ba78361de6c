//! What every sampler returns, and the small tensor steps samplers share.

use burn::tensor::{Tensor, backend::Backend, cast::ToElement};
use score_core::tensor::{all_finite, full_time, sum_per_sample};

use crate::error::{Result, SampleError};

/// The result of a sampler (DESIGN.md §3): the samples, the noise-free mean of the last update
/// and the number of score evaluations.
#[derive(Debug, Clone)]
pub struct Samples<B: Backend, const D: usize> {
    /// The samples. Equal to `x_mean` when the sampler ends with a noise-free step.
    pub x: Tensor<B, D>,
    /// The last update without its noise term (score_sde's `x_mean`).
    pub x_mean: Tensor<B, D>,
    /// Number of score evaluations (one per batch call of the score function).
    pub nfe: usize,
}

/// `Ok(())` when the state is finite, else [`SampleError::NonFinite`] naming `step` and `t`.
pub(crate) fn ensure_finite<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    step: usize,
    t: f64,
) -> Result<()> {
    if all_finite(x) {
        Ok(())
    } else {
        Err(SampleError::NonFinite { step, t })
    }
}

/// The batch's common time as a `[n]` tensor, as score functions take it.
pub(crate) fn times<B: Backend, const D: usize>(x: &Tensor<B, D>, t: f64) -> Tensor<B, 1> {
    full_time::<B>(t, x.dims()[0], &x.device())
}

/// Mean over the batch of the per-sample Euclidean norm (score_sde's `norm(...).mean()`), read to
/// the host.
pub(crate) fn mean_norm<B: Backend, const D: usize>(x: Tensor<B, D>) -> f64 {
    let n = x.dims()[0] as f64;
    let total: f64 = sum_per_sample(x.square())
        .sqrt()
        .sum()
        .into_scalar()
        .to_f64();
    total / n
}
