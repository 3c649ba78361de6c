//! Sliced score matching (Song, Garg, Shi & Ermon 2019): the trace of ESM replaced by random
//! projections `vᵀ (∂s/∂x) v`, one Jacobian–vector product per projection.

use burn::tensor::{Tensor, backend::Backend};
use score_core::{NoiseKey, NoiseSource, tensor::sum_per_sample};

use super::{Objective, Viewed, host_vector, score_and_quadratic_form, streams};
use crate::error::{Result, TrainError};
use crate::view::{AsScore, LiftedScoreView};

/// The distribution of the projection vectors `v` (both have `E[vvᵀ] = I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Projection {
    /// Standard normal entries.
    #[default]
    Gaussian,
    /// Independent ±1 entries; lower variance for the variance-reduced form.
    Rademacher,
}

/// Which estimator of Song et al. 2019.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlicedEstimator {
    /// SSM, eq. 7: `vᵀ(∂s/∂x)v + ½(vᵀs)²`.
    Plain,
    /// SSM-VR, eq. 8: `vᵀ(∂s/∂x)v + ½‖s‖²` (the second term integrated over `v` in closed form).
    #[default]
    VarianceReduced,
}

/// Sliced score matching with `n_projections` projections per sample, averaged.
///
/// Its expectation over `v` equals explicit score matching's value (for either estimator), and so
/// it is minimised by the true score.
pub type SlicedScoreMatching<V = AsScore> = Viewed<Ssm, V>;

/// The parameters of [`SlicedScoreMatching`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ssm {
    /// Projections per sample (≥ 1).
    pub n_projections: usize,
    /// Distribution of the projections.
    pub projection: Projection,
    /// SSM or SSM-VR.
    pub estimator: SlicedEstimator,
    /// Time passed to the model; default 0.
    pub t: f64,
}

impl SlicedScoreMatching {
    /// SSM-VR with `n_projections` Gaussian projections per sample, for a score network.
    pub fn new(n_projections: usize) -> Result<Self> {
        if n_projections == 0 {
            return Err(TrainError::invalid(
                "n_projections",
                n_projections,
                "need at least one projection",
            ));
        }
        let objective = Ssm {
            n_projections,
            projection: Projection::Gaussian,
            estimator: SlicedEstimator::VarianceReduced,
            t: 0.0,
        };
        Ok(Viewed::from_parts(objective, AsScore))
    }
}

impl<V> SlicedScoreMatching<V> {
    /// The same loss with another projection distribution.
    pub fn with_projection(mut self, projection: Projection) -> Self {
        self.objective.projection = projection;
        self
    }
    /// The same loss with another estimator.
    pub fn with_estimator(mut self, estimator: SlicedEstimator) -> Self {
        self.objective.estimator = estimator;
        self
    }
    /// The same loss with the model evaluated at time `t`.
    pub fn with_time(mut self, t: f64) -> Self {
        self.objective.t = t;
        self
    }
}

/// `p` projections for each of the `n` samples of a batch shaped `dims`, laid out projection-major
/// (`[p·n, …]`, block `k` = projection `k`), each sample's vectors keyed by the sample alone.
fn projections<B: Backend, const D: usize>(
    kind: Projection,
    dims: [usize; D],
    p: usize,
    noise: &NoiseSource,
    key: NoiseKey,
    device: &B::Device,
) -> Tensor<B, D> {
    let n = dims[0];
    let d: usize = dims[1..].iter().product();
    let v: Tensor<B, 2> = match kind {
        Projection::Gaussian => noise.normal([n, p * d], key, device),
        Projection::Rademacher => noise.rademacher([n, p * d], key, device),
    };
    let mut shape = dims;
    shape[0] = p * n;
    v.reshape([n, p, d]).swap_dims(0, 1).reshape(shape)
}

impl<B, M, V, const D: usize> Objective<B, M, V, D> for Ssm
where
    B: Backend,
    V: LiftedScoreView<B, M, D>,
{
    fn validate(&self, view: &V, model: &M) -> crate::Result<()> {
        Ok(view.check_time(model, self.t)?)
    }

    fn per_sample(
        &self,
        view: &V,
        model: &M,
        x0: Tensor<B, D>,
        noise: &NoiseSource,
        step: u64,
    ) -> Tensor<B, 1> {
        let dims = x0.dims();
        let (n, p) = (dims[0], self.n_projections);
        let device = x0.device();
        let key = NoiseKey::new(step, streams::PROJECTION);
        let v = projections::<B, D>(self.projection, dims, p, noise, key, &device);
        let x = x0.repeat_dim(0, p);
        let t = host_vector::<B>(&vec![self.t; p * n], &device);
        let (s, quad) = score_and_quadratic_form(view, model, x, t, v.clone());
        let second = match self.estimator {
            SlicedEstimator::Plain => sum_per_sample(s * v).square(),
            SlicedEstimator::VarianceReduced => sum_per_sample(s.square()),
        };
        (quad + second.mul_scalar(0.5))
            .reshape([p, n])
            .mean_dim(0)
            .reshape([n])
    }
}
