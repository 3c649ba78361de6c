//! Analytic targets with exact scores and densities: the oracle for every test and benchmark.
//!
//! A diagonal Gaussian mixture pushed through any of the linear SDEs stays a mixture: component
//! `k` becomes `N(m(t)·μ_k, m(t)²·v_k + s(t)²)` with the same weight. So [`GaussianMixture`] knows
//! the exact score and log-density of `p_t` for every `t`, in f64 on the host (for checking) and on
//! tensors (for driving samplers and losses) through [`Diffused`].

use burn::tensor::{Tensor, activation::softmax, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::host;
use crate::noise::{NoiseKey, NoiseSource};
use crate::score::{EnergyFn, ScoreFn};
use crate::sde::{Marginal, Sde};
use crate::tensor::{from_f64, per_sample};

const LN_TAU: f64 = 1.837_877_066_409_345_3; // ln(2π)

fn check_variances(component: usize, var: &[f64]) -> Result<()> {
    for (coord, &value) in var.iter().enumerate() {
        if !(value.is_finite() && value > 0.0) {
            return Err(CoreError::InvalidVariance {
                component,
                coord,
                value,
            });
        }
    }
    Ok(())
}

/// A Gaussian `N(μ, diag(v))` in any dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GaussianParams")]
pub struct DiagGaussian {
    mean: Vec<f64>,
    var: Vec<f64>,
}

/// What a serialised [`DiagGaussian`] holds; deserialising goes through [`DiagGaussian::new`].
#[derive(Deserialize)]
struct GaussianParams {
    mean: Vec<f64>,
    var: Vec<f64>,
}

impl TryFrom<GaussianParams> for DiagGaussian {
    type Error = CoreError;
    fn try_from(p: GaussianParams) -> Result<Self> {
        Self::new(p.mean, p.var)
    }
}

impl DiagGaussian {
    /// A Gaussian with the given mean and per-coordinate variances (positive, same length).
    pub fn new(mean: Vec<f64>, var: Vec<f64>) -> Result<Self> {
        if mean.len() != var.len() {
            return Err(CoreError::DimensionMismatch {
                what: "Gaussian variances",
                expected: mean.len(),
                got: var.len(),
            });
        }
        check_variances(0, &var)?;
        Ok(Self { mean, var })
    }
    /// Dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }
    /// Mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// Per-coordinate variances.
    pub fn variance(&self) -> &[f64] {
        &self.var
    }
    /// The law of `m·x + s·ε` for `x` drawn from this Gaussian.
    pub fn perturbed(&self, k: Marginal) -> Self {
        Self {
            mean: self.mean.iter().map(|m| k.mean_coef * m).collect(),
            var: self
                .var
                .iter()
                .map(|v| k.mean_coef.powi(2) * v + k.std.powi(2))
                .collect(),
        }
    }
    /// Exact log-density.
    pub fn log_prob_f64(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(&self.mean)
            .zip(&self.var)
            .map(|((x, m), v)| -0.5 * ((x - m).powi(2) / v + v.ln() + LN_TAU))
            .sum()
    }
    /// Exact score `−(x − μ)/v`.
    pub fn score_f64(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(&self.mean)
            .zip(&self.var)
            .map(|((x, m), v)| -(x - m) / v)
            .collect()
    }
    /// The same law as a one-component mixture (for tensors and SDE-perturbed scores).
    pub fn to_mixture(&self) -> GaussianMixture {
        GaussianMixture {
            weights: vec![1.0],
            means: vec![self.mean.clone()],
            vars: vec![self.var.clone()],
        }
    }
}

/// A mixture of diagonal Gaussians `Σ_k w_k N(μ_k, diag(v_k))`; weights are normalised on build.
///
/// ```
/// use score_core::{GaussianMixture, Sde, VpSde};
/// let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
/// let p_t = ring.at(&VpSde::default(), 0.5).unwrap();
/// let x = [1.0, -0.5];
/// let s = p_t.score_f64(&x);
/// // The exact score is the gradient of the exact log-density.
/// let h = 1e-5;
/// let fd = (p_t.log_prob_f64(&[x[0] + h, x[1]]) - p_t.log_prob_f64(&[x[0] - h, x[1]])) / (2.0 * h);
/// assert!((s[0] - fd).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MixtureParams")]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    vars: Vec<Vec<f64>>,
}

