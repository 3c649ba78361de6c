//! Exact log-likelihoods through the probability-flow ODE (Song et al. 2021, §4.3 and App. D.2;
//! the instantaneous change of variables of Chen et al. 2018):
//! `log p_ε(x) = log p_T(x_T) + ∫_ε^T ∇·v(x_t, t) dt`, with `v` the ODE's drift, integrated
//! jointly with the state from `x_ε = x` up to `T`.
//!
//! The divergence `∇·v = f(t)·d − ½g(t)²·∇·s` is computed either exactly (one autodiff pass per
//! dimension, for small `d`) or by the Hutchinson–Skilling estimator `E[vᵀ(∂s/∂x)v]` with `K`
//! probes held fixed along the path (Grathwohl et al. 2019, FFJORD), whose spread across probes
//! gives a standard error.
//!
//! Bits per dimension of 8-bit data use an explicit uniform dequantisation ([`Dequantization`]).

use burn::{
    config::Config,
    tensor::{Tensor, backend::AutodiffBackend, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde, tensor::sum_per_sample};

use crate::error::{SampleError, positive};
use crate::grid::TimeGrid;
use crate::ode::{AdaptiveConfig, OdeSolver, integrate};

/// The distribution of Hutchinson probe vectors (both have identity covariance).
#[derive(Config, Debug, Copy, PartialEq)]
pub enum ProbeKind {
    /// Independent ±1 entries (lowest variance of the estimator).
    Rademacher,
    /// Standard normal entries.
    Gaussian,
}

/// How the divergence of the score is computed.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Divergence {
    /// `Σ_j ∂s_j/∂x_j` by one backward pass per dimension.
    Exact,
    /// The Hutchinson–Skilling estimate with `n_probes ≥ 2` probes (one backward pass each).
    Hutchinson {
        /// Probe distribution.
        probe: ProbeKind,
        /// Number of probes `K`.
        n_probes: usize,
    },
}

/// Configuration of [`Likelihood`].
#[derive(Config, Debug, Copy, PartialEq)]
pub struct LikelihoodConfig {
    /// The solver (adaptive RK45 at rtol = atol = 1e-5 by default).
    #[config(default = "OdeSolver::Dopri5(AdaptiveConfig::new())")]
    pub solver: OdeSolver,
    /// The divergence computation.
    #[config(default = "Divergence::Exact")]
    pub divergence: Divergence,
}

impl LikelihoodConfig {
    /// Validates the configuration and builds the estimator for `sde`.
    pub fn init<S: Sde>(&self, sde: S) -> crate::Result<Likelihood<S>> {
        self.solver.validate()?;
        if let Divergence::Hutchinson { n_probes, .. } = self.divergence
            && n_probes < 2
        {
            return Err(SampleError::InvalidConfig {
                name: "n_probes",
                value: n_probes as f64,
                reason: "a standard error needs at least 2 probes",
            });
        }
        Ok(Likelihood {
            sde,
            solver: self.solver,
            divergence: self.divergence,
        })
    }
}

/// Per-sample log-likelihoods and what they cost.
#[derive(Debug, Clone)]
pub struct LogLikelihood<B: Backend> {
    /// `log p_{t_0}(x)` in nats per sample (for Hutchinson, the mean over probes), `[n]`.
    pub log_prob: Tensor<B, 1>,
    /// Standard error of each estimate across probes (Hutchinson only), `[n]`.
    pub std_err: Option<Tensor<B, 1>>,
    /// Number of score evaluations (a forward and backward pass each).
    pub nfe: usize,
}

/// Log-likelihood by the probability-flow ODE. See the module docs.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use score_core::{GaussianMixture, NoiseKey, NoiseSource, VpSde};
/// use score_sample::{LikelihoodConfig, TimeGrid};
/// type A = Autodiff<NdArray<f32>>;
/// let (sde, noise, dev) = (VpSde::default(), NoiseSource::new(0), Default::default());
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let x = target.mixture().sample::<NdArray<f32>>(4, &noise, NoiseKey::new(0, 0), &dev);
/// let lik = LikelihoodConfig::new().init(sde).unwrap();
/// let grid = TimeGrid::forward(&sde, 1e-5, 1).unwrap();
/// let out = lik.log_prob::<A, 2, _>(&target, &grid, x, &noise).unwrap();
/// assert_eq!(out.log_prob.dims(), [4]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Likelihood<S> {
    sde: S,
    solver: OdeSolver,
    divergence: Divergence,
}

