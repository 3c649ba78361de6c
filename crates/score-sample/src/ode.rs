//! The probability-flow ODE `dx/dt = f(t)x − ½g(t)²·s(x, t)` (Song et al. 2021, eq. 13) and the
//! solvers that integrate it: fixed-step Euler, Heun and RK4 over a time grid, and the adaptive
//! Dormand–Prince 5(4) pair (Dormand & Prince 1980; Hairer, Nørsett & Wanner, *Solving ODEs I*,
//! §II.4–5) with a standard step-size controller.
//!
//! Every solver works on the tensors' device. The adaptive controller reads one scalar per step
//! back to the host (the error norm that decides acceptance); the state never leaves the device.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend, cast::ToElement},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::error::{SampleError, at_least_one, positive};
use crate::grid::TimeGrid;
use crate::pc::PRIOR_STREAM;
use crate::samples::{Samples, ensure_finite, times};

/// Settings of the adaptive Dormand–Prince solver.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Relative tolerance.
    #[config(default = 1e-5)]
    pub rtol: f64,
    /// Absolute tolerance.
    #[config(default = 1e-5)]
    pub atol: f64,
    /// Safety factor of the controller.
    #[config(default = 0.9)]
    pub safety: f64,
    /// Smallest factor by which one step may shrink the step size.
    #[config(default = 0.2)]
    pub min_factor: f64,
    /// Largest factor by which one step may grow the step size.
    #[config(default = 10.0)]
    pub max_factor: f64,
    /// Budget of attempted steps.
    #[config(default = 100_000)]
    pub max_steps: usize,
    /// First step size; by default chosen from the initial state and drift (Hairer et al. §II.4).
    #[config(default = "None")]
    pub first_step: Option<f64>,
}

impl AdaptiveConfig {
    /// Checks every setting; an error names the offending one.
    ///
    /// ```
    /// use score_sample::{AdaptiveConfig, SampleError};
    /// let err = AdaptiveConfig::new().with_max_factor(0.5).validate().unwrap_err();
    /// assert!(matches!(err, SampleError::InvalidConfig { name: "max_factor", value, .. } if value == 0.5));
    /// let err = AdaptiveConfig::new().with_min_factor(2.0).validate().unwrap_err();
    /// assert!(matches!(err, SampleError::InvalidConfig { name: "min_factor", .. }));
    /// ```
    pub fn validate(&self) -> crate::Result<()> {
        positive("rtol", self.rtol)?;
        positive("atol", self.atol)?;
        positive("safety", self.safety)?;
        positive("min_factor", self.min_factor)?;
        positive("max_factor", self.max_factor)?;
        // Each bound names the setting that breaks it and its value.
        for (ok, name, value, reason) in [
            (
                self.safety <= 1.0,
                "safety",
                self.safety,
                "must be at most 1",
            ),
            (
                self.min_factor < 1.0,
                "min_factor",
                self.min_factor,
                "must be below 1",
            ),
            (
                self.max_factor > 1.0,
                "max_factor",
                self.max_factor,
                "must be above 1",
            ),
        ] {
            if !ok {
                return Err(SampleError::InvalidConfig {
                    name,
                    value,
                    reason,
                });
            }
        }
        at_least_one("max_steps", self.max_steps)?;
        if let Some(h) = self.first_step {
            positive("first_step", h)?;
        }
        Ok(())
    }
}

/// An ODE solver.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum OdeSolver {
    /// Forward Euler over the grid: one evaluation per step, order 1.
    Euler,
    /// Heun's method (explicit trapezoid): two evaluations per step, order 2.
    Heun,
    /// The classical Runge–Kutta method: four evaluations per step, order 4.
    Rk4,
    /// Adaptive Dormand–Prince 5(4) (RK45, scipy's and score_sde's default), landing on every
    /// grid time; six evaluations per attempted step (the seventh is reused, FSAL).
    Dopri5(AdaptiveConfig),
}

impl OdeSolver {
    /// Checks the adaptive settings, if any.
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            Self::Dopri5(c) => c.validate(),
            _ => Ok(()),
        }
    }
}

/// The end state of an integration and its cost.
#[derive(Debug, Clone)]
pub struct OdeSolution<B: Backend> {
    /// State at the grid's last time, `[n, p]`.
    pub y: Tensor<B, 2>,
    /// Number of drift evaluations.
    pub nfe: usize,
    /// Number of accepted steps.
    pub steps: usize,
}

