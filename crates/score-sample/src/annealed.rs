//! Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; NCSNv2's final denoising step,
//! Song & Ermon 2020): Langevin at a sequence of decreasing noise levels, with step
//! `α_i = ε·σ_i²/σ_L²` at level `i`, so the signal-to-noise ratio of each move stays constant.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::error::{at_least_one, positive};
use crate::grid::TimeGrid;
use crate::samples::{Samples, ensure_finite, times};

/// Configuration of [`AnnealedLangevin`].
#[derive(Config, Debug, Copy, PartialEq)]
pub struct AnnealedLangevinConfig {
    /// Base step size `ε`: the step at the last (smallest) level.
    pub step_size: f64,
    /// Langevin steps per noise level (`T` in Algorithm 1).
    #[config(default = 100)]
    pub steps_per_level: usize,
    /// Whether to end with the noise-free denoising step `x ← (x + σ_L²·s(x, t_L))/m(t_L)`
    /// (Tweedie's formula; for VE, NCSNv2's `x + σ_L²·s`).
    #[config(default = true)]
    pub denoise: bool,
}

impl AnnealedLangevinConfig {
    /// Validates the configuration and builds the sampler for an SDE, whose marginal standard
    /// deviation `σ(t)` gives the noise level of each grid time.
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<AnnealedLangevin<S>> {
        Ok(AnnealedLangevin {
            sde,
            step_size: positive("step_size", self.step_size)?,
            steps_per_level: at_least_one("steps_per_level", self.steps_per_level)?,
            denoise: self.denoise,
        })
    }
}

/// Annealed Langevin dynamics over the levels of a decreasing [`TimeGrid`] (every grid time is a
/// level). With a [`score_core::VeSde`] and a uniform grid the levels are NCSN's geometric σ list
/// ([`score_core::VeSde::smld_sigmas`]).
///
/// Level `i`, step `j` draws its noise with key `(i, j)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnealedLangevin<S> {
    sde: S,
    step_size: f64,
    steps_per_level: usize,
    denoise: bool,
}

impl<S: Sde> AnnealedLangevin<S> {
    /// Draws `x` from the SDE's prior (key `(0, u32::MAX)`) and runs the chain.
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
            .prior_sample(shape, noise, NoiseKey::new(0, u32::MAX), device);
        self.sample_from(score, grid, x, noise)
    }

    /// Runs the chain from `x` over the levels of `grid` (decreasing times).
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
        grid.require_decreasing("annealed Langevin")?;
        grid.check_within(&self.sde)?;
        let (shape, device) = (x.dims(), x.device());
        let t_last = grid.end();
        let sigma_last = self.sde.marginal(t_last).std;
        positive("final noise level sigma_L", sigma_last)?;
        let mut x_mean = x.clone();
        let mut nfe = 0;
        for (i, &t) in grid.times().iter().enumerate() {
            let sigma = self.sde.marginal(t).std;
            let alpha = self.step_size * (sigma / sigma_last).powi(2);
            for j in 0..self.steps_per_level {
                let s = score.score(x.clone(), times(&x, t));
                x_mean = x + s.mul_scalar(alpha);
                let z = noise.normal::<B, D>(shape, NoiseKey::new(i as u64, j as u32), &device);
                x = x_mean.clone() + z.mul_scalar((2.0 * alpha).sqrt());
                ensure_finite(&x, i * self.steps_per_level + j, t)?;
            }
            nfe += self.steps_per_level;
        }
        if self.denoise {
            let k = self.sde.marginal(t_last);
            let s = score.score(x.clone(), times(&x, t_last));
            x_mean = (x + s.mul_scalar(k.std * k.std)).div_scalar(k.mean_coef);
            nfe += 1;
            ensure_finite(&x_mean, grid.times().len() * self.steps_per_level, t_last)?;
            x = x_mean.clone();
        }
        Ok(Samples { x, x_mean, nfe })
    }
}
