//! The model boundary: [`ScoreModel`] turns whatever a network outputs — a score, the noise `ε`,
//! or the denoised `x₀` — into a score, in one place, from the SDE's marginal
//! `x_t = m(t)·x₀ + s(t)·ε`. Samplers then take any trained model through score-core's
//! [`ScoreFn`] without asking what it predicts (k-diffusion's `Denoiser` wrappers; unlike
//! score_sde's `get_score_fn`, no SDE checks spread through the samplers).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use score_core::tensor::per_sample;
use score_core::{AnySde, ScoreFn, Sde};

/// A network of `x` and per-sample times `t` whose output has the shape of `x`.
pub trait TimeNet<B: Backend, const D: usize> {
    /// The raw network output.
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: same as `x`
    fn forward(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D>;
}

/// What a network's output means, given `x_t = m·x₀ + s·ε`.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Parameterization {
    /// The score `∇x log p_t(x)` itself (or `s(t)·score` with scale-by-std).
    Score,
    /// The noise `ε̂`: score `= −ε̂/s` (DDPM's ε-prediction).
    Noise,
    /// The clean data `x̂₀`: score `= −(x − m·x̂₀)/s²` (Tweedie's formula).
    Denoised,
}

impl Parameterization {
    /// Converts a network output to a score.
    ///
    /// `scale_by_std` (score_sde's `scale_by_sigma`) applies to [`Parameterization::Score`] only:
    /// the network predicts `s·score`, whose size stays O(1) across noise levels, and the score
    /// is `out/s`.
    ///
    /// # Shapes
    /// - `out`, `x`: `[n, …]`; `mean_coef`, `std`: `[n]`; output: like `x`
    pub fn to_score<B: Backend, const D: usize>(
        &self,
        out: Tensor<B, D>,
        x: Tensor<B, D>,
        mean_coef: Tensor<B, 1>,
        std: Tensor<B, 1>,
        scale_by_std: bool,
    ) -> Tensor<B, D> {
        let s = per_sample::<B, D>(std);
        match self {
            Self::Score if scale_by_std => out / s,
            Self::Score => out,
            Self::Noise => -out / s,
            Self::Denoised => -(x - out * per_sample::<B, D>(mean_coef)) / s.square(),
        }
    }

    /// The output this parameterisation gives for a known score: the inverse of
    /// [`Parameterization::to_score`] (targets for regression losses, tests).
    ///
    /// # Shapes
    /// - `score`, `x`: `[n, …]`; `mean_coef`, `std`: `[n]`; output: like `x`
    pub fn from_score<B: Backend, const D: usize>(
        &self,
        score: Tensor<B, D>,
        x: Tensor<B, D>,
        mean_coef: Tensor<B, 1>,
        std: Tensor<B, 1>,
        scale_by_std: bool,
    ) -> Tensor<B, D> {
        let s = per_sample::<B, D>(std);
        match self {
            Self::Score if scale_by_std => score * s,
            Self::Score => score,
            Self::Noise => -score * s,
            Self::Denoised => (x + score * s.square()) / per_sample::<B, D>(mean_coef),
        }
    }
}

/// A network plus the meaning of its output: implements [`ScoreFn`], so every sampler and
/// score-based loss takes it unchanged.
///
/// It derives [`Module`]: on an autodiff backend the score keeps the graph to the network's
/// parameters (train it with any loss written over `ScoreFn`), and
/// [`AutodiffModule::valid`](burn::module::AutodiffModule::valid) gives the inference model.
/// The SDE and the parameterisation are configuration, not weights.
///
/// ```
/// use burn::{backend::NdArray, tensor::Tensor};
/// use score_core::{AnySde, ScoreFn, VpSde};
/// use score_nets::{Parameterization, ScoreModel, TimeMlpConfig, TimeEmbeddingConfig};
/// type B = NdArray<f32>;
/// let dev = Default::default();
/// let net = TimeMlpConfig::new(2)
///     .with_hidden_size(32)
///     .with_embedding(TimeEmbeddingConfig::new().with_dim(16))
///     .init::<B>(&dev)
///     .unwrap();
/// let model = ScoreModel::new(net, AnySde::Vp(VpSde::default()), Parameterization::Noise);
/// let s = model.score(Tensor::zeros([4, 2], &dev), Tensor::full([4], 0.5, &dev));
/// assert_eq!(s.dims(), [4, 2]);
/// ```
#[derive(Module, Debug)]
pub struct ScoreModel<B: Backend, M> {
    /// The wrapped network.
    pub net: M,
    #[module(skip)]
    sde: AnySde,
    #[module(skip)]
    parameterization: Parameterization,
    #[module(skip)]
    scale_by_std: bool,
    #[module(skip)]
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend, M: Module<B>> ScoreModel<B, M> {
    /// Wraps `net`, whose output means `parameterization` under `sde`'s marginal.
    pub fn new(net: M, sde: AnySde, parameterization: Parameterization) -> Self {
        Self {
            net,
            sde,
            parameterization,
            scale_by_std: false,
            _backend: std::marker::PhantomData,
        }
    }

    /// With [`Parameterization::Score`], whether the network predicts `s(t)·score` (score_sde's
    /// `scale_by_sigma`); ignored by the other parameterisations.
    pub fn with_scale_by_std(mut self, scale_by_std: bool) -> Self {
        self.scale_by_std = scale_by_std;
        self
    }

    /// The SDE whose marginal converts outputs.
    pub fn sde(&self) -> &AnySde {
        &self.sde
    }

    /// What the network's output means.
    pub fn parameterization(&self) -> Parameterization {
        self.parameterization
    }

    /// Whether a score output is scaled by the marginal std.
    pub fn scale_by_std(&self) -> bool {
        self.scale_by_std
    }

    /// The raw network output (for losses written on it, e.g. DDPM's ε-loss).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: like `x`
    pub fn output<const D: usize>(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D>
    where
        M: TimeNet<B, D>,
    {
        self.net.forward(x, t)
    }
}

impl<B: Backend, M: Module<B> + TimeNet<B, D>, const D: usize> ScoreFn<B, D> for ScoreModel<B, M> {
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        let out = self.net.forward(x.clone(), t.clone());
        let (m, s) = self.sde.marginal_tensors(t);
        self.parameterization
            .to_score(out, x, m, s, self.scale_by_std)
    }

    fn sde(&self) -> Option<AnySde> {
        Some(self.sde)
    }

    /// Noise and denoised outputs (and a score scaled by the std) convert with `1/σ(t)`:
    /// undefined where the marginal std is zero (VP and sub-VP at `t = 0`).
    fn check_time(&self, t: f64) -> score_core::Result<()> {
        let divides =
            !matches!(self.parameterization, Parameterization::Score) || self.scale_by_std;
        let std = self.sde.marginal(t).std;
        if divides && !(std > 0.0 && std.is_finite()) {
            return Err(score_core::CoreError::UndefinedAt {
                t,
                reason: "the model's output is converted with 1/σ(t), and σ(t) = 0 there",
            });
        }
        Ok(())
    }
}
