//! Time embeddings: the map from a per-sample time (or noise level) `t` to a feature vector that
//! conditions a network. Sinusoidal features (Vaswani et al. 2017, as in DDPM), Gaussian Fourier
//! features (Tancik et al. 2020, as in score_sde's NCSN++), or a learned linear map of the raw
//! scalar (the noise embedding of the seeds' noise-conditional energy), each optionally followed
//! by a two-layer MLP.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_core::{NoiseKey, NoiseSource};

use crate::cpu_ops;
use crate::error::{Result as NetsResult, ensure_even, ensure_nonzero, ensure_positive};
use crate::layers::{Activation, dense, dense_act, seeded_init};

/// Which features of `t` an embedding computes.
#[derive(Config, Debug, PartialEq)]
pub enum EmbeddingKind {
    /// `[cos(τ·ω_k), sin(τ·ω_k)]` with `τ = scale·t` and `ω_k = max_period^{−k/half}`,
    /// `k = 0 … half−1` (Vaswani et al. 2017; DDPM's timestep embedding).
    Sinusoidal {
        /// Longest period of the features; 10000 in DDPM and the seeds.
        max_period: f64,
        /// Factor applied to `t` first. Continuous times live in `[0, 1]`; `1000` maps them to
        /// DDPM's integer-timestep range so the fast frequencies resolve nearby times.
        scale: f64,
    },
    /// `[sin(2π·t·w_k), cos(2π·t·w_k)]` with fixed `w_k ~ N(0, scale²)` (Tancik et al. 2020;
    /// score_sde's `GaussianFourierProjection`, which feeds it `ln σ` and uses `scale = 16`).
    /// The frequencies are drawn from `seed` and saved with the weights, not trained.
    GaussianFourier {
        /// Standard deviation of the frequencies.
        scale: f64,
        /// Seed of the frequencies.
        seed: u64,
    },
    /// `act(t·w + b)`: a learned linear map of the raw scalar, then the activation (the seeds'
    /// noise-conditional energy embeds σ this way).
    Linear,
}

/// Configuration of a [`TimeEmbedding`].
#[derive(Config, Debug)]
pub struct TimeEmbeddingConfig {
    /// Number of features of the raw embedding (even for sinusoidal and Fourier features).
    #[config(default = 128)]
    pub dim: usize,
    /// The features computed from `t`. Default: sinusoidal, max period 10000, scale 1000.
    #[config(default = "EmbeddingKind::Sinusoidal { max_period: 10000.0, scale: 1000.0 }")]
    pub kind: EmbeddingKind,
    /// Whether the features go through `Linear(dim → out) → act → Linear(out → out)`, as in the
    /// seeds' time-conditioned MLP and in DDPM.
    #[config(default = true)]
    pub mlp: bool,
    /// Output width of the MLP; `None` keeps `dim`. Ignored without the MLP.
    #[config(default = "None")]
    pub out_dim: Option<usize>,
    /// Activation inside the MLP and after the [`EmbeddingKind::Linear`] map.
    #[config(default = "Activation::Silu")]
    pub activation: Activation,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// Embeds per-sample times into feature vectors; built by [`TimeEmbeddingConfig::init`].
#[derive(Module, Debug)]
pub struct TimeEmbedding<B: Backend> {
    /// Fixed Fourier frequencies `w_k` (Gaussian Fourier kind only), excluded from training.
    pub frequencies: Option<Param<Tensor<B, 1>>>,
    /// The learned map of the raw scalar ([`EmbeddingKind::Linear`] only).
    pub linear: Option<Linear<B>>,
    /// First layer of the MLP.
    pub mlp_in: Option<Linear<B>>,
    /// Second layer of the MLP.
    pub mlp_out: Option<Linear<B>>,
    #[module(skip)]
    kind: EmbeddingKind,
    #[module(skip)]
    dim: usize,
    #[module(skip)]
    out_dim: usize,
    #[module(skip)]
    activation: Activation,
}

impl TimeEmbeddingConfig {
    /// Width of the embedding this configuration produces.
    pub fn output_dim(&self) -> usize {
        if self.mlp {
            self.out_dim.unwrap_or(self.dim)
        } else {
            self.dim
        }
    }

