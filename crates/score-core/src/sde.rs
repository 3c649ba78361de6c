//! The forward SDEs of Song et al. 2021 (§3.4 and App. B): variance exploding (VE), variance
//! preserving (VP) and sub-VP. All three have a linear drift `f(x, t) = f(t)·x` and a scalar
//! diffusion `g(t)`, so their coefficients are host `f64` functions of `t` and the perturbation
//! kernel is Gaussian: `x_t = m(t)·x_0 + s(t)·ε` ([`Marginal`]).

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result, ensure_positive};
use crate::noise::{NoiseKey, NoiseSource};
use crate::schedule;
use crate::tensor::{from_f64, per_sample, sum_per_sample, to_f64};

/// The Gaussian perturbation kernel `p_t(x_t | x_0) = N(m·x_0, s²·I)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Marginal {
    /// The mean coefficient `m(t)`.
    pub mean_coef: f64,
    /// The standard deviation `s(t)`.
    pub std: f64,
}

/// One step of a discretised forward process, `x_{i+1} = x_i + f·x_i + g·z` (Song et al. 2021,
/// eq. 46–47): the reverse-diffusion predictor steps `x ← x − f·x + g²·s(x, t) + g·z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discretization {
    /// Coefficient of `x` in the drift increment over the step.
    pub f: f64,
    /// Noise scale of the step.
    pub g: f64,
}

/// A forward SDE `dx = f(t)·x dt + g(t) dw` on `[0, t_max]` with a zero-mean Gaussian prior.
///
/// The tensor methods are generic and so require `Self: Sized`; use [`AnySde`] to choose an SDE
/// at run time.
pub trait Sde: std::fmt::Debug + Send + Sync {
    /// Terminal time `T`.
    fn t_max(&self) -> f64;
    /// Drift coefficient `f(t)`, with `f(x, t) = f(t)·x`.
    fn drift_coef(&self, t: f64) -> f64;
    /// Diffusion coefficient `g(t)`.
    fn diffusion(&self, t: f64) -> f64;
    /// The perturbation kernel from time 0 to `t`.
    fn marginal(&self, t: f64) -> Marginal;
    /// Standard deviation of the prior `N(0, σ_T² I)` that sampling starts from.
    fn prior_std(&self) -> f64;

    /// The step from `t` to `t + dt` of the forward process; Euler–Maruyama unless the SDE has an
    /// exact discrete form (SMLD for VE, DDPM for VP).
    fn discretize(&self, t: f64, dt: f64) -> Discretization {
        Discretization {
            f: self.drift_coef(t) * dt,
            g: self.diffusion(t) * dt.sqrt(),
        }
    }

    /// `t` itself when it lies in `[0, t_max]`, else [`CoreError::TimeOutOfRange`].
    fn check_time(&self, t: f64) -> Result<f64> {
        if (0.0..=self.t_max()).contains(&t) {
            Ok(t)
        } else {
            Err(CoreError::TimeOutOfRange {
                t,
                t_max: self.t_max(),
            })
        }
    }

    /// [`Sde::marginal`] after checking that `t` lies in `[0, t_max]`.
    fn checked_marginal(&self, t: f64) -> Result<Marginal> {
        self.check_time(t).map(|t| self.marginal(t))
    }