/// What a serialised [`GaussianMixture`] holds; deserialising goes through
/// [`GaussianMixture::new`] (an empty or malformed mixture is an error, not a later panic).
#[derive(Deserialize)]
struct MixtureParams {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    vars: Vec<Vec<f64>>,
}

impl TryFrom<MixtureParams> for GaussianMixture {
    type Error = CoreError;
    fn try_from(p: MixtureParams) -> Result<Self> {
        Self::new(p.weights, p.means, p.vars)
    }
}

impl GaussianMixture {
    /// A mixture from positive weights (normalised here), means and per-coordinate variances.
    pub fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, vars: Vec<Vec<f64>>) -> Result<Self> {
        if weights.is_empty() {
            return Err(CoreError::EmptyMixture);
        }
        for (index, &weight) in weights.iter().enumerate() {
            if !(weight.is_finite() && weight > 0.0) {
                return Err(CoreError::InvalidWeight { index, weight });
            }
        }
        for (what, got) in [
            ("mixture means", means.len()),
            ("mixture variances", vars.len()),
        ] {
            if got != weights.len() {
                return Err(CoreError::DimensionMismatch {
                    what,
                    expected: weights.len(),
                    got,
                });
            }
        }
        let d = means[0].len();
        if d == 0 {
            return Err(CoreError::DimensionMismatch {
                what: "mixture dimension (must be positive)",
                expected: 1,
                got: 0,
            });
        }
        for (k, (m, v)) in means.iter().zip(&vars).enumerate() {
            for (what, got) in [("mixture mean", m.len()), ("mixture variance", v.len())] {
                if got != d {
                    return Err(CoreError::DimensionMismatch {
                        what,
                        expected: d,
                        got,
                    });
                }
            }
            check_variances(k, v)?;
        }
        let total: f64 = weights.iter().sum();
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
            means,
            vars,
        })
    }

    /// A mixture of isotropic components given by their standard deviations (most users think
    /// in standard deviations; [`new`](Self::new) takes per-coordinate variances).
    ///
    /// ```
    /// use score_core::GaussianMixture;
    /// let m = GaussianMixture::isotropic(vec![1.0, 3.0], vec![vec![-2.0], vec![2.0]], vec![0.5, 1.0])
    ///     .unwrap();
    /// assert_eq!(m.variances(), &[vec![0.25], vec![1.0]]);
    /// assert_eq!(m.weights(), &[0.25, 0.75]);
    /// assert!(GaussianMixture::isotropic(vec![1.0], vec![vec![0.0]], vec![-1.0]).is_err());
    /// ```
    pub fn isotropic(weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<f64>) -> Result<Self> {
        if stds.len() != means.len() {
            return Err(CoreError::DimensionMismatch {
                what: "mixture standard deviations",
                expected: means.len(),
                got: stds.len(),
            });
        }
        for (k, &s) in stds.iter().enumerate() {
            check_variances(k, &[s])?;
        }
        let vars = means
            .iter()
            .zip(&stds)
            .map(|(m, s)| vec![s * s; m.len()])
            .collect();
        Self::new(weights, means, vars)
    }

    /// `k` equally weighted isotropic components of standard deviation `std` evenly spaced on a
    /// circle of the given radius (the classic 2-D "8 Gaussians" target with `k = 8`).
    pub fn ring(k: usize, radius: f64, std: f64) -> Result<Self> {
        crate::error::ensure_steps("ring mixture components", k, 1)?;
        crate::error::ensure_positive("ring radius", radius)?;
        let means = (0..k)
            .map(|i| {
                let a = std::f64::consts::TAU * i as f64 / k as f64;
                vec![radius * a.cos(), radius * a.sin()]
            })
            .collect();
        Self::new(vec![1.0; k], means, vec![vec![std * std; 2]; k])
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }
    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }
    /// Normalised weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// Component means.
    pub fn means(&self) -> &[Vec<f64>] {
        &self.means
    }
    /// Component per-coordinate variances.
    pub fn variances(&self) -> &[Vec<f64>] {
        &self.vars
    }

    /// The law of `m·x + s·ε` for `x` drawn from this mixture.
    pub fn perturbed(&self, k: Marginal) -> Self {
        let (m, s2) = (k.mean_coef, k.std * k.std);
        Self {
            weights: self.weights.clone(),
            means: self
                .means
                .iter()
                .map(|mu| mu.iter().map(|x| m * x).collect())
                .collect(),
            vars: self
                .vars
                .iter()
                .map(|v| v.iter().map(|x| m * m * x + s2).collect())
                .collect(),
        }
    }

    /// `p_t` of the SDE started at this mixture, with `t` checked against `[0, T]`.
    pub fn at<S: Sde>(&self, sde: &S, t: f64) -> Result<Self> {
        Ok(self.perturbed(sde.checked_marginal(t)?))
    }

    /// The time-dependent target `p_t` for an SDE, usable as a tensor [`ScoreFn`] / [`EnergyFn`].
    pub fn diffused<S: Sde>(&self, sde: S) -> Diffused<S> {
        Diffused {
            mixture: self.clone(),
            sde,
        }
    }

    fn component_log_probs(&self, x: &[f64]) -> Vec<f64> {
        self.weights
            .iter()
            .zip(self.means.iter().zip(&self.vars))
            .map(|(w, (mu, v))| {
                w.ln()
                    + x.iter()
                        .zip(mu)
                        .zip(v)
                        .map(|((x, m), v)| -0.5 * ((x - m).powi(2) / v + v.ln() + LN_TAU))
                        .sum::<f64>()
            })
            .collect()
    }

    /// Exact log-density at one point.
    pub fn log_prob_f64(&self, x: &[f64]) -> f64 {
        let lp = self.component_log_probs(x);
        let max = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        max + lp.iter().map(|l| (l - max).exp()).sum::<f64>().ln()
    }

    /// Exact score at one point: `Σ_k r_k(x)·(−(x − μ_k)/v_k)` with responsibilities `r_k`.
    pub fn score_f64(&self, x: &[f64]) -> Vec<f64> {
        let lp = self.component_log_probs(x);
        let max = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let r: Vec<f64> = lp.iter().map(|l| (l - max).exp()).collect();
        let z: f64 = r.iter().sum();
        let mut s = vec![0.0; x.len()];
        for (rk, (mu, v)) in r.iter().zip(self.means.iter().zip(&self.vars)) {
            for j in 0..x.len() {
                s[j] -= rk / z * (x[j] - mu[j]) / v[j];
            }
        }
        s
    }

    /// Exact mean.
    pub fn mean(&self) -> Vec<f64> {
        let mut m = vec![0.0; self.dim()];
        for (w, mu) in self.weights.iter().zip(&self.means) {
            for (a, b) in m.iter_mut().zip(mu) {
                *a += w * b;
            }
        }
        m
    }

    /// Exact covariance (dense, row-major `d × d`).
    pub fn covariance(&self) -> Vec<f64> {
        let (d, mean) = (self.dim(), self.mean());
        let mut c = vec![0.0; d * d];
        for (w, (mu, v)) in self.weights.iter().zip(self.means.iter().zip(&self.vars)) {
            for i in 0..d {
                for j in 0..d {
                    let diag = if i == j { v[i] } else { 0.0 };
                    c[i * d + j] += w * (diag + mu[i] * mu[j]);
                }
            }
        }
        for i in 0..d {
            for j in 0..d {
                c[i * d + j] -= mean[i] * mean[j];
            }
        }
        c
    }

    /// `n` exact samples, row-major `n × d`, on the host. Component choice and Gaussian noise are
    /// both keyed per sample, so sample `i` does not depend on `n`.
    pub fn sample_f64(&self, n: usize, noise: &NoiseSource, key: NoiseKey) -> Vec<f64> {
        let d = self.dim();
        let u = noise.derive(0x6d69_7874).uniform_f64(n, 1, key);
        let z = noise.normal_f64(n, d, key);
        let mut cdf = Vec::with_capacity(self.weights.len());
        let mut acc = 0.0;
        for w in &self.weights {
            acc += w;
            cdf.push(acc);
        }
        let mut out = vec![0.0; n * d];
        for i in 0..n {
            let k = cdf.iter().position(|&c| u[i] < c).unwrap_or(cdf.len() - 1);
            for j in 0..d {
                out[i * d + j] = self.means[k][j] + self.vars[k][j].sqrt() * z[i * d + j];
            }
        }
        out
    }

    /// `n` exact samples as a `[n, d]` tensor.
    pub fn sample<B: Backend>(
        &self,
        n: usize,
        noise: &NoiseSource,
        key: NoiseKey,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        from_f64(&self.sample_f64(n, noise, key), [n, self.dim()], device)
    }

    /// Per-component log-densities `ln w_k + ln N_k(x)` with per-sample kernel `(a, s)`,
    /// and the terms `(x − aμ_k)/var_k` the score needs.
    ///
    /// # Shapes
    /// - `x`: `[n, d]`, `a`, `s`: `[n]`; outputs `[n, K]` and `[n, K, d]`
    fn tensor_terms<B: Backend>(
        &self,
        x: Tensor<B, 2>,
        a: Tensor<B, 1>,
        s: Tensor<B, 1>,
    ) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let device = x.device();
        let [n, d] = x.dims();
        let k = self.n_components();
        assert_eq!(
            d,
            self.dim(),
            "data dimension {d} != target dimension {}",
            self.dim()
        );
        let mu: Vec<f64> = self.means.concat();
        let v: Vec<f64> = self.vars.concat();
        let mu = from_f64::<B, 3>(&mu, [1, k, d], &device);
        let v = from_f64::<B, 3>(&v, [1, k, d], &device);
        let log_w = from_f64::<B, 2>(
            &self.weights.iter().map(|w| w.ln()).collect::<Vec<_>>(),
            [1, k],
            &device,
        );
        let a = per_sample::<B, 3>(a);
        let s = per_sample::<B, 3>(s);
        let var = v * a.clone().square() + s.square(); // [n, K, d]
        let diff = x.reshape([n, 1, d]) - mu * a; // [n, K, d]
        let scaled = diff.clone() / var.clone();
        let quad = (scaled.clone() * diff).sum_dim(2); // Σ diff²/var
        let log_det = var.log().sum_dim(2);
        let lp =
            (quad + log_det).reshape([n, k]).mul_scalar(-0.5) + log_w - (0.5 * d as f64 * LN_TAU);
        (lp, scaled)
    }

    fn tensor_score<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        a: Tensor<B, 1>,
        s: Tensor<B, 1>,
    ) -> Tensor<B, D> {
        if host::is_host_backend::<B>() {
            return self.host_score(x, a, s);
        }
        self.composed_score(x, a, s)
    }

    /// [`host::mixture_score`]: one pass per sample on the CPU backends.
    fn host_score<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        a: Tensor<B, 1>,
        s: Tensor<B, 1>,
    ) -> Tensor<B, D> {
        let dims = x.dims();
        let (n, d) = (dims[0], self.dim());
        let got: usize = dims[1..].iter().product();
        assert_eq!(got, d, "data dimension {got} != target dimension {d}");
        let device = x.device();
        let log_weights: Vec<f64> = self.weights.iter().map(|w| w.ln()).collect();
        let params = host::MixtureParams {
            log_weights: &log_weights,
            means: &self.means,
            vars: &self.vars,
        };
        let out = host::mixture_score(
            &params,
            &host::values(x),
            &host::values(a),
            &host::values(s),
        );
        host::tensor::<B, 2>(out, [n, d], &device).reshape(dims)
    }

    /// The score as burn tensor ops (any backend, differentiable).
    fn composed_score<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        a: Tensor<B, 1>,
        s: Tensor<B, 1>,
    ) -> Tensor<B, D> {
        let dims = x.dims();
        let n = dims[0];
        let (lp, scaled) = self.tensor_terms(x.reshape([n as i32, -1]), a, s);
        let r = softmax(lp, 1).unsqueeze_dim::<3>(2); // [n, K, 1]
        (r * scaled).sum_dim(1).neg().reshape(dims)
    }

    fn tensor_log_prob<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        a: Tensor<B, 1>,
        s: Tensor<B, 1>,
    ) -> Tensor<B, 1> {
        let n = x.dims()[0];
        let (lp, _) = self.tensor_terms(x.reshape([n as i32, -1]), a, s);
        let max = lp.clone().max_dim(1).detach();
        ((lp - max.clone()).exp().sum_dim(1).log() + max).reshape([n])
    }

    /// Exact per-sample log-density of the (unperturbed) mixture on tensors.
    pub fn log_prob<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, 1> {
        let (n, device) = (x.dims()[0], x.device());
        self.tensor_log_prob(x, Tensor::ones([n], &device), Tensor::zeros([n], &device))
    }
}

