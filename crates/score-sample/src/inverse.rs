//! Inverse problems with an unconditional score (Song et al. 2021, §5 and App. I):
//!
//! - [`Inpainter`]: values known under a mask are replaced, after every update, by the
//!   observation pushed through the forward kernel to the current time (App. I.2);
//! - [`PosteriorScore`]: Bayes' rule for scores, `∇x log p_t(x | y) = ∇x log p_t(x) +
//!   ∇x log p_t(y | x)`, with the likelihood term supplied by the caller (App. I.4).
//!
//! Both are rank-generic: points `[n, d]` and images `[n, c, h, w]` go through the same code.

use burn::tensor::{Tensor, backend::Backend};
use score_core::{NoiseKey, NoiseSource, ScoreFn, Sde};

use crate::error::{Result, SampleError};
use crate::grid::TimeGrid;
use crate::pc::{PRIOR_STREAM, PcSampler};
use crate::predictor::Update;
use crate::samples::Samples;

/// Replacement-based inpainting with a [`PcSampler`] (Song et al. 2021, App. I.2).
///
/// After every predictor and corrector update at time `t`, the known entries (mask 1) are set to
/// `m(t)·y + s(t)·z` (the observation under the forward kernel, fresh noise each time) and those
/// of the noise-free mean to `m(t)·y`; the returned samples carry the observation itself on the
/// known entries. This is an approximation of conditional sampling (the unknown part sees a
/// noised observation rather than the conditional law of `x_t` given `y`); it is exact in the
/// limit where the noise level is small.
#[derive(Debug, Clone, PartialEq)]
pub struct Inpainter<S> {
    sampler: PcSampler<S>,
}

impl<S: Sde> Inpainter<S> {
    /// Inpainting with the steps of `sampler`.
    pub fn new(sampler: PcSampler<S>) -> Self {
        Self { sampler }
    }

    /// Samples the unknown entries given `observed` on the entries where `mask` is 1 (mask
    /// entries must be 0 or 1). The initial state is prior noise on the unknown entries and the
    /// forward-noised observation on the known ones. Projection noise uses keys
    /// `(i, 2³¹ + j)`; the prior draw `(0, u32::MAX)`.
    ///
    /// # Shapes
    /// - `observed`, `mask`: `[n, …]`, the same shape; output: same
    ///
    /// # Errors
    /// [`SampleError::ShapeMismatch`] when the shapes differ, [`SampleError::InvalidConfig`]
    /// naming the first mask entry that is neither 0 nor 1, and the sampler's errors.
    pub fn sample<B: Backend, const D: usize, F: ScoreFn<B, D>>(
        &self,
        score: &F,
        grid: &TimeGrid,
        observed: Tensor<B, D>,
        mask: Tensor<B, D>,
        noise: &NoiseSource,
    ) -> Result<Samples<B, D>> {
        let (shape, device) = (observed.dims(), observed.device());
        if mask.dims() != shape {
            return Err(SampleError::ShapeMismatch {
                what: "inpainting mask",
                expected: shape.to_vec(),
                got: mask.dims().to_vec(),
            });
        }
        let sde = self.sampler.sde();
        // A mask of other values (e.g. 0.5, or 0/255) would blend observation and sample.
        if let Some(m) = mask
            .clone()
            .into_data()
            .convert::<f64>()
            .iter::<f64>()
            .find(|&m| m != 0.0 && m != 1.0)
        {
            return Err(SampleError::InvalidConfig {
                name: "inpainting mask entry",
                value: m,
                reason: "the mask must hold only 0 (unknown) and 1 (known)",
            });
        }
        let keep = mask.clone().neg().add_scalar(1.0);
        let noised = |t: f64, key: NoiseKey| {
            let k = sde.marginal(t);
            let z = noise.normal::<B, D>(shape, key, &device);
            let mean = observed.clone().mul_scalar(k.mean_coef);
            (mean.clone() + z.mul_scalar(k.std), mean)
        };
        let prior = sde.prior_sample::<B, D>(shape, noise, NoiseKey::new(0, PRIOR_STREAM), &device);
        let (known, _) = noised(grid.start(), NoiseKey::new(0, PRIOR_STREAM - 1));
        let x = prior * keep.clone() + known * mask.clone();
        let out = self.sampler.run(score, grid, x, noise, |u, t, key| {
            let (known, known_mean) = noised(t, key);
            Update {
                x: u.x * keep.clone() + known * mask.clone(),
                x_mean: u.x_mean * keep.clone() + known_mean * mask.clone(),
            }
        })?;
        let fill = |x: Tensor<B, D>| x * keep.clone() + observed.clone() * mask.clone();
        Ok(Samples {
            x: fill(out.x),
            x_mean: fill(out.x_mean),
            nfe: out.nfe,
        })
    }
}