    /// Per-sample mean coefficients and standard deviations for per-sample times. This default
    /// computes [`Sde::marginal`] in f64 on the host and uploads the result (a device sync per
    /// call on a GPU); the SDEs of this crate override it with device ops that keep f32's
    /// relative precision down to `t = 1e-5` (see [`VpSde`]).
    ///
    /// # Shapes
    /// - `t`: `[n]`; outputs: `[n]` each
    fn marginal_tensors<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1>)
    where
        Self: Sized,
    {
        let device = t.device();
        let ts = to_f64(t);
        let (m, s): (Vec<f64>, Vec<f64>) = ts
            .iter()
            .map(|&t| {
                let k = self.marginal(t);
                (k.mean_coef, k.std)
            })
            .unzip();
        let n = ts.len();
        (from_f64(&m, [n], &device), from_f64(&s, [n], &device))
    }

    /// Draws from the prior `N(0, σ_T² I)`.
    fn prior_sample<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        noise: &NoiseSource,
        key: NoiseKey,
        device: &B::Device,
    ) -> Tensor<B, D>
    where
        Self: Sized,
    {
        noise.normal::<B, D>(shape, key, device) * self.prior_std()
    }

    /// Per-sample log-density of the prior.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: `[n]`
    fn prior_log_prob<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, 1>
    where
        Self: Sized,
    {
        let d = x.dims()[1..].iter().product::<usize>() as f64;
        let var = self.prior_std().powi(2);
        let norm = -0.5 * d * (std::f64::consts::TAU * var).ln();
        sum_per_sample(x.square())
            .mul_scalar(-0.5 / var)
            .add_scalar(norm)
    }

    /// Drift of the reverse-time SDE, `f(x, t) − g(t)²·s(x, t)` (Song et al. 2021, eq. 6).
    fn reverse_drift<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        score: Tensor<B, D>,
        t: f64,
    ) -> Tensor<B, D>
    where
        Self: Sized,
    {
        let g = self.diffusion(t);
        x.mul_scalar(self.drift_coef(t)) - score.mul_scalar(g * g)
    }

    /// Drift of the probability-flow ODE, `f(x, t) − ½ g(t)²·s(x, t)` (Song et al. 2021, eq. 13).
    fn probability_flow_drift<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        score: Tensor<B, D>,
        t: f64,
    ) -> Tensor<B, D>
    where
        Self: Sized,
    {
        let g = self.diffusion(t);
        x.mul_scalar(self.drift_coef(t)) - score.mul_scalar(0.5 * g * g)
    }

    /// Perturbs data with the kernel at per-sample times: `m(t)·x_0 + s(t)·ε`.
    fn perturb<B: Backend, const D: usize>(
        &self,
        x0: Tensor<B, D>,
        t: Tensor<B, 1>,
        eps: Tensor<B, D>,
    ) -> Tensor<B, D>
    where
        Self: Sized,
    {
        let (m, s) = self.marginal_tensors(t);
        x0 * per_sample::<B, D>(m) + eps * per_sample::<B, D>(s)
    }
}

/// Variance-exploding SDE, the continuous limit of NCSN/SMLD: `dx = √(d[σ²(t)]/dt) dw` with
/// `σ(t) = σ_min (σ_max/σ_min)^t` on `[0, 1]`.
///
/// Convention (score_sde's): the marginal std at `t` is `σ(t)` itself, so perturbed data at
/// `t = 0` already carries noise `σ_min`; the prior is `N(0, σ_max² I)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "VeParams")]
pub struct VeSde {
    sigma_min: f64,
    sigma_max: f64,
}

/// What a serialised [`VeSde`] holds; deserialising goes through [`VeSde::new`]'s checks.
#[derive(Deserialize)]
struct VeParams {
    sigma_min: f64,
    sigma_max: f64,
}

impl TryFrom<VeParams> for VeSde {
    type Error = crate::CoreError;
    fn try_from(p: VeParams) -> Result<Self> {
        Self::new(p.sigma_min, p.sigma_max)
    }
}

impl VeSde {
    /// A VE SDE; requires `0 < sigma_min < sigma_max`.
    pub fn new(sigma_min: f64, sigma_max: f64) -> Result<Self> {
        schedule::geometric_sigmas(sigma_min, sigma_max, 2)?;
        Ok(Self {
            sigma_min,
            sigma_max,
        })
    }
    /// Smallest noise level.
    pub fn sigma_min(&self) -> f64 {
        self.sigma_min
    }
    /// Largest noise level.
    pub fn sigma_max(&self) -> f64 {
        self.sigma_max
    }
    /// `σ(t)`.
    pub fn sigma(&self, t: f64) -> f64 {
        self.sigma_min * (t * (self.sigma_max / self.sigma_min).ln()).exp()
    }
    /// NCSN's geometric σ list with `n` levels (largest first): the VE SDE sampled at
    /// `t_i = 1 − i/(n−1)`.
    pub fn smld_sigmas(&self, n: usize) -> Result<Vec<f64>> {
        schedule::geometric_sigmas(self.sigma_min, self.sigma_max, n)
    }
}

