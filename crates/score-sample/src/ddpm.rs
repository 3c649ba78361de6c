//! DDPM's ancestral sampler over discrete betas with an ε-predicting model (Ho et al. 2020,
//! Algorithm 2): `x_{i−1} = (x_i − β_i/√(1 − ᾱ_i)·ε(x_i, i))/√α_i + σ_i·z`, no noise at the last
//! step.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, schedule};

use crate::error::SampleError;
use crate::pc::PRIOR_STREAM;
use crate::predictor::AncestralVariance;
use crate::samples::{Samples, ensure_finite, times};

/// A model that predicts the noise `ε` in `x_i = √ᾱ_i·x_0 + √(1 − ᾱ_i)·ε`.
///
/// It receives step `i ∈ {0, …, N−1}` as the time
/// [`ddpm_time`](score_core::schedule::ddpm_time)`(i, N) = (i + 1)/N`, the time at which
/// score-train's `DdpmLoss` trains it. Closures implement it.
pub trait NoisePredictor<B: Backend, const D: usize> {
    /// The predicted noise.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: same as `x`
    fn predict_noise(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D>;
}

impl<B, const D: usize, F> NoisePredictor<B, D> for F
where
    B: Backend,
    F: Fn(Tensor<B, D>, Tensor<B, 1>) -> Tensor<B, D>,
{
    fn predict_noise(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        self(x, t)
    }
}

/// Configuration of [`DdpmSampler`]: DDPM's linear betas.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct DdpmSamplerConfig {
    /// Number of diffusion steps `N`.
    #[config(default = 1000)]
    pub n_steps: usize,
    /// `β_1`.
    #[config(default = 1e-4)]
    pub beta_start: f64,
    /// `β_N`.
    #[config(default = 0.02)]
    pub beta_end: f64,
    /// `σ_i² = β_i` (`Forward`) or `β̃_i = β_i(1 − ᾱ_{i−1})/(1 − ᾱ_i)` (`Posterior`).
    #[config(default = "AncestralVariance::Forward")]
    pub variance: AncestralVariance,
}

impl DdpmSamplerConfig {
    /// Validates the betas and builds the sampler.
    pub fn init(&self) -> crate::Result<DdpmSampler> {
        let betas = schedule::linear_betas(self.beta_start, self.beta_end, self.n_steps)?;
        DdpmSampler::from_betas(betas, self.variance)
    }
}

/// DDPM's ancestral sampler (see the module docs) over any discrete betas.
///
/// Step `k` (model index `i = N − 1 − k`) draws its noise with key `(k, 0)`; the prior draw uses
/// `(0, u32::MAX)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DdpmSampler {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    variance: AncestralVariance,
}

impl DdpmSampler {
    /// A sampler over given betas (each in `(0, 1)`).
    pub fn from_betas(betas: Vec<f64>, variance: AncestralVariance) -> crate::Result<Self> {
        crate::error::at_least_one("number of betas", betas.len())?;
        if let Some(&beta) = betas
            .iter()
            .find(|b| !(b.is_finite() && **b > 0.0 && **b < 1.0))
        {
            return Err(SampleError::InvalidConfig {
                name: "beta",
                value: beta,
                reason: "discrete betas must lie in (0, 1)",
            });
        }
        let alphas_cumprod = schedule::alphas_cumprod(&betas);
        Ok(Self {
            betas,
            alphas_cumprod,
            variance,
        })
    }

    /// The betas.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// `ᾱ_i = Π_{j≤i} (1 − β_j)`.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// Draws `x_N ~ N(0, I)` and runs all `N` steps.
    pub fn sample<B: Backend, const D: usize, M: NoisePredictor<B, D>>(
        &self,
        model: &M,
        shape: [usize; D],
        noise: &NoiseSource,
        device: &B::Device,
    ) -> crate::Result<Samples<B, D>> {
        let x = noise.normal::<B, D>(shape, NoiseKey::new(0, PRIOR_STREAM), device);
        self.sample_from(model, x, noise)
    }

    /// Runs all `N` steps from `x`.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn sample_from<B: Backend, const D: usize, M: NoisePredictor<B, D>>(
        &self,
        model: &M,
        mut x: Tensor<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let n_steps = self.betas.len();
        let (shape, device) = (x.dims(), x.device());
        let mut x_mean = x.clone();
        for k in 0..n_steps {
            let i = n_steps - 1 - k;
            let t = schedule::ddpm_time(i, n_steps);
            let (beta, abar) = (self.betas[i], self.alphas_cumprod[i]);
            let eps = model.predict_noise(x.clone(), times(&x, t));
            x_mean =
                (x - eps.mul_scalar(beta / (1.0 - abar).sqrt())).div_scalar((1.0 - beta).sqrt());
            x = if i > 0 {
                let var = match self.variance {
                    AncestralVariance::Forward => beta,
                    AncestralVariance::Posterior => {
                        beta * (1.0 - self.alphas_cumprod[i - 1]) / (1.0 - abar)
                    }
                };
                let z = noise.normal::<B, D>(shape, NoiseKey::new(k as u64, 0), &device);
                x_mean.clone() + z.mul_scalar(var.sqrt())
            } else {
                x_mean.clone()
            };
            ensure_finite(&x, k, t)?;
        }
        Ok(Samples {
            x,
            x_mean,
            nfe: n_steps,
        })
    }
}
