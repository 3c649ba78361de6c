//! Explicit score matching (Hyvärinen 2005, eq. 4): `½‖s(x)‖² + tr ∂s/∂x`, with the exact trace.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_core::{NoiseSource, tensor::sum_per_sample};

use super::{Objective, Viewed, host_vector, score_and_quadratic_form};
use crate::view::{AsScore, LiftedScoreView};

/// Explicit score matching: `J(s) = E_x[½‖s(x, t)‖² + tr ∂s(x, t)/∂x]`, which equals
/// `½E‖s − ∇log p‖²` up to a constant independent of `s` (Hyvärinen 2005, Theorem 1).
///
/// The trace is exact: for a sample of dimension `d` the batch is replicated `d` times and row
/// block `i` contributes `e_iᵀ (∂s/∂x) e_i`, i.e. one backward pass per dimension, all batched
/// into one. Cost grows with `d`: meant for low-dimensional data.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use score_core::{DiagGaussian, NoiseSource, VeSde};
/// use score_train::{Exact, ExplicitScoreMatching, Loss};
/// type B = Autodiff<NdArray<f32>>;
/// let dev = Default::default();
/// // The score of N(0, I) is −x; its ESM value is E[½‖x‖² − d] = −d/2 under N(0, I).
/// let target = DiagGaussian::new(vec![0.0; 2], vec![1.0; 2]).unwrap()
///     .to_mixture().diffused(VeSde::default());
/// let x = NoiseSource::new(0).normal::<B, 2>([4000, 2], score_core::NoiseKey::new(0, 0), &dev);
/// let esm = ExplicitScoreMatching::new().with_view(Exact);
/// let l = esm.loss(&target, x, &NoiseSource::new(1), 0).into_scalar();
/// assert!((l + 1.0).abs() < 0.1, "{l}");
/// ```
pub type ExplicitScoreMatching<V = AsScore> = Viewed<Esm, V>;

/// The parameters of [`ExplicitScoreMatching`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Esm {
    /// The time passed to the model (the data distribution is `p_t`); default 0.
    pub t: f64,
}

impl ExplicitScoreMatching {
    /// ESM of a score network at `t = 0` (a model that is undefined there, e.g. a
    /// noise-parameterised VP model, is refused by [`Loss::validate`](crate::Loss::validate)).
    pub fn new() -> Self {
        Viewed::from_parts(Esm { t: 0.0 }, AsScore)
    }
}

impl Default for ExplicitScoreMatching {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> ExplicitScoreMatching<V> {
    /// The same loss with the model evaluated at time `t`.
    pub fn with_time(mut self, t: f64) -> Self {
        self.objective.t = t;
        self
    }
}

/// Unit vectors `e_i` for every row of a batch replicated `d` times (block `i` holds `e_i`).
pub(crate) fn basis_blocks<B: Backend, const D: usize>(
    dims: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let n = dims[0];
    let d: usize = dims[1..].iter().product();
    let mut data = vec![0f32; d * n * d];
    for i in 0..d {
        for row in 0..n {
            data[(i * n + row) * d + i] = 1.0;
        }
    }
    let mut shape = dims;
    shape[0] = d * n;
    Tensor::from_data(TensorData::new(data, shape), device)
}

impl<B, M, V, const D: usize> Objective<B, M, V, D> for Esm
where
    B: Backend,
    V: LiftedScoreView<B, M, D>,
{
    fn validate(&self, view: &V, model: &M) -> crate::Result<()> {
        Ok(view.check_time(model, self.t)?)
    }

    fn per_sample(
        &self,
        view: &V,
        model: &M,
        x0: Tensor<B, D>,
        _noise: &NoiseSource,
        _step: u64,
    ) -> Tensor<B, 1> {
        let dims = x0.dims();
        let n = dims[0];
        let d: usize = dims[1..].iter().product();
        let device = x0.device();
        let x = x0.repeat_dim(0, d);
        let t = host_vector::<B>(&vec![self.t; d * n], &device);
        let v = basis_blocks::<B, D>(dims, &device);
        let (s, diag) = score_and_quadratic_form(view, model, x, t, v);
        let trace = diag.reshape([d, n]).sum_dim(0).reshape([n]);
        let s = s.narrow(0, 0, n);
        sum_per_sample(s.square()).mul_scalar(0.5) + trace
    }
}
