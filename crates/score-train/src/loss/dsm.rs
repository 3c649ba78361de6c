//! Denoising score matching at one noise level (Vincent 2011, eq. 8).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use score_core::{NoiseKey, NoiseSource, tensor::sum_per_sample};

use super::{Objective, Viewed, host_vector, normal_like, streams};
use crate::error::{Result, ensure_positive};
use crate::view::{AsScore, ScoreView};

/// Denoising score matching at one `σ`: `E‖s(x + σε, t) + ε/σ‖²`, minimised by the score of the
/// data convolved with `N(0, σ²I)`.
///
/// At that minimum the loss equals the irreducible `E‖ε/σ‖² − E‖∇log q_σ‖²`; for a Gaussian
/// `N(μ, diag v)` that is `Σ_j (1/σ² − 1/(v_j + σ²))`.
pub type DenoisingScoreMatching<V = AsScore> = Viewed<Dsm, V>;

/// The parameters of [`DenoisingScoreMatching`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dsm {
    sigma: f64,
    /// Time passed to the model; default 0.
    pub t: f64,
}

impl DenoisingScoreMatching {
    /// DSM at noise level `sigma` for a score network.
    ///
    /// ```
    /// assert!(score_train::DenoisingScoreMatching::new(0.0).is_err());
    /// ```
    pub fn new(sigma: f64) -> Result<Self> {
        let objective = Dsm {
            sigma: ensure_positive("sigma", sigma)?,
            t: 0.0,
        };
        Ok(Viewed::from_parts(objective, AsScore))
    }
}

impl<V> DenoisingScoreMatching<V> {
    /// The same loss with the model evaluated at time `t`.
    pub fn with_time(mut self, t: f64) -> Self {
        self.objective.t = t;
        self
    }
    /// The noise level.
    pub fn sigma(&self) -> f64 {
        self.objective.sigma
    }
}

impl<B, M, V, const D: usize> Objective<B, M, V, D> for Dsm
where
    B: Backend,
    V: ScoreView<B, M, D>,
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
        let n = x0.dims()[0];
        let eps = normal_like(&x0, noise, NoiseKey::new(step, streams::EPS));
        let x = x0 + eps.clone().mul_scalar(self.sigma);
        let t = host_vector::<B>(&vec![self.t; n], &x.device());
        let s = view.score(model, x, t);
        sum_per_sample((s + eps.div_scalar(self.sigma)).square())
    }
}
