//! One call for every sampler (k-diffusion's `sample_*(model, x, sigmas)`, here
//! `generate(score, grid, start, noise)`): the [`Sampler`] trait, implemented by every sampler of
//! the crate, and [`SamplerConfig`] / [`AnySampler`], the choice of sampler as a value that a CLI
//! flag or a config file can hold.
//!
//! How each sampler reads the grid:
//!
//! - the SDE samplers and ODE solvers ([`PcSampler`], [`ProbabilityFlow`], [`Ddim`], [`Edm`],
//!   [`DpmSolver`]) step through every time of it; [`AnnealedLangevin`] takes every time as a
//!   noise level; [`AdaptiveSde`] uses its two ends only;
//! - [`Langevin`] and [`Mala`] run at the grid's last time (their target's time), for their
//!   configured number of steps;
//! - [`DdpmSampler`] takes the score through [`ScoreAsNoise`] and needs the grid of its own
//!   steps, [`ddpm_grid`].

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{AnySde, EnergyFn, NoiseKey, NoiseSource, ScoreFn, Sde, schedule};

use crate::ddpm::{DdpmSampler, DdpmSamplerConfig, NoisePredictor};
use crate::error::SampleError;
use crate::grid::TimeGrid;
use crate::pc::PRIOR_STREAM;
use crate::samples::Samples;
use crate::sigma::GridKind;
use crate::{
    AdaptiveSde, AdaptiveSdeConfig, AnnealedLangevin, AnnealedLangevinConfig, Ddim, DdimConfig,
    DpmSolver, DpmSolverConfig, Edm, EdmConfig, Langevin, LangevinConfig, Mala, PcSampler,
    PcSamplerConfig, ProbabilityFlow, ProbabilityFlowConfig,
};

/// Where a sampler starts: a draw from its prior, or a given state.
#[derive(Debug, Clone)]
pub enum Start<B: Backend, const D: usize> {
    /// Draw the initial state from the sampler's prior (the SDE's `N(0, σ_T²I)`; `N(0, I)` for
    /// DDPM, Langevin and MALA) with key `(0, u32::MAX)`.
    Prior {
        /// Shape of the batch, `[n, …]`.
        shape: [usize; D],
        /// Device of the samples.
        device: B::Device,
    },
    /// Start from this state.
    State(Tensor<B, D>),
}

impl<B: Backend, const D: usize> Start<B, D> {
    /// A prior draw of the given shape on `device`.
    pub fn prior(shape: [usize; D], device: &B::Device) -> Self {
        Self::Prior {
            shape,
            device: device.clone(),
        }
    }

    /// The initial state: the given one, or `N(0, std²I)` drawn with key `(0, u32::MAX)`.
    fn state(self, std: f64, noise: &NoiseSource) -> Tensor<B, D> {
        match self {
            Self::Prior { shape, device } => noise
                .normal::<B, D>(shape, NoiseKey::new(0, PRIOR_STREAM), &device)
                .mul_scalar(std),
            Self::State(x) => x,
        }
    }
}

impl<B: Backend, const D: usize> From<Tensor<B, D>> for Start<B, D> {
    fn from(x: Tensor<B, D>) -> Self {
        Self::State(x)
    }
}

