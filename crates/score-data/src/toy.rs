//! The 2-D toy sets of the score-matching literature, drawn through a [`NoiseSource`] so a seed
//! fixes them: two moons and the swiss roll (as scikit-learn's `make_moons` /
//! `make_swiss_roll`), concentric rings and the ring of eight Gaussians (as in FFJORD's toy
//! data), and a three-Gaussian mixture.
//!
//! Every sampler returns `n × 2` values, row-major, and draws sample `i` from streams keyed by
//! its global index, so sample `i` does not depend on `n` and
//! [`NoiseSource::with_sample_offset`] splits a draw into batches without changing it.
//!
//! ```
//! use score_core::{NoiseKey, NoiseSource};
//! use score_data::toy::ToySet;
//! let x = ToySet::two_moons().sample(1000, &NoiseSource::new(0), NoiseKey::new(0, 0)).unwrap();
//! assert_eq!(x.len(), 2000);
//! ```

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_core::{GaussianMixture, NoiseKey, NoiseSource};

use crate::error::{DataError, Result};

/// `derive` purpose of the uniforms (component and position along the curve); the normals come
/// from the source itself, as in [`GaussianMixture::sample_f64`].
const UNIFORM_PURPOSE: u64 = 0x0074_6f79; // "toy"

/// Two uniforms per sample (which component, where on it) and two standard normals.
fn draws(n: usize, noise: &NoiseSource, key: NoiseKey) -> (Vec<f64>, Vec<f64>) {
    // score-core 0.1's `derive` seeds the new source from a stream that moves with the sample
    // offset, so a derived source would differ between batches; derive at offset 0 and restore
    // the offset, which keeps sample i's draws independent of the batch it falls in.
    let uniforms = noise
        .with_sample_offset(0)
        .derive(UNIFORM_PURPOSE)
        .with_sample_offset(noise.sample_offset());
    (uniforms.uniform_f64(n, 2, key), noise.normal_f64(n, 2, key))
}

/// `n` samples of a 2-D mixture, with [`draws`]' batch independence (see there for why not
/// [`GaussianMixture::sample_f64`]).
fn sample_mixture(mix: &GaussianMixture, n: usize, noise: &NoiseSource, key: NoiseKey) -> Vec<f64> {
    let (u, z) = draws(n, noise, key);
    let mut cdf = Vec::with_capacity(mix.n_components());
    let mut acc = 0.0;
    for w in mix.weights() {
        acc += w;
        cdf.push(acc);
    }
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let k = cdf
            .iter()
            .position(|&c| u[2 * i] < c)
            .unwrap_or(cdf.len() - 1);
        let (m, v) = (&mix.means()[k], &mix.variances()[k]);
        out.push(m[0] + v[0].sqrt() * z[2 * i]);
        out.push(m[1] + v[1].sqrt() * z[2 * i + 1]);
    }
    out
}

fn check_nonneg(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(DataError::InvalidParameter {
            name,
            value,
            reason: "must be finite and non-negative",
        })
    }
}

/// Two interleaved half-circles, scikit-learn's `make_moons` geometry: the upper moon is
/// `(cos θ, sin θ)` and the lower one `(1 − cos θ, 1/2 − sin θ)`, `θ ~ U(0, π)`, each moon with
/// probability 1/2, plus isotropic Gaussian noise of standard deviation `noise_std`.
///
/// # Errors
///
/// [`DataError::InvalidParameter`] if `noise_std` is negative or not finite.
pub fn two_moons(n: usize, noise_std: f64, noise: &NoiseSource, key: NoiseKey) -> Result<Vec<f64>> {
    check_nonneg("noise_std", noise_std)?;
    let (u, z) = draws(n, noise, key);
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let theta = std::f64::consts::PI * u[2 * i + 1];
        let (s, c) = theta.sin_cos();
        let (x, y) = if u[2 * i] < 0.5 {
            (c, s)
        } else {
            (1.0 - c, 0.5 - s)
        };
        out.push(x + noise_std * z[2 * i]);
        out.push(y + noise_std * z[2 * i + 1]);
    }
    Ok(out)
}