/// Integrates `dy/dt = f(y, t)` for a batch of flat states `y: [n, p]` over `grid` (either
/// direction). A NaN or ∞ in the state stops with [`SampleError::NonFinite`].
pub fn integrate<B: Backend, F>(
    solver: &OdeSolver,
    grid: &TimeGrid,
    y0: Tensor<B, 2>,
    mut f: F,
) -> crate::Result<OdeSolution<B>>
where
    F: FnMut(Tensor<B, 2>, f64) -> Tensor<B, 2>,
{
    solver.validate()?;
    let mut y = y0;
    let mut nfe = 0;
    if let OdeSolver::Dopri5(cfg) = solver {
        return dopri5(cfg, grid, y, f);
    }
    for (i, t, t_next) in grid.intervals() {
        let h = t_next - t;
        y = match solver {
            OdeSolver::Euler => {
                nfe += 1;
                y.clone() + f(y, t).mul_scalar(h)
            }
            OdeSolver::Heun => {
                let k1 = f(y.clone(), t);
                let k2 = f(y.clone() + k1.clone().mul_scalar(h), t_next);
                nfe += 2;
                y + (k1 + k2).mul_scalar(0.5 * h)
            }
            OdeSolver::Rk4 => {
                let mid = t + 0.5 * h;
                let k1 = f(y.clone(), t);
                let k2 = f(y.clone() + k1.clone().mul_scalar(0.5 * h), mid);
                let k3 = f(y.clone() + k2.clone().mul_scalar(0.5 * h), mid);
                let k4 = f(y.clone() + k3.clone().mul_scalar(h), t_next);
                nfe += 4;
                y + (k1 + k2.mul_scalar(2.0) + k3.mul_scalar(2.0) + k4).mul_scalar(h / 6.0)
            }
            OdeSolver::Dopri5(_) => unreachable!("handled above"),
        };
        ensure_finite(&y, i, t_next)?;
    }
    Ok(OdeSolution {
        y,
        nfe,
        steps: grid.steps(),
    })
}

// Dormand–Prince 5(4) tableau (Hairer et al., Table II.5.2).
const C: [f64; 6] = [0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[0.2],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// 5th-order weights minus 4th-order weights (the embedded error estimate), for k1..k7.
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// `y + h·Σ_j a_j·k_j`, skipping zero coefficients.
fn combine<B: Backend>(y: &Tensor<B, 2>, h: f64, a: &[f64], k: &[Tensor<B, 2>]) -> Tensor<B, 2> {
    let mut out = y.clone();
    for (aj, kj) in a.iter().zip(k) {
        if *aj != 0.0 {
            out = out + kj.clone().mul_scalar(h * aj);
        }
    }
    out
}

/// The largest per-sample RMS of `v / (atol + rtol·scale)`: every sample meets the tolerance,
/// not just the batch on average.
fn error_norm<B: Backend>(v: Tensor<B, 2>, scale: Tensor<B, 2>, cfg: &AdaptiveConfig) -> f64 {
    let r = v / scale.mul_scalar(cfg.rtol).add_scalar(cfg.atol);
    r.square().mean_dim(1).max().sqrt().into_scalar().to_f64()
}

fn dopri5<B: Backend, F>(
    cfg: &AdaptiveConfig,
    grid: &TimeGrid,
    mut y: Tensor<B, 2>,
    mut f: F,
) -> crate::Result<OdeSolution<B>>
where
    F: FnMut(Tensor<B, 2>, f64) -> Tensor<B, 2>,
{
    let dir = if grid.is_decreasing() { -1.0 } else { 1.0 };
    let mut t = grid.start();
    let mut k1 = f(y.clone(), t);
    let mut nfe = 1;
    let mut h = match cfg.first_step {
        Some(h) => h,
        None => {
            let scale = y.clone().abs();
            let d0 = error_norm(y.clone(), scale.clone(), cfg);
            let d1 = error_norm(k1.clone(), scale, cfg);
            if d0 < 1e-5 || d1 < 1e-5 {
                1e-6
            } else {
                0.01 * d0 / d1
            }
        }
    };
    let (mut attempts, mut accepted) = (0usize, 0usize);
    for &t_stop in &grid.times()[1..] {
        while dir * (t_stop - t) > 0.0 {
            let remaining = (t_stop - t).abs();
            let last = h >= remaining;
            let step = if last { remaining } else { h };
            if step <= 16.0 * f64::EPSILON * t.abs().max(1.0) {
                return Err(SampleError::StepSizeTooSmall { t, h: step });
            }
            attempts += 1;
            if attempts > cfg.max_steps {
                return Err(SampleError::TooManySteps {
                    max_steps: cfg.max_steps,
                    t,
                });
            }
            let hs = dir * step;
            let mut k = vec![k1.clone()];
            for (c, a) in C.iter().zip(A) {
                let yi = combine(&y, hs, a, &k);
                k.push(f(yi, t + c * hs));
            }
            nfe += 6;
            // The 7th stage is evaluated at the 5th-order solution itself (FSAL).
            let y5 = combine(&y, hs, A[5], &k[..6]);
            let err = combine(&Tensor::zeros_like(&y), hs, &E, &k);
            let scale = y.clone().abs().max_pair(y5.clone().abs());
            let norm = error_norm(err, scale, cfg);
            if !norm.is_finite() {
                return Err(SampleError::NonFinite {
                    step: accepted,
                    t: t + hs,
                });
            }
            let factor = if norm == 0.0 {
                cfg.max_factor
            } else {
                (cfg.safety * norm.powf(-0.2)).clamp(cfg.min_factor, cfg.max_factor)
            };
            if norm <= 1.0 {
                t = if last { t_stop } else { t + hs };
                y = y5;
                k1 = k.pop().expect("seven stages");
                accepted += 1;
                ensure_finite(&y, accepted, t)?;
                if !last || factor < 1.0 {
                    h = step * factor;
                }
            } else {
                h = step * factor.min(1.0);
            }
        }
    }
    Ok(OdeSolution {
        y,
        nfe,
        steps: accepted,
    })
}

/// Configuration of [`ProbabilityFlow`].
#[derive(Config, Debug, Copy, PartialEq)]
pub struct ProbabilityFlowConfig {
    /// The solver (adaptive RK45 at rtol = atol = 1e-5 by default, as score_sde).
    #[config(default = "OdeSolver::Dopri5(AdaptiveConfig::new())")]
    pub solver: OdeSolver,
}

impl ProbabilityFlowConfig {
    /// Validates the solver settings and builds the ODE for `sde`.
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<ProbabilityFlow<S>> {
        self.solver.validate()?;
        Ok(ProbabilityFlow {
            sde,
            solver: self.solver,
        })
    }
}

/// The probability-flow ODE of an SDE with a score: deterministic sampling ([`Self::sample`],
/// [`Self::decode`]) and encoding of data into the prior ([`Self::encode`]).
///
/// ```
/// use burn::backend::NdArray;
/// use score_core::{GaussianMixture, NoiseSource, VpSde};
/// use score_sample::{OdeSolver, ProbabilityFlowConfig, TimeGrid};
/// type B = NdArray<f32>;
/// let sde = VpSde::default();
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let ode = ProbabilityFlowConfig::new().with_solver(OdeSolver::Heun).init(sde).unwrap();
/// let grid = TimeGrid::reverse(&sde, 1e-3, 10).unwrap();
/// let out = ode
///     .sample::<B, 2, _>(&target, &grid, [4, 2], &NoiseSource::new(1), &Default::default())
///     .unwrap();
/// assert_eq!(out.nfe, 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProbabilityFlow<S> {
    sde: S,
    solver: OdeSolver,
}