/// The static target: the score of the mixture itself, ignoring `t` (for Langevin and MALA).
impl<B: Backend, const D: usize> ScoreFn<B, D> for GaussianMixture {
    fn score(&self, x: Tensor<B, D>, _t: Tensor<B, 1>) -> Tensor<B, D> {
        let (n, device) = (x.dims()[0], x.device());
        self.tensor_score(x, Tensor::ones([n], &device), Tensor::zeros([n], &device))
    }
}

/// Energy `−log p(x)` of the static mixture (normalised, so energies are exact log-densities).
impl<B: Backend, const D: usize> EnergyFn<B, D> for GaussianMixture {
    fn energy(&self, x: Tensor<B, D>, _t: Tensor<B, 1>) -> Tensor<B, 1> {
        self.log_prob(x).neg()
    }
}

/// A mixture diffused by an SDE: `p_t` for every `t`, with exact tensor score and log-density.
/// Data of any rank is flattened per sample to the mixture's dimension.
///
/// On the CPU backends (plain NdArray and Flex) the score is computed in one host pass per
/// sample, in f64, split across threads; elsewhere (GPU, autodiff) as burn tensor ops.
#[derive(Debug, Clone, PartialEq)]
pub struct Diffused<S> {
    mixture: GaussianMixture,
    sde: S,
}

