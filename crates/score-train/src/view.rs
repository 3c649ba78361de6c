//! How a loss reads a score off a model: directly (score networks), as `−∇x E` (energy networks),
//! or from an analytic target. Each reading comes in two levels:
//!
//! - [`ScoreView::score`] on the training backend `B`: the graph reaches the parameters, which is
//!   all first-order losses (DSM, NCSN, continuous SDE, DDPM) need;
//! - [`LiftedScoreView::lifted_score`] on `Autodiff<B>`: the model lifted one autodiff level up
//!   (DESIGN.md §4), so that a backward pass on the outer graph yields `∂s/∂x` as a tensor on `B`
//!   that still depends on the parameters — what explicit and sliced score matching need.
//!
//! Energy networks need one more level for the lifted score (`E` on `Autodiff<Autodiff<B>>`,
//! its gradient on `Autodiff<B>`, the trace on `B`). Views are zero-sized values chosen when the
//! loss is built, e.g. `DenoisingScoreMatching::new(0.5)?.with_view(AsEnergy)`.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, HasAutodiffModule};
use burn::tensor::{Tensor, backend::Backend};
use score_core::{AnySde, EnergyFn, ScoreFn, energy_score};
use score_nets::TimeNet;

/// The backend one autodiff level above `B`.
pub type Lifted<B> = Autodiff<B>;

/// Reads the score `s(x, t)` of a model on the training backend `B`.
pub trait ScoreView<B: Backend, M, const D: usize> {
    /// The model's score at `x` and per-sample times `t`; depends on the parameters of `model`
    /// through `B`'s graph.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: same as `x`
    fn score(&self, model: &M, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D>;

    /// The SDE the model says its score belongs to ([`ScoreFn::sde`]); `None` when the view
    /// cannot tell (the default).
    fn model_sde(&self, model: &M) -> Option<AnySde> {
        let _ = model;
        None
    }

    /// Whether the model can be read at time `t` ([`ScoreFn::check_time`]); the default
    /// accepts every `t`.
    ///
    /// # Errors
    /// The model's reason, as a [`CoreError`](score_core::CoreError).
    fn check_time(&self, model: &M, t: f64) -> score_core::Result<()> {
        let _ = (model, t);
        Ok(())
    }
}

/// Reads the score on the lifted backend `Autodiff<B>`, for losses that differentiate it in `x`.
pub trait LiftedScoreView<B: Backend, M, const D: usize>: ScoreView<B, M, D> {
    /// The score of the model lifted to `Autodiff<B>`, evaluated at a lifted `x`.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: same as `x`
    fn lifted_score(
        &self,
        model: &M,
        x: Tensor<Lifted<B>, D>,
        t: Tensor<Lifted<B>, 1>,
    ) -> Tensor<Lifted<B>, D>;

