//! The denoiser view of a score (Tweedie's formula, Efron 2011; EDM's `D(x; σ)`, Karras et al.
//! 2022): `D(x, t) = E[x_0 | x_t = x] = (x + s(t)²·∇log p_t(x))/m(t)`, and the noise prediction
//! `ε̂ = −s(t)·∇log p_t(x)`.
//!
//! The data-prediction solvers (DDIM, EDM, DPM-Solver++) step with `D`; building it from any
//! [`ScoreFn`] here means a `ScoreModel` of any output parameterisation plugs into them as it is.

use burn::tensor::{Tensor, backend::Backend};
use score_core::{Marginal, ScoreFn, Sde};

use crate::sigma::times_exact;

/// The Tweedie denoiser of a score under an SDE.
///
/// ```
/// use burn::{backend::NdArray, tensor::Tensor};
/// use score_core::{GaussianMixture, Sde, VpSde};
/// use score_sample::Tweedie;
/// type B = NdArray<f32>;
/// let sde = VpSde::default();
/// // One Gaussian at the origin with variance v: D(x, t) = m·v·x/(m²v + s²).
/// let target = GaussianMixture::new(vec![1.0], vec![vec![0.0]], vec![vec![0.25]]).unwrap().diffused(sde);
/// let x = Tensor::<B, 2>::ones([1, 1], &Default::default());
/// let d: f32 = Tweedie::new(&sde, &target).denoise(x, 0.3).into_scalar();
/// let k = sde.marginal(0.3);
/// let want = k.mean_coef * 0.25 / (k.mean_coef.powi(2) * 0.25 + k.std.powi(2));
/// assert!((f64::from(d) - want).abs() < 1e-5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Tweedie<'a, S, F> {
    sde: &'a S,
    score: &'a F,
}

impl<'a, S: Sde, F> Tweedie<'a, S, F> {
    /// The denoiser of `score`, whose marginals are those of `sde`.
    pub fn new(sde: &'a S, score: &'a F) -> Self {
        Self { sde, score }
    }

    /// The score's evaluation at `x` and the batch time `t`, with the marginal at `t`.
    fn score_at<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        t: f64,
    ) -> (Tensor<B, D>, Marginal)
    where
        F: ScoreFn<B, D>,
    {
        let tt = times_exact(&x, t);
        (self.score.score(x, tt), self.sde.marginal(t))
    }

    /// `D(x, t) = (x + s²·score)/m`: the posterior mean of the clean data (one score evaluation).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn denoise<B: Backend, const D: usize>(&self, x: Tensor<B, D>, t: f64) -> Tensor<B, D>
    where
        F: ScoreFn<B, D>,
    {
        let (s, k) = self.score_at(x.clone(), t);
        (x + s.mul_scalar(k.std * k.std)).div_scalar(k.mean_coef)
    }

    /// `ε̂(x, t) = −s(t)·score`: the noise the state carries (one score evaluation).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn noise<B: Backend, const D: usize>(&self, x: Tensor<B, D>, t: f64) -> Tensor<B, D>
    where
        F: ScoreFn<B, D>,
    {
        let (s, k) = self.score_at(x, t);
        s.mul_scalar(-k.std)
    }

    /// Both `(D(x, t), ε̂(x, t))` from one score evaluation.
    pub fn denoise_and_noise<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        t: f64,
    ) -> (Tensor<B, D>, Tensor<B, D>)
    where
        F: ScoreFn<B, D>,
    {
        let (s, k) = self.score_at(x.clone(), t);
        let d = (x + s.clone().mul_scalar(k.std * k.std)).div_scalar(k.mean_coef);
        (d, s.mul_scalar(-k.std))
    }
}
