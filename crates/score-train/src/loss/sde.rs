//! The continuous-time score-matching loss of Song et al. 2021 (eq. 7): denoising score matching
//! over `t ~ U(eps, T)`, weighted by `λ(t)`, with optional importance sampling of `t`.

use std::sync::Arc;

use burn::tensor::{Tensor, backend::Backend};
use score_core::{
    NoiseKey, NoiseSource, Sde, check_eps,
    tensor::{per_sample, sum_per_sample},
};

use super::{Objective, Viewed, host_vector, normal_like, streams};
use crate::error::Result;
use crate::view::{AsScore, ScoreView};

/// The weighting `λ(t)` of the per-time DSM term `E‖s(x_t, t) + ε/σ_t‖²`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Weighting {
    /// `λ(t) = σ_t²`: every `t` contributes `E‖σ_t s + ε‖² = O(1)` (Song et al. 2021's default).
    #[default]
    SigmaSquared,
    /// `λ(t) = g(t)²`, the likelihood weighting (Song, Durkan, Murray & Ermon 2021): the loss
    /// bounds the negative log-likelihood.
    Likelihood,
    /// EDM's weighting (Karras et al. 2022, eq. 8 and Table 1): `λ(σ) = (σ² + σ_d²)/(σ·σ_d)²` on
    /// the denoiser error `‖D − x₀‖²`, with `σ = σ_t/m_t` the noise level of the scaled
    /// `x_t/m_t = x₀ + σ·ε`. Since `‖D − x₀‖² = σ²‖σ_t s + ε‖²`, the factor here is
    /// `(σ² + σ_d²)/σ_d²`; with [`score_nets::Parameterization::Edm`] of the same `σ_d` it makes
    /// the network's own regression target unit-weighted at every noise level.
    Edm {
        /// Standard deviation of the data.
        sigma_data: f64,
    },
}

impl Weighting {
    /// `λ(t)/σ_t²`, the factor in front of `‖σ_t s + ε‖²`.
    pub fn over_variance<S: Sde>(&self, sde: &S, t: f64) -> f64 {
        match self {
            Self::SigmaSquared => 1.0,
            Self::Likelihood => (sde.diffusion(t) / sde.marginal(t).std).powi(2),
            Self::Edm { sigma_data } => {
                let m = sde.marginal(t);
                let sigma = m.std / m.mean_coef;
                (sigma * sigma + sigma_data * sigma_data) / (sigma_data * sigma_data)
            }
        }
    }
}

/// How the squared residual is reduced over a sample's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Mean over coordinates (score_sde's `reduce_mean = True`): scale-free in the data dimension.
    #[default]
    Mean,
    /// Sum over coordinates: the loss as written in the paper.
    Sum,
}

/// The density from which training times are drawn on `[eps, T]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TimeSampling {
    /// `t ~ U(eps, T)`.
    #[default]
    Uniform,
    /// `t ~ p(t) ∝ λ(t)/σ_t²`, with every sample reweighted by `λ(t)/(σ_t² p(t)(T − eps))` so that
    /// the expectation is unchanged: the per-sample weight becomes constant, which removes the
    /// variance that `λ = g²` puts near `t = 0` for VP SDEs (seed 002, step 3).
    Importance,
    /// EDM's noise-level distribution (Karras et al. 2022, Table 1): `ln σ ~ N(mean, std²)` for
    /// the scaled noise level `σ = σ_t/m_t`, mapped to the time with that level. This changes
    /// the objective (it is the training distribution, not an importance weight): EDM puts the
    /// effort on the middle noise levels, where the denoiser can improve. Levels beyond the
    /// SDE's range `[σ(eps), σ(T)]` are clamped to its ends (for EDM's `mean = −1.2, std = 1.2`
    /// on `σ ∈ [0.02, 30]`, 0.2 % of draws).
    LogNormal {
        /// Mean of `ln σ` (EDM: −1.2).
        mean: f64,
        /// Standard deviation of `ln σ` (EDM: 1.2).
        std: f64,
    },
}

/// A tabulated inverse CDF of `p(t) ∝ w(t)` on `[eps, T]`: a geometric grid (dense near `eps`,
/// where `g²/σ²` behaves like `1/t`), the cumulative trapezoid integral, and sampling that is
/// exact for the piecewise-uniform density it defines (the weights use that same density, so the
/// estimator stays unbiased whatever the grid).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportanceTable {
    t: Vec<f64>,
    cdf: Vec<f64>,
}

impl ImportanceTable {
    const GRID: usize = 2048;

