//! Score-matching losses behind one trait, [`Loss`].
//!
//! | loss | paper | model read through |
//! | --- | --- | --- |
//! | [`ExplicitScoreMatching`] | Hyvärinen 2005, eq. 4 | [`LiftedScoreView`] |
//! | [`SlicedScoreMatching`] | Song et al. 2019, eqs. 7–8 | [`LiftedScoreView`] |
//! | [`DenoisingScoreMatching`] | Vincent 2011, eq. 8 | [`ScoreView`](crate::ScoreView) |
//! | [`MultiScaleDsm`] | Song & Ermon 2019, eq. 5 | [`ScoreView`](crate::ScoreView) |
//! | [`SdeLoss`] | Song et al. 2021, eq. 7 | [`ScoreView`](crate::ScoreView) |
//! | [`DdpmLoss`] | Ho et al. 2020, eq. 14 | [`ScoreView`](crate::ScoreView) |
//!
//! Each loss is an objective (its parameters) paired with a view in [`Viewed`], which implements
//! [`Loss`] once for all of them; the names above are aliases of `Viewed<Objective, View>`.
//!
//! Every random draw comes from the [`NoiseSource`] passed in, keyed by the training step and a
//! stream per purpose (see [`streams`]), so a loss evaluated twice at the same step sees the same
//! noise: that is what lets an interrupted training run resume bit for bit.

mod ddpm;
mod dsm;
mod esm;
mod ncsn;
mod sde;
mod sliced;

pub use ddpm::{Ddpm, DdpmLoss, DdpmTarget, DdpmView};
pub use dsm::{DenoisingScoreMatching, Dsm};
pub use esm::{Esm, ExplicitScoreMatching};
pub use ncsn::{MultiScaleDsm, Ncsn};
pub use sde::{ImportanceTable, Reduction, SdeLoss, SdeObjective, TimeSampling, Weighting};
pub use sliced::{Projection, SlicedEstimator, SlicedScoreMatching, Ssm};

use burn::tensor::{Tensor, backend::Backend};
use score_core::{NoiseKey, NoiseSource, tensor::sum_per_sample};

use crate::view::{Lifted, LiftedScoreView};

/// The noise streams a loss draws from at one training step.
pub mod streams {
    /// The Gaussian perturbation ε.
    pub const EPS: u32 = 0;
    /// Times, noise levels or timestep indices.
    pub const TIME: u32 = 1;
    /// Projection vectors of sliced score matching.
    pub const PROJECTION: u32 = 2;
}

/// A score-matching objective (DESIGN.md §3).
///
/// `M` is the model (a network, or an analytic score in tests) and the loss's view decides how a
/// score is read off it. `D` is the rank of the data, batch first.
pub trait Loss<B: Backend, M, const D: usize> {
    /// The loss of each sample of `x0`, with its noise drawn from `noise` at training step `step`.
    ///
    /// # Shapes
    /// - `x0`: `[n, …]`; output: `[n]`
    fn per_sample(
        &self,
        model: &M,
        x0: Tensor<B, D>,
        noise: &NoiseSource,
        step: u64,
    ) -> Tensor<B, 1>;

    /// Checks, before training starts, that this loss can train `model`: the model can be read
    /// at every time the loss uses, and a model that carries its SDE carries this loss's SDE.
    /// [`Trainer::fit`](crate::Trainer::fit) calls it first. The default accepts every model.
    ///
    /// # Errors
    /// [`TrainError::Core`](crate::TrainError::Core) with
    /// [`CoreError::UndefinedAt`](score_core::CoreError::UndefinedAt) or
    /// [`CoreError::SdeMismatch`](score_core::CoreError::SdeMismatch).
    fn validate(&self, model: &M) -> crate::Result<()> {
        let _ = model;
        Ok(())
    }

    /// The batch mean of [`Loss::per_sample`], the value to minimise.
    ///
    /// # Shapes
    /// - `x0`: `[n, …]`; output: `[1]`
    fn loss(&self, model: &M, x0: Tensor<B, D>, noise: &NoiseSource, step: u64) -> Tensor<B, 1> {
        self.per_sample(model, x0, noise, step).mean()
    }
}

/// What a loss computes, given how it reads the model: each loss of this module is an objective
/// (its own parameters: noise levels, times, SDE, weighting) paired with a view in [`Viewed`],
/// which implements [`Loss`] for all of them once.
pub trait Objective<B: Backend, M, V, const D: usize> {
    /// [`Loss::per_sample`], reading the model through `view`.
    ///
    /// # Shapes
    /// - `x0`: `[n, …]`; output: `[n]`
    fn per_sample(
        &self,
        view: &V,
        model: &M,
        x0: Tensor<B, D>,
        noise: &NoiseSource,
        step: u64,
    ) -> Tensor<B, 1>;

