//! Energy networks: a scalar `E_θ(x)` or `E_θ(x, t)` with `p ∝ e^{−E}`, whose score `−∇x E` comes
//! from autodiff (score-core's [`AutodiffScore`](score_core::AutodiffScore) for sampling,
//! [`energy_score`](score_core::energy_score) on a nested autodiff backend inside a training
//! loss). Both nets are built from matmuls and smooth activations, so they are twice
//! differentiable: the parameters receive exact gradients of losses built on `−∇x E`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};
use score_core::EnergyFn;

use crate::embedding::{EmbeddingKind, TimeEmbeddingConfig};
use crate::error::{Result as NetsResult, ensure_nonzero};
use crate::layers::{Activation, dense, dense_act, seeded_init};
use crate::mlp::{Conditioning, TimeMlp, TimeMlpConfig};

/// Configuration of an [`EnergyMlp`]; defaults follow seed 001's `EnergyNetwork`
/// (three hidden layers of 128, SiLU).
#[derive(Config, Debug)]
pub struct EnergyMlpConfig {
    /// Dimension of `x`.
    pub input_dim: usize,
    /// Width of every hidden layer.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Number of hidden layers (at least one).
    #[config(default = 3)]
    pub num_layers: usize,
    /// Nonlinearity after every hidden layer (must be smooth for second-order losses).
    #[config(default = "Activation::Silu")]
    pub activation: Activation,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// An energy `E_θ(x)` that ignores `t`; built by [`EnergyMlpConfig::init`].
#[derive(Module, Debug)]
pub struct EnergyMlp<B: Backend> {
    /// Hidden layers, input first.
    pub layers: Vec<Linear<B>>,
    /// The scalar output layer.
    pub output: Linear<B>,
    #[module(skip)]
    activation: Activation,
}

impl EnergyMlpConfig {
    /// Validates the configuration and builds the network with initialised parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<EnergyMlp<B>> {
        ensure_nonzero("input_dim", self.input_dim)?;
        ensure_nonzero("hidden_size", self.hidden_size)?;
        ensure_nonzero("num_layers", self.num_layers)?;
        let h = self.hidden_size;
        let layers = (0..self.num_layers)
            .map(|i| LinearConfig::new(if i == 0 { self.input_dim } else { h }, h).init(device))
            .collect();
        let net = EnergyMlp {
            layers,
            output: LinearConfig::new(h, 1).init(device),
            activation: self.activation,
        };
        Ok(seeded_init(net, self.seed))
    }
}

impl<B: Backend> EnergyMlp<B> {
    /// Per-sample energy `E_θ(x)`.
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]`; output: `[n]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let h = self
            .layers
            .iter()
            .fold(x, |h, l| dense_act(l, h, self.activation));
        dense(&self.output, h).squeeze_dim(1)
    }
}

