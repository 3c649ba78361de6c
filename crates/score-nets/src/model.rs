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

    /// The output `f(x, t)` and, per sample, the quadratic form `vᵀ·(∂f/∂x)·v` of its input
    /// Jacobian, computed by the network itself where it has a faster way than differentiating
    /// [`forward`](Self::forward) ([`TimeMlp`](crate::TimeMlp) has one on the CPU backends);
    /// `None`, the default, lets the caller use nested autodiff. Explicit and sliced score
    /// matching of a network read as its output (score-train's `AsOutput`) try it first.
    ///
    /// On an autodiff `B` both results must carry the graph to the parameters (and to a tracked
    /// `x`) that differentiating them would; `v` is a constant.
    ///
    /// # Shapes
    /// - `x`, `v`: `[n, …]`, `t`: `[n]`; outputs: same as `x`, and `[n]`
    fn output_and_quadratic_form(
        &self,
        x: &Tensor<B, D>,
        t: &Tensor<B, 1>,
        v: &Tensor<B, D>,
    ) -> Option<(Tensor<B, D>, Tensor<B, 1>)> {
        let _ = (x, t, v);
        None
    }
}

/// What a network's output means, given `x_t = m·x₀ + s·ε`.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Parameterization {
    /// The score `∇x log p_t(x)` itself (or `s(t)·score` with scale-by-std).
    Score,
    /// The noise `ε̂`: score `= −ε̂/s` (DDPM's ε-prediction).
    Noise,
    /// The clean data `x̂₀`: score `= −(x − m·x̂₀)/s²` (Tweedie's formula).
    Denoised,
    /// EDM's preconditioning (Karras et al. 2022, Table 1 and eq. 7), for data of standard
    /// deviation `sigma_data`, on any SDE through its scaled form `x/m = x₀ + σ·ε`, `σ = s/m`:
    /// the network sees `c_in·x` with `c_in = 1/(m·√(σ² + σ_d²))` (unit variance at every noise
    /// level) and its output `F` gives the denoiser
    /// `D = c_skip·x/m + c_out·F`, `c_skip = σ_d²/(σ² + σ_d²)`, `c_out = σ·σ_d/√(σ² + σ_d²)`,
    /// whence score `= −(x − m·D)/s²`. At every noise level the regression target of `F` has
    /// unit variance, which is what lets a small network train fast.
    Edm {
        /// Standard deviation of the data (EDM: 0.5 for images in [−1, 1]).
        sigma_data: f64,
    },
}

/// `(c_skip, c_out, c_in)` of [`Parameterization::Edm`] per sample.
fn edm_coefficients<B: Backend>(
    sigma_data: f64,
    mean_coef: Tensor<B, 1>,
    std: Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let sd2 = sigma_data * sigma_data;
    let sigma = std / mean_coef.clone();
    let total = sigma.clone().square().add_scalar(sd2);
    let root = total.clone().sqrt();
    let c_skip = total.recip().mul_scalar(sd2);
    let c_out = sigma.mul_scalar(sigma_data) / root.clone();
    let c_in = (mean_coef * root).recip();
    (c_skip, c_out, c_in)
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
        let s = per_sample::<B, D>(std.clone());
        match self {
            Self::Score if scale_by_std => out / s,
            Self::Score => out,
            Self::Noise => -out / s,
            Self::Denoised => -(x - out * per_sample::<B, D>(mean_coef)) / s.square(),
            Self::Edm { sigma_data } => {
                let (c_skip, c_out, _) = edm_coefficients(*sigma_data, mean_coef.clone(), std);
                let m = per_sample::<B, D>(mean_coef);
                let denoised =
                    x.clone() / m.clone() * per_sample::<B, D>(c_skip) + out * per_sample(c_out);
                -(x - denoised * m) / s.square()
            }
        }
    }

    /// The factor the network's input is multiplied by before the forward pass: `c_in` for
    /// [`Parameterization::Edm`], `None` (the input as it is) for the others.
    ///
    /// # Shapes
    /// - `mean_coef`, `std`: `[n]`; output: `[n]`
    pub fn input_scale<B: Backend>(
        &self,
        mean_coef: Tensor<B, 1>,
        std: Tensor<B, 1>,
    ) -> Option<Tensor<B, 1>> {
        match self {
            Self::Edm { sigma_data } => Some(edm_coefficients(*sigma_data, mean_coef, std).2),
            _ => None,
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
        let s = per_sample::<B, D>(std.clone());
        match self {
            Self::Score if scale_by_std => score * s,
            Self::Score => score,
            Self::Noise => -score * s,
            Self::Denoised => (x + score * s.square()) / per_sample::<B, D>(mean_coef),
            Self::Edm { sigma_data } => {
                let (c_skip, c_out, _) = edm_coefficients(*sigma_data, mean_coef.clone(), std);
                let m = per_sample::<B, D>(mean_coef);
                let denoised = (x.clone() + score * s.square()) / m.clone();
                (denoised - x / m * per_sample::<B, D>(c_skip)) / per_sample(c_out)
            }
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
    /// Wraps `net`, whose output means `parameterization` under `sde`'s marginal. `sde` is an
    /// [`AnySde`] or any one SDE (`VeSde`, `VpSde`, `SubVpSde`).
    pub fn new(net: M, sde: impl Into<AnySde>, parameterization: Parameterization) -> Self {
        Self {
            net,
            sde: sde.into(),
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

    /// The raw network output (for losses written on it, e.g. DDPM's ε-loss), after the
    /// parameterisation's input scaling ([`Parameterization::input_scale`]; none but EDM's).
    ///
    /// # Shapes
    /// - `x`: `[n, …]`, `t`: `[n]`; output: like `x`
    pub fn output<const D: usize>(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D>
    where
        M: TimeNet<B, D>,
    {
        let (m, s) = self.sde.marginal_tensors(t.clone());
        self.output_with(x, t, m, s)
    }

    fn output_with<const D: usize>(
        &self,
        x: Tensor<B, D>,
        t: Tensor<B, 1>,
        mean_coef: Tensor<B, 1>,
        std: Tensor<B, 1>,
    ) -> Tensor<B, D>
    where
        M: TimeNet<B, D>,
    {
        match self.parameterization.input_scale(mean_coef, std) {
            Some(c_in) => self.net.forward(x * per_sample::<B, D>(c_in), t),
            None => self.net.forward(x, t),
        }
    }
}

impl<B: Backend, M: Module<B> + TimeNet<B, D>, const D: usize> ScoreFn<B, D> for ScoreModel<B, M> {
    fn score(&self, x: Tensor<B, D>, t: Tensor<B, 1>) -> Tensor<B, D> {
        let (m, s) = self.sde.marginal_tensors(t.clone());
        let out = self.output_with(x.clone(), t, m.clone(), s.clone());
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
