//! DDIM (Song, Meng & Ermon 2021, eq. 12): from the denoised estimate `x̂_0 = D(x, t)` and the
//! noise estimate `ε̂` (Tweedie, [`crate::Tweedie`]),
//! `x_next = m_next·x̂_0 + √(s_next² − σ²)·ε̂ + σ·z` with
//! `σ² = η²·s_next²·(1 − (m·s_next)²/(m_next·s)²)`, the variance of `q(x_next | x_t, x_0)` scaled
//! by `η²`.
//!
//! Written on the marginal `x_t = m(t)·x_0 + s(t)·ε` of any SDE: for VP, `m² = ᾱ` and this is the
//! paper's update (η = 1 is DDPM's ancestral step with the posterior variance β̃, η = 0 the
//! deterministic sampler, a first-order solver of the probability-flow ODE); for VE (`m = 1`)
//! η = 0 gives `x_next = x + s(s − s_next)·score`, the deterministic VE form (Euler in `σ`).

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::denoiser::Tweedie;
use crate::error::SampleError;
use crate::grid::TimeGrid;
use crate::pc::PRIOR_STREAM;
use crate::samples::{Samples, ensure_finite};

/// Configuration of [`Ddim`].
#[derive(Config, Debug, Copy, PartialEq)]
pub struct DdimConfig {
    /// `η ∈ [0, 1]`: 0 is deterministic, 1 is DDPM's ancestral sampler.
    #[config(default = 0.0)]
    pub eta: f64,
}

impl DdimConfig {
    /// Validates `η ∈ [0, 1]` and builds the sampler for `sde`.
    ///
    /// ```
    /// use score_core::VpSde;
    /// use score_sample::{DdimConfig, SampleError};
    /// let err = DdimConfig::new().with_eta(1.5).init(VpSde::default()).unwrap_err();
    /// assert!(matches!(err, SampleError::InvalidConfig { name: "eta", .. }));
    /// ```
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<Ddim<S>> {
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SampleError::InvalidConfig {
                name: "eta",
                value: self.eta,
                reason: "must lie in [0, 1]",
            });
        }
        Ok(Ddim { sde, eta: self.eta })
    }
}

/// DDIM over a decreasing [`TimeGrid`] (module docs). One score evaluation per step; step `i`
/// draws its noise (η > 0) with key `(i, 0)`, the prior draw uses `(0, u32::MAX)`. The grid may
/// end where `s(t) = 0` (VP at `t = 0`): that step returns `x̂_0`.
///
/// ```
/// use burn::backend::NdArray;
/// use score_core::{GaussianMixture, NoiseSource, VpSde};
/// use score_sample::{DdimConfig, Samples, TimeGrid};
/// type B = NdArray<f32>;
/// let sde = VpSde::default();
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let ddim = DdimConfig::new().init(sde).unwrap();
/// let grid = TimeGrid::reverse(&sde, 1e-3, 25).unwrap();
/// let out: Samples<B, 2> = ddim
///     .sample(&target, &grid, [16, 2], &NoiseSource::new(0), &Default::default())
///     .unwrap();
/// assert_eq!(out.nfe, 25);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Ddim<S> {
    sde: S,
    eta: f64,
}

impl<S: Sde> Ddim<S> {
    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }

    /// `η`.
    pub fn eta(&self) -> f64 {
        self.eta
    }

    /// Draws `x_T` from the SDE's prior and runs the sampler.
    pub fn sample<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        shape: [usize; D],
        noise: &NoiseSource,
        device: &B::Device,
    ) -> crate::Result<Samples<B, D>> {
        let x = self
            .sde
            .prior_sample(shape, noise, NoiseKey::new(0, PRIOR_STREAM), device);
        self.sample_from(score, grid, x, noise)
    }

    /// Runs the sampler from `x` over `grid` (decreasing times).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn sample_from<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        mut x: Tensor<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        grid.require_decreasing("DDIM")?;
        grid.check_within(&self.sde)?;
        // Every step starts where the score defines a noise level.
        for (index, &t) in grid.times()[..grid.steps()].iter().enumerate() {
            if self.sde.marginal(t).std <= 0.0 {
                return Err(SampleError::InvalidGrid {
                    index,
                    t,
                    reason: "DDIM cannot start a step where s(t) = 0",
                });
            }
        }
        let denoiser = Tweedie::new(&self.sde, score);
        let mut x_mean = x.clone();
        for (i, t, t_next) in grid.intervals() {
            let (k, kn) = (self.sde.marginal(t), self.sde.marginal(t_next));
            let (x0, eps) = denoiser.denoise_and_noise(x, t);
            let var = if self.eta > 0.0 {
                let ratio = (k.mean_coef * kn.std) / (kn.mean_coef * k.std);
                (self.eta * self.eta * kn.std * kn.std * (1.0 - ratio * ratio)).max(0.0)
            } else {
                0.0
            };
            let dir = (kn.std * kn.std - var).max(0.0).sqrt();
            x_mean = x0.mul_scalar(kn.mean_coef) + eps.mul_scalar(dir);
            x = if var > 0.0 {
                let z = noise.normal::<B, D>(
                    x_mean.dims(),
                    NoiseKey::new(i as u64, 0),
                    &x_mean.device(),
                );
                x_mean.clone() + z.mul_scalar(var.sqrt())
            } else {
                x_mean.clone()
            };
            ensure_finite(&x, i, t_next)?;
        }
        Ok(Samples {
            x,
            x_mean,
            nfe: grid.steps(),
        })
    }
}
