//! DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models"): exponential integrators of the probability-flow ODE in data-prediction
//! form, stepping in the half log-SNR `λ = ln(m/s)`.
//!
//! With `D` the Tweedie denoiser ([`crate::Tweedie`]) the exact solution from `λ` to `λ + h` is
//! `x_next = (s_next/s)·x + s_next·∫ e^{λ'} D(λ') dλ'`; the solvers expand `D` in `λ`:
//!
//! - [`DpmSolverKind::Multistep2`] (2M, Algorithm 2): one evaluation per step, the previous
//!   step's `D` gives the first derivative; the first step is first order (DDIM).
//! - [`DpmSolverKind::Singlestep2`] (2S, Algorithm 1 with `r = ½`): two evaluations per step.
//! - [`DpmSolverKind::Singlestep3`] (3S: DPM-Solver-3 of Lu et al. 2022a, Algorithm 2, in
//!   data-prediction form, `r₁ = ⅓, r₂ = ⅔`): three evaluations per step.
//! - [`DpmSolverKind::Multistep2Sde`] (k-diffusion's `sample_dpmpp_2m_sde`, midpoint form): the
//!   SDE variant, which injects noise `s_next·√(1 − e^{−2ηh})·z` each step.
//!
//! Works for every SDE with `s(t) > 0` on the grid: VP, sub-VP and VE (`m = 1`, `λ = −ln σ`).

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
use crate::sigma::{GridKind, log_snr, require_positive_sigma, time_at_sigma};

/// Which DPM-Solver++ update (module docs).
#[derive(Config, Debug, Copy, PartialEq)]
pub enum DpmSolverKind {
    /// DPM-Solver++(2M): multistep, second order, one evaluation per step.
    Multistep2,
    /// DPM-Solver++(2S): single-step, second order, two evaluations per step.
    Singlestep2,
    /// DPM-Solver++(3S): single-step, third order, three evaluations per step.
    Singlestep3,
    /// DPM-Solver++(2M) SDE with stochasticity `η ∈ (0, 1]` (1 in k-diffusion): one evaluation
    /// per step.
    Multistep2Sde {
        /// Noise level `η`; must lie in `(0, 1]`.
        eta: f64,
    },
}

impl DpmSolverKind {
    /// Score evaluations per step.
    pub fn nfe_per_step(&self) -> usize {
        match self {
            Self::Multistep2 | Self::Multistep2Sde { .. } => 1,
            Self::Singlestep2 => 2,
            Self::Singlestep3 => 3,
        }
    }

    /// The order of the deterministic solvers (`None` for the SDE variant).
    pub fn order(&self) -> Option<usize> {
        match self {
            Self::Multistep2 | Self::Singlestep2 => Some(2),
            Self::Singlestep3 => Some(3),
            Self::Multistep2Sde { .. } => None,
        }
    }
}

/// Configuration of [`DpmSolver`]. Default: 2M on a grid uniform in log-SNR.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct DpmSolverConfig {
    /// The update.
    #[config(default = "DpmSolverKind::Multistep2")]
    pub kind: DpmSolverKind,
    /// The grid that [`DpmSolver::grid`] builds.
    #[config(default = "GridKind::UniformLogSnr")]
    pub grid: GridKind,
}

impl DpmSolverConfig {
    /// Validates the configuration and builds the solver for `sde`.
    ///
    /// ```
    /// use score_core::VpSde;
    /// use score_sample::{DpmSolverConfig, DpmSolverKind, SampleError};
    /// let c = DpmSolverConfig::new().with_kind(DpmSolverKind::Multistep2Sde { eta: 0.0 });
    /// assert!(matches!(c.init(VpSde::default()), Err(SampleError::InvalidConfig { name: "eta", .. })));
    /// ```
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<DpmSolver<S>> {
        self.grid.validate()?;
        if let DpmSolverKind::Multistep2Sde { eta } = self.kind
            && !(eta > 0.0 && eta <= 1.0)
        {
            return Err(SampleError::InvalidConfig {
                name: "eta",
                value: eta,
                reason: "must lie in (0, 1] (eta = 0 is DPM-Solver++(2M))",
            });
        }
        Ok(DpmSolver {
            sde,
            kind: self.kind,
            grid: self.grid,
        })
    }
}

/// DPM-Solver++ over a decreasing [`TimeGrid`] (module docs). The SDE variant draws the noise of
/// step `i` with key `(i, 0)`; the prior draw uses `(0, u32::MAX)`.
///
/// ```
/// use burn::backend::NdArray;
/// use score_core::{GaussianMixture, NoiseSource, VpSde};
/// use score_sample::{DpmSolverConfig, Samples};
/// type B = NdArray<f32>;
/// let sde = VpSde::default();
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let solver = DpmSolverConfig::new().init(sde).unwrap();
/// let grid = solver.grid(1e-3, 20).unwrap();
/// let out: Samples<B, 2> = solver
///     .sample(&target, &grid, [16, 2], &NoiseSource::new(0), &Default::default())
///     .unwrap();
/// assert_eq!(out.nfe, 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DpmSolver<S> {
    sde: S,
    kind: DpmSolverKind,
    grid: GridKind,
}

/// `m`, `s` and `λ` at a time.
#[derive(Debug, Clone, Copy)]
struct Level {
    t: f64,
    m: f64,
    s: f64,
    lambda: f64,
}