impl Default for VeSde {
    /// σ_min = 0.01, σ_max = 50 (score_sde's defaults for 2-D/CIFAR-scale data).
    fn default() -> Self {
        Self {
            sigma_min: 0.01,
            sigma_max: 50.0,
        }
    }
}

impl Sde for VeSde {
    fn t_max(&self) -> f64 {
        1.0
    }
    fn drift_coef(&self, _t: f64) -> f64 {
        0.0
    }
    fn diffusion(&self, t: f64) -> f64 {
        self.sigma(t) * (2.0 * (self.sigma_max / self.sigma_min).ln()).sqrt()
    }
    fn marginal(&self, t: f64) -> Marginal {
        Marginal {
            mean_coef: 1.0,
            std: self.sigma(t),
        }
    }
    /// On the device: `σ(t) = exp(ln σ_min + t·ln(σ_max/σ_min))`.
    fn marginal_tensors<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let log_ratio = (self.sigma_max / self.sigma_min).ln();
        let std = t
            .clone()
            .mul_scalar(log_ratio)
            .add_scalar(self.sigma_min.ln())
            .exp();
        (t.ones_like(), std)
    }
    fn prior_std(&self) -> f64 {
        self.sigma_max
    }
    /// SMLD form: `f = 0`, `g = √(σ(t)² − σ(t−dt)²)` (exact for the Gaussian kernel).
    fn discretize(&self, t: f64, dt: f64) -> Discretization {
        let (s, prev) = (self.sigma(t), self.sigma((t - dt).max(0.0)));
        Discretization {
            f: 0.0,
            g: (s * s - prev * prev).max(0.0).sqrt(),
        }
    }
}

fn check_betas(beta_min: f64, beta_max: f64) -> Result<()> {
    if beta_min.is_finite() && beta_max.is_finite() && 0.0 < beta_min && beta_min <= beta_max {
        Ok(())
    } else {
        Err(CoreError::InvalidBetas {
            beta_min,
            beta_max,
            discrete: false,
        })
    }
}

/// The linear β(t) shared by VP and sub-VP: `β(t) = β_min + t(β_max − β_min)` on `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct LinearBeta {
    beta_min: f64,
    beta_max: f64,
}

impl LinearBeta {
    fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }
    /// `B(t) = ∫₀ᵗ β(s) ds`.
    fn integral(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * t * t * (self.beta_max - self.beta_min)
    }
    /// `(e^{−B/2}, 1 − e^{−B})` on the device, the second as `tanh(B/2)·(1 + e^{−B})`.
    fn tensor_terms<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let b = t
            .clone()
            .mul_scalar(0.5 * (self.beta_max - self.beta_min))
            .add_scalar(self.beta_min)
            * t;
        let half = b.clone().mul_scalar(0.5);
        let mean = half.clone().neg().exp();
        let var = half.tanh() * (mean.clone().square().add_scalar(1.0));
        (mean, var)
    }
}

impl Default for LinearBeta {
    fn default() -> Self {
        Self {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
}

/// Variance-preserving SDE, the continuous limit of DDPM: `dx = −½β(t)x dt + √β(t) dw`.
/// Marginal: `m = e^{−B/2}`, `s = √(1 − e^{−B})` with `B(t) = ∫₀ᵗ β`; prior `N(0, I)`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "LinearBeta")]
pub struct VpSde(LinearBeta);

impl TryFrom<LinearBeta> for VpSde {
    type Error = crate::CoreError;
    fn try_from(b: LinearBeta) -> Result<Self> {
        Self::new(b.beta_min, b.beta_max)
    }
}

impl VpSde {
    /// A VP SDE; requires `0 < beta_min <= beta_max` (defaults 0.1 and 20).
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        check_betas(beta_min, beta_max)?;
        Ok(Self(LinearBeta { beta_min, beta_max }))
    }
    /// `β_min`.
    pub fn beta_min(&self) -> f64 {
        self.0.beta_min
    }
    /// `β_max`.
    pub fn beta_max(&self) -> f64 {
        self.0.beta_max
    }
    /// `β(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.0.beta(t)
    }
    /// DDPM's discrete betas for `n` steps: `β_i = β(i/(n−1))/n`, i.e. linear from `β_min/n` to
    /// `β_max/n` (with the defaults and `n = 1000`: 1e-4 → 0.02, the DDPM schedule).
    pub fn ddpm_betas(&self, n: usize) -> Result<Vec<f64>> {
        schedule::linear_betas(self.0.beta_min / n as f64, self.0.beta_max / n as f64, n)
    }
}

