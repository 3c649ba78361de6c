//! DDPM's simplified ε-loss over discrete linear betas (Ho, Jain & Abbeel 2020, eq. 14; seed 000).

use burn::tensor::{Tensor, backend::Backend};
use score_core::{
    NoiseKey, NoiseSource,
    schedule::{alphas_cumprod, linear_betas},
    tensor::{per_sample, sum_per_sample},
};

use super::{Loss, host_vector, normal_like, streams};
use crate::error::Result;
use crate::view::{AsScore, ScoreView};

/// What the network's output is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DdpmTarget {
    /// The output is a noise prediction `ε̂`: loss `‖ε̂ − ε‖²`.
    #[default]
    Epsilon,
    /// The output is a score `s`: target `−ε/√(1 − ᾱ)`, weighted by `1 − ᾱ`, i.e.
    /// `‖√(1 − ᾱ) s + ε‖²` — the same objective in the score parameterisation.
    Score,
}

/// DDPM's ε-loss: draw a step `i` uniformly from `0..N`, `x_i = √ᾱ_i x₀ + √(1 − ᾱ_i) ε`, and
/// average the squared error over coordinates (PyTorch's `mse_loss`).
///
/// The network sees the time `t_i = (i + 1)/N`, at which the VP SDE with `β(t) = N·β_{⌊tN⌋}`
/// has nearly the same marginal, so a score adapter built for [`VpSde`](score_core::VpSde) reads
/// the same model.
#[derive(Debug, Clone, PartialEq)]
pub struct DdpmLoss<V = AsScore> {
    sqrt_ab: Vec<f64>,
    sqrt_1m_ab: Vec<f64>,
    target: DdpmTarget,
    /// How the output is read off the model.
    pub view: V,
}

impl DdpmLoss {
    /// The ε-loss over `n` linear betas from `beta_start` to `beta_end` (DDPM: 1e-4, 0.02, 1000).
    ///
    /// ```
    /// let l = score_train::DdpmLoss::new(1e-4, 0.02, 1000).unwrap();
    /// assert_eq!(l.steps(), 1000);
    /// ```
    pub fn new(beta_start: f64, beta_end: f64, n: usize) -> Result<Self> {
        let ab = alphas_cumprod(&linear_betas(beta_start, beta_end, n)?);
        Ok(Self {
            sqrt_ab: ab.iter().map(|a| a.sqrt()).collect(),
            sqrt_1m_ab: ab.iter().map(|a| (1.0 - a).sqrt()).collect(),
            target: DdpmTarget::Epsilon,
            view: AsScore,
        })
    }
}

impl<V> DdpmLoss<V> {
    /// The same loss reading the model through `view`.
    pub fn with_view<W>(self, view: W) -> DdpmLoss<W> {
        DdpmLoss {
            sqrt_ab: self.sqrt_ab,
            sqrt_1m_ab: self.sqrt_1m_ab,
            target: self.target,
            view,
        }
    }
    /// The same loss with another target.
    pub fn with_target(mut self, target: DdpmTarget) -> Self {
        self.target = target;
        self
    }
    /// Number of discrete steps `N`.
    pub fn steps(&self) -> usize {
        self.sqrt_ab.len()
    }
}

impl<B, M, V, const D: usize> Loss<B, M, D> for DdpmLoss<V>
where
    B: Backend,
    V: ScoreView<B, M, D>,
{
    fn per_sample(
        &self,
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
        let t: Vec<f64> = idx.iter().map(|&i| (i + 1) as f64 / steps as f64).collect();
        let eps = normal_like(&x0, noise, NoiseKey::new(step, streams::EPS));
        let x = x0 * per_sample::<B, D>(host_vector(&a, &device))
            + eps.clone() * per_sample::<B, D>(host_vector(&s, &device));
        let out = self.view.score(model, x, host_vector(&t, &device));
        let residual = match self.target {
            DdpmTarget::Epsilon => out - eps,
            DdpmTarget::Score => out * per_sample::<B, D>(host_vector(&s, &device)) + eps,
        };
        let d = dims[1..].iter().product::<usize>() as f64;
        sum_per_sample(residual.square()).div_scalar(d)
    }
}