/// The posterior score `s(x, t) + w·∇x log p_t(y | x)` (Bayes' rule for scores; `w = 1` is exact
/// Bayes, other weights give guidance). The likelihood gradient is any [`ScoreFn`] of `(x, t)`
/// that closes over the observation `y`.
///
/// ```
/// use burn::{backend::NdArray, tensor::Tensor};
/// use score_core::ScoreFn;
/// use score_sample::PosteriorScore;
/// type B = NdArray<f32>;
/// // Prior N(0, 1), one observation y = x + N(0, 1) with y = 2: posterior N(1, 1/2).
/// let prior = |x: Tensor<B, 2>, _t: Tensor<B, 1>| -x;
/// let likelihood = |x: Tensor<B, 2>, _t: Tensor<B, 1>| x.neg().add_scalar(2.0);
/// let post = PosteriorScore::new(prior, likelihood);
/// let dev = Default::default();
/// let s = post.score(Tensor::<B, 2>::ones([1, 1], &dev), Tensor::zeros([1], &dev));
/// // Score of N(1, 1/2) at 1 is 0.
/// assert!(s.into_scalar().abs() < 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PosteriorScore<P, L> {
    prior: P,
    likelihood: L,
    weight: f64,
}

impl<P, L> PosteriorScore<P, L> {
    /// Prior score plus likelihood gradient, weight 1.
    pub fn new(prior: P, likelihood: L) -> Self {
        Self {
            prior,
            likelihood,
            weight: 1.0,
        }
    }

    /// The same with the likelihood term scaled by `weight` (guidance scale).
    pub fn with_weight(self, weight: f64) -> Self {
        Self { weight, ..self }
    }
}

impl<B, const D: usize, P, L> ScoreFn<B, D> for PosteriorScore<P, L>
where
    B: Backend,
    P: ScoreFn<B, D>,
    L: ScoreFn<B, D>,
{
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        let grad = self.likelihood.score(x.clone(), t.clone());
        self.prior.score(x, t) + grad.mul_scalar(self.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PcSamplerConfig;
    use burn::backend::NdArray;
    use score_core::{GaussianMixture, VeSde};

    type B = NdArray<f32>;

    #[test]
    fn a_mask_with_values_other_than_0_and_1_is_refused() {
        let dev = Default::default();
        let sde = VeSde::new(0.01, 10.0).unwrap();
        let inpainter = Inpainter::new(PcSamplerConfig::new().init(sde).unwrap());
        let score = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
        let grid = TimeGrid::reverse(&sde, 1e-3, 3).unwrap();
        let observed = Tensor::<B, 2>::ones([2, 2], &dev);
        let mask = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.5, 1.0]], &dev);
        let err = inpainter
            .sample(&score, &grid, observed.clone(), mask, &NoiseSource::new(0))
            .unwrap_err();
        assert!(
            matches!(err, SampleError::InvalidConfig { value, .. } if value == 0.5),
            "{err}"
        );
        let mask = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &dev);
        let out = inpainter
            .sample(&score, &grid, observed, mask, &NoiseSource::new(0))
            .unwrap();
        assert_eq!(out.x.dims(), [2, 2]);
        // Data of another dimension than the target's is an error before the first step.
        let three = Tensor::<B, 2>::ones([2, 3], &dev);
        let err = inpainter
            .sample(
                &score,
                &grid,
                three.clone(),
                three.ones_like(),
                &NoiseSource::new(0),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                SampleError::Core(score_core::CoreError::DimensionMismatch {
                    expected: 2,
                    got: 3,
                    ..
                })
            ),
            "{err}"
        );
    }
}
