//! The predictor–corrector sampler (Song et al. 2021, Algorithm 1 of App. G): at every step of a
//! decreasing time grid, the corrector's Langevin steps at `t_i`, then the predictor's step to
//! `t_{i+1}`; optionally the last step is taken without its noise.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::corrector::CorrectorKind;

use crate::grid::TimeGrid;
use crate::predictor::{PredictorKind, Update};
use crate::samples::{Samples, ensure_finite};

/// Noise stream of the prior draw.
pub(crate) const PRIOR_STREAM: u32 = u32::MAX;
/// First noise stream of the steps of an inverse-problem projection (after the correctors'
/// streams `1..=n`).
pub(crate) const PROJECT_STREAM: u32 = 1 << 31;

/// Configuration of [`PcSampler`]. The default is score_sde's VE setting: reverse diffusion
/// with one Langevin corrector step at snr 0.16, ending noise-free.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct PcSamplerConfig {
    /// The predictor.
    #[config(default = "PredictorKind::ReverseDiffusion")]
    pub predictor: PredictorKind,
    /// The corrector.
    #[config(default = "CorrectorKind::Langevin { snr: 0.16, n_steps: 1 }")]
    pub corrector: CorrectorKind,
    /// Whether the returned samples are the last step's noise-free mean (score_sde's `denoise`).
    #[config(default = true)]
    pub denoise: bool,
}

impl PcSamplerConfig {
    /// Validates the configuration and builds the sampler for `sde`.
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<PcSampler<S>> {
        self.corrector.validate()?;
        Ok(PcSampler {
            sde,
            predictor: self.predictor,
            corrector: self.corrector,
            denoise: self.denoise,
        })
    }
}

/// Any predictor with any corrector over a decreasing time grid.
///
/// Step `i` draws the predictor's noise with key `(i, 0)` and corrector step `j`'s with
/// `(i, 1 + j)`; the prior draw uses `(0, u32::MAX)`. Each step ends with a NaN/∞ check.
///
/// ```
/// use burn::backend::NdArray;
/// use score_core::{GaussianMixture, NoiseSource, VpSde};
/// use score_sample::{PcSamplerConfig, PredictorKind, CorrectorKind, TimeGrid};
/// type B = NdArray<f32>;
/// let sde = VpSde::default();
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let sampler = PcSamplerConfig::new()
///     .with_predictor(PredictorKind::EulerMaruyama)
///     .with_corrector(CorrectorKind::None)
///     .init(sde)
///     .unwrap();
/// let grid = TimeGrid::reverse(&sde, 1e-3, 20).unwrap();
/// let out = sampler
///     .sample::<B, 2, _>(&target, &grid, [16, 2], &NoiseSource::new(0), &Default::default())
///     .unwrap();
/// assert_eq!(out.x.dims(), [16, 2]);
/// assert_eq!(out.nfe, 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PcSampler<S> {
    sde: S,
    predictor: PredictorKind,
    corrector: CorrectorKind,
    denoise: bool,
}

impl<S: Sde> PcSampler<S> {
    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }

    /// Draws the initial state from the SDE's prior and runs the sampler.
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

    /// Runs the sampler from `x` (a draw from `p_{t_0}`) over `grid` (decreasing times).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn sample_from<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        x: Tensor<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        self.run(score, grid, x, noise, |u, _, _| u)
    }

    /// The sampling loop; `project(update, t, key)` maps every update (at time `t`, with a noise
    /// key of its own) before the next one — the identity for plain sampling, the replacement of
    /// known values for inpainting.
    pub(crate) fn run<B, const D: usize, F, P>(
        &self,
        score: &F,
        grid: &TimeGrid,
        x: Tensor<B, D>,
        noise: &NoiseSource,
        mut project: P,
    ) -> crate::Result<Samples<B, D>>
    where
        B: Backend,
        F: ScoreFn<B, D>,
        P: FnMut(Update<B, D>, f64, NoiseKey) -> Update<B, D>,
    {
        grid.require_decreasing("the predictor-corrector sampler")?;
        grid.check_within(&self.sde)?;
        score.check_shape(&x.dims())?;
        let mut u = Update {
            x_mean: x.clone(),
            x,
        };
        for (i, t, t_next) in grid.intervals() {
            let step = i as u64;
            for j in 0..self.corrector.n_steps() {
                u = self.corrector.step(
                    &self.sde,
                    score,
                    u.x,
                    t,
                    t - t_next,
                    noise,
                    NoiseKey::new(step, 1 + j as u32),
                );
                u = project(u, t, NoiseKey::new(step, PROJECT_STREAM + 1 + j as u32));
            }
            u = self.predictor.step(
                &self.sde,
                score,
                u.x,
                t,
                t_next,
                noise,
                NoiseKey::new(step, 0),
            );
            u = project(u, t_next, NoiseKey::new(step, PROJECT_STREAM));
            ensure_finite(&u.x, i, t_next)?;
        }
        let nfe = grid.steps() * (self.predictor.nfe() + self.corrector.n_steps());
        let x = if self.denoise { u.x_mean.clone() } else { u.x };
        Ok(Samples {
            x,
            x_mean: u.x_mean,
            nfe,
        })
    }
}
