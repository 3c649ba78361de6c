//! Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; NCSNv2's final denoising step,
//! Song & Ermon 2020): Langevin at a sequence of decreasing noise levels, with step
//! `α_i = ε·σ_i²/σ_L²` at level `i`, so the signal-to-noise ratio of each move stays constant.
//!
//! Two conventions for the move are in use and differ by a factor 2 in what `ε` means
//! ([`LangevinConvention`]): score_sde's `x + α·s + √(2α)·z` (the default here) and NCSN's
//! `x + (α/2)·s + √α·z`. An `ε` copied from NCSN's paper or code must be used with
//! [`LangevinConvention::Ncsn`] (or halved).

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::error::{at_least_one, positive};
use crate::grid::TimeGrid;
use crate::samples::{Samples, ensure_finite, times};

/// Which Langevin move `ε` is written for.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum LangevinConvention {
    /// score_sde's `x ← x + α·s + √(2α)·z` (the continuous Langevin diffusion discretised with
    /// step `α`).
    ScoreSde,
    /// NCSN's `x ← x + (α/2)·s + √α·z` (Song & Ermon 2019, Algorithm 1): the same chain as
    /// [`LangevinConvention::ScoreSde`] with `α/2`.
    Ncsn,
}

/// Configuration of [`AnnealedLangevin`].
///
/// A starting step size: `ε = 0.05·σ_L²` in the default convention, with `σ_L` the smallest
/// noise level ([`AnnealedLangevinConfig::for_final_sigma`]); the ring tests and the energy
/// end-to-end test run at it. It is a trade-off, not exact: on the 8-ring (σ_L = 0.01, 100 steps
/// per level) the modes come out with about 32 % too much variance, which smaller steps (with
/// more steps per level) reduce. NCSN's CIFAR-10 setting, `ε = 2e-5` at `σ_L = 0.01` in NCSN's convention,
/// is `0.1·σ_L²` in this one.
///
/// Variance-exploding SDEs only: under VP and sub-VP the modes move with `t`
/// (`m(t) = e^{−B(t)/2}`), and a chain run at each level's fixed step cannot follow them (modes at
/// ±6 came out at ±5.3–5.75), so [`AnnealedLangevin::sample_from`] refuses them with
/// [`SampleError::UnsupportedSde`](crate::SampleError::UnsupportedSde). Use the
/// predictor–corrector sampler there.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct AnnealedLangevinConfig {
    /// Base step size `ε`: the step at the last (smallest) level.
    pub step_size: f64,
    /// Which move `ε` is written for.
    #[config(default = "LangevinConvention::ScoreSde")]
    pub convention: LangevinConvention,
    /// Langevin steps per noise level (`T` in Algorithm 1).
    #[config(default = 100)]
    pub steps_per_level: usize,
    /// Whether to end with the noise-free denoising step `x ← (x + σ_L²·s(x, t_L))/m(t_L)`
    /// (Tweedie's formula; for VE, NCSNv2's `x + σ_L²·s`).
    #[config(default = true)]
    pub denoise: bool,
}

impl AnnealedLangevinConfig {
    /// The configuration with the documented step `ε = 0.05·σ_L²` for a smallest noise level
    /// `σ_L` (score_sde's convention).
    ///
    /// ```
    /// let c = score_sample::AnnealedLangevinConfig::for_final_sigma(0.01);
    /// assert!((c.step_size - 5e-6).abs() < 1e-18);
    /// ```
    pub fn for_final_sigma(sigma_l: f64) -> Self {
        Self::new(0.05 * sigma_l * sigma_l)
    }

    /// Validates the configuration and builds the sampler for an SDE, whose marginal standard
    /// deviation `σ(t)` gives the noise level of each grid time.
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<AnnealedLangevin<S>> {
        let step_size = positive("step_size", self.step_size)?;
        Ok(AnnealedLangevin {
            sde,
            // One chain, written in score_sde's convention.
            step_size: match self.convention {
                LangevinConvention::ScoreSde => step_size,
                LangevinConvention::Ncsn => step_size / 2.0,
            },
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
    /// The SDE (for the unified [`crate::Sampler`] call's prior draw).
    pub(crate) fn sde(&self) -> &S {
        &self.sde
    }

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
        score.check_shape(&x.dims())?;
        if let Some(&t) = grid
            .times()
            .iter()
            .find(|&&t| (self.sde.marginal(t).mean_coef - 1.0).abs() > 1e-12)
        {
            return Err(crate::SampleError::UnsupportedSde {
                sampler: "annealed Langevin",
                t,
                reason: "it needs a variance-exploding SDE (mean coefficient 1); under VP and \
                         sub-VP the modes move with t and the chain lags behind them",
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use score_core::{GaussianMixture, SubVpSde, VeSde, VpSde};

    type B = NdArray<f32>;

    #[test]
    fn ncsn_convention_is_score_sde_with_half_the_step() {
        let sde = VeSde::new(0.2, 6.0).unwrap();
        let score = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
        let grid = TimeGrid::reverse(&sde, 1e-3, 5).unwrap();
        let run = |c: AnnealedLangevinConfig| {
            c.with_steps_per_level(10)
                .init(sde)
                .unwrap()
                .sample::<B, 2, _>(
                    &score,
                    &grid,
                    [64, 2],
                    &NoiseSource::new(3),
                    &Default::default(),
                )
                .unwrap()
                .x
                .into_data()
        };
        let eps = 0.004;
        let ncsn = run(AnnealedLangevinConfig::new(eps).with_convention(LangevinConvention::Ncsn));
        assert_eq!(ncsn, run(AnnealedLangevinConfig::new(eps / 2.0)));
        assert_ne!(ncsn, run(AnnealedLangevinConfig::new(eps)));
    }

    #[test]
    fn vp_and_sub_vp_are_refused() {
        let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
        let config = AnnealedLangevinConfig::for_final_sigma(0.05);
        let dev = Default::default();
        let vp = VpSde::default();
        let grid = TimeGrid::reverse(&vp, 1e-3, 5).unwrap();
        let err = config
            .init(vp)
            .unwrap()
            .sample::<B, 2, _>(
                &ring.diffused(vp),
                &grid,
                [4, 2],
                &NoiseSource::new(0),
                &dev,
            )
            .unwrap_err();
        assert!(
            matches!(err, crate::SampleError::UnsupportedSde { t, .. } if t == grid.times()[0]),
            "{err}"
        );
        let sub = SubVpSde::default();
        assert!(matches!(
            config.init(sub).unwrap().sample::<B, 2, _>(
                &ring.diffused(sub),
                &grid,
                [4, 2],
                &NoiseSource::new(0),
                &dev
            ),
            Err(crate::SampleError::UnsupportedSde { .. })
        ));
    }
}