/// The swiss roll projected to 2-D as scikit-learn's `make_swiss_roll` is usually plotted (its
/// `x` and `z` coordinates): `t = 3π/2 (1 + 2u)`, `u ~ U(0, 1)`, the point
/// `scale · (t cos t + σ ε₁, t sin t + σ ε₂)` with `σ = noise_std`. The radius grows with the
/// angle: without noise, `|x| / scale = t ∈ [3π/2, 9π/2]`. FFJORD's toy set is `noise_std = 1`,
/// `scale = 1/5` ([`ToySet::swiss_roll`]).
///
/// # Errors
///
/// [`DataError::InvalidParameter`] if `noise_std` is negative or `scale` not positive (or either
/// is not finite).
pub fn swiss_roll(
    n: usize,
    noise_std: f64,
    scale: f64,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Result<Vec<f64>> {
    check_nonneg("noise_std", noise_std)?;
    check_nonneg("scale", scale)?;
    if scale == 0.0 {
        return Err(DataError::InvalidParameter {
            name: "scale",
            value: scale,
            reason: "must be positive",
        });
    }
    let (u, z) = draws(n, noise, key);
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let t = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * u[2 * i]);
        let (s, c) = t.sin_cos();
        out.push(scale * (t * c + noise_std * z[2 * i]));
        out.push(scale * (t * s + noise_std * z[2 * i + 1]));
    }
    Ok(out)
}

/// Concentric circles centred at the origin: a radius picked uniformly from `radii`, an angle
/// uniform on `[0, 2π)`, plus isotropic Gaussian noise of standard deviation `noise_std`.
/// FFJORD's `rings` is `radii = [0.75, 1.5, 2.25, 3]`, `noise_std = 0.08` ([`ToySet::rings`]).
///
/// # Errors
///
/// [`DataError::InvalidParameter`] if `radii` is empty, or a radius or `noise_std` is negative or
/// not finite.
pub fn rings(
    n: usize,
    radii: &[f64],
    noise_std: f64,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Result<Vec<f64>> {
    check_nonneg("noise_std", noise_std)?;
    if radii.is_empty() {
        return Err(DataError::InvalidParameter {
            name: "radii.len()",
            value: 0.0,
            reason: "needs at least one ring",
        });
    }
    for &r in radii {
        check_nonneg("radius", r)?;
    }
    let (u, z) = draws(n, noise, key);
    let k = radii.len();
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let r = radii[((u[2 * i] * k as f64) as usize).min(k - 1)];
        let (s, c) = (std::f64::consts::TAU * u[2 * i + 1]).sin_cos();
        out.push(r * c + noise_std * z[2 * i]);
        out.push(r * s + noise_std * z[2 * i + 1]);
    }
    Ok(out)
}

/// The ring of eight Gaussians: equal weights, means at radius 4 and angles `2πk/8`, standard
/// deviation 0.2 — [`GaussianMixture::ring`]`(8, 4.0, 0.2)`, so its exact score is at hand.
pub fn eight_gaussians_mixture() -> GaussianMixture {
    // Fixed valid parameters: ring() only fails on k = 0 or non-positive radius or std.
    GaussianMixture::ring(8, 4.0, 0.2).expect("ring(8, 4, 0.2) is a valid mixture")
}

/// `n` samples of [`eight_gaussians_mixture`].
pub fn eight_gaussians(n: usize, noise: &NoiseSource, key: NoiseKey) -> Vec<f64> {
    sample_mixture(&eight_gaussians_mixture(), n, noise, key)
}

/// The three-component mixture of the project's seed 001 (its explicit-score-matching demo):
/// equal weights, means `(−2, −2)`, `(2, 2)`, `(−2, 2)`, isotropic standard deviation 0.5.
pub fn three_gaussians_mixture() -> GaussianMixture {
    GaussianMixture::new(
        vec![1.0 / 3.0; 3],
        vec![vec![-2.0, -2.0], vec![2.0, 2.0], vec![-2.0, 2.0]],
        vec![vec![0.25, 0.25]; 3],
    )
    .expect("the three-Gaussian mixture's fixed parameters are valid")
}

/// `n` samples of [`three_gaussians_mixture`].
pub fn three_gaussians(n: usize, noise: &NoiseSource, key: NoiseKey) -> Vec<f64> {
    sample_mixture(&three_gaussians_mixture(), n, noise, key)
}

