//! Correctors: Langevin MCMC steps at a fixed time `t` that pull the state towards `p_t`
//! (Song et al. 2021, Algorithms 4–5; score_sde's `LangevinCorrector` and
//! `AnnealedLangevinDynamics`).

use burn::{
    config::Config,
    tensor::{Tensor, backend::Backend},
};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::error::{at_least_one, positive};
use crate::predictor::Update;
use crate::samples::{mean_norm, times};

/// Which corrector a [`crate::PcSampler`] uses.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum CorrectorKind {
    /// No corrector.
    None,
    /// Langevin steps with the signal-to-noise step rule of Song et al. 2021 (Algorithm 4):
    /// `ε = 2α·(snr·‖z‖/‖s‖)²`, norms averaged over the batch.
    Langevin {
        /// Target signal-to-noise ratio (0.16 for the 2-D and CIFAR-10 VE settings).
        snr: f64,
        /// Corrector steps per sampler step.
        n_steps: usize,
    },
    /// Annealed Langevin dynamics as a corrector (Algorithm 5's step rule for a known noise
    /// level): `ε = 2α·(snr·σ(t))²` with `σ(t)` the marginal standard deviation.
    AnnealedLangevin {
        /// Target signal-to-noise ratio.
        snr: f64,
        /// Corrector steps per sampler step.
        n_steps: usize,
    },
}

impl CorrectorKind {
    /// Checks `snr > 0` and `n_steps ≥ 1`.
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            Self::None => Ok(()),
            Self::Langevin { snr, n_steps } | Self::AnnealedLangevin { snr, n_steps } => {
                positive("snr", snr)?;
                at_least_one("corrector n_steps", n_steps)?;
                Ok(())
            }
        }
    }

    /// Number of corrector steps (score evaluations) per sampler step.
    pub fn n_steps(&self) -> usize {
        match *self {
            Self::None => 0,
            Self::Langevin { n_steps, .. } | Self::AnnealedLangevin { n_steps, .. } => n_steps,
        }
    }

    /// Corrector step `j` at time `t`, drawing noise under `key`. `dt > 0` is the sampler's step
    /// length, which sets `α = (1 + f)²` from the SDE's discretisation (`1 − β_i` for VP as in
    /// score_sde, 1 for VE).
    #[allow(clippy::too_many_arguments)]
    pub fn step<S: Sde, B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        sde: &S,
        score: &F,
        x: Tensor<B, D>,
        t: f64,
        dt: f64,
        noise: &NoiseSource,
        key: NoiseKey,
    ) -> Update<B, D> {
        let alpha = (1.0 + sde.discretize(t, dt).f).powi(2);
        match *self {
            Self::None => Update {
                x_mean: x.clone(),
                x,
            },
            Self::Langevin { snr, .. } => {
                let s = score.score(x.clone(), times(&x, t));
                let z = noise.normal::<B, D>(x.dims(), key, &x.device());
                let ratio = snr * mean_norm(z.clone()) / mean_norm(s.clone());
                langevin_move(x, s, z, 2.0 * alpha * ratio * ratio)
            }
            Self::AnnealedLangevin { snr, .. } => {
                let s = score.score(x.clone(), times(&x, t));
                let z = noise.normal::<B, D>(x.dims(), key, &x.device());
                let sigma = sde.marginal(t).std;
                langevin_move(x, s, z, 2.0 * alpha * (snr * sigma).powi(2))
            }
        }
    }
}

/// `x_mean = x + ε·s`, `x = x_mean + √(2ε)·z`.
fn langevin_move<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    s: Tensor<B, D>,
    z: Tensor<B, D>,
    eps: f64,
) -> Update<B, D> {
    let x_mean = x + s.mul_scalar(eps);
    let x = x_mean.clone() + z.mul_scalar((2.0 * eps).sqrt());
    Update { x, x_mean }
}
