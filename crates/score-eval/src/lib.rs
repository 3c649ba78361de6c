//! # score-eval
//!
//! Sample-quality metrics for score-based generative models, on host point sets (`&[f64]`,
//! row-major, with their dimension), and the small statistics their acceptance bounds need:
//!
//! - [`sliced`]: sliced Wasserstein W1 and W2² (exact 1-D distances by sorting; evenly spaced
//!   directions in 2-D, fixed-seed Gaussian directions from [`score_core::NoiseSource`] above);
//! - [`mmd`]: the unbiased MMD² with a Gaussian kernel, given bandwidth or median heuristic;
//! - [`energy`]: the unbiased energy distance;
//! - [`moments`]: means, covariances and their errors;
//! - [`modes`]: per-component occupancy of a [`score_core::GaussianMixture`];
//! - [`frechet`]: the Fréchet (2-Wasserstein) distance between Gaussians and between point sets
//!   through their moments, FID's distance;
//! - [`judge`]: the MNIST judge, a small CNN trained with outlier exposure that reports on
//!   generated digits (class histogram and entropy, confident fraction, classifier-feature
//!   Fréchet distance against a test reference and its real-data floor); its trained weights
//!   ship in the repository's `data/judge/`;
//! - [`stats`]: normal and chi-square quantiles, exact binomial intervals (acceptance and
//!   Clopper–Pearson), Monte Carlo test thresholds.
//!
//! Every metric is deterministic: the same inputs give the same value on every run.
//!
//! ```
//! use score_core::{GaussianMixture, NoiseKey, NoiseSource};
//! use score_eval::{Bandwidth, energy_distance, mmd2_unbiased, sliced_w2_squared};
//! let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
//! let a = ring.sample_f64(200, &NoiseSource::new(1), NoiseKey::new(0, 0));
//! let b = ring.sample_f64(200, &NoiseSource::new(2), NoiseKey::new(0, 0));
//! let sw = sliced_w2_squared(&a, &b, 2, 32).unwrap();
//! let mmd = mmd2_unbiased(&a, &b, 2, Bandwidth::Median).unwrap();
//! let e = energy_distance(&a, &b, 2).unwrap();
//! assert!(sw > 0.0 && mmd.abs() < 0.05 && e.abs() < 0.1);
//! ```

#![warn(missing_docs)]

pub mod energy;
pub mod error;
pub mod frechet;
pub mod judge;
pub mod mmd;
pub mod modes;
pub mod moments;
pub mod sliced;
pub mod stats;

pub use energy::energy_distance;
pub use error::{EvalError, Result};
pub use frechet::{frechet_distance, frechet_distance_gaussians};
pub use mmd::{Bandwidth, median_heuristic, mmd2_unbiased, rbf_kernel};
pub use modes::{Assignment, assign, occupancy};
pub use moments::{MomentErrors, covariance, mean, moment_errors, moment_errors_between};
pub use sliced::{
    Projections, SlicedWasserstein, sliced_w1, sliced_w2_squared, w1_1d, w2_squared_1d,
};
pub use stats::{
    binomial_interval, binomial_pmf, chi_square_quantile, clopper_pearson, monte_carlo_p_value,
    monte_carlo_replicates, monte_carlo_threshold, normal_cdf, normal_quantile, normal_sf,
};