    /// Tabulates `w` (positive, finite) on `[eps, t_max]`.
    pub fn new(eps: f64, t_max: f64, w: impl Fn(f64) -> f64) -> Self {
        let k = Self::GRID;
        let ratio = (t_max / eps).ln();
        let t: Vec<f64> = (0..=k)
            .map(|i| {
                if i == k {
                    t_max
                } else {
                    eps * (ratio * i as f64 / k as f64).exp()
                }
            })
            .collect();
        let wt: Vec<f64> = t.iter().map(|&t| w(t)).collect();
        let mut cdf = Vec::with_capacity(t.len());
        cdf.push(0.0);
        for i in 0..k {
            let c = cdf[i] + 0.5 * (wt[i] + wt[i + 1]) * (t[i + 1] - t[i]);
            cdf.push(c);
        }
        Self { t, cdf }
    }

    /// `∫ w`, the normaliser `Z`.
    pub fn total(&self) -> f64 {
        *self.cdf.last().expect("non-empty grid")
    }

    /// The time at quantile `u ∈ (0, 1)` and its sampling density `p(t)`.
    pub fn sample(&self, u: f64) -> (f64, f64) {
        let z = self.total();
        let target = u * z;
        let k = self
            .cdf
            .partition_point(|&c| c <= target)
            .clamp(1, self.cdf.len() - 1)
            - 1;
        let (c0, c1) = (self.cdf[k], self.cdf[k + 1]);
        let (t0, t1) = (self.t[k], self.t[k + 1]);
        let frac = if c1 > c0 {
            ((target - c0) / (c1 - c0)).clamp(0.0, 1.0)
        } else {
            0.5
        };
        (t0 + frac * (t1 - t0), (c1 - c0) / (z * (t1 - t0)))
    }
}

/// The continuous-time loss `E_t λ(t) E‖s(x_t, t) + ε/σ_t‖²`, `x_t = a_t x₀ + σ_t ε`, over any
/// [`Sde`], written as `λ(t)/σ_t² · ‖σ_t s + ε‖²` so that small `σ_t` never divides the noise.
///
/// With [`Weighting::SigmaSquared`] and [`Reduction::Sum`] its value at the true score is the
/// irreducible `E_t Σ_j a_t² v_j /(a_t² v_j + σ_t²)` for a Gaussian target `N(μ, diag v)`.
pub type SdeLoss<S, V = AsScore> = Viewed<SdeObjective<S>, V>;

/// The parameters of [`SdeLoss`].
#[derive(Debug, Clone, PartialEq)]
pub struct SdeObjective<S> {
    sde: S,
    eps: f64,
    weighting: Weighting,
    reduction: Reduction,
    sampling: TimeSampling,
    table: Option<Arc<ImportanceTable>>,
}

impl<S: Sde> SdeLoss<S> {
    /// The loss over `sde` with `eps = 1e-5`, `λ = σ²`, mean reduction, uniform times.
    ///
    /// ```
    /// use score_core::VpSde;
    /// use score_train::{SdeLoss, TimeSampling, Weighting};
    /// let l = SdeLoss::new(VpSde::default()).unwrap()
    ///     .with_weighting(Weighting::Likelihood)
    ///     .with_sampling(TimeSampling::Importance);
    /// assert_eq!(l.eps(), 1e-5);
    /// ```
    pub fn new(sde: S) -> Result<Self> {
        Self::with_eps(sde, 1e-5)
    }

    /// The loss with training times in `[eps, T]`.
    pub fn with_eps(sde: S, eps: f64) -> Result<Self> {
        let eps = check_eps(eps, sde.t_max())?;
        let objective = SdeObjective {
            sde,
            eps,
            weighting: Weighting::SigmaSquared,
            reduction: Reduction::Mean,
            sampling: TimeSampling::Uniform,
            table: None,
        };
        Ok(Viewed::from_parts(objective, AsScore))
    }
}

impl<S: Sde, V> SdeLoss<S, V> {
    /// The same loss with weighting `λ`.
    pub fn with_weighting(mut self, weighting: Weighting) -> Self {
        self.objective.weighting = weighting;
        self.objective.rebuild_table();
        self
    }

    /// The same loss with a reduction over coordinates.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.objective.reduction = reduction;
        self
    }

    /// The same loss with another time density.
    pub fn with_sampling(mut self, sampling: TimeSampling) -> Self {
        self.objective.sampling = sampling;
        self.objective.rebuild_table();
        self
    }
}