impl<B: Backend> EnergyMlp<B> {
    /// The score `−∇x E(x)` on the host kernels of
    /// [`cpu_ops::energy_mlp_score`](crate::cpu_ops::energy_mlp_score) (the CPU backends in
    /// `f32`, SiLU or tanh, 1–4 hidden layers); `None` where autodiff of [`forward`](Self::forward)
    /// must compute it.
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]`; output: `[n, input_dim]`
    pub fn fast_score(&self, x: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
        let act = self.activation.fused()?;
        let d = x.dims()[1];
        crate::cpu_ops::energy_mlp_score(&self.layers, &self.output, act, x, d)
    }
}

impl<B: Backend> EnergyFn<B, 2> for EnergyMlp<B> {
    fn energy(&self, x: Tensor<B, 2>, _t: Tensor<B, 1>) -> Tensor<B, 1> {
        self.forward(x)
    }
    fn direct_score(&self, x: &Tensor<B, 2>, _t: &Tensor<B, 1>) -> Option<Tensor<B, 2>> {
        self.fast_score(x)
    }
}

/// Configuration of a [`NoiseConditionalEnergy`]; defaults follow seed 001's
/// `NoiseConditionalEnergyNetwork`: the noise level goes through `SiLU(Linear(1 → 128))`, is
/// concatenated to `x`, then two hidden layers of 128 with SiLU and a scalar output.
#[derive(Config, Debug)]
pub struct NoiseConditionalEnergyConfig {
    /// Dimension of `x`.
    pub input_dim: usize,
    /// Width of every hidden layer.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Number of hidden layers (at least one).
    #[config(default = 2)]
    pub num_layers: usize,
    /// Embedding of the condition (time or noise level σ, whichever the caller passes as `t`).
    #[config(
        default = "TimeEmbeddingConfig::new().with_kind(EmbeddingKind::Linear).with_mlp(false)"
    )]
    pub embedding: TimeEmbeddingConfig,
    /// How the embedding conditions the hidden layers.
    #[config(default = "Conditioning::Concat")]
    pub conditioning: Conditioning,
    /// Nonlinearity (must be smooth for second-order losses).
    #[config(default = "Activation::Silu")]
    pub activation: Activation,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// A noise-conditional energy `E_θ(x, t)`: a [`TimeMlp`] with a scalar output.
#[derive(Module, Debug)]
pub struct NoiseConditionalEnergy<B: Backend> {
    /// The underlying network, `[n, d] × [n] → [n, 1]`.
    pub net: TimeMlp<B>,
}

impl NoiseConditionalEnergyConfig {
    /// Validates the configuration and builds the network with initialised parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<NoiseConditionalEnergy<B>> {
        let net = TimeMlpConfig::new(self.input_dim)
            .with_output_dim(Some(1))
            .with_hidden_size(self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_embedding(self.embedding.clone())
            .with_conditioning(self.conditioning)
            .with_activation(self.activation)
            .with_seed(self.seed)
            .init(device)?;
        Ok(NoiseConditionalEnergy { net })
    }
}

impl<B: Backend> NoiseConditionalEnergy<B> {
    /// Per-sample energy `E_θ(x, t)`.
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]`, `t`: `[n]`; output: `[n]`
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 1> {
        self.net.forward(x, t).squeeze_dim(1)
    }
}

impl<B: Backend> NoiseConditionalEnergy<B> {
    /// The score `−∇x E(x, t)` on the host kernels of
    /// [`cpu_ops::energy_mlp_score`](crate::cpu_ops::energy_mlp_score), for concatenation
    /// conditioning on the CPU backends (`f32`, SiLU or tanh, 1–4 hidden layers): the MLP on
    /// `[x | emb(t)]`, differentiated in the columns of `x`, with the embedding's gradient
    /// flowing through burn's ops. `None` where autodiff of [`forward`](Self::forward) must
    /// compute it.
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]`, `t`: `[n]`; output: `[n, input_dim]`
    pub fn fast_score(&self, x: &Tensor<B, 2>, t: &Tensor<B, 1>) -> Option<Tensor<B, 2>> {
        self.net.concat_energy_score(x, t)
    }
}

impl<B: Backend> EnergyFn<B, 2> for NoiseConditionalEnergy<B> {
    fn energy(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 1> {
        self.forward(x, t)
    }
    fn direct_score(&self, x: &Tensor<B, 2>, t: &Tensor<B, 1>) -> Option<Tensor<B, 2>> {
        self.fast_score(x, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn shapes() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::ones([4, 3], &dev);
        let t = Tensor::<B, 1>::ones([4], &dev);
        let e = EnergyMlpConfig::new(3)
            .with_hidden_size(8)
            .init::<B>(&dev)
            .unwrap();
        assert_eq!(e.energy(x.clone(), t.clone()).dims(), [4]);
        let e = NoiseConditionalEnergyConfig::new(3)
            .with_hidden_size(8)
            .init::<B>(&dev)
            .unwrap();
        assert_eq!(e.energy(x, t).dims(), [4]);
        assert!(matches!(
            EnergyMlpConfig::new(0).init::<B>(&dev),
            Err(crate::NetsError::ZeroSize { name: "input_dim" })
        ));
    }
}
