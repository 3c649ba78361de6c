//! Predictors: one step of a discretised reverse-time SDE from `t` to `t_next < t` (Song et al.
//! 2021, §4.2 and App. E–G). Each returns the new state and its noise-free mean.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::samples::times;

/// A state after one update and the same update without its noise term.
#[derive(Debug, Clone)]
pub struct Update<B: Backend, const D: usize> {
    /// The new state.
    pub x: Tensor<B, D>,
    /// The new state without the injected noise.
    pub x_mean: Tensor<B, D>,
}

/// The variance of an ancestral step (Ho et al. 2020, §3.2: both choices are exact in the limit
/// and give similar samples).
#[derive(Config, Debug, Copy, PartialEq)]
pub enum AncestralVariance {
    /// The variance of `q(x_{t_next} | x_t, x_0)`: `b·s(t_next)²/s(t)²` with `b` the forward
    /// step's variance. For VE this is the SMLD ancestral step; for VP it is DDPM's `σ² = β̃`.
    Posterior,
    /// The forward step's variance `b`: DDPM's `σ² = β`, score_sde's VP ancestral predictor.
    Forward,
}

/// Which predictor a [`crate::PcSampler`] uses.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum PredictorKind {
    /// [`euler_maruyama`].
    EulerMaruyama,
    /// [`reverse_diffusion`].
    ReverseDiffusion,
    /// [`ancestral`] with the given variance.
    Ancestral(AncestralVariance),
    /// No predictor: corrector-only sampling (the state is left unchanged).
    None,
}

impl PredictorKind {
    /// Number of score evaluations per step.
    pub fn nfe(&self) -> usize {
        usize::from(!matches!(self, Self::None))
    }

    /// One step from `t` to `t_next`, with noise drawn under `key`.
    #[allow(clippy::too_many_arguments)]
    pub fn step<S: Sde, B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        sde: &S,
        score: &F,
        x: Tensor<B, D>,
        t: f64,
        t_next: f64,
        noise: &NoiseSource,
        key: NoiseKey,
    ) -> Update<B, D> {
        match self {
            Self::EulerMaruyama => euler_maruyama(sde, score, x, t, t_next, noise, key),
            Self::ReverseDiffusion => reverse_diffusion(sde, score, x, t, t_next, noise, key),
            Self::Ancestral(v) => ancestral(sde, score, x, t, t_next, *v, noise, key),
            Self::None => Update {
                x_mean: x.clone(),
                x,
            },
        }
    }
}

fn draw<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Tensor<B, D> {
    noise.normal::<B, D>(x.dims(), key, &x.device())
}

