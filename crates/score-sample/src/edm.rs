//! The EDM sampler (Karras et al. 2022, Algorithm 2): Heun's method on the probability-flow ODE
//! in `σ`, with optional stochastic churn.
//!
//! Any SDE runs through EDM's general form with `s(t) = m(t)` and `σ(t) = s(t)/m(t)`
//! (Karras et al. 2022, eq. 4 and §3): the scaled state `x̃ = x/m(t)` follows the VE ODE
//! `dx̃/dσ = (x̃ − D(x̃; σ))/σ`, with `D` the Tweedie denoiser of the score at the time where the
//! SDE's noise-to-signal ratio is `σ` ([`crate::sigma`]). For VE, `m = 1` and this is the paper's
//! sampler as written; for VP and sub-VP it is the same ODE trajectory, stepped in `σ`.
//!
//! Step `i`: with `γ = min(S_churn/N, √2 − 1)` when `σ_i ∈ [S_tmin, S_tmax]` (else 0), raise the
//! noise to `σ̂ = (1 + γ)σ_i` by adding `√(σ̂² − σ_i²)·S_noise·z`, then one Heun step from `σ̂` to
//! `σ_{i+1}`. The last interval takes an Euler step (the paper's step to `σ = 0`; here the grid
//! ends at `eps`), so `N` steps cost `2N − 1` score evaluations.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::denoiser::Tweedie;
use crate::error::{SampleError, positive};
use crate::grid::TimeGrid;
use crate::pc::PRIOR_STREAM;
use crate::samples::{Samples, ensure_finite};
use crate::sigma::{GridKind, require_positive_sigma, sigma_at, time_at_sigma};

/// Configuration of [`Edm`]. The defaults are EDM's deterministic sampler (`S_churn = 0`) with
/// `ρ = 7`; EDM's ImageNet setting is `S_churn = 40, S_tmin = 0.05, S_tmax = 50,
/// S_noise = 1.003`.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct EdmConfig {
    /// Exponent `ρ` of the noise schedule that [`Edm::grid`] builds (eq. 5); must be positive.
    #[config(default = 7.0)]
    pub rho: f64,
    /// Total churn `S_churn ≥ 0`; 0 is the deterministic sampler.
    #[config(default = 0.0)]
    pub s_churn: f64,
    /// Smallest `σ` at which churn is applied (`≥ 0`).
    #[config(default = 0.0)]
    pub s_tmin: f64,
    /// Largest `σ` at which churn is applied; `None` is no bound.
    #[config(default = "None")]
    pub s_tmax: Option<f64>,
    /// Scale `S_noise > 0` of the churn noise (slightly above 1 offsets the denoiser's loss of
    /// detail).
    #[config(default = 1.0)]
    pub s_noise: f64,
}

impl EdmConfig {
    /// Validates the configuration and builds the sampler for `sde`.
    ///
    /// ```
    /// use score_core::VeSde;
    /// use score_sample::{EdmConfig, SampleError};
    /// let sde = VeSde::new(0.01, 10.0).unwrap();
    /// let err = EdmConfig::new().with_s_churn(-1.0).init(sde).unwrap_err();
    /// assert!(matches!(err, SampleError::InvalidConfig { name: "s_churn", .. }));
    /// let err = EdmConfig::new().with_rho(0.0).init(sde).unwrap_err();
    /// assert!(matches!(err, SampleError::InvalidConfig { name: "rho", .. }));
    /// ```
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<Edm<S>> {
        positive("rho", self.rho)?;
        positive("s_noise", self.s_noise)?;
        for (name, value) in [("s_churn", self.s_churn), ("s_tmin", self.s_tmin)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SampleError::InvalidConfig {
                    name,
                    value,
                    reason: "must be finite and non-negative",
                });
            }
        }
        if let Some(max) = self.s_tmax
            && (max.is_nan() || max < self.s_tmin)
        {
            return Err(SampleError::InvalidConfig {
                name: "s_tmax",
                value: max,
                reason: "must be at least s_tmin",
            });
        }
        Ok(Edm { sde, config: *self })
    }
}

