//! A time-conditioned MLP `f(x, t)` for low-dimensional data (2-D toys, small vectors), with the
//! four ways of conditioning on `t` that the seeds name. Every layer is a matmul ([`dense`]) and
//! the normalisation is written by hand, so the network is twice differentiable in `x` and its
//! parameters: explicit and sliced score matching can differentiate its input Jacobian.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};

use crate::cpu_ops;
use crate::cpu_ops::dense::DenseAct;
use crate::embedding::{TimeEmbedding, TimeEmbeddingConfig};
use crate::error::{Result as NetsResult, ensure_nonzero, ensure_positive};
use crate::layers::{Activation, dense, dense_act, layer_norm, seeded_init};
use crate::model::TimeNet;

/// How the time embedding `e = emb(t)` enters the MLP.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Conditioning {
    /// `e` is concatenated to the input of the first layer (the seeds' `TimeConditionedMLP`).
    Concat,
    /// Each hidden layer adds a projection of `act(e)`: `h ← act(W h + b + P act(e))` (DDPM's
    /// residual blocks).
    Add,
    /// FiLM (Perez et al. 2018): each hidden layer is scaled and shifted by projections of
    /// `act(e)`: `h ← act((W h + b)·(1 + γ) + β)`.
    Film,
    /// Adaptive LayerNorm (as in DiT): `h ← act(LN(W h + b)·(1 + γ) + β)` with `γ, β` projected
    /// from `act(e)` and a LayerNorm without its own affine parameters.
    AdaNorm,
}

/// Configuration of a [`TimeMlp`]. Defaults follow seed 000: three hidden layers of 256, a
/// 128-wide sinusoidal embedding with its MLP, SiLU, conditioning by concatenation.
#[derive(Config, Debug)]
pub struct TimeMlpConfig {
    /// Dimension of `x`.
    pub input_dim: usize,
    /// Dimension of the output; `None` gives `input_dim` (a score, noise or denoised output).
    #[config(default = "None")]
    pub output_dim: Option<usize>,
    /// Width of every hidden layer.
    #[config(default = 256)]
    pub hidden_size: usize,
    /// Number of hidden layers (at least one).
    #[config(default = 3)]
    pub num_layers: usize,
    /// How `t` conditions the hidden layers.
    #[config(default = "Conditioning::Concat")]
    pub conditioning: Conditioning,
    /// The time embedding.
    #[config(default = "TimeEmbeddingConfig::new()")]
    pub embedding: TimeEmbeddingConfig,
    /// Nonlinearity after every hidden layer.
    #[config(default = "Activation::Silu")]
    pub activation: Activation,
    /// ε of the adaptive LayerNorm.
    #[config(default = 1e-5)]
    pub norm_epsilon: f64,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// The time-conditioned MLP; built by [`TimeMlpConfig::init`].
#[derive(Module, Debug)]
pub struct TimeMlp<B: Backend> {
    /// The time embedding.
    pub embedding: TimeEmbedding<B>,
    /// Hidden layers, input first.
    pub layers: Vec<Linear<B>>,
    /// Per-layer projections of the embedding (empty for [`Conditioning::Concat`]).
    pub conditions: Vec<Linear<B>>,
    /// Output layer.
    pub output: Linear<B>,
    #[module(skip)]
    conditioning: Conditioning,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    hidden_size: usize,
    #[module(skip)]
    norm_epsilon: f64,
}

impl TimeMlpConfig {
    /// Checks sizes and the embedding.
    pub fn validate(&self) -> NetsResult<()> {
        ensure_nonzero("input_dim", self.input_dim)?;
        if let Some(o) = self.output_dim {
            ensure_nonzero("output_dim", o)?;
        }
        ensure_nonzero("hidden_size", self.hidden_size)?;
        ensure_nonzero("num_layers", self.num_layers)?;
        ensure_positive("norm_epsilon", self.norm_epsilon)?;
        self.embedding.validate()
    }

    /// Validates the configuration and builds the network with initialised parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<TimeMlp<B>> {
        self.validate()?;
        let e = self.embedding.output_dim();
        let h = self.hidden_size;
        let embedding = self.embedding.init(device)?;
        let first_in = match self.conditioning {
            Conditioning::Concat => self.input_dim + e,
            _ => self.input_dim,
        };
        let layers = (0..self.num_layers)
            .map(|i| LinearConfig::new(if i == 0 { first_in } else { h }, h).init(device))
            .collect();
        let cond_width = match self.conditioning {
            Conditioning::Concat => 0,
            Conditioning::Add => h,
            Conditioning::Film | Conditioning::AdaNorm => 2 * h,
        };
        let conditions = if cond_width == 0 {
            Vec::new()
        } else {
            (0..self.num_layers)
                .map(|_| LinearConfig::new(e, cond_width).init(device))
                .collect()
        };
        let output = LinearConfig::new(h, self.output_dim.unwrap_or(self.input_dim)).init(device);
        let mlp = TimeMlp {
            embedding,
            layers,
            conditions,
            output,
            conditioning: self.conditioning,
            activation: self.activation,
            hidden_size: h,
            norm_epsilon: self.norm_epsilon,
        };
        Ok(seeded_init(mlp, self.seed))
    }
}