    /// The score and, per sample, `vᵀ·(∂s/∂x)·v` on `B`, where the model computes them itself
    /// (score-nets' `TimeMlp` read [`AsOutput`], on the CPU backends: one op with a
    /// hand-derived backward, no lifted graph); `None`, the default, lets the loss
    /// differentiate [`lifted_score`](Self::lifted_score).
    ///
    /// # Shapes
    /// - `x`, `v`: `[n, …]`, `t`: `[n]`; outputs: same as `x`, and `[n]`
    fn direct_quadratic_form(
        &self,
        model: &M,
        x: &Tensor<B, D>,
        t: &Tensor<B, 1>,
        v: &Tensor<B, D>,
    ) -> Option<(Tensor<B, D>, Tensor<B, 1>)> {
        let _ = (model, x, t, v);
        None
    }
}

/// The model is a score network: it implements [`ScoreFn`] and is a burn module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsScore;

/// The model is an energy network: it implements [`EnergyFn`] and its score is `−∇x E(x, t)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsEnergy;

/// The model's raw output, not a score: for losses written on the output itself, such as DDPM's
/// ε-loss with [`DdpmTarget::Epsilon`](crate::DdpmTarget::Epsilon). Reads any score-nets
/// [`TimeNet`] directly, with no conversion (and no host round trip for the marginal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsOutput;

/// The model is an analytic score (e.g. `score_core::Diffused`) that implements [`ScoreFn`] on
/// every backend; it has no parameters, so nothing is lifted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exact;

/// `module` on the backend one autodiff level up, sharing its parameter values and ids.
pub fn lift<B: Backend, M>(module: &M) -> M::TrainModule
where
    M: HasAutodiffModule<Lifted<B>> + Clone,
{
    <M::TrainModule as AutodiffModule<Lifted<B>>>::from_inner(module.clone())
}

impl<B: Backend, M: ScoreFn<B, D>, const D: usize> ScoreView<B, M, D> for AsScore {
    fn score(&self, model: &M, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        model.score(x, t)
    }
    fn model_sde(&self, model: &M) -> Option<AnySde> {
        model.sde()
    }
    fn check_time(&self, model: &M, t: f64) -> score_core::Result<()> {
        model.check_time(t)
    }
}

impl<B, M, const D: usize> LiftedScoreView<B, M, D> for AsScore
where
    B: Backend,
    M: ScoreFn<B, D> + HasAutodiffModule<Lifted<B>> + Clone,
    M::TrainModule: ScoreFn<Lifted<B>, D>,
{
    fn lifted_score(
        &self,
        model: &M,
        x: Tensor<Lifted<B>, D>,
        t: Tensor<Lifted<B>, 1>,
    ) -> Tensor<Lifted<B>, D> {
        lift::<B, M>(model).score(x, t)
    }
}

impl<B, M, const D: usize> ScoreView<B, M, D> for AsEnergy
where
    B: Backend,
    M: EnergyFn<B, D> + HasAutodiffModule<Lifted<B>> + Clone,
    M::TrainModule: EnergyFn<Lifted<B>, D>,
{
    fn score(&self, model: &M, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        // The energy's own score where it has one (score-nets' `EnergyMlp` on the CPU
        // backends: one op on `B` with a hand-derived backward, no nested autodiff).
        if let Some(s) = model.direct_score(&x, &t) {
            return s;
        }
        energy_score::<Lifted<B>, _, D>(&lift::<B, M>(model), x, t)
    }
}

impl<B, M, const D: usize> LiftedScoreView<B, M, D> for AsEnergy
where
    B: Backend,
    M: EnergyFn<B, D> + HasAutodiffModule<Lifted<B>> + Clone,
    M::TrainModule: EnergyFn<Lifted<B>, D> + HasAutodiffModule<Lifted<Lifted<B>>> + Clone,
    <M::TrainModule as HasAutodiffModule<Lifted<Lifted<B>>>>::TrainModule:
        EnergyFn<Lifted<Lifted<B>>, D>,
{
    fn lifted_score(
        &self,
        model: &M,
        x: Tensor<Lifted<B>, D>,
        t: Tensor<Lifted<B>, 1>,
    ) -> Tensor<Lifted<B>, D> {
        let twice = lift::<Lifted<B>, _>(&lift::<B, M>(model));
        energy_score::<Lifted<Lifted<B>>, _, D>(&twice, x, t)
    }
}

impl<B: Backend, M: ScoreFn<B, D>, const D: usize> ScoreView<B, M, D> for Exact {
    fn score(&self, model: &M, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        model.score(x, t)
    }
    fn model_sde(&self, model: &M) -> Option<AnySde> {
        model.sde()
    }
    fn check_time(&self, model: &M, t: f64) -> score_core::Result<()> {
        model.check_time(t)
    }
}

impl<B, M, const D: usize> LiftedScoreView<B, M, D> for Exact
where
    B: Backend,
    M: ScoreFn<B, D> + ScoreFn<Lifted<B>, D>,
{
    fn lifted_score(
        &self,
        model: &M,
        x: Tensor<Lifted<B>, D>,
        t: Tensor<Lifted<B>, 1>,
    ) -> Tensor<Lifted<B>, D> {
        model.score(x, t)
    }
}

impl<B: Backend, M: TimeNet<B, D>, const D: usize> ScoreView<B, M, D> for AsOutput {
    fn score(&self, model: &M, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        model.forward(x, t)
    }
}

impl<B, M, const D: usize> LiftedScoreView<B, M, D> for AsOutput
where
    B: Backend,
    M: TimeNet<B, D> + HasAutodiffModule<Lifted<B>> + Clone,
    M::TrainModule: TimeNet<Lifted<B>, D>,
{
    fn lifted_score(
        &self,
        model: &M,
        x: Tensor<Lifted<B>, D>,
        t: Tensor<Lifted<B>, 1>,
    ) -> Tensor<Lifted<B>, D> {
        lift::<B, M>(model).forward(x, t)
    }
    fn direct_quadratic_form(
        &self,
        model: &M,
        x: &Tensor<B, D>,
        t: &Tensor<B, 1>,
        v: &Tensor<B, D>,
    ) -> Option<(Tensor<B, D>, Tensor<B, 1>)> {
        model.output_and_quadratic_form(x, t, v)
    }
}
