//! What a sampler consumes: a score `s(x, t) ≈ ∇x log p_t(x)` ([`ScoreFn`]), or an energy
//! `E(x, t)` with `p_t ∝ e^{−E}` ([`EnergyFn`]) whose score comes from autodiff ([`AutodiffScore`]).
//!
//! Both are rank-generic: `D` is the rank of the data tensor, batch first.

use burn::tensor::{Tensor, backend::AutodiffBackend, backend::Backend};

use crate::sde::{AnySde, Sde};

/// A score function `s(x, t)` evaluated at per-sample times.
///
/// Closures `Fn(Tensor<B, D>, Tensor<B, 1>) -> Tensor<B, D>` implement it:
///
/// ```
/// use burn::{backend::NdArray, tensor::Tensor};
/// use score_core::ScoreFn;
/// type B = NdArray<f32>;
/// // Score of N(0, I): −x.
/// let s = |x: Tensor<B, 2>, _t: Tensor<B, 1>| -x;
/// let dev = Default::default();
/// let out = s.score(Tensor::ones([3, 2], &dev), Tensor::zeros([3], &dev));
/// assert_eq!(out.into_data().to_vec::<f32>().unwrap(), vec![-1.0; 6]);
/// ```
pub trait ScoreFn<B: Backend, const D: usize> {
    /// The score at `x` and per-sample times `t`.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: same as `x`
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D>;

    /// The SDE whose marginals this score belongs to, when it knows it (a trained model that
    /// carries its SDE does): losses and samplers built for another SDE compare it with theirs.
    /// `None` (the default) means "not known", and nothing is checked.
    fn sde(&self) -> Option<AnySde> {
        None
    }

    /// Whether the score can be evaluated at time `t`; the default accepts every `t`. A model
    /// that converts its output with `1/σ(t)` rejects times where `σ(t) = 0`.
    ///
    /// # Errors
    /// [`CoreError::UndefinedAt`](crate::CoreError::UndefinedAt) naming `t`.
    fn check_time(&self, t: f64) -> crate::Result<()> {
        let _ = t;
        Ok(())
    }

    /// Whether inputs of `shape` (batch first) are ones this score accepts; the default accepts
    /// every shape. Samplers call it once before their first step, so a wrong data shape is an
    /// error rather than a panic inside the score (e.g. an analytic target of another dimension).
    ///
    /// # Errors
    /// [`CoreError::DimensionMismatch`](crate::CoreError::DimensionMismatch) naming both sizes.
    ///
    /// ```
    /// use burn::backend::NdArray;
    /// use score_core::{GaussianMixture, ScoreFn, VeSde};
    /// let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(VeSde::default());
    /// assert!(ScoreFn::<NdArray<f32>, 2>::check_shape(&ring, &[16, 2]).is_ok());
    /// assert!(ScoreFn::<NdArray<f32>, 2>::check_shape(&ring, &[16, 3]).is_err());
    /// // Images are flattened: a 2-D target cannot score 1×2×2 images, a 4-D one can.
    /// assert!(ScoreFn::<NdArray<f32>, 4>::check_shape(&ring, &[16, 1, 2, 2]).is_err());
    /// ```
    fn check_shape(&self, shape: &[usize]) -> crate::Result<()> {
        let _ = shape;
        Ok(())
    }
}

/// Whether two SDEs have the same marginals: `t_max` and the mean coefficient and standard
/// deviation at eleven evenly spaced times agree to 1e-9 relative. This compares what a score
/// depends on, so a [`VeSde`](crate::VeSde) and the same SDE wrapped in an
/// [`AnySde`] are equal.
///
/// ```
/// use score_core::{AnySde, VeSde, VpSde, same_marginals};
/// let ve = VeSde::new(0.01, 50.0).unwrap();
/// assert!(same_marginals(&ve, &AnySde::Ve(ve)));
/// assert!(!same_marginals(&ve, &VeSde::new(0.01, 10.0).unwrap()));
/// assert!(!same_marginals(&VpSde::default(), &ve));
/// ```
pub fn same_marginals(a: &impl Sde, b: &impl Sde) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300);
    close(a.t_max(), b.t_max())
        && (0..=10).all(|i| {
            let t = a.t_max() * i as f64 / 10.0;
            let (ma, mb) = (a.marginal(t), b.marginal(t));
            close(ma.mean_coef, mb.mean_coef) && close(ma.std, mb.std)
        })
}

impl<B, const D: usize, F> ScoreFn<B, D> for F
where
    B: Backend,
    F: Fn(Tensor<B, D>, Tensor<B, 1>) -> Tensor<B, D>,
{
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        self(x, t)
    }
}

