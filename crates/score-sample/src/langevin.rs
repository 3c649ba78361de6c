//! Langevin dynamics at a fixed time, and its Metropolis-adjusted form (MALA) for targets with an
//! energy.
//!
//! Unadjusted Langevin (Roberts & Tweedie 1996; Welling & Teh 2011; the inner loop of Song &
//! Ermon 2019): `x ← x + ε·s(x) + √(2ε)·z`. Its stationary law is the target up to an `O(ε)`
//! bias. MALA (Roberts & Tweedie 1996) treats that move as a proposal and accepts it with the
//! Metropolis–Hastings probability, which removes the bias.

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend, cast::ToElement},
};
use score_core::{EnergyFn, NoiseKey, NoiseSource, ScoreFn, tensor::sum_per_sample};

use crate::error::{at_least_one, positive};
use crate::samples::{Samples, ensure_finite, times};

/// Configuration of [`Langevin`] and [`Mala`].
#[derive(Config, Debug, Copy, PartialEq)]
pub struct LangevinConfig {
    /// Step size `ε`.
    pub step_size: f64,
    /// Number of steps.
    pub n_steps: usize,
}

impl LangevinConfig {
    /// Validates the configuration (`ε > 0`, at least one step) and builds the sampler.
    pub fn init(&self) -> crate::Result<Langevin> {
        Ok(Langevin {
            step_size: positive("step_size", self.step_size)?,
            n_steps: at_least_one("n_steps", self.n_steps)?,
        })
    }

    /// Validates the configuration and builds the Metropolis-adjusted sampler.
    pub fn init_mala(&self) -> crate::Result<Mala> {
        Ok(Mala(self.init()?))
    }
}

/// Unadjusted Langevin dynamics `x ← x + ε·s(x, t) + √(2ε)·z` at a fixed time `t`.
///
/// Step `k` draws its noise with key `(k, 0)`.
///
/// ```
/// use burn::{backend::NdArray, tensor::Tensor};
/// use score_core::NoiseSource;
/// use score_sample::LangevinConfig;
/// type B = NdArray<f32>;
/// let dev = Default::default();
/// let sampler = LangevinConfig::new(0.1, 50).init().unwrap();
/// // Score of N(0, I): −x.
/// let score = |x: Tensor<B, 2>, _t: Tensor<B, 1>| -x;
/// let out = sampler.sample(&score, Tensor::<B, 2>::zeros([8, 2], &dev), 0.0, &NoiseSource::new(0)).unwrap();
/// assert_eq!(out.nfe, 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Langevin {
    step_size: f64,
    n_steps: usize,
}

impl Langevin {
    /// Step size `ε`.
    pub fn step_size(&self) -> f64 {
        self.step_size
    }

    /// Number of steps.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }

    /// Runs the chain from `x` for the score at time `t`.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn sample<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        mut x: Tensor<B, D>,
        t: f64,
        noise: &NoiseSource,
    ) -> crate::Result<Samples<B, D>> {
        score.check_shape(&x.dims())?;
        let (eps, shape, device) = (self.step_size, x.dims(), x.device());
        let mut x_mean = x.clone();
        for k in 0..self.n_steps {
            let s = score.score(x.clone(), times(&x, t));
            x_mean = x + s.mul_scalar(eps);
            let z = noise.normal::<B, D>(shape, NoiseKey::new(k as u64, 0), &device);
            x = x_mean.clone() + z.mul_scalar((2.0 * eps).sqrt());
            ensure_finite(&x, k, t)?;
        }
        Ok(Samples {
            x,
            x_mean,
            nfe: self.n_steps,
        })
    }
}

/// Metropolis-adjusted Langevin (Roberts & Tweedie 1996): the Langevin move is a proposal
/// `y = x + ε·s(x) + √(2ε)·z`, accepted with probability
/// `min(1, exp(E(x) − E(y) + log q(x|y) − log q(y|x)))`, `q(y|x) = N(y; x + ε·s(x), 2ε·I)`.
///
/// Step `k` draws its proposal noise with key `(k, 0)` and its acceptance uniforms with `(k, 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mala(Langevin);

/// The result of [`Mala::sample`].
#[derive(Debug, Clone)]
pub struct MalaSamples<B: Backend, const D: usize> {
    /// The chain's final states. A Metropolis chain has no noise-free mean, so `x_mean == x`;
    /// `nfe` counts score evaluations (the energy is evaluated as often).
    pub samples: Samples<B, D>,
    /// Fraction of accepted proposals over all samples and steps.
    pub acceptance_rate: f64,
}

impl Mala {
    /// The underlying Langevin settings.
    pub fn langevin(&self) -> &Langevin {
        &self.0
    }

    /// Runs the chain from `x` for the target at time `t`, which must provide both its score and
    /// its energy (`−log p` up to a constant).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`; output: same
    pub fn sample<B, const D: usize, F>(
        &self,
        target: &F,
        mut x: Tensor<B, D>,
        t: f64,
        noise: &NoiseSource,
    ) -> crate::Result<MalaSamples<B, D>>
    where
        B: Backend,
        F: ScoreFn<B, D> + EnergyFn<B, D>,
    {
        target.check_shape(&x.dims())?;
        let (eps, shape, device) = (self.0.step_size, x.dims(), x.device());
        let n = shape[0];
        let tt = times(&x, t);
        let mut s_x = target.score(x.clone(), tt.clone());
        let mut e_x = target.energy(x.clone(), tt.clone());
        let mut accepted = 0.0;
        for k in 0..self.0.n_steps {
            let z = noise.normal::<B, D>(shape, NoiseKey::new(k as u64, 0), &device);
            let y =
                x.clone() + s_x.clone().mul_scalar(eps) + z.clone().mul_scalar((2.0 * eps).sqrt());
            let s_y = target.score(y.clone(), tt.clone());
            let e_y = target.energy(y.clone(), tt.clone());
            // log q(y|x) = −|√(2ε) z|²/(4ε) = −|z|²/2; log q(x|y) = −|x − y − ε s(y)|²/(4ε).
            let log_q_fwd = sum_per_sample(z.square()).mul_scalar(-0.5);
            let back = x.clone() - y.clone() - s_y.clone().mul_scalar(eps);
            let log_q_back = sum_per_sample(back.square()).mul_scalar(-0.25 / eps);
            let log_alpha = e_x.clone() - e_y.clone() + log_q_back - log_q_fwd;
            let u = noise.uniform::<B, 1>([n], NoiseKey::new(k as u64, 1), &device);
            let accept = u.log().lower(log_alpha); // [n]; NaN never accepts
            accepted += accept.clone().int().sum().into_scalar().to_f64();
            let mut column = [1usize; D];
            column[0] = n;
            let accept_x = accept.clone().reshape(column).expand(shape);
            x = x.mask_where(accept_x.clone(), y);
            s_x = s_x.mask_where(accept_x, s_y);
            e_x = e_x.mask_where(accept, e_y);
            ensure_finite(&x, k, t)?;
        }
        let steps = self.0.n_steps;
        Ok(MalaSamples {
            samples: Samples {
                x_mean: x.clone(),
                x,
                nfe: steps + 1,
            },
            acceptance_rate: accepted / (n * steps) as f64,
        })
    }
}