/// EDM's sampler over a decreasing [`TimeGrid`] (module docs): Heun steps in `σ`, Euler at the
/// last interval, churn noise of step `i` drawn with key `(i, 0)`, the prior with `(0, u32::MAX)`.
/// Every grid time needs `σ(t) > 0`.
///
/// ```
/// use burn::backend::NdArray;
/// use score_core::{GaussianMixture, NoiseSource, VeSde};
/// use score_sample::{EdmConfig, Samples};
/// type B = NdArray<f32>;
/// let sde = VeSde::new(0.01, 10.0).unwrap();
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let edm = EdmConfig::new().init(sde).unwrap();
/// let grid = edm.grid(1e-3, 18).unwrap();
/// let out: Samples<B, 2> = edm
///     .sample(&target, &grid, [16, 2], &NoiseSource::new(0), &Default::default())
///     .unwrap();
/// assert_eq!(out.nfe, 35);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Edm<S> {
    sde: S,
    config: EdmConfig,
}

impl<S: Sde> Edm<S> {
    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }

    /// The configuration.
    pub fn config(&self) -> &EdmConfig {
        &self.config
    }

    /// EDM's ρ-schedule (eq. 5) of `steps` steps from `T` to `eps`, as SDE times.
    pub fn grid(&self, eps: f64, steps: usize) -> crate::Result<TimeGrid> {
        GridKind::Karras {
            rho: self.config.rho,
        }
        .build(&self.sde, eps, steps)
    }

    /// Score evaluations for a grid of `steps` steps: `2·steps − 1`.
    pub fn nfe(steps: usize) -> usize {
        2 * steps - 1
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

    /// Runs the sampler from `x` (a draw from `p_{t_0}`, unscaled) over `grid`.
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
        grid.require_decreasing("the EDM sampler")?;
        grid.check_within(&self.sde)?;
        require_positive_sigma(&self.sde, grid)?;
        let c = &self.config;
        let denoiser = Tweedie::new(&self.sde, score);
        // The ODE in the scaled state x̃ = x/m(t) and σ: dx̃/dσ = (x̃ − D(m·x̃, t(σ)))/σ.
        let slope = |xs: Tensor<B, D>, t: f64, sigma: f64| {
            let m = self.sde.marginal(t).mean_coef;
            let d = denoiser.denoise(xs.clone().mul_scalar(m), t);
            (xs - d).div_scalar(sigma)
        };
        let n_steps = grid.steps();
        let sigma_max = sigma_at(&self.sde, self.sde.t_max());
        let gamma_max = c.s_churn / n_steps as f64;
        let mut xs = x.div_scalar(self.sde.marginal(grid.start()).mean_coef);
        let mut nfe = 0;
        for (i, t, t_next) in grid.intervals() {
            let (sigma, sigma_next) = (sigma_at(&self.sde, t), sigma_at(&self.sde, t_next));
            let churn = sigma >= c.s_tmin && c.s_tmax.is_none_or(|max| sigma <= max);
            let gamma = if churn && gamma_max > 0.0 {
                gamma_max.min(std::f64::consts::SQRT_2 - 1.0)
            } else {
                0.0
            };
            // σ̂ cannot exceed the SDE's σ(T): there is no score beyond T.
            let sigma_hat = (sigma * (1.0 + gamma)).min(sigma_max.max(sigma));
            let t_hat = if sigma_hat > sigma {
                let add = (sigma_hat * sigma_hat - sigma * sigma).sqrt() * c.s_noise;
                let z = noise.normal::<B, D>(xs.dims(), NoiseKey::new(i as u64, 0), &xs.device());
                xs = xs + z.mul_scalar(add);
                time_at_sigma(&self.sde, sigma_hat)?
            } else {
                t
            };
            let h = sigma_next - sigma_hat;
            let d = slope(xs.clone(), t_hat, sigma_hat);
            let euler = xs.clone() + d.clone().mul_scalar(h);
            nfe += 1;
            xs = if i + 1 < n_steps {
                let d2 = slope(euler, t_next, sigma_next);
                nfe += 1;
                xs + (d + d2).mul_scalar(0.5 * h)
            } else {
                euler
            };
            ensure_finite(&xs, i, t_next)?;
        }
        let x = xs.mul_scalar(self.sde.marginal(grid.end()).mean_coef);
        Ok(Samples {
            x_mean: x.clone(),
            x,
            nfe,
        })
    }
}