    /// [`Loss::validate`], reading the model through `view`; the default accepts every model.
    fn validate(&self, view: &V, model: &M) -> crate::Result<()> {
        let _ = (view, model);
        Ok(())
    }
}

/// A loss: an objective and the view it reads the model through (e.g.
/// `DenoisingScoreMatching::new(0.5)?.with_view(AsEnergy)` for an energy network).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewed<O, V> {
    /// The loss's own parameters.
    pub objective: O,
    /// How the score is read off the model.
    pub view: V,
}

impl<O, V> Viewed<O, V> {
    /// `objective` read through `view`.
    pub fn from_parts(objective: O, view: V) -> Self {
        Self { objective, view }
    }

    /// The same loss reading the model through `view`.
    pub fn with_view<W>(self, view: W) -> Viewed<O, W> {
        Viewed {
            objective: self.objective,
            view,
        }
    }
}

/// A loss reads as its objective: `loss.sigmas()`, `loss.t` and the like.
impl<O, V> std::ops::Deref for Viewed<O, V> {
    type Target = O;
    fn deref(&self) -> &O {
        &self.objective
    }
}

impl<B, M, O, V, const D: usize> Loss<B, M, D> for Viewed<O, V>
where
    B: Backend,
    O: Objective<B, M, V, D>,
{
    fn per_sample(
        &self,
        model: &M,
        x0: Tensor<B, D>,
        noise: &NoiseSource,
        step: u64,
    ) -> Tensor<B, 1> {
        self.objective
            .per_sample(&self.view, model, x0, noise, step)
    }

    fn validate(&self, model: &M) -> crate::Result<()> {
        self.objective.validate(&self.view, model)
    }
}

/// Standard normals shaped like `x`, per sample (the same noise for a sample whatever the batch).
pub(crate) fn normal_like<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Tensor<B, D> {
    noise.normal::<B, D>(x.dims(), key, &x.device())
}

/// Per-sample time vector `[n]` from host values.
pub(crate) fn host_vector<B: Backend>(v: &[f64], device: &B::Device) -> Tensor<B, 1> {
    score_core::tensor::from_f64(v, [v.len()], device)
}

/// The score `s = S(x_rep)` of the lifted model, read back on `B`, and the quadratic forms
/// `vᵀ (∂s/∂x) v` of each row, by one forward and one backward pass on `Autodiff<B>` — or by the
/// model itself where the view has a direct form ([`LiftedScoreView::direct_quadratic_form`]).
///
/// Rows are independent samples (the networks here have no batch coupling), so the gradient of
/// `Σ_rows s·v` with respect to `x` is `(∂s/∂x)ᵀ v` row by row; both results keep `B`'s graph to
/// the parameters.
///
/// # Shapes
/// - `x`, `v`: `[m, …]`, `t`: `[m]`; outputs `[m, …]` and `[m]`
pub(crate) fn score_and_quadratic_form<B, M, V, const D: usize>(
    view: &V,
    model: &M,
    x: Tensor<B, D>,
    t: Tensor<B, 1>,
    v: Tensor<B, D>,
) -> (Tensor<B, D>, Tensor<B, 1>)
where
    B: Backend,
    V: LiftedScoreView<B, M, D>,
{
    if let Some(both) = view.direct_quadratic_form(model, &x, &t, &v) {
        return both;
    }
    let x_outer = Tensor::<Lifted<B>, D>::from_inner(x).require_grad();
    let s_outer = view.lifted_score(model, x_outer.clone(), Tensor::from_inner(t));
    let v_outer = Tensor::<Lifted<B>, D>::from_inner(v.clone());
    let grads = (s_outer.clone() * v_outer).sum().backward();
    // No gradient means the score does not depend on x: the Jacobian is zero.
    let jt_v = x_outer.grad(&grads).unwrap_or_else(|| v.zeros_like());
    (s_outer.inner(), sum_per_sample(jt_v * v))
}

/// `Err(SdeMismatch)` when the view knows the model's SDE and its marginals differ from `sde`'s.
pub(crate) fn check_same_sde<B, M, V, S, const D: usize>(
    view: &V,
    model: &M,
    sde: &S,
    what: &'static str,
) -> crate::Result<()>
where
    B: Backend,
    V: crate::ScoreView<B, M, D>,
    S: score_core::Sde + std::fmt::Debug,
{
    match view.model_sde(model) {
        Some(m) if !score_core::same_marginals(sde, &m) => {
            Err(score_core::CoreError::SdeMismatch {
                what,
                expected: format!("{sde:?}"),
                other: "the model",
                found: format!("{m:?}"),
            }
            .into())
        }
        _ => Ok(()),
    }
}