impl<S: Sde> DpmSolver<S> {
    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }

    /// The update.
    pub fn kind(&self) -> DpmSolverKind {
        self.kind
    }

    /// The configured grid of `steps` steps from `T` to `eps`.
    pub fn grid(&self, eps: f64, steps: usize) -> crate::Result<TimeGrid> {
        self.grid.build(&self.sde, eps, steps)
    }

    fn level(&self, t: f64) -> Level {
        let k = self.sde.marginal(t);
        Level {
            t,
            m: k.mean_coef,
            s: k.std,
            lambda: log_snr(&self.sde, t),
        }
    }

    /// The level at `λ` (inside a step, so within the SDE's range).
    fn level_at_lambda(&self, lambda: f64) -> crate::Result<Level> {
        let t = time_at_sigma(&self.sde, (-lambda).exp())?;
        Ok(Level {
            lambda,
            ..self.level(t)
        })
    }

    /// Draws `x_T` from the SDE's prior and runs the solver.
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

    /// Runs the solver from `x` over `grid` (decreasing times, `s(t) > 0` at each).
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
        grid.require_decreasing("DPM-Solver++")?;
        grid.check_within(&self.sde)?;
        require_positive_sigma(&self.sde, grid)?;
        let denoiser = Tweedie::new(&self.sde, score);
        let den = |x: Tensor<B, D>, l: &Level| denoiser.denoise(x, l.t);
        let mut previous: Option<(Tensor<B, D>, f64)> = None;
        let mut x_mean = x.clone();
        for (i, t, t_next) in grid.intervals() {
            let (a, b) = (self.level(t), self.level(t_next));
            let h = b.lambda - a.lambda;
            let phi_1 = (-h).exp_m1();
            x_mean = match self.kind {
                DpmSolverKind::Multistep2 => {
                    let d = den(x.clone(), &a);
                    let dd = match &previous {
                        None => d.clone(),
                        Some((d_prev, h_prev)) => {
                            let r = h_prev / h;
                            d.clone().mul_scalar(1.0 + 0.5 / r) - d_prev.clone().mul_scalar(0.5 / r)
                        }
                    };
                    previous = Some((d, h));
                    x.mul_scalar(b.s / a.s) - dd.mul_scalar(b.m * phi_1)
                }
                DpmSolverKind::Multistep2Sde { eta } => {
                    let d = den(x.clone(), &a);
                    let eh = eta * h;
                    let c = -(-h - eh).exp_m1();
                    let mut out =
                        x.mul_scalar(b.s / a.s * (-eh).exp()) + d.clone().mul_scalar(b.m * c);
                    if let Some((d_prev, h_prev)) = &previous {
                        let r = h_prev / h;
                        out = out + (d.clone() - d_prev.clone()).mul_scalar(b.m * 0.5 * c / r);
                    }
                    previous = Some((d, h));
                    out
                }
                DpmSolverKind::Singlestep2 => {
                    let mid = self.level_at_lambda(a.lambda + 0.5 * h)?;
                    let d = den(x.clone(), &a);
                    let u = x.clone().mul_scalar(mid.s / a.s)
                        - d.mul_scalar(mid.m * (-0.5 * h).exp_m1());
                    let d_mid = den(u, &mid);
                    x.mul_scalar(b.s / a.s) - d_mid.mul_scalar(b.m * phi_1)
                }
                DpmSolverKind::Singlestep3 => {
                    let (r1, r2) = (1.0 / 3.0, 2.0 / 3.0);
                    let l1 = self.level_at_lambda(a.lambda + r1 * h)?;
                    let l2 = self.level_at_lambda(a.lambda + r2 * h)?;
                    let phi_11 = (-r1 * h).exp_m1();
                    let phi_12 = (-r2 * h).exp_m1();
                    let phi_22 = phi_12 / (r2 * h) + 1.0;
                    let phi_2 = phi_1 / h + 1.0;
                    let d0 = den(x.clone(), &a);
                    let u1 =
                        x.clone().mul_scalar(l1.s / a.s) - d0.clone().mul_scalar(l1.m * phi_11);
                    let d1 = den(u1, &l1);
                    let u2 = x.clone().mul_scalar(l2.s / a.s)
                        - d0.clone().mul_scalar(l2.m * phi_12)
                        + (d1 - d0.clone()).mul_scalar(r2 / r1 * l2.m * phi_22);
                    let d2 = den(u2, &l2);
                    x.mul_scalar(b.s / a.s) - d0.clone().mul_scalar(b.m * phi_1)
                        + (d2 - d0).mul_scalar(b.m * phi_2 / r2)
                }
            };
            x = match self.kind {
                DpmSolverKind::Multistep2Sde { eta } => {
                    let std = b.s * (-(-2.0 * eta * h).exp_m1()).sqrt();
                    let z = noise.normal::<B, D>(
                        x_mean.dims(),
                        NoiseKey::new(i as u64, 0),
                        &x_mean.device(),
                    );
                    x_mean.clone() + z.mul_scalar(std)
                }
                _ => x_mean.clone(),
            };
            ensure_finite(&x, i, t_next)?;
        }
        Ok(Samples {
            x,
            x_mean,
            nfe: grid.steps() * self.kind.nfe_per_step(),
        })
    }
}