/// A sampler: score (or model) `F`, time grid, start and noise in, [`Samples`] out.
///
/// Object safe: `Box<dyn Sampler<B, D, F>>` holds any sampler for a given model type;
/// [`AnySampler`] is the same choice as a plain value.
///
/// ```
/// use burn::backend::NdArray;
/// use score_core::{GaussianMixture, NoiseSource, VpSde};
/// use score_sample::{DpmSolverConfig, EdmConfig, PcSamplerConfig, Sampler, Samples, Start, TimeGrid};
/// type B = NdArray<f32>;
/// let sde = VpSde::default();
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let samplers: Vec<Box<dyn Sampler<B, 2, _>>> = vec![
///     Box::new(PcSamplerConfig::new().init(sde).unwrap()),
///     Box::new(EdmConfig::new().init(sde).unwrap()),
///     Box::new(DpmSolverConfig::new().init(sde).unwrap()),
/// ];
/// let grid = TimeGrid::reverse(&sde, 1e-3, 10).unwrap();
/// let dev = Default::default();
/// for s in &samplers {
///     let out: Samples<B, 2> = s
///         .generate(&target, &grid, Start::prior([8, 2], &dev), &NoiseSource::new(0))
///         .unwrap();
///     assert_eq!(out.x.dims(), [8, 2]);
/// }
/// ```
pub trait Sampler<B: Backend, const D: usize, F> {
    /// Runs the sampler over `grid` from `start`, with every random draw from `noise`.
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>>;
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F> for PcSampler<S> {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        self.sample_from(score, grid, x, noise)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F> for ProbabilityFlow<S> {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        self.decode(score, grid, x)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F>
    for AnnealedLangevin<S>
{
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        self.sample_from(score, grid, x, noise)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>> Sampler<B, D, F> for Langevin {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        self.sample(score, start.state(1.0, noise), grid.end(), noise)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D> + EnergyFn<B, D>> Sampler<B, D, F> for Mala {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        Ok(self
            .sample(score, start.state(1.0, noise), grid.end(), noise)?
            .samples)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F> for Ddim<S> {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        self.sample_from(score, grid, x, noise)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F> for Edm<S> {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        self.sample_from(score, grid, x, noise)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F> for DpmSolver<S> {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        self.sample_from(score, grid, x, noise)
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>, S: Sde> Sampler<B, D, F> for AdaptiveSde<S> {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let x = start.state(self.sde().prior_std(), noise);
        Ok(self.sample_from_with_stats(score, grid, x, noise)?.samples)
    }
}

/// A score seen as DDPM's noise predictor: `ε(x, t) = −√(1 − ᾱ_i)·s(x, t)` with
/// `i = ddpm_step(t, N)` ([`schedule::ddpm_step`]). Exact when the score's marginal at
/// `ddpm_time(i, N)` has standard deviation `√(1 − ᾱ_i)` (nearly so for the VP SDE whose
/// discretisation gives the betas, [`score_core::VpSde::ddpm_betas`]).
#[derive(Debug, Clone, Copy)]
pub struct ScoreAsNoise<'a, F> {
    score: &'a F,
    alphas_cumprod: &'a [f64],
}

impl<'a, F> ScoreAsNoise<'a, F> {
    /// The noise predictor of `score` for DDPM's `ᾱ_i`.
    pub fn new(score: &'a F, alphas_cumprod: &'a [f64]) -> Self {
        Self {
            score,
            alphas_cumprod,
        }
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>> NoisePredictor<B, D> for ScoreAsNoise<'_, F> {
    fn predict_noise(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        let n = self.alphas_cumprod.len();
        let t0 = score_core::tensor::to_f64(t.clone().narrow(0, 0, 1))[0];
        let i = schedule::ddpm_step(t0, n);
        let std = (1.0 - self.alphas_cumprod[i]).sqrt();
        self.score.score(x, t).mul_scalar(-std)
    }
}

/// The grid of a DDPM sampler with `n` steps: `1, (n − 1)/n, …, 1/n, 0`, whose first `n` times
/// are the times [`schedule::ddpm_time`] at which it evaluates its model.
pub fn ddpm_grid(n: usize) -> crate::Result<TimeGrid> {
    TimeGrid::uniform(1.0, 0.0, n)
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>> Sampler<B, D, F> for DdpmSampler {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        let n = self.betas().len();
        let want = ddpm_grid(n)?;
        let mismatch = if grid.steps() != n {
            Some(0)
        } else {
            grid.times()
                .iter()
                .zip(want.times())
                .position(|(t, w)| (t - w).abs() > 1e-9)
        };
        if let Some(index) = mismatch {
            return Err(SampleError::InvalidGrid {
                index,
                t: grid.times()[index],
                reason: "the DDPM sampler runs on the grid of its own steps (see ddpm_grid)",
            });
        }
        let model = ScoreAsNoise::new(score, self.alphas_cumprod());
        self.sample_from(&model, start.state(1.0, noise), noise)
    }
}

/// Every sampler of the crate as a serialisable value: the choice a CLI flag or config file makes.
/// [`SamplerConfig::init`] validates it for an SDE. MALA needs an energy as well as a score and is
/// left out (it implements [`Sampler`] for such targets).
#[derive(Config, Debug, Copy, PartialEq)]
pub enum SamplerConfig {
    /// [`PcSampler`].
    Pc(PcSamplerConfig),
    /// [`ProbabilityFlow`].
    ProbabilityFlow(ProbabilityFlowConfig),
    /// [`AnnealedLangevin`].
    AnnealedLangevin(AnnealedLangevinConfig),
    /// [`Langevin`].
    Langevin(LangevinConfig),
    /// [`DdpmSampler`] (its betas are the config's, not the SDE's).
    Ddpm(DdpmSamplerConfig),
    /// [`Ddim`].
    Ddim(DdimConfig),
    /// [`Edm`].
    Edm(EdmConfig),
    /// [`DpmSolver`].
    DpmSolver(DpmSolverConfig),
    /// [`AdaptiveSde`].
    AdaptiveSde(AdaptiveSdeConfig),
}

impl SamplerConfig {
    /// Validates the configuration and builds the sampler for `sde`.
    ///
    /// ```
    /// use burn::{backend::NdArray, config::Config};
    /// use score_core::{AnySde, GaussianMixture, NoiseSource, VeSde};
    /// use score_sample::{EdmConfig, Sampler, SamplerConfig, Samples, Start};
    /// type B = NdArray<f32>;
    /// let sde = AnySde::Ve(VeSde::new(0.01, 10.0).unwrap());
    /// // A value, so it round-trips through a config file.
    /// let json = SamplerConfig::Edm(EdmConfig::new()).to_string();
    /// let choice = SamplerConfig::load_binary(json.as_bytes()).unwrap().init(sde).unwrap();
    /// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
    /// let grid = choice.grid(1e-3, 10).unwrap();
    /// let out: Samples<B, 2> = choice
    ///     .generate(&target, &grid, Start::prior([4, 2], &Default::default()), &NoiseSource::new(0))
    ///     .unwrap();
    /// assert_eq!(out.nfe, 19);
    /// ```
    pub fn init(&self, sde: AnySde) -> crate::Result<AnySampler> {
        Ok(match self {
            Self::Pc(c) => AnySampler::Pc(c.init(sde)?),
            Self::ProbabilityFlow(c) => AnySampler::ProbabilityFlow(c.init(sde)?),
            Self::AnnealedLangevin(c) => AnySampler::AnnealedLangevin(c.init(sde)?),
            Self::Langevin(c) => AnySampler::Langevin(c.init()?),
            Self::Ddpm(c) => AnySampler::Ddpm(c.init()?),
            Self::Ddim(c) => AnySampler::Ddim(c.init(sde)?),
            Self::Edm(c) => AnySampler::Edm(c.init(sde)?),
            Self::DpmSolver(c) => AnySampler::DpmSolver(c.init(sde)?),
            Self::AdaptiveSde(c) => AnySampler::AdaptiveSde(c.init(sde)?),
        })
    }
}

/// Any sampler of the crate over an [`AnySde`], chosen at run time ([`SamplerConfig::init`]).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum AnySampler {
    /// [`PcSampler`].
    Pc(PcSampler<AnySde>),
    /// [`ProbabilityFlow`].
    ProbabilityFlow(ProbabilityFlow<AnySde>),
    /// [`AnnealedLangevin`].
    AnnealedLangevin(AnnealedLangevin<AnySde>),
    /// [`Langevin`].
    Langevin(Langevin),
    /// [`DdpmSampler`].
    Ddpm(DdpmSampler),
    /// [`Ddim`].
    Ddim(Ddim<AnySde>),
    /// [`Edm`].
    Edm(Edm<AnySde>),
    /// [`DpmSolver`].
    DpmSolver(DpmSolver<AnySde>),
    /// [`AdaptiveSde`].
    AdaptiveSde(AdaptiveSde<AnySde>),
}

impl AnySampler {
    /// The sampler's own grid of `steps` steps ending at `eps`: EDM's ρ-schedule, DPM-Solver's
    /// configured grid, DDPM's [`ddpm_grid`] (whatever `eps`; `steps` must be its `N`), otherwise
    /// uniform in time from `T` (`steps + 1` levels for annealed Langevin, one interval for
    /// Langevin and the adaptive solver, which use the ends only).
    pub fn grid(&self, eps: f64, steps: usize) -> crate::Result<TimeGrid> {
        match self {
            Self::Pc(s) => TimeGrid::reverse(s.sde(), eps, steps),
            Self::ProbabilityFlow(s) => TimeGrid::reverse(s.sde(), eps, steps),
            Self::AnnealedLangevin(s) => TimeGrid::reverse(s.sde(), eps, steps),
            Self::Langevin(_) => TimeGrid::uniform(1.0, eps, 1),
            Self::Ddpm(s) => {
                if steps != s.betas().len() {
                    return Err(SampleError::InvalidConfig {
                        name: "steps",
                        value: steps as f64,
                        reason: "a DDPM sampler runs its own number of steps",
                    });
                }
                ddpm_grid(steps)
            }
            Self::Ddim(s) => GridKind::UniformTime.build(s.sde(), eps, steps),
            Self::Edm(s) => s.grid(eps, steps),
            Self::DpmSolver(s) => s.grid(eps, steps),
            Self::AdaptiveSde(s) => TimeGrid::reverse(s.sde(), eps, 1),
        }
    }
}

impl<B: Backend, const D: usize, F: ScoreFn<B, D>> Sampler<B, D, F> for AnySampler {
    fn generate(
        &self,
        score: &F,
        grid: &TimeGrid,
        start: Start<B, D>,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        match self {
            Self::Pc(s) => s.generate(score, grid, start, noise),
            Self::ProbabilityFlow(s) => s.generate(score, grid, start, noise),
            Self::AnnealedLangevin(s) => s.generate(score, grid, start, noise),
            Self::Langevin(s) => s.generate(score, grid, start, noise),
            Self::Ddpm(s) => s.generate(score, grid, start, noise),
            Self::Ddim(s) => s.generate(score, grid, start, noise),
            Self::Edm(s) => s.generate(score, grid, start, noise),
            Self::DpmSolver(s) => s.generate(score, grid, start, noise),
            Self::AdaptiveSde(s) => s.generate(score, grid, start, noise),
        }
    }
}