impl Sde for VpSde {
    fn t_max(&self) -> f64 {
        1.0
    }
    fn drift_coef(&self, t: f64) -> f64 {
        -0.5 * self.0.beta(t)
    }
    fn diffusion(&self, t: f64) -> f64 {
        self.0.beta(t).sqrt()
    }
    fn marginal(&self, t: f64) -> Marginal {
        let b = self.0.integral(t);
        Marginal {
            mean_coef: (-0.5 * b).exp(),
            std: (-(-b).exp_m1()).sqrt(),
        }
    }
    /// On the device, without the cancellation of `1 − e^{−B}` near `t = 0` (at `t = 1e-5`,
    /// `B ≈ 1e-6`, and f32's `1 − exp(−B)` would keep one digit): `1 − e^{−B} =
    /// tanh(B/2)·(1 + e^{−B})`, where `tanh` keeps its relative precision near 0.
    fn marginal_tensors<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let (mean, var) = self.0.tensor_terms(t);
        (mean, var.sqrt())
    }
    fn prior_std(&self) -> f64 {
        1.0
    }
    /// DDPM form with the exact step β: `β_step = 1 − ᾱ(t)/ᾱ(t−dt)`, `f = √(1−β_step) − 1`,
    /// `g = √β_step`. It equals score_sde's `β(t)·dt` to first order in `dt`, and its products
    /// telescope to the exact marginal.
    fn discretize(&self, t: f64, dt: f64) -> Discretization {
        let db = self.0.integral(t) - self.0.integral((t - dt).max(0.0));
        Discretization {
            f: (-0.5 * db).exp_m1(),
            g: (-(-db).exp_m1()).sqrt(),
        }
    }
}

/// Sub-VP SDE (Song et al. 2021, eq. 29): `dx = −½β(t)x dt + √(β(t)(1 − e^{−2B(t)})) dw`.
/// Marginal: `m = e^{−B/2}`, `s = 1 − e^{−B}`; its variance stays below VP's at every `t`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "LinearBeta")]
pub struct SubVpSde(LinearBeta);

impl TryFrom<LinearBeta> for SubVpSde {
    type Error = crate::CoreError;
    fn try_from(b: LinearBeta) -> Result<Self> {
        Self::new(b.beta_min, b.beta_max)
    }
}

impl SubVpSde {
    /// A sub-VP SDE; requires `0 < beta_min <= beta_max` (defaults 0.1 and 20).
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        check_betas(beta_min, beta_max)?;
        Ok(Self(LinearBeta { beta_min, beta_max }))
    }
    /// `β(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.0.beta(t)
    }
}

impl Sde for SubVpSde {
    fn t_max(&self) -> f64 {
        1.0
    }
    fn drift_coef(&self, t: f64) -> f64 {
        -0.5 * self.0.beta(t)
    }
    fn diffusion(&self, t: f64) -> f64 {
        (self.0.beta(t) * -(-2.0 * self.0.integral(t)).exp_m1()).sqrt()
    }
    fn marginal(&self, t: f64) -> Marginal {
        let b = self.0.integral(t);
        Marginal {
            mean_coef: (-0.5 * b).exp(),
            std: -(-b).exp_m1(),
        }
    }
    /// On the device, as [`VpSde`]'s: the standard deviation is VP's variance `1 − e^{−B}`.
    fn marginal_tensors<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        self.0.tensor_terms(t)
    }
    fn prior_std(&self) -> f64 {
        1.0
    }
}