impl<B: Backend> TimeMlp<B> {
    /// `f(x, t)`.
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]`, `t`: `[n]`
    /// - output: `[n, output_dim]`
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let e = self.embedding.forward(t);
        if self.conditioning == Conditioning::Concat {
            let h = self
                .layers
                .iter()
                .fold(score_core::tensor::cat(vec![x, e], 1), |h, layer| {
                    dense_act(layer, h, self.activation)
                });
            return dense(&self.output, h);
        }
        let act = |z| self.activation.forward(z);
        let ae = act(e);
        let hs = self.hidden_size;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let z = dense(layer, h);
            h = match self.conditioning {
                Conditioning::Concat => unreachable!("returned above"),
                Conditioning::Add => act(z + dense(&self.conditions[i], ae.clone())),
                Conditioning::Film | Conditioning::AdaNorm => {
                    let c = dense(&self.conditions[i], ae.clone());
                    let gamma = c.clone().narrow(1, 0, hs);
                    let beta = c.narrow(1, hs, hs);
                    let z = if self.conditioning == Conditioning::AdaNorm {
                        layer_norm(z, self.norm_epsilon)
                    } else {
                        z
                    };
                    act(z * gamma.add_scalar(1.0) + beta)
                }
            };
        }
        dense(&self.output, h)
    }
}

impl<B: Backend> TimeMlp<B> {
    /// The fused activation and the first layer's input `[x | emb(t)]`, where the host
    /// second-order kernels can take this network (concatenation, SiLU or tanh, a CPU backend);
    /// checked before the embedding is computed.
    fn host_input(&self, x: &Tensor<B, 2>, t: &Tensor<B, 1>) -> Option<(DenseAct, Tensor<B, 2>)> {
        if self.conditioning != Conditioning::Concat || !cpu_ops::host_ops_backend::<B>() {
            return None;
        }
        let act = self.activation.fused()?;
        let input = score_core::tensor::cat(vec![x.clone(), self.embedding.forward(t.clone())], 1);
        Some((act, input))
    }

    /// For a scalar-output network with [`Conditioning::Concat`]: `−∂f/∂x` on the host kernels
    /// of [`cpu_ops::energy_mlp_score`], where the backend has them; `None` otherwise (checked
    /// before the embedding is computed).
    pub(crate) fn concat_energy_score(
        &self,
        x: &Tensor<B, 2>,
        t: &Tensor<B, 1>,
    ) -> Option<Tensor<B, 2>> {
        let (act, input) = self.host_input(x, t)?;
        cpu_ops::energy_mlp_score(&self.layers, &self.output, act, &input, x.dims()[1])
    }
}

impl<B: Backend> TimeNet<B, 2> for TimeMlp<B> {
    fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        TimeMlp::forward(self, x, t)
    }
    fn output_and_quadratic_form(
        &self,
        x: &Tensor<B, 2>,
        t: &Tensor<B, 1>,
        v: &Tensor<B, 2>,
    ) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
        let (act, input) = self.host_input(x, t)?;
        cpu_ops::mlp_output_and_quadratic_form(&self.layers, &self.output, act, &input, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn shapes_for_every_conditioning() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::ones([5, 3], &dev);
        let t = Tensor::<B, 1>::from_floats([0.0, 0.1, 0.5, 0.9, 1.0], &dev);
        for c in [
            Conditioning::Concat,
            Conditioning::Add,
            Conditioning::Film,
            Conditioning::AdaNorm,
        ] {
            let net = TimeMlpConfig::new(3)
                .with_hidden_size(16)
                .with_num_layers(2)
                .with_conditioning(c)
                .with_embedding(TimeEmbeddingConfig::new().with_dim(8))
                .init::<B>(&dev)
                .unwrap();
            assert_eq!(net.forward(x.clone(), t.clone()).dims(), [5, 3], "{c:?}");
            let net = TimeMlpConfig::new(3)
                .with_output_dim(Some(1))
                .with_hidden_size(16)
                .with_conditioning(c)
                .init::<B>(&dev)
                .unwrap();
            assert_eq!(net.forward(x.clone(), t.clone()).dims(), [5, 1], "{c:?}");
        }
    }

    #[test]
    fn output_depends_on_time() {
        let dev = Default::default();
        let net = TimeMlpConfig::new(2)
            .with_hidden_size(32)
            .with_conditioning(Conditioning::Film)
            .init::<B>(&dev)
            .unwrap();
        let x = Tensor::<B, 2>::ones([2, 2], &dev);
        let out = net.forward(x, Tensor::from_floats([0.1, 0.9], &dev));
        let d = (out.clone().narrow(0, 0, 1) - out.narrow(0, 1, 1))
            .abs()
            .sum()
            .into_scalar();
        assert!(d > 1e-4);
    }

    #[test]
    fn default_config_is_seed_000() {
        let c = TimeMlpConfig::new(2);
        assert_eq!((c.hidden_size, c.num_layers), (256, 3));
        assert_eq!(c.embedding.dim, 128);
        assert_eq!(c.activation, Activation::Silu);
        assert!(matches!(
            TimeMlpConfig::new(2)
                .with_hidden_size(0)
                .init::<B>(&Default::default()),
            Err(crate::NetsError::ZeroSize {
                name: "hidden_size"
            })
        ));
    }
}
