//! DDPM's simplified ε-loss over discrete linear betas (Ho, Jain & Abbeel 2020, eq. 14; seed 000).

use burn::tensor::{Tensor, backend::Backend};
use score_core::{
    NoiseKey, NoiseSource,
    schedule::{alphas_cumprod, ddpm_time, linear_betas},
    tensor::{per_sample, sum_per_sample},
};

use super::{Objective, Viewed, host_vector, normal_like, streams};
use crate::error::Result;
use crate::view::{AsOutput, AsScore, ScoreView};

/// What the model's output is compared with; fixed by the view the loss reads the model through
/// ([`DdpmView`]), so a score cannot be compared with the noise by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdpmTarget {
    /// The output is a noise prediction `ε̂`: loss `‖ε̂ − ε‖²`. The target of [`AsOutput`] (a raw
    /// network predicting ε, as in DDPM).
    Epsilon,
    /// The output is a score `s`: target `−ε/√(1 − ᾱ)`, weighted by `1 − ᾱ`, i.e.
    /// `‖√(1 − ᾱ) s + ε‖²` — the same objective in the score parameterisation. The target of
    /// every view that reads a score ([`AsScore`], e.g. a `ScoreModel` whatever its
    /// parameterisation; [`AsEnergy`](crate::AsEnergy); [`Exact`](crate::Exact)).
    Score,
}

/// A view [`DdpmLoss`] can read a model through, and what its reading is compared with.
pub trait DdpmView {
    /// [`DdpmTarget::Epsilon`] for a view that yields a noise prediction, [`DdpmTarget::Score`]
    /// for one that yields a score.
    const TARGET: DdpmTarget;
}

impl DdpmView for AsOutput {
    const TARGET: DdpmTarget = DdpmTarget::Epsilon;
}
impl DdpmView for AsScore {
    const TARGET: DdpmTarget = DdpmTarget::Score;
}
impl DdpmView for crate::AsEnergy {
    const TARGET: DdpmTarget = DdpmTarget::Score;
}
impl DdpmView for crate::Exact {
    const TARGET: DdpmTarget = DdpmTarget::Score;
}

/// DDPM's ε-loss: draw a step `i` uniformly from `0..N`, `x_i = √ᾱ_i x₀ + √(1 − ᾱ_i) ε`, and
/// average the squared error over coordinates (PyTorch's `mse_loss`).
///
/// The network sees the time [`ddpm_time`]`(i, N) = (i + 1)/N`, the time at which score-sample's
/// DDPM sampler queries it, and at which the VP SDE with `β(t) = N·β_{⌊tN⌋}` has nearly the same
/// marginal (so a score adapter built for [`VpSde`](score_core::VpSde) reads the same model).
///
/// [`DdpmLoss::new`] reads the raw network output as `ε̂` ([`AsOutput`]); read a `ScoreModel`
/// (or any score) with `.with_view(AsScore)`, which switches the target to the score form.
///
/// ```
/// use score_train::{AsScore, DdpmLoss, DdpmTarget};
/// let eps = DdpmLoss::new(1e-4, 0.02, 1000).unwrap();
/// assert_eq!(eps.target(), DdpmTarget::Epsilon);
/// assert_eq!(eps.with_view(AsScore).target(), DdpmTarget::Score);
/// ```
pub type DdpmLoss<V = AsOutput> = Viewed<Ddpm, V>;

/// The parameters of [`DdpmLoss`]: `√ᾱ_i` and `√(1 − ᾱ_i)` of its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Ddpm {
    sqrt_ab: Vec<f64>,
    sqrt_1m_ab: Vec<f64>,
}

impl DdpmLoss {
    /// The ε-loss over `n` linear betas from `beta_start` to `beta_end` (DDPM: 1e-4, 0.02, 1000),
    /// reading the network's raw output as the noise prediction.
    ///
    /// ```
    /// let l = score_train::DdpmLoss::new(1e-4, 0.02, 1000).unwrap();
    /// assert_eq!(l.steps(), 1000);
    /// ```
    pub fn new(beta_start: f64, beta_end: f64, n: usize) -> Result<Self> {
        let ab = alphas_cumprod(&linear_betas(beta_start, beta_end, n)?);
        let objective = Ddpm {
            sqrt_ab: ab.iter().map(|a| a.sqrt()).collect(),
            sqrt_1m_ab: ab.iter().map(|a| (1.0 - a).sqrt()).collect(),
        };
        Ok(Viewed::from_parts(objective, AsOutput))
    }
}

impl<V: DdpmView> DdpmLoss<V> {
    /// What the model's reading is compared with (it follows the view: read a score with
    /// `.with_view(AsScore)`).
    pub fn target(&self) -> DdpmTarget {
        V::TARGET
    }
}

impl Ddpm {
    /// Number of discrete steps `N`.
    pub fn steps(&self) -> usize {
        self.sqrt_ab.len()
    }
}

impl<B, M, V, const D: usize> Objective<B, M, V, D> for Ddpm
where
    B: Backend,
    V: ScoreView<B, M, D> + DdpmView,
{
    fn validate(&self, view: &V, model: &M) -> crate::Result<()> {
        Ok(view.check_time(model, ddpm_time(0, self.steps()))?)
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
        let steps = self.steps();
        let u = noise.uniform_f64(n, 1, NoiseKey::new(step, streams::TIME));
        let idx: Vec<usize> = u
            .iter()
            .map(|u| ((u * steps as f64) as usize).min(steps - 1))
            .collect();
        let a: Vec<f64> = idx.iter().map(|&i| self.sqrt_ab[i]).collect();
        let s: Vec<f64> = idx.iter().map(|&i| self.sqrt_1m_ab[i]).collect();
        let t: Vec<f64> = idx.iter().map(|&i| ddpm_time(i, steps)).collect();
        let eps = normal_like(&x0, noise, NoiseKey::new(step, streams::EPS));
        let x = x0 * per_sample::<B, D>(host_vector(&a, &device))
            + eps.clone() * per_sample::<B, D>(host_vector(&s, &device));
        let out = view.score(model, x, host_vector(&t, &device));
        let residual = match V::TARGET {
            DdpmTarget::Epsilon => out - eps,
            DdpmTarget::Score => out * per_sample::<B, D>(host_vector(&s, &device)) + eps,
        };
        let d = dims[1..].iter().product::<usize>() as f64;
        sum_per_sample(residual.square()).div_scalar(d)
    }
}
