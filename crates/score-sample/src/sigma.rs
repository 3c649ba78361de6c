//! Noise levels of an SDE's marginal in the coordinates few-step solvers use, and the time grids
//! built from them.
//!
//! With `x_t = m(t)·x_0 + s(t)·ε`, the noise-to-signal ratio `σ(t) = s(t)/m(t)` is EDM's `σ`
//! (Karras et al. 2022, §3: `x_t/m(t)` is a VE process in `σ`) and `λ(t) = −ln σ(t)` is the
//! half log-SNR of DPM-Solver (Lu et al. 2022). Both are monotone in `t` for VE, VP and sub-VP,
//! so every σ or λ grid is a [`TimeGrid`] of SDE times, found by bisection; samplers keep one
//! grid type whatever coordinate they step in.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use score_core::Sde;

use crate::error::{SampleError, at_least_one};
use crate::grid::TimeGrid;

/// `σ(t) = s(t)/m(t)`, the noise-to-signal ratio of the marginal at `t`.
///
/// ```
/// use score_core::{Sde, VpSde};
/// let sde = VpSde::default();
/// let k = sde.marginal(0.5);
/// assert!((score_sample::sigma::sigma_at(&sde, 0.5) - k.std / k.mean_coef).abs() < 1e-15);
/// ```
pub fn sigma_at<S: Sde>(sde: &S, t: f64) -> f64 {
    let k = sde.marginal(t);
    k.std / k.mean_coef
}

/// `λ(t) = ln(m(t)/s(t)) = −ln σ(t)`, DPM-Solver's half log-SNR (`+∞` where `s(t) = 0`).
pub fn log_snr<S: Sde>(sde: &S, t: f64) -> f64 {
    -sigma_at(sde, t).ln()
}

/// The time `t ∈ [0, T]` at which `σ(t) = sigma` (bisection to the last bit; `σ` increases with
/// `t` for VE, VP and sub-VP).
///
/// # Errors
/// [`SampleError::InvalidConfig`] if `sigma` lies outside `[σ(0), σ(T)]` or is not finite.
///
/// ```
/// use score_core::VeSde;
/// use score_sample::sigma::{sigma_at, time_at_sigma};
/// let sde = VeSde::new(0.01, 10.0).unwrap();
/// let t = time_at_sigma(&sde, 1.0).unwrap();
/// assert!((sigma_at(&sde, t) - 1.0).abs() < 1e-14);
/// ```
pub fn time_at_sigma<S: Sde>(sde: &S, sigma: f64) -> crate::Result<f64> {
    let (lo_s, hi_s) = (sigma_at(sde, 0.0), sigma_at(sde, sde.t_max()));
    if !(sigma.is_finite() && sigma >= lo_s && sigma <= hi_s) {
        return Err(SampleError::InvalidConfig {
            name: "sigma",
            value: sigma,
            reason: "must lie between the SDE's sigma(0) and sigma(T)",
        });
    }
    let (mut lo, mut hi) = (0.0, sde.t_max());
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if sigma_at(sde, mid) < sigma {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The end nearer in σ.
    Ok(
        if (sigma_at(sde, lo) - sigma).abs() <= (sigma_at(sde, hi) - sigma).abs() {
            lo
        } else {
            hi
        },
    )
}

/// How a few-step solver spaces its steps between `T` and `eps`.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum GridKind {
    /// Uniform in the SDE time `t` (score_sde's grid).
    UniformTime,
    /// Uniform in the half log-SNR `λ` (DPM-Solver's recommended grid for VP).
    UniformLogSnr,
    /// Karras et al. 2022, eq. 5: `σ_i^{1/ρ}` uniform between `σ(T)^{1/ρ}` and `σ(eps)^{1/ρ}`.
    Karras {
        /// The exponent `ρ` (7 in the paper); must be positive.
        rho: f64,
    },
}

impl GridKind {
    /// EDM's grid with `ρ = 7`.
    pub const KARRAS: Self = Self::Karras { rho: 7.0 };

    /// Checks `ρ > 0` for the Karras grid.
    pub fn validate(&self) -> crate::Result<()> {
        if let Self::Karras { rho } = self {
            crate::error::positive("rho", *rho)?;
        }
        Ok(())
    }

    /// The decreasing grid of `steps` steps from the SDE's `T` to `eps`.
    ///
    /// ```
    /// use score_core::VpSde;
    /// use score_sample::sigma::{GridKind, log_snr};
    /// let sde = VpSde::default();
    /// let g = GridKind::UniformLogSnr.build(&sde, 1e-3, 4).unwrap();
    /// let l: Vec<f64> = g.times().iter().map(|&t| log_snr(&sde, t)).collect();
    /// assert!(((l[1] - l[0]) - (l[4] - l[3])).abs() < 1e-9);
    /// ```
    pub fn build<S: Sde>(&self, sde: &S, eps: f64, steps: usize) -> crate::Result<TimeGrid> {
        self.validate()?;
        at_least_one("steps", steps)?;
        score_core::check_eps(eps, sde.t_max())?;
        let t_max = sde.t_max();
        let (s_hi, s_lo) = (sigma_at(sde, t_max), sigma_at(sde, eps));
        let levels: Vec<f64> = match *self {
            Self::UniformTime => return TimeGrid::uniform(t_max, eps, steps),
            Self::UniformLogSnr => {
                let (l0, l1) = (-s_hi.ln(), -s_lo.ln());
                (0..=steps)
                    .map(|i| (-(l0 + (l1 - l0) * i as f64 / steps as f64)).exp())
                    .collect()
            }
            Self::Karras { rho } => {
                score_core::schedule::karras_sigmas(s_lo, s_hi, rho, steps + 1)?
            }
        };
        let last = levels.len() - 1;
        let mut times = Vec::with_capacity(levels.len());
        for (i, &sigma) in levels.iter().enumerate() {
            // The ends are the requested times exactly, not their round trip through σ.
            times.push(match i {
                0 => t_max,
                i if i == last => eps,
                _ => time_at_sigma(sde, sigma.clamp(s_lo, s_hi))?,
            });
        }
        TimeGrid::new(times)
    }
}

/// Checks that `σ(t) > 0` at every time of `grid` (the solvers stepping in `σ` or `λ` divide by
/// it), naming the first time where it fails.
pub(crate) fn require_positive_sigma<S: Sde>(sde: &S, grid: &TimeGrid) -> crate::Result<()> {
    for (index, &t) in grid.times().iter().enumerate() {
        let s = sigma_at(sde, t);
        if !(s.is_finite() && s > 0.0) {
            return Err(SampleError::InvalidGrid {
                index,
                t,
                reason: "this solver needs a positive noise level sigma(t) = s(t)/m(t) at every time",
            });
        }
    }
    Ok(())
}

/// The batch's common time as a `[n]` tensor, at the backend's full float precision (score-core's
/// `full_time` rounds to f32, which on an f64 backend would perturb every score evaluation).
pub(crate) fn times_exact<B: Backend, const D: usize>(x: &Tensor<B, D>, t: f64) -> Tensor<B, 1> {
    Tensor::full([x.dims()[0]], t, &x.device())
}