/// Plain, serialisable description of an SDE; [`SdeConfig::build`] validates it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SdeConfig {
    /// [`VeSde`].
    Ve {
        /// Smallest noise level.
        sigma_min: f64,
        /// Largest noise level.
        sigma_max: f64,
    },
    /// [`VpSde`].
    Vp {
        /// `β(0)`.
        beta_min: f64,
        /// `β(1)`.
        beta_max: f64,
    },
    /// [`SubVpSde`].
    SubVp {
        /// `β(0)`.
        beta_min: f64,
        /// `β(1)`.
        beta_max: f64,
    },
}

impl SdeConfig {
    /// Validates the parameters and builds the SDE.
    pub fn build(&self) -> Result<AnySde> {
        Ok(match *self {
            Self::Ve {
                sigma_min,
                sigma_max,
            } => AnySde::Ve(VeSde::new(sigma_min, sigma_max)?),
            Self::Vp { beta_min, beta_max } => AnySde::Vp(VpSde::new(beta_min, beta_max)?),
            Self::SubVp { beta_min, beta_max } => AnySde::SubVp(SubVpSde::new(beta_min, beta_max)?),
        })
    }
}

/// One of the three SDEs, chosen at run time. Serialises as its variant and parameters;
/// deserialising validates them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum AnySde {
    /// Variance exploding.
    Ve(VeSde),
    /// Variance preserving.
    Vp(VpSde),
    /// Sub-variance preserving.
    SubVp(SubVpSde),
}

impl From<VeSde> for AnySde {
    fn from(sde: VeSde) -> Self {
        AnySde::Ve(sde)
    }
}

impl From<VpSde> for AnySde {
    fn from(sde: VpSde) -> Self {
        AnySde::Vp(sde)
    }
}

impl From<SubVpSde> for AnySde {
    fn from(sde: SubVpSde) -> Self {
        AnySde::SubVp(sde)
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnySde::Ve($s) => $e,
            AnySde::Vp($s) => $e,
            AnySde::SubVp($s) => $e,
        }
    };
}

impl Sde for AnySde {
    fn t_max(&self) -> f64 {
        dispatch!(self, s => s.t_max())
    }
    fn drift_coef(&self, t: f64) -> f64 {
        dispatch!(self, s => s.drift_coef(t))
    }
    fn diffusion(&self, t: f64) -> f64 {
        dispatch!(self, s => s.diffusion(t))
    }
    fn marginal(&self, t: f64) -> Marginal {
        dispatch!(self, s => s.marginal(t))
    }
    fn marginal_tensors<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        dispatch!(self, s => s.marginal_tensors(t))
    }
    fn prior_std(&self) -> f64 {
        dispatch!(self, s => s.prior_std())
    }
    fn discretize(&self, t: f64, dt: f64) -> Discretization {
        dispatch!(self, s => s.discretize(t, dt))
    }
}