/// An energy `E(x, t)`, the negative unnormalised log-density of `p_t`.
pub trait EnergyFn<B: Backend, const D: usize> {
    /// Per-sample energy.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: `[n]`
    fn energy(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, 1>;

    /// The score `−∇x E(x, t)` computed by the energy itself on `B`, for energies that have a
    /// faster way than autodiff of [`energy`](Self::energy) (score-nets' `EnergyMlp` has one on
    /// the CPU backends); `None`, the default, lets the caller differentiate the energy.
    ///
    /// On an autodiff `B`, the result must carry the graph autodiff's score would: a loss on it
    /// gives the parameters (and a tracked `x`) the same gradients as differentiating the
    /// energy's input gradient. [`energy_score`] and score-train's energy view try it first.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: same as `x`
    fn direct_score(&self, x: &Tensor<B, D>, t: &Tensor<B, 1>) -> Option<Tensor<B, D>> {
        let _ = (x, t);
        None
    }
}

/// The score `−∇x E(x, t)` of an energy defined on an autodiff backend, evaluated for inputs on
/// its inner backend — what samplers run on. One backward pass per call.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use score_core::{AutodiffScore, EnergyFn, ScoreFn};
/// type A = Autodiff<NdArray<f32>>;
/// struct Quadratic;
/// impl EnergyFn<A, 2> for Quadratic {
///     fn energy(&self, x: Tensor<A, 2>, _t: Tensor<A, 1>) -> Tensor<A, 1> {
///         x.square().sum_dim(1).squeeze_dim(1).mul_scalar(0.5)
///     }
/// }
/// let dev = Default::default();
/// let s = AutodiffScore::<_, A>::new(Quadratic);
/// let out = s.score(Tensor::ones([2, 2], &dev), Tensor::zeros([2], &dev));
/// assert_eq!(out.into_data().to_vec::<f32>().unwrap(), vec![-1.0; 4]);
/// ```
#[derive(Debug, Clone)]
pub struct AutodiffScore<E, B> {
    energy: E,
    _backend: std::marker::PhantomData<B>,
}

impl<E, B> AutodiffScore<E, B> {
    /// Wraps an energy.
    pub fn new(energy: E) -> Self {
        Self {
            energy,
            _backend: std::marker::PhantomData,
        }
    }
    /// The wrapped energy.
    pub fn energy(&self) -> &E {
        &self.energy
    }
}

impl<B, E, const D: usize> ScoreFn<B::InnerBackend, D> for AutodiffScore<E, B>
where
    B: AutodiffBackend,
    E: EnergyFn<B, D>,
{
    fn score(
        &self,
        x: Tensor<B::InnerBackend, D>,
        t: Tensor<B::InnerBackend, 1>,
    ) -> Tensor<B::InnerBackend, D> {
        energy_score::<B, E, D>(&self.energy, x, t)
    }
}

/// `−∇x E(x, t)` by one backward pass on the autodiff backend `B`, or by the energy's own
/// [`EnergyFn::direct_score`] where it has one.
///
/// An energy that does not depend on `x` (autodiff records no path to it) has score zero.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use score_core::{EnergyFn, energy_score};
/// type A = Autodiff<NdArray<f32>>;
/// struct Flat;
/// impl EnergyFn<A, 2> for Flat {
///     fn energy(&self, x: Tensor<A, 2>, t: Tensor<A, 1>) -> Tensor<A, 1> {
///         t.mul_scalar(2.0) // no x
///     }
/// }
/// let dev = Default::default();
/// let s = energy_score::<A, _, 2>(&Flat, Tensor::ones([3, 2], &dev), Tensor::zeros([3], &dev));
/// assert_eq!(s.into_data().to_vec::<f32>().unwrap(), vec![0.0; 6]);
/// ```
pub fn energy_score<B: AutodiffBackend, E: EnergyFn<B, D>, const D: usize>(
    energy: &E,
    x: Tensor<B::InnerBackend, D>,
    t: Tensor<B::InnerBackend, 1>,
) -> Tensor<B::InnerBackend, D> {
    let (xa, ta) = (
        Tensor::<B, D>::from_inner(x.clone()),
        Tensor::from_inner(t.clone()),
    );
    if let Some(s) = energy.direct_score(&xa, &ta) {
        return s.inner();
    }
    let zeros = x.zeros_like();
    let x = Tensor::<B, D>::from_inner(x).require_grad();
    let e = energy.energy(x.clone(), Tensor::from_inner(t));
    let grads = e.sum().backward();
    x.grad(&grads).map_or(zeros, Tensor::neg)
}