    /// Checks the configuration: positive sizes, even `dim` for cos/sin pairs, positive scales.
    pub fn validate(&self) -> NetsResult<()> {
        ensure_nonzero("embedding dim", self.dim)?;
        if let Some(o) = self.out_dim {
            ensure_nonzero("embedding out_dim", o)?;
        }
        match self.kind {
            EmbeddingKind::Sinusoidal { max_period, scale } => {
                ensure_even("sinusoidal embedding dim", self.dim)?;
                ensure_positive("max_period", max_period)?;
                ensure_positive("sinusoidal scale", scale)?;
            }
            EmbeddingKind::GaussianFourier { scale, .. } => {
                ensure_even("Fourier embedding dim", self.dim)?;
                ensure_positive("Fourier scale", scale)?;
            }
            EmbeddingKind::Linear => {}
        }
        Ok(())
    }

    /// Validates the configuration and builds the embedding with initialised parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<TimeEmbedding<B>> {
        self.validate()?;
        let out_dim = self.output_dim();
        let frequencies = match self.kind {
            EmbeddingKind::GaussianFourier { scale, seed } => {
                let w = NoiseSource::new(seed).normal::<B, 1>(
                    [self.dim / 2],
                    NoiseKey::new(0, 0),
                    device,
                ) * scale;
                Some(Param::from_tensor(w).set_require_grad(false))
            }
            _ => None,
        };
        let linear = matches!(self.kind, EmbeddingKind::Linear)
            .then(|| LinearConfig::new(1, self.dim).init(device));
        let (mlp_in, mlp_out) = if self.mlp {
            (
                Some(LinearConfig::new(self.dim, out_dim).init(device)),
                Some(LinearConfig::new(out_dim, out_dim).init(device)),
            )
        } else {
            (None, None)
        };
        let emb = TimeEmbedding {
            frequencies,
            linear,
            mlp_in,
            mlp_out,
            kind: self.kind.clone(),
            dim: self.dim,
            out_dim,
            activation: self.activation,
        };
        Ok(seeded_init(emb, self.seed))
    }
}

impl<B: Backend> TimeEmbedding<B> {
    /// Width of the output features.
    pub fn output_dim(&self) -> usize {
        self.out_dim
    }

    /// The raw features of `t`, before the MLP. Sinusoidal and Fourier features lie in `[−1, 1]`.
    ///
    /// # Shapes
    /// - `t`: `[n]`; output: `[n, dim]`
    pub fn features(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let device = t.device();
        match &self.kind {
            EmbeddingKind::Sinusoidal { max_period, scale } => {
                let half = self.dim / 2;
                let omega: Vec<f64> = (0..half)
                    .map(|k| (-max_period.ln() * k as f64 / half as f64).exp())
                    .collect();
                let omega = Tensor::<B, 1>::from_data(TensorData::new(omega, [half]), &device);
                if let Some(y) = cpu_ops::sin_cos_features(&t, *scale, &omega, true) {
                    return y;
                }
                let args = t.unsqueeze_dim::<2>(1).mul_scalar(*scale) * omega.unsqueeze_dim(0);
                score_core::tensor::cat(vec![args.clone().cos(), args.sin()], 1)
            }
            EmbeddingKind::GaussianFourier { .. } => {
                let w = self
                    .frequencies
                    .as_ref()
                    .expect("a Fourier embedding holds its frequencies")
                    .val()
                    .mul_scalar(std::f64::consts::TAU);
                if let Some(y) = cpu_ops::sin_cos_features(&t, 1.0, &w, false) {
                    return y;
                }
                let args = t.unsqueeze_dim::<2>(1) * w.unsqueeze_dim(0);
                score_core::tensor::cat(vec![args.clone().sin(), args.cos()], 1)
            }
            EmbeddingKind::Linear => {
                let lin = self
                    .linear
                    .as_ref()
                    .expect("a linear embedding holds its map");
                dense_act(lin, t.unsqueeze_dim::<2>(1), self.activation)
            }
        }
    }

