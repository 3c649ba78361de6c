//! # score-sample
//!
//! Turns a score `s(x, t) ≈ ∇x log p_t(x)` into samples and likelihoods, for any burn backend and
//! any data rank (points `[n, d]`, images `[n, c, h, w]`):
//!
//! - [`langevin`]: Langevin dynamics and Metropolis-adjusted Langevin (MALA);
//! - [`annealed`]: annealed Langevin dynamics (NCSN, Song & Ermon 2019);
//! - [`predictor`], [`corrector`], [`pc`]: the predictor–corrector samplers of Song et al. 2021
//!   (Euler–Maruyama, reverse diffusion, ancestral; Langevin and annealed Langevin correctors);
//! - [`ddpm`]: DDPM's ancestral sampler with an ε-predicting model (Ho et al. 2020);
//! - [`ode`]: the probability-flow ODE with Euler, Heun, RK4 and adaptive Dormand–Prince;
//! - [`likelihood`]: exact log-likelihoods (exact or Hutchinson divergence) and bits/dim;
//! - [`inverse`]: inpainting and posterior sampling with an unconditional score.
//!
//! Every sampler is a small struct built from a validated config; its methods take `&self`, the
//! score, a [`TimeGrid`] and a [`score_core::NoiseSource`] through which every random draw goes,
//! so a seed gives the same samples on every run. Results carry the samples, the noise-free last
//! mean `x_mean` and the number of score evaluations ([`Samples`]). A NaN or ∞ in the state stops
//! the run with [`SampleError::NonFinite`] naming the step and time.
//!
//! ```
//! use burn::backend::NdArray;
//! use score_core::{GaussianMixture, NoiseSource, VeSde};
//! use score_sample::{PcSamplerConfig, TimeGrid};
//! type B = NdArray<f32>;
//! let sde = VeSde::new(0.01, 10.0).unwrap();
//! let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
//! // score_sde's default: reverse diffusion + one Langevin corrector step (snr 0.16).
//! let sampler = PcSamplerConfig::new().init(sde).unwrap();
//! let grid = TimeGrid::reverse(&sde, 1e-3, 50).unwrap();
//! let out = sampler
//!     .sample::<B, 2, _>(&target, &grid, [32, 2], &NoiseSource::new(0), &Default::default())
//!     .unwrap();
//! assert_eq!(out.nfe, 100);
//! ```

#![warn(missing_docs)]

pub mod annealed;
pub mod corrector;
pub mod ddim;
pub mod ddpm;
pub mod denoiser;
pub mod dpm_solver;
pub mod edm;
pub mod error;
pub mod grid;
pub mod inverse;
pub mod langevin;
pub mod likelihood;
pub mod ode;
pub mod pc;
pub mod predictor;
pub mod sampler;
pub mod samples;
pub mod sde_adaptive;
pub mod sigma;

#[cfg(feature = "testing")]
pub mod testing;

pub use annealed::{AnnealedLangevin, AnnealedLangevinConfig, LangevinConvention};
pub use corrector::CorrectorKind;
pub use ddpm::{DdpmSampler, DdpmSamplerConfig, NoisePredictor};
pub use error::{Result, SampleError};
pub use grid::TimeGrid;
pub use inverse::{Inpainter, PosteriorScore};
pub use langevin::{Langevin, LangevinConfig, Mala, MalaSamples};
pub use likelihood::{
    Dequantization, Divergence, Likelihood, LikelihoodConfig, LogLikelihood, ProbeKind,
    exact_divergence,
};
pub use ode::{
    AdaptiveConfig, OdeSolution, OdeSolver, ProbabilityFlow, ProbabilityFlowConfig, integrate,
};
pub use pc::{PcSampler, PcSamplerConfig};
pub use predictor::{
    AncestralVariance, PredictorKind, Update, ancestral, euler_maruyama, reverse_diffusion,
};
pub use samples::Samples;

pub use ddim::{Ddim, DdimConfig};
pub use denoiser::Tweedie;
pub use dpm_solver::{DpmSolver, DpmSolverConfig, DpmSolverKind};
pub use edm::{Edm, EdmConfig};
pub use sampler::{AnySampler, Sampler, SamplerConfig, ScoreAsNoise, Start, ddpm_grid};
pub use sde_adaptive::{AdaptiveSde, AdaptiveSdeConfig, AdaptiveSdeSamples, ErrorNorm};
pub use sigma::GridKind;