/// A toy set and its parameters, so a CLI or config picks one by value and calls
/// [`ToySet::sample`].
#[derive(Debug, Clone, PartialEq)]
pub enum ToySet {
    /// [`two_moons`].
    TwoMoons {
        /// Standard deviation of the added Gaussian noise.
        noise_std: f64,
    },
    /// [`swiss_roll`].
    SwissRoll {
        /// Standard deviation of the added Gaussian noise (before scaling).
        noise_std: f64,
        /// Overall scale.
        scale: f64,
    },
    /// [`rings`].
    Rings {
        /// The radii of the circles.
        radii: Vec<f64>,
        /// Standard deviation of the added Gaussian noise.
        noise_std: f64,
    },
    /// [`eight_gaussians`].
    EightGaussians,
    /// [`three_gaussians`].
    ThreeGaussians,
}

impl ToySet {
    /// Two moons with noise 0.1.
    pub fn two_moons() -> Self {
        ToySet::TwoMoons { noise_std: 0.1 }
    }

    /// FFJORD's swiss roll: noise 1, scale 1/5.
    pub fn swiss_roll() -> Self {
        ToySet::SwissRoll {
            noise_std: 1.0,
            scale: 0.2,
        }
    }

    /// FFJORD's four rings: radii 0.75, 1.5, 2.25, 3 and noise 0.08.
    pub fn rings() -> Self {
        ToySet::Rings {
            radii: vec![0.75, 1.5, 2.25, 3.0],
            noise_std: 0.08,
        }
    }

    /// `n` samples, row-major `n × 2`.
    ///
    /// # Errors
    ///
    /// [`DataError::InvalidParameter`] for invalid parameters (see each sampler).
    pub fn sample(&self, n: usize, noise: &NoiseSource, key: NoiseKey) -> Result<Vec<f64>> {
        match self {
            ToySet::TwoMoons { noise_std } => two_moons(n, *noise_std, noise, key),
            ToySet::SwissRoll { noise_std, scale } => swiss_roll(n, *noise_std, *scale, noise, key),
            ToySet::Rings { radii, noise_std } => rings(n, radii, *noise_std, noise, key),
            ToySet::EightGaussians => Ok(eight_gaussians(n, noise, key)),
            ToySet::ThreeGaussians => Ok(three_gaussians(n, noise, key)),
        }
    }

    /// The exact density, for the sets that are Gaussian mixtures (score and log-density oracles).
    pub fn mixture(&self) -> Option<GaussianMixture> {
        match self {
            ToySet::EightGaussians => Some(eight_gaussians_mixture()),
            ToySet::ThreeGaussians => Some(three_gaussians_mixture()),
            _ => None,
        }
    }
}

/// A fixed draw of 2-D points as burn's [`Dataset`] of `[f64; 2]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyDataset {
    /// The points, row-major `len() × 2`.
    pub points: Vec<f64>,
}

impl ToyDataset {
    /// `n` points of `set`.
    ///
    /// # Errors
    ///
    /// Those of [`ToySet::sample`].
    pub fn new(set: &ToySet, n: usize, noise: &NoiseSource, key: NoiseKey) -> Result<Self> {
        Ok(Self {
            points: set.sample(n, noise, key)?,
        })
    }

    /// The points at `indices` as a `[n, 2]` tensor.
    ///
    /// # Errors
    ///
    /// [`DataError::IndexOutOfRange`] for the first index past the end.
    pub fn batch_tensor<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> Result<Tensor<B, 2>> {
        let len = Dataset::<[f64; 2]>::len(self);
        let mut x = Vec::with_capacity(2 * indices.len());
        for &i in indices {
            if i >= len {
                return Err(DataError::IndexOutOfRange { index: i, len });
            }
            x.extend_from_slice(&self.points[2 * i..2 * i + 2]);
        }
        Ok(Tensor::from_data(
            TensorData::new(x, [indices.len(), 2]),
            device,
        ))
    }
}

impl Dataset<[f64; 2]> for ToyDataset {
    fn get(&self, index: usize) -> Option<[f64; 2]> {
        let p = self.points.get(2 * index..2 * index + 2)?;
        Some([p[0], p[1]])
    }

    fn len(&self) -> usize {
        self.points.len() / 2
    }
}

/// burn's [`Batcher`] stacking 2-D points into a `[n, 2]` float tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointBatcher;

impl<B: Backend> Batcher<B, [f64; 2], Tensor<B, 2>> for PointBatcher {
    fn batch(&self, items: Vec<[f64; 2]>, device: &B::Device) -> Tensor<B, 2> {
        let n = items.len();
        let x: Vec<f64> = items.into_iter().flatten().collect();
        Tensor::from_data(TensorData::new(x, [n, 2]), device)
    }
}
