//! # score-core
//!
//! The mathematical core of score-based generative modelling, generic over burn backends:
//!
//! - [`sde`]: the VE, VP and sub-VP SDEs of Song et al. 2021 — drift, diffusion, Gaussian
//!   marginals, priors, discretisations, reverse-SDE and probability-flow drifts;
//! - [`schedule`]: discrete noise schedules (NCSN geometric σ, DDPM linear β, cosine, Karras);
//! - [`score`]: the [`ScoreFn`] and [`EnergyFn`] traits every sampler and loss consumes;
//! - [`target`]: Gaussian and Gaussian-mixture targets whose perturbed score and log-density are
//!   exact at every `t` — the oracle of every test;
//! - [`noise`]: the counter-based [`NoiseSource`] through which every random draw goes;
//! - [`tensor`]: rank-generic per-sample broadcasting;
//! - [`error`]: typed errors.
//!
//! ```
//! use score_core::{GaussianMixture, NoiseKey, NoiseSource, ScoreFn, Sde, VeSde};
//! use burn::{backend::NdArray, tensor::Tensor};
//! type B = NdArray<f32>;
//! let dev = Default::default();
//! let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(VeSde::default());
//! let x = VeSde::default().prior_sample::<B, 2>([16, 2], &NoiseSource::new(0), NoiseKey::new(0, 0), &dev);
//! let s = target.score(x, Tensor::ones([16], &dev));
//! assert_eq!(s.dims(), [16, 2]);
//! ```

#![warn(missing_docs)]

pub mod error;
mod host;
pub mod noise;
pub mod schedule;
pub mod score;
pub mod sde;
pub mod target;
pub mod tensor;

pub use error::{CoreError, Result};
pub use noise::{NoiseKey, NoiseSource};
pub use score::{AutodiffScore, EnergyFn, ScoreFn, energy_score, same_marginals};
pub use sde::{
    AnySde, Discretization, Marginal, Sde, SdeConfig, SubVpSde, VeSde, VpSde, check_eps,
};
pub use target::{DiagGaussian, Diffused, GaussianMixture};
