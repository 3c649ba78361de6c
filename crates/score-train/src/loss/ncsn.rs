//! Multi-scale denoising score matching of NCSN (Song & Ermon 2019, eq. 5–6).

use burn::tensor::{Tensor, backend::Backend};
use score_core::{
    NoiseKey, NoiseSource, VeSde,
    tensor::{per_sample, sum_per_sample},
};

use super::{Objective, Viewed, host_vector, normal_like, streams};
use crate::error::{Result, TrainError};
use crate::view::{AsScore, ScoreView};

/// NCSN's loss over `L` geometric noise levels `σ_1 > … > σ_L` (the VE SDE's SMLD levels):
/// each sample draws a level `i` uniformly and contributes `σ_i^p ‖s(x + σ_i ε, t_i) + ε/σ_i‖²`,
/// `p = 2` by default so that every level contributes `O(1)`.
///
/// The network is conditioned on the VE time of the level, `t_i = ln(σ_i/σ_min)/ln(σ_max/σ_min)`
/// (so `t = 1` is `σ_max`), the same convention as every sampler that walks a [`VeSde`].
pub type MultiScaleDsm<V = AsScore> = Viewed<Ncsn, V>;

/// The parameters of [`MultiScaleDsm`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ncsn {
    sde: VeSde,
    sigmas: Vec<f64>,
    power: f64,
}

impl MultiScaleDsm {
    /// `levels` geometric noise levels spanning `sde`'s `[σ_min, σ_max]`, with `λ(σ) = σ²`.
    ///
    /// ```
    /// use score_core::VeSde;
    /// let l = score_train::MultiScaleDsm::new(VeSde::new(0.1, 5.0).unwrap(), 10).unwrap();
    /// assert_eq!(l.sigmas().len(), 10);
    /// assert!((l.sigmas()[0] - 5.0).abs() < 1e-12);
    /// ```
    pub fn new(sde: VeSde, levels: usize) -> Result<Self> {
        let objective = Ncsn {
            sigmas: sde.smld_sigmas(levels)?,
            sde,
            power: 2.0,
        };
        Ok(Viewed::from_parts(objective, AsScore))
    }
}

impl<V> MultiScaleDsm<V> {
    /// `λ(σ) = σ^power` instead of `σ²`.
    pub fn with_power(mut self, power: f64) -> Result<Self> {
        if !power.is_finite() {
            return Err(TrainError::invalid("power", power, "must be finite"));
        }
        self.objective.power = power;
        Ok(self)
    }
}

impl Ncsn {
    /// The noise levels, largest first.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
    /// The VE time at which the network sees level `σ`.
    pub fn time_of(&self, sigma: f64) -> f64 {
        (sigma / self.sde.sigma_min()).ln() / (self.sde.sigma_max() / self.sde.sigma_min()).ln()
    }
}

impl<B, M, V, const D: usize> Objective<B, M, V, D> for Ncsn
where
    B: Backend,
    V: ScoreView<B, M, D>,
{
    fn validate(&self, view: &V, model: &M) -> crate::Result<()> {
        super::check_same_sde::<B, M, V, _, D>(view, model, &self.sde, "the NCSN loss")?;
        for &sigma in &self.sigmas {
            view.check_time(model, self.time_of(sigma))?;
        }
        Ok(())
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
        let device = x0.device();
        let levels = self.sigmas.len();
        let u = noise.uniform_f64(n, 1, NoiseKey::new(step, streams::TIME));
        let sigma: Vec<f64> = u
            .iter()
            .map(|u| self.sigmas[((u * levels as f64) as usize).min(levels - 1)])
            .collect();
        let t: Vec<f64> = sigma.iter().map(|&s| self.time_of(s)).collect();
        let weight: Vec<f64> = sigma.iter().map(|s| s.powf(self.power)).collect();
        let sigma = host_vector::<B>(&sigma, &device);
        let eps = normal_like(&x0, noise, NoiseKey::new(step, streams::EPS));
        let x = x0 + eps.clone() * per_sample::<B, D>(sigma.clone());
        let s = view.score(model, x, host_vector(&t, &device));
        let residual = s + eps / per_sample::<B, D>(sigma);
        sum_per_sample(residual.square()) * host_vector(&weight, &device)
    }
}