/// Euler–Maruyama on the reverse SDE `dx = [f(t)x − g(t)²s(x, t)]dt + g(t)dw̄` (Song et al. 2021,
/// eq. 6): `x_mean = x + [f x − g² s]·Δt`, `x = x_mean + g·√|Δt|·z`, with `Δt = t_next − t < 0`.
pub fn euler_maruyama<S: Sde, B: Backend, const D: usize, F: ScoreFn<B, D>>(
    sde: &S,
    score: &F,
    x: Tensor<B, D>,
    t: f64,
    t_next: f64,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Update<B, D> {
    let dt = t_next - t;
    let s = score.score(x.clone(), times(&x, t));
    let z = draw(&x, noise, key);
    let x_mean = x.clone() + sde.reverse_drift(x, s, t).mul_scalar(dt);
    let x = x_mean.clone() + z.mul_scalar(sde.diffusion(t) * dt.abs().sqrt());
    Update { x, x_mean }
}

/// The reverse-diffusion predictor (Song et al. 2021, eq. 46–47): with the forward step
/// `x_{t} = x_{t_next} + f·x_{t_next} + g·z` of [`Sde::discretize`], step back by
/// `x_mean = x − f·x + g²·s(x, t)`, `x = x_mean + g·z`.
pub fn reverse_diffusion<S: Sde, B: Backend, const D: usize, F: ScoreFn<B, D>>(
    sde: &S,
    score: &F,
    x: Tensor<B, D>,
    t: f64,
    t_next: f64,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Update<B, D> {
    let d = sde.discretize(t, t - t_next);
    let s = score.score(x.clone(), times(&x, t));
    let z = draw(&x, noise, key);
    let x_mean = x.clone() - x.mul_scalar(d.f) + s.mul_scalar(d.g * d.g);
    let x = x_mean.clone() + z.mul_scalar(d.g);
    Update { x, x_mean }
}

/// Ancestral sampling: draw `x_{t_next}` from the Gaussian `q(x_{t_next} | x_t, x̂_0)` with `x̂_0`
/// the Tweedie estimate `(x + s(t)²·score)/m(t)`.
///
/// With `a = m(t)/m(t_next)` and `b = s(t)² − a²·s(t_next)²` (the forward step's variance), the
/// mean is `[(a·s(t_next)² + b/a)·x]/s(t)² + (b/a)·score`. For VE (`a = 1`) it is SMLD's
/// `x + (σ_t² − σ_next²)·score` (Song et al. 2021, eq. 47); for VP (`a² = 1 − β`) DDPM's
/// `(x + β·score)/√(1 − β)` (Ho et al. 2020, Algorithm 2); the variance is chosen by `variance`.
#[allow(clippy::too_many_arguments)]
pub fn ancestral<S: Sde, B: Backend, const D: usize, F: ScoreFn<B, D>>(
    sde: &S,
    score: &F,
    x: Tensor<B, D>,
    t: f64,
    t_next: f64,
    variance: AncestralVariance,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Update<B, D> {
    let (now, next) = (sde.marginal(t), sde.marginal(t_next));
    let a = now.mean_coef / next.mean_coef;
    let (var_now, var_next) = (now.std * now.std, next.std * next.std);
    let b = (var_now - a * a * var_next).max(0.0);
    let c_x = (a * var_next + b / a) / var_now;
    let s = score.score(x.clone(), times(&x, t));
    let z = draw(&x, noise, key);
    let x_mean = x.mul_scalar(c_x) + s.mul_scalar(b / a);
    let var = match variance {
        AncestralVariance::Posterior => b * var_next / var_now,
        AncestralVariance::Forward => b,
    };
    let x = x_mean.clone() + z.mul_scalar(var.sqrt());
    Update { x, x_mean }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use score_core::{VeSde, VpSde, tensor::to_f64};

    type B = NdArray<f32>;

    #[test]
    fn ancestral_reduces_to_smld_and_ddpm_means() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::from_floats([[1.0, -2.0]], &dev);
        let score = |x: Tensor<B, 2>, _t: Tensor<B, 1>| x.mul_scalar(-0.5);
        let noise = NoiseSource::new(0);
        let key = NoiseKey::new(0, 0);
        // VE: x + (σ_t² − σ_next²)·s.
        let ve = VeSde::new(0.01, 10.0).unwrap();
        let u = ancestral(
            &ve,
            &score,
            x.clone(),
            0.6,
            0.5,
            AncestralVariance::Posterior,
            &noise,
            key,
        );
        let g2 = ve.sigma(0.6).powi(2) - ve.sigma(0.5).powi(2);
        let got = to_f64(u.x_mean);
        assert!(
            (got[0] - (1.0 - 0.5 * g2)).abs() < 1e-4 * g2.max(1.0),
            "{got:?}"
        );
        // VP: (x + β·s)/√(1 − β) with β = 1 − ᾱ(t)/ᾱ(t_next) = g² of the DDPM discretisation.
        let vp = VpSde::default();
        let beta = vp.discretize(0.6, 0.1).g.powi(2);
        let u = ancestral(
            &vp,
            &score,
            x,
            0.6,
            0.5,
            AncestralVariance::Forward,
            &noise,
            key,
        );
        let got = to_f64(u.x_mean.clone());
        let expect = (-2.0 - beta * 0.5 * -2.0) / (1.0 - beta).sqrt();
        assert!((got[1] - expect).abs() < 1e-5, "{} vs {expect}", got[1]);
        // Forward variance β: x − x_mean = √β·z.
        let z = to_f64(noise.normal::<B, 2>([1, 2], key, &dev));
        let diff = to_f64(u.x.clone())[0] - to_f64(u.x_mean.clone())[0];
        assert!((diff - beta.sqrt() * z[0]).abs() < 1e-5);
    }
}