/// The score and its divergence `Σ_j ∂s_j/∂x_j` at `x`, by one backward pass per dimension of
/// the flattened sample.
///
/// # Shapes
/// - `x`: `[n, …]`, `t`: `[n]`; outputs: same as `x`, and `[n]`
pub fn exact_divergence<A, const D: usize, F>(
    score: &F,
    x: Tensor<A::InnerBackend, D>,
    t: Tensor<A::InnerBackend, 1>,
) -> (Tensor<A::InnerBackend, D>, Tensor<A::InnerBackend, 1>)
where
    A: AutodiffBackend,
    F: ScoreFn<A, D>,
{
    let dims = x.dims();
    let n = dims[0];
    let p: usize = dims[1..].iter().product();
    let t = Tensor::<A, 1>::from_inner(t);
    let mut value = None;
    let mut div = Tensor::<A::InnerBackend, 1>::zeros([n], &x.device());
    // One forward and backward pass per coordinate: the graph of a pass is consumed by its
    // backward, so the score is recomputed for each.
    for j in 0..p {
        let xa = Tensor::<A, D>::from_inner(x.clone()).require_grad();
        let s = score.score(xa.clone(), t.clone()).reshape([n, p]);
        if value.is_none() {
            value = Some(s.clone().inner().reshape(dims));
        }
        let grads = s.slice([0..n, j..j + 1]).sum().backward();
        let g = xa
            .grad(&grads)
            .expect("the score depends on x")
            .reshape([n, p]);
        div = div + g.slice([0..n, j..j + 1]).reshape([n]);
    }
    (value.expect("at least one dimension"), div)
}

/// The score and the Hutchinson estimates `vₖᵀ(∂s/∂x)vₖ` for each probe, `[n, K]`.
fn hutchinson_divergence<A, const D: usize, F>(
    score: &F,
    x: Tensor<A::InnerBackend, D>,
    t: Tensor<A::InnerBackend, 1>,
    probes: &[Tensor<A::InnerBackend, D>],
) -> (Tensor<A::InnerBackend, D>, Tensor<A::InnerBackend, 2>)
where
    A: AutodiffBackend,
    F: ScoreFn<A, D>,
{
    let n = x.dims()[0];
    let t = Tensor::<A, 1>::from_inner(t);
    let mut value = None;
    let mut cols = Vec::with_capacity(probes.len());
    for v in probes {
        let xa = Tensor::<A, D>::from_inner(x.clone()).require_grad();
        let s = score.score(xa.clone(), t.clone());
        if value.is_none() {
            value = Some(s.clone().inner());
        }
        let grads = (s * Tensor::from_inner(v.clone())).sum().backward();
        let vj = xa.grad(&grads).expect("the score depends on x");
        cols.push(sum_per_sample(vj * v.clone()).reshape([n, 1]));
    }
    (
        value.expect("at least one probe"),
        score_core::tensor::cat(cols, 1),
    )
}

impl<S: Sde> Likelihood<S> {
    /// `log p_{t_0}(x)` for data `x` at the first time of `grid` (increasing, usually from `eps`
    /// to `T`; adaptive solvers only use its times as stops). The score must live on an
    /// autodiff backend `A`; `x` and the results live on its inner backend. Hutchinson probes are
    /// drawn once, with keys `(0, k)`.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; outputs: `[n]`
    pub fn log_prob<A, const D: usize, F>(
        &self,
        score: &F,
        grid: &TimeGrid,
        x: Tensor<A::InnerBackend, D>,
        noise: &NoiseSource,
    ) -> crate::Result<LogLikelihood<A::InnerBackend>>
    where
        A: AutodiffBackend,
        F: ScoreFn<A, D>,
    {
        grid.require_increasing("the likelihood")?;
        grid.check_within(&self.sde)?;
        ScoreFn::<A, D>::check_shape(score, &x.dims())?;
        let dims = x.dims();
        let device = x.device();
        let n = dims[0];
        let p: usize = dims[1..].iter().product();
        let probes: Vec<Tensor<A::InnerBackend, D>> = match self.divergence {
            Divergence::Exact => Vec::new(),
            Divergence::Hutchinson { probe, n_probes } => (0..n_probes)
                .map(|k| {
                    let key = NoiseKey::new(0, k as u32);
                    match probe {
                        ProbeKind::Rademacher => noise.rademacher(dims, key, &device),
                        ProbeKind::Gaussian => noise.normal(dims, key, &device),
                    }
                })
                .collect(),
        };
        let k = probes.len().max(1);
        let passes = if probes.is_empty() { p } else { k };
        let mut nfe = 0;
        let y0 =
            score_core::tensor::cat(vec![x.reshape([n, p]), Tensor::zeros([n, k], &device)], 1);
        let sol = integrate(&self.solver, grid, y0, |y, t| {
            let x = y.slice([0..n, 0..p]).reshape(dims);
            let tt = crate::samples::times(&x, t);
            let (s, div_s) = if probes.is_empty() {
                let (s, d) = exact_divergence::<A, D, F>(score, x.clone(), tt);
                (s, d.reshape([n, 1]))
            } else {
                hutchinson_divergence::<A, D, F>(score, x.clone(), tt, &probes)
            };
            nfe += passes;
            let (f, g) = (self.sde.drift_coef(t), self.sde.diffusion(t));
            let v = self.sde.probability_flow_drift(x, s, t).reshape([n, p]);
            let div_v = div_s.mul_scalar(-0.5 * g * g).add_scalar(f * p as f64);
            score_core::tensor::cat(vec![v, div_v], 1)
        })?;
        let x_t = sol.y.clone().slice([0..n, 0..p]).reshape(dims);
        let delta = sol.y.slice([0..n, p..p + k]);
        let prior = self.sde.prior_log_prob(x_t).reshape([n, 1]);
        let estimates = delta + prior; // [n, K]
        let log_prob = estimates.clone().mean_dim(1).reshape([n]);
        let std_err = (k > 1).then(|| {
            let var = estimates.var(1).reshape([n]); // unbiased, divisor K − 1
            var.div_scalar(k as f64).sqrt()
        });
        Ok(LogLikelihood {
            log_prob,
            std_err,
            nfe,
        })
    }
}