impl<S: Sde> Diffused<S> {
    /// The data distribution `p_0`.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }
    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }
    /// `p_t` as a mixture (host).
    pub fn at(&self, t: f64) -> Result<GaussianMixture> {
        self.mixture.at(&self.sde, t)
    }
    /// Exact per-sample `log p_t(x)` on tensors.
    pub fn log_prob<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        t: Tensor<B, 1>,
    ) -> Tensor<B, 1> {
        let (a, s) = self.sde.marginal_tensors(t);
        self.mixture.tensor_log_prob(x, a, s)
    }
}

impl<B: Backend, S: Sde, const D: usize> ScoreFn<B, D> for Diffused<S> {
    /// # Panics
    /// When a sample's size (the product of `x`'s non-batch dimensions) differs from the
    /// mixture's dimension; [`ScoreFn::check_shape`] reports that as an error first.
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        let (a, s) = self.sde.marginal_tensors(t);
        self.mixture.tensor_score(x, a, s)
    }

    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        let got: usize = shape.iter().skip(1).product();
        if got != self.mixture.dim() {
            return Err(CoreError::DimensionMismatch {
                what: "sample size against the target's dimension",
                expected: self.mixture.dim(),
                got,
            });
        }
        Ok(())
    }
}

impl<B: Backend, S: Sde, const D: usize> EnergyFn<B, D> for Diffused<S> {
    fn energy(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, 1> {
        self.log_prob(x, t).neg()
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::sde::{SubVpSde, VeSde, VpSde};
    use crate::tensor::to_f64;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    /// The host pass against the composed tensor ops and the f64 host formula, on points near
    /// and far from the modes, at times from 1e-5 to 1, under every SDE, for a mixture with
    /// unequal weights and anisotropic variances.
    #[test]
    fn host_score_matches_the_composed_ops_and_the_f64_formula() {
        assert!(
            host::is_host_backend::<B>(),
            "the test must exercise the host path"
        );
        let dev = Default::default();
        let mix = GaussianMixture::new(
            vec![0.5, 0.3, 0.2],
            vec![vec![-2.0, 0.5], vec![2.0, 1.0], vec![0.0, -3.0]],
            vec![vec![0.09, 0.04], vec![0.25, 0.5], vec![0.16, 0.16]],
        )
        .unwrap();
        let n = 3000;
        let x = NoiseSource::new(5).normal::<B, 2>([n, 2], NoiseKey::new(0, 0), &dev) * 3.0;
        let ts = [1e-5, 1e-3, 0.1, 0.5, 1.0];
        let sdes = [
            crate::sde::AnySde::Ve(VeSde::new(0.01, 10.0).unwrap()),
            crate::sde::AnySde::Vp(VpSde::default()),
            crate::sde::AnySde::SubVp(SubVpSde::default()),
        ];
        let xs = to_f64(x.clone());
        for sde in sdes {
            for &t in &ts {
                let tt = Tensor::<B, 1>::full([n], t as f32, &dev);
                let (a, s) = sde.marginal_tensors(tt);
                let host = to_f64(mix.host_score(x.clone(), a.clone(), s.clone()));
                let composed = to_f64(mix.composed_score(x.clone(), a, s));
                let at = mix.at(&sde, t as f32 as f64).unwrap();
                for i in 0..n {
                    let exact = at.score_f64(&xs[2 * i..2 * i + 2]);
                    let scale = exact[0].abs().max(exact[1].abs()).max(1.0);
                    for d in 0..2 {
                        // The host pass runs in f64 from f32 inputs (x, a, s rounded to f32:
                        // relative 6e-8 each, amplified by at most |x|/var ≲ 1e3 near t = 0);
                        // the composed ops add f32 round-off over ~20 ops. 1e-4 of the
                        // score's scale bounds both with room.
                        let (h, c, e) = (host[2 * i + d], composed[2 * i + d], exact[d]);
                        assert!(
                            (h - e).abs() <= 1e-4 * scale,
                            "{sde:?} t={t} x={:?}: host {h} against exact {e}",
                            &xs[2 * i..2 * i + 2]
                        );
                        assert!(
                            (c - e).abs() <= 1e-4 * scale,
                            "{sde:?} t={t}: composed {c} against exact {e}"
                        );
                    }
                }
            }
        }
    }

    /// The host pass gives each sample the same score whatever the batch around it.
    #[test]
    fn host_score_does_not_depend_on_the_batch() {
        let dev = Default::default();
        let mix = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
        let sde = VeSde::new(0.01, 10.0).unwrap();
        let target = mix.diffused(sde);
        let n = 2500; // three parallel tasks of 1,024 samples
        let x = NoiseSource::new(9).normal::<B, 2>([n, 2], NoiseKey::new(0, 0), &dev) * 4.0;
        let t = Tensor::<B, 1>::full([n], 0.3, &dev);
        let whole = to_f64(ScoreFn::<B, 2>::score(&target, x.clone(), t.clone()));
        let part = to_f64(ScoreFn::<B, 2>::score(
            &target,
            x.slice([1500..2500, 0..2]),
            t.slice(1500..2500),
        ));
        assert_eq!(&whole[3000..], &part[..]);
    }
}