impl<S: Sde> SdeObjective<S> {
    fn rebuild_table(&mut self) {
        self.table = match self.sampling {
            TimeSampling::Uniform | TimeSampling::LogNormal { .. } => None,
            TimeSampling::Importance => {
                let (sde, w) = (&self.sde, self.weighting);
                Some(Arc::new(ImportanceTable::new(self.eps, sde.t_max(), |t| {
                    w.over_variance(sde, t)
                })))
            }
        };
    }

    /// The smallest training time.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The SDE.
    pub fn sde(&self) -> &S {
        &self.sde
    }

    /// The time whose scaled noise level `σ_t/m_t` is `sigma`, clamped to `[eps, T]` (bisection:
    /// every SDE here has a noise level increasing in `t`).
    pub fn time_of_level(&self, sigma: f64) -> f64 {
        let level = |t: f64| {
            let m = self.sde.marginal(t);
            m.std / m.mean_coef
        };
        let (mut lo, mut hi) = (self.eps, self.sde.t_max());
        // NaN falls to the low end, like levels below the range.
        if sigma.is_nan() || sigma <= level(lo) {
            return lo;
        }
        if sigma >= level(hi) {
            return hi;
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if level(mid) < sigma {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// Per-sample times and weights for a batch of `n` at `step`: uniforms from the time stream
    /// for [`TimeSampling::Uniform`] and [`TimeSampling::Importance`]
    /// ([`times_and_weights`](Self::times_and_weights)), standard normals from it for
    /// [`TimeSampling::LogNormal`].
    pub fn draw_times(&self, n: usize, noise: &NoiseSource, step: u64) -> (Vec<f64>, Vec<f64>) {
        let key = NoiseKey::new(step, streams::TIME);
        match self.sampling {
            TimeSampling::LogNormal { mean, std } => noise
                .normal_f64(n, 1, key)
                .into_iter()
                .map(|z| {
                    let t = self.time_of_level((mean + std * z).exp());
                    (t, self.weighting.over_variance(&self.sde, t))
                })
                .unzip(),
            _ => self.times_and_weights(&noise.uniform_f64(n, 1, key)),
        }
    }

    /// Per-sample times and the weights in front of `‖σ_t s + ε‖²`, from uniforms `u` (for
    /// [`TimeSampling::LogNormal`], use [`draw_times`](Self::draw_times)).
    pub fn times_and_weights(&self, u: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let span = self.sde.t_max() - self.eps;
        u.iter()
            .map(|&u| match &self.table {
                None => {
                    let t = self.eps + u * span;
                    (t, self.weighting.over_variance(&self.sde, t))
                }
                Some(table) => {
                    let (t, p) = table.sample(u);
                    (t, self.weighting.over_variance(&self.sde, t) / (p * span))
                }
            })
            .unzip()
    }
}

impl<B, M, S, V, const D: usize> Objective<B, M, V, D> for SdeObjective<S>
where
    B: Backend,
    S: Sde + std::fmt::Debug,
    V: ScoreView<B, M, D>,
{
    fn validate(&self, view: &V, model: &M) -> crate::Result<()> {
        super::check_same_sde::<B, M, V, S, D>(view, model, &self.sde, "the SDE loss")?;
        for t in [self.eps, self.sde.t_max()] {
            view.check_time(model, t)?;
        }
        Ok(())
    }

    fn per_sample(
        &self,
        view: &V,
        model: &M,
        x0: Tensor<B, D>,
        noise: &NoiseSource,
        step: u64,
    ) -> Tensor<B, 1> {
        let dims = x0.dims();
        let (n, device) = (dims[0], x0.device());
        let (t, weight) = self.draw_times(n, noise, step);
        let (mean, std): (Vec<f64>, Vec<f64>) = t
            .iter()
            .map(|&t| {
                let m = self.sde.marginal(t);
                (m.mean_coef, m.std)
            })
            .unzip();
        let std = per_sample::<B, D>(host_vector(&std, &device));
        let eps = normal_like(&x0, noise, NoiseKey::new(step, streams::EPS));
        let x = x0 * per_sample::<B, D>(host_vector(&mean, &device)) + eps.clone() * std.clone();
        let s = view.score(model, x, host_vector(&t, &device));
        let sq = sum_per_sample((s * std + eps).square());
        let sq = match self.reduction {
            Reduction::Sum => sq,
            Reduction::Mean => sq.div_scalar(dims[1..].iter().product::<usize>() as f64),
        };
        sq * host_vector(&weight, &device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use score_core::VpSde;

    #[test]
    fn importance_table_inverts_its_cdf_and_reports_its_density() {
        // w(t) = 1/t on [1e-3, 1]: Z = ln(1000), and the time at quantile u is 1e-3·1000^u.
        let table = ImportanceTable::new(1e-3, 1.0, |t| 1.0 / t);
        assert!((table.total() - 1000f64.ln()).abs() < 1e-4 * 1000f64.ln());
        for u in [0.01, 0.3, 0.5, 0.9, 0.999] {
            let (t, p) = table.sample(u);
            let exact = 1e-3 * 1000f64.powf(u);
            // The geometric grid has 2048 panels: piecewise-linear inversion is accurate to ~1e-5.
            assert!((t - exact).abs() < 1e-4 * exact, "u = {u}: {t} vs {exact}");
            // The table's density is constant on each panel, whose ends differ by a factor
            // 1000^(1/2048) ≈ 1 + 3.4e-3: it matches 1/(tZ) to within that.
            let density = 1.0 / (t * 1000f64.ln());
            assert!(
                (p - density).abs() < 4e-3 * density,
                "u = {u}: {p} vs {density}"
            );
        }
    }

    #[test]
    fn importance_weights_are_constant_and_uniform_weights_follow_lambda() {
        let vp = VpSde::default();
        let loss = SdeLoss::new(vp)
            .unwrap()
            .with_weighting(Weighting::Likelihood)
            .with_sampling(TimeSampling::Importance);
        let u: Vec<f64> = (1..100).map(|i| i as f64 / 100.0).collect();
        let (t, w) = loss.times_and_weights(&u);
        assert!(t.windows(2).all(|p| p[0] < p[1]), "times increase with u");
        // λ/(σ² p (T − eps)) = Z/(T − eps) up to the table's piecewise-constant density.
        let (lo, hi) = w
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi / lo < 1.01, "weights {lo}..{hi}");
        let uniform = SdeLoss::new(vp)
            .unwrap()
            .with_weighting(Weighting::Likelihood);
        let (t, w) = uniform.times_and_weights(&[0.5]);
        assert!((t[0] - (1e-5 + 0.5 * (1.0 - 1e-5))).abs() < 1e-12);
        assert!((w[0] - Weighting::Likelihood.over_variance(&vp, t[0])).abs() < 1e-12);
    }

    #[test]
    fn log_normal_levels_follow_their_law_and_edm_weights_match_the_closed_form() {
        use score_core::VeSde;
        // VE with σ ∈ [0.002, 80]: EDM's ln σ ~ N(−1.2, 1.2²) leaves it with probability
        // 1.4e-4 (z < −4.18) + 7e-4 (z > 4.65·… ), so clamping cannot move the moments below.
        let ve = VeSde::new(0.002, 80.0).unwrap();
        let loss = SdeLoss::new(ve)
            .unwrap()
            .with_weighting(Weighting::Edm { sigma_data: 0.5 })
            .with_sampling(TimeSampling::LogNormal {
                mean: -1.2,
                std: 1.2,
            });
        // The time of a level inverts the level (bisection to 2^-60 of [eps, T]).
        for sigma in [0.01, 0.3, 1.0, 40.0] {
            let t = loss.time_of_level(sigma);
            let back = ve.marginal(t).std;
            assert!((back / sigma - 1.0).abs() < 1e-9, "{sigma}: {back}");
        }
        assert_eq!(loss.time_of_level(1e-6), loss.eps());
        assert_eq!(loss.time_of_level(1e6), 1.0);
        let n = 20_000;
        let (t, w) = loss.draw_times(n, &NoiseSource::new(3), 7);
        let ln: Vec<f64> = t.iter().map(|&t| ve.marginal(t).std.ln()).collect();
        let mean = ln.iter().sum::<f64>() / n as f64;
        let var = ln.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        // Standard errors: 1.2/√n = 0.0085 for the mean, 1.2·√(2/n)·… ≈ 0.012 for the std;
        // the bounds are 5 of them.
        assert!((mean + 1.2).abs() < 0.045, "mean of ln σ {mean}");
        assert!(
            (var.sqrt() - 1.2).abs() < 0.06,
            "std of ln σ {}",
            var.sqrt()
        );
        for (&t, &w) in t.iter().zip(&w).take(50) {
            let sigma = ve.marginal(t).std;
            let want = (sigma * sigma + 0.25) / 0.25;
            assert!((w - want).abs() < 1e-12 * want, "weight {w} vs {want}");
        }
        // Same seed and step, same draws; another step, other draws.
        assert_eq!(
            loss.draw_times(8, &NoiseSource::new(3), 7).0,
            t[..8].to_vec()
        );
        assert_ne!(
            loss.draw_times(8, &NoiseSource::new(3), 8).0,
            t[..8].to_vec()
        );
    }
}