/// Uniform dequantisation of 8-bit data and the matching bits per dimension.
///
/// Pixel values `k ∈ {0, …, 255}` become `z = (k + u)/256` with `u ~ U(0, 1)` per pixel, and the
/// model sees `y = shift + scale·z` (`scale = 1, shift = 0`: data in `[0, 1]`; `scale = 2,
/// shift = −1`: data in `[−1, 1]`). Since `P(k) = ∫_bin p_z ≥ exp(E_u[log p_z(z)])·256^{−d}` and
/// `p_z(z) = scale^d·p_y(y)`, a model's discrete log-likelihood is at least
/// `log p_y(y) + d·ln(scale) − d·ln 256` nats, i.e. at most
/// `bpd = −log p_y(y)/(d·ln 2) − log₂(scale) + 8` bits per dimension.
///
/// ```
/// use burn::{backend::NdArray, tensor::Tensor};
/// use score_sample::Dequantization;
/// type B = NdArray<f32>;
/// // A model that is uniform on [−1, 1]^d has log p_y = −d·ln 2: exactly 8 bits per dimension.
/// let d = 3;
/// let deq = Dequantization::new().with_scale(2.0).with_shift(-1.0);
/// let lp = Tensor::<B, 1>::from_floats([-(d as f32) * std::f32::consts::LN_2], &Default::default());
/// let bpd = deq.bits_per_dim(lp, d).unwrap().into_scalar();
/// assert!((bpd - 8.0).abs() < 1e-5);
/// // Pixels must be 8-bit values: data already scaled to [0, 1] is refused.
/// let scaled = Tensor::<B, 2>::from_floats([[0.0, 0.5]], &Default::default());
/// assert!(deq.dequantize(scaled, &score_core::NoiseSource::new(0), score_core::NoiseKey::new(0, 0)).is_err());
/// ```
#[derive(Config, Debug, Copy, PartialEq)]
pub struct Dequantization {
    /// Scale from `[0, 1]` to the model's data range.
    #[config(default = 1.0)]
    pub scale: f64,
    /// Shift from `[0, 1]` to the model's data range.
    #[config(default = 0.0)]
    pub shift: f64,
}

impl Dequantization {
    /// Checks `scale > 0` and a finite shift.
    pub fn validate(&self) -> crate::Result<()> {
        positive("scale", self.scale)?;
        if !self.shift.is_finite() {
            return Err(SampleError::InvalidConfig {
                name: "shift",
                value: self.shift,
                reason: "must be finite",
            });
        }
        Ok(())
    }

    /// `y = shift + scale·(k + u)/256` for pixel values `k`, with uniforms drawn under `key`.
    ///
    /// # Errors
    /// [`SampleError::InvalidConfig`] for an invalid scale or shift, or for a pixel that is not
    /// an integer in `0..=255` (e.g. data already scaled to `[0, 1]`), naming the first one.
    pub fn dequantize<B: Backend, const D: usize>(
        &self,
        pixels: Tensor<B, D>,
        noise: &NoiseSource,
        key: NoiseKey,
    ) -> crate::Result<Tensor<B, D>> {
        self.validate()?;
        let values = pixels.clone().into_data().convert::<f64>();
        if let Some(k) = values
            .iter::<f64>()
            .find(|k| !(k.fract() == 0.0 && (0.0..=255.0).contains(k)))
        {
            return Err(SampleError::InvalidConfig {
                name: "pixel value",
                value: k,
                reason: "dequantisation expects 8-bit integers in 0..=255",
            });
        }
        let u = noise.uniform::<B, D>(pixels.dims(), key, &pixels.device());
        Ok((pixels + u)
            .mul_scalar(self.scale / 256.0)
            .add_scalar(self.shift))
    }

    /// Bits per dimension from the model's log-density of dequantised data in `d` dimensions.
    ///
    /// # Shapes
    /// - `log_prob_y`: `[n]`; output: `[n]`
    ///
    /// # Errors
    /// [`SampleError::InvalidConfig`] for an invalid scale or shift, or `d = 0`.
    pub fn bits_per_dim<B: Backend>(
        &self,
        log_prob_y: Tensor<B, 1>,
        d: usize,
    ) -> crate::Result<Tensor<B, 1>> {
        self.validate()?;
        let d = crate::error::at_least_one("dimension d", d)? as f64;
        let ln2 = std::f64::consts::LN_2;
        Ok(log_prob_y
            .div_scalar(-d * ln2)
            .add_scalar(8.0 - self.scale.log2()))
    }
}