impl<S: Sde> ProbabilityFlow<S> {
    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }

    /// The solver.
    pub fn solver(&self) -> &OdeSolver {
        &self.solver
    }

    /// The ODE's drift `f(t)x − ½g(t)²·s(x, t)`.
    pub fn drift<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        x: Tensor<B, D>,
        t: f64,
    ) -> Tensor<B, D> {
        let s = score.score(x.clone(), times(&x, t));
        self.sde.probability_flow_drift(x, s, t)
    }

    /// Draws `x_T` from the prior (key `(0, u32::MAX)`) and decodes it.
    pub fn sample<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        shape: [usize; D],
        noise: &NoiseSource,
        device: &B::Device,
    ) -> crate::Result<Samples<B, D>> {
        let z = self
            .sde
            .prior_sample(shape, noise, NoiseKey::new(0, PRIOR_STREAM), device);
        self.decode(score, grid, z)
    }

    /// Prior → data: integrates from the grid's first time down to its last (decreasing grid).
    /// The ODE injects no noise, so `x_mean == x`.
    pub fn decode<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        z: Tensor<B, D>,
    ) -> crate::Result<Samples<B, D>> {
        grid.require_decreasing("decode")?;
        self.solve(score, grid, z)
    }

    /// Data → prior: integrates from the grid's first time up to its last (increasing grid).
    pub fn encode<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        x: Tensor<B, D>,
    ) -> crate::Result<Samples<B, D>> {
        grid.require_increasing("encode")?;
        self.solve(score, grid, x)
    }

    fn solve<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        x: Tensor<B, D>,
    ) -> crate::Result<Samples<B, D>> {
        grid.check_within(&self.sde)?;
        score.check_shape(&x.dims())?;
        let dims = x.dims();
        let n = dims[0];
        let flat = x.reshape([n as i32, -1]);
        let p = flat.dims()[1];
        let sol = integrate(&self.solver, grid, flat, |y, t| {
            self.drift(score, y.reshape(dims), t).reshape([n, p])
        })?;
        let x = sol.y.reshape(dims);
        Ok(Samples {
            x_mean: x.clone(),
            x,
            nfe: sol.nfe,
        })
    }
}