    /// The embedding of `t`: the features, through the MLP when configured.
    ///
    /// # Shapes
    /// - `t`: `[n]`; output: `[n, output_dim]`
    pub fn forward(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let e = self.features(t);
        match (&self.mlp_in, &self.mlp_out) {
            (Some(a), Some(b)) => dense(b, dense_act(a, e, self.activation)),
            _ => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn kinds() -> Vec<EmbeddingKind> {
        vec![
            EmbeddingKind::Sinusoidal {
                max_period: 10000.0,
                scale: 1000.0,
            },
            EmbeddingKind::GaussianFourier {
                scale: 16.0,
                seed: 3,
            },
            EmbeddingKind::Linear,
        ]
    }

    #[test]
    fn shapes_of_every_kind_with_and_without_mlp() {
        let dev = Default::default();
        let t = Tensor::<B, 1>::from_floats([0.0, 0.25, 1.0], &dev);
        for kind in kinds() {
            for mlp in [false, true] {
                let cfg = TimeEmbeddingConfig::new()
                    .with_dim(16)
                    .with_kind(kind.clone())
                    .with_mlp(mlp)
                    .with_out_dim(Some(24));
                let emb = cfg.init::<B>(&dev).unwrap();
                let out = emb.forward(t.clone());
                assert_eq!(out.dims(), [3, cfg.output_dim()], "{kind:?} mlp={mlp}");
                assert_eq!(emb.output_dim(), if mlp { 24 } else { 16 });
            }
        }
    }

    #[test]
    fn distinct_times_give_distinct_bounded_features() {
        let dev = Default::default();
        let ts: Vec<f32> = (0..50).map(|i| i as f32 / 49.0).collect();
        let t = Tensor::<B, 1>::from_floats(ts.as_slice(), &dev);
        for kind in kinds().into_iter().take(2) {
            let emb = TimeEmbeddingConfig::new()
                .with_kind(kind.clone())
                .with_mlp(false)
                .init::<B>(&dev)
                .unwrap();
            let f = emb.features(t.clone());
            assert!(
                f.clone().abs().max().into_scalar() <= 1.0 + 1e-6,
                "{kind:?}"
            );
            // Every pair of distinct times is at least some distance apart.
            let a = f.clone().unsqueeze_dim::<3>(1);
            let b = f.unsqueeze_dim::<3>(0);
            let d2 = (a - b).square().sum_dim(2).squeeze_dim::<2>(2);
            let eye = Tensor::<B, 2>::eye(50, &dev);
            let min_off = (d2 + eye * 1e9).min().into_scalar();
            assert!(
                min_off > 1e-2,
                "{kind:?}: closest pair at squared distance {min_off}"
            );
        }
        // With the MLP the output stays finite and bounded by the layers' norms.
        let emb = TimeEmbeddingConfig::new().init::<B>(&dev).unwrap();
        let out = emb.forward(t);
        let m = out.abs().max().into_scalar();
        assert!(m.is_finite() && m < 100.0);
    }

    #[test]
    fn fourier_frequencies_are_fixed_and_seeded() {
        type A = burn::backend::Autodiff<B>;
        let dev = Default::default();
        let cfg = |seed| {
            TimeEmbeddingConfig::new()
                .with_dim(8)
                .with_kind(EmbeddingKind::GaussianFourier { scale: 16.0, seed })
        };
        let emb = cfg(4).init::<A>(&dev).unwrap();
        let grads = emb.forward(Tensor::ones([3], &dev)).sum().backward();
        let w = emb.frequencies.as_ref().unwrap().val();
        assert!(w.grad(&grads).is_none(), "frequencies are not trained");
        assert!(emb.mlp_in.as_ref().unwrap().weight.grad(&grads).is_some());
        let again = cfg(4).init::<A>(&dev).unwrap().frequencies.unwrap().val();
        let other = cfg(5).init::<A>(&dev).unwrap().frequencies.unwrap().val();
        assert_eq!(w.clone().into_data(), again.into_data());
        assert_ne!(w.into_data(), other.into_data());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let dev = burn::backend::ndarray::NdArrayDevice::Cpu;
        assert!(matches!(
            TimeEmbeddingConfig::new().with_dim(7).init::<B>(&dev),
            Err(crate::NetsError::OddSize { value: 7, .. })
        ));
        assert!(matches!(
            TimeEmbeddingConfig::new().with_dim(0).init::<B>(&dev),
            Err(crate::NetsError::ZeroSize { .. })
        ));
        let bad = TimeEmbeddingConfig::new().with_kind(EmbeddingKind::GaussianFourier {
            scale: -1.0,
            seed: 0,
        });
        assert!(matches!(
            bad.init::<B>(&dev),
            Err(crate::NetsError::NonPositive { value, .. }) if value == -1.0
        ));
        // The Linear kind has no parity constraint.
        assert!(
            TimeEmbeddingConfig::new()
                .with_dim(7)
                .with_kind(EmbeddingKind::Linear)
                .init::<B>(&dev)
                .is_ok()
        );
    }
}