/// Checks `eps` for a time interval `[eps, t_max]` used by training and sampling.
pub fn check_eps(eps: f64, t_max: f64) -> Result<f64> {
    ensure_positive("eps", eps)?;
    if eps < t_max {
        Ok(eps)
    } else {
        Err(CoreError::TimeOutOfRange { t: eps, t_max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use burn::backend::NdArray;
    use proptest::prelude::*;

    type B = NdArray<f32>;

    fn all_sdes() -> Vec<AnySde> {
        vec![
            AnySde::Ve(VeSde::default()),
            AnySde::Vp(VpSde::default()),
            AnySde::SubVp(SubVpSde::default()),
        ]
    }

    /// The device marginals against the f64 host formula, from `t = 0` through `1e-6 … 1e-5`
    /// (where VP's `1 − e^{−B}` cancels in f32 if computed directly) to `t = 1`, for every SDE
    /// and two VE ranges (MNIST's σ_max = 50 and a wide 0.002 … 380).
    #[test]
    fn device_marginals_keep_f32_precision_near_zero() {
        let dev = Default::default();
        let ts: Vec<f64> = vec![
            0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.37, 0.5, 0.9, 1.0,
        ];
        let t = from_f64::<B, 1>(&ts, [ts.len()], &dev);
        let mut sdes = all_sdes();
        sdes.push(AnySde::Ve(VeSde::new(0.01, 50.0).unwrap()));
        sdes.push(AnySde::Ve(VeSde::new(0.002, 380.0).unwrap()));
        for sde in sdes {
            let (m, s) = sde.marginal_tensors(t.clone());
            let (m, s) = (to_f64(m), to_f64(s));
            for (i, &ti) in ts.iter().enumerate() {
                // The f32 time itself, so only the formula's error is measured.
                let k = sde.marginal(ti as f32 as f64);
                // f32 carries ε = 1.2e-7 relative per op; the longest chain (VP: 7 ops, and
                // VE's exponent of size ≤ 6 whose absolute error becomes relative) stays
                // below 1e-6; 2e-6 is the bound. The host path's f64 values are the oracle.
                for (what, got, want) in [("mean", m[i], k.mean_coef), ("std", s[i], k.std)] {
                    let err = (got - want).abs();
                    assert!(
                        err <= 2e-6 * want.abs() || err <= 1e-30,
                        "{sde:?} t={ti}: {what} {got} against {want} (relative {:.2e})",
                        err / want.abs()
                    );
                }
            }
        }
    }

    /// Central-difference check that d/dt of the marginal matches drift and diffusion:
    /// `m' = f·m` and `v' = 2f·v + g²`.
    fn check_marginal_ode(sde: &AnySde, t: f64) {
        let h = 1e-6 * t.max(1e-3);
        let (lo, hi) = (sde.marginal(t - h), sde.marginal(t + h));
        let dm = (hi.mean_coef - lo.mean_coef) / (2.0 * h);
        let dv = (hi.std.powi(2) - lo.std.powi(2)) / (2.0 * h);
        let k = sde.marginal(t);
        let (f, g) = (sde.drift_coef(t), sde.diffusion(t));
        let v = k.std * k.std;
        // Central differences in f64 are accurate to ~1e-8 relative at this step; 1e-5 leaves room.
        let scale_m = (f * k.mean_coef).abs().max(1e-6);
        assert!(
            (dm - f * k.mean_coef).abs() <= 1e-5 * scale_m,
            "{sde:?} t={t}: m'={dm}, f·m={}",
            f * k.mean_coef
        );
        let rhs = 2.0 * f * v + g * g;
        let scale_v = rhs.abs().max((2.0 * f * v).abs()).max(1e-8);
        assert!(
            (dv - rhs).abs() <= 1e-5 * scale_v,
            "{sde:?} t={t}: v'={dv}, 2fv+g²={rhs}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn marginals_solve_the_moment_odes(t in 1e-5f64..0.99999) {
            for sde in all_sdes() {
                check_marginal_ode(&sde, t);
            }
        }

        #[test]
        fn vp_discretization_telescopes_to_the_marginal(n in 2usize..200) {
            // Π (1 + f_i)² over a uniform grid from 0 to 1 equals m(1)² exactly.
            let sde = VpSde::default();
            let dt = 1.0 / n as f64;
            let log_prod: f64 = (1..=n).map(|i| 2.0 * sde.discretize(i as f64 * dt, dt).f.ln_1p()).sum();
            prop_assert!((log_prod.exp() - sde.marginal(1.0).mean_coef.powi(2)).abs() < 1e-12);
        }
    }

    #[test]
    fn marginal_ode_holds_at_the_ends() {
        for sde in all_sdes() {
            check_marginal_ode(&sde, 1e-5);
            check_marginal_ode(&sde, 1.0 - 1e-6);
        }
    }

    #[test]
    fn time_zero_conventions() {
        // VP and sub-VP start at the data: identity kernel.
        for sde in [
            AnySde::Vp(VpSde::default()),
            AnySde::SubVp(SubVpSde::default()),
        ] {
            let k = sde.marginal(0.0);
            assert_eq!(k.mean_coef, 1.0);
            assert_eq!(k.std, 0.0);
        }
        // VE (score_sde convention): mean coefficient 1, noise σ_min already at t = 0.
        let k = VeSde::default().marginal(0.0);
        assert_eq!(k.mean_coef, 1.0);
        assert_relative_eq!(k.std, 0.01, max_relative = 1e-14);
    }

    #[test]
    fn small_t_keeps_precision() {
        // 1 − e^{−B} at B ~ 1e-6 loses half its digits without exp_m1.
        let k = VpSde::default().marginal(1e-5);
        let b: f64 = 0.1 * 1e-5 + 0.5 * 1e-10 * 19.9;
        assert_relative_eq!(k.std, (b - b * b / 2.0).sqrt(), max_relative = 1e-9);
        let k = SubVpSde::default().marginal(1e-5);
        assert_relative_eq!(k.std, b - b * b / 2.0, max_relative = 1e-9);
    }

    #[test]
    fn marginal_at_t_max_matches_prior() {
        // The kernel at T is N(m(T)·x₀, s(T)²); the prior N(0, σ_T²) ignores the mean, which for
        // unit-scale data shifts it by m(T)/σ_T prior standard deviations. VE never shrinks the
        // data (m ≡ 1) and σ_max = 50 gives 1/50 = 0.02; VP / sub-VP with β ∈ [0.1, 20]:
        // B(1) = 10.05, m(1) = e^{−5.025} ≈ 6.6e-3 with σ_T = 1. s(T) matches the prior std
        // exactly for VE and up to e^{−10.05}/2 ≈ 2.2e-5 (VP) or e^{−10.05} ≈ 4.3e-5 (sub-VP).
        for sde in all_sdes() {
            let k = sde.marginal(sde.t_max());
            if matches!(sde, AnySde::Ve(_)) {
                assert_eq!(k.mean_coef, 1.0, "{sde:?}");
            }
            let shift = k.mean_coef / sde.prior_std();
            assert!(shift <= 0.02 + 1e-12, "{sde:?}: m(T)/σ_T = {shift}");
            assert!(
                (k.std - sde.prior_std()).abs() / sde.prior_std() < 1e-4,
                "{sde:?}: s(T) = {}",
                k.std
            );
        }
    }

    #[test]
    fn discrete_correspondences() {
        // VP with N = 1000 gives DDPM's linear betas 1e-4 → 0.02.
        let ddpm = VpSde::default().ddpm_betas(1000).unwrap();
        let lin = schedule::linear_betas(1e-4, 0.02, 1000).unwrap();
        for (a, b) in ddpm.iter().zip(&lin) {
            assert_relative_eq!(a, b, max_relative = 1e-12);
        }
        // VE with N levels gives NCSN's geometric sigmas; σ(t_i) at t_i = 1 − i/(N−1) agrees.
        let ve = VeSde::new(0.01, 50.0).unwrap();
        let sig = ve.smld_sigmas(10).unwrap();
        for (i, s) in sig.iter().enumerate() {
            assert_relative_eq!(*s, ve.sigma(1.0 - i as f64 / 9.0), max_relative = 1e-12);
        }
        // SMLD step: g² = σ(t)² − σ(t − dt)².
        let d = ve.discretize(0.5, 0.1);
        assert_relative_eq!(
            d.g.powi(2),
            ve.sigma(0.5).powi(2) - ve.sigma(0.4).powi(2),
            max_relative = 1e-12
        );
        assert_eq!(d.f, 0.0);
        // VP DDPM step, to first order: β_step ≈ β(t)·dt.
        let vp = VpSde::default();
        let d = vp.discretize(0.5, 1e-4);
        assert_relative_eq!(d.g.powi(2), vp.beta(0.5) * 1e-4, max_relative = 1e-3);
        // Sub-VP uses Euler–Maruyama.
        let sub = SubVpSde::default();
        let d = sub.discretize(0.5, 0.01);
        assert_relative_eq!(d.f, sub.drift_coef(0.5) * 0.01);
        assert_relative_eq!(d.g, sub.diffusion(0.5) * 0.1);
    }

    #[test]
    fn tensor_helpers_agree_with_host_maths() {
        let dev = Default::default();
        let sde = VpSde::default();
        let t = Tensor::<B, 1>::from_floats([0.1, 0.9], &dev);
        let (m, s) = sde.marginal_tensors(t.clone());
        let (m, s) = (to_f64(m), to_f64(s));
        assert_relative_eq!(
            m[1],
            sde.marginal(0.9f32 as f64).mean_coef,
            max_relative = 1e-6
        );
        assert_relative_eq!(s[0], sde.marginal(0.1f32 as f64).std, max_relative = 1e-6);

        let x = Tensor::<B, 4>::ones([2, 1, 2, 2], &dev);
        let eps = Tensor::<B, 4>::ones([2, 1, 2, 2], &dev);
        let xt = to_f64(sde.perturb(x.clone(), t, eps));
        assert_relative_eq!(xt[4], m[1] + s[1], max_relative = 1e-6);

        // Reverse drift f·x − g²·s and probability-flow drift f·x − ½g²·s at x = 1, s = 1.
        let score = Tensor::<B, 4>::ones([2, 1, 2, 2], &dev);
        let (f, g) = (sde.drift_coef(0.3), sde.diffusion(0.3));
        let r = to_f64(sde.reverse_drift(x.clone(), score.clone(), 0.3));
        assert_relative_eq!(r[0], f - g * g, max_relative = 1e-6);
        let p = to_f64(sde.probability_flow_drift(x.clone(), score, 0.3));
        assert_relative_eq!(p[0], f - 0.5 * g * g, max_relative = 1e-6);

        // Prior log-density of x = 1 in 4 dimensions under N(0, σ²I).
        let ve = VeSde::new(0.01, 2.0).unwrap();
        let lp = to_f64(ve.prior_log_prob(x));
        let expect = -0.5 * 4.0 / 4.0 - 2.0 * (std::f64::consts::TAU * 4.0).ln();
        assert_relative_eq!(lp[0], expect, max_relative = 1e-6);
        // Prior samples are scaled normals.
        let z = to_f64(ve.prior_sample::<B, 2>(
            [4000, 2],
            &NoiseSource::new(0),
            NoiseKey::new(0, 0),
            &dev,
        ));
        let var = z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64;
        // Variance of 8000 squared N(0, 4) draws: standard error 4·sqrt(2/8000) ≈ 0.063; 5 SE.
        assert!((var - 4.0).abs() < 0.32, "prior variance {var}");
    }

    #[test]
    fn invalid_sdes_and_times_are_rejected() {
        assert_eq!(
            VeSde::new(50.0, 0.01),
            Err(CoreError::InvalidSchedule {
                sigma_min: 50.0,
                sigma_max: 0.01
            })
        );
        assert_eq!(
            VpSde::new(-0.1, 20.0),
            Err(CoreError::InvalidBetas {
                beta_min: -0.1,
                beta_max: 20.0,
                discrete: false
            })
        );
        assert!(matches!(
            SubVpSde::new(2.0, 1.0),
            Err(CoreError::InvalidBetas { .. })
        ));
        assert!(matches!(
            SdeConfig::Vp {
                beta_min: 0.0,
                beta_max: 20.0
            }
            .build(),
            Err(CoreError::InvalidBetas { .. })
        ));
        assert_eq!(
            VpSde::default().checked_marginal(1.5),
            Err(CoreError::TimeOutOfRange { t: 1.5, t_max: 1.0 })
        );
        assert!(VeSde::default().check_time(-0.1).is_err());
        assert_eq!(
            check_eps(0.0, 1.0),
            Err(CoreError::NonPositive {
                name: "eps",
                value: 0.0
            })
        );
        assert_eq!(
            check_eps(2.0, 1.0),
            Err(CoreError::TimeOutOfRange { t: 2.0, t_max: 1.0 })
        );
        let sde = SdeConfig::Ve {
            sigma_min: 0.01,
            sigma_max: 50.0,
        }
        .build()
        .unwrap();
        assert_eq!(sde, AnySde::Ve(VeSde::default()));
    }
}
