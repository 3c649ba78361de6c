//! The judge's network: a small CNN classifier of 28×28 MNIST digits, whose penultimate layer
//! gives the features of the Fréchet distance.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;

/// Mean of the MNIST training pixels on `[0, 1]`: inputs are standardised with it.
pub const PIXEL_MEAN: f32 = 0.1307;
/// Standard deviation of the MNIST training pixels on `[0, 1]`.
pub const PIXEL_STD: f32 = 0.3081;
/// Side of an MNIST image.
pub const SIDE: usize = 28;
/// Pixels of an MNIST image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

/// Configuration of [`JudgeNet`]: conv 5×5 (pad 2) → ReLU → max-pool 2, twice, then a dense
/// layer of `features` units (ReLU) and a dense layer to the 10 logits — the PyTorch MNIST
/// example's CNN, narrower by default (16/32 channels instead of 32/64) so that it trains in
/// minutes on a CPU and still passes 98.5 % test accuracy.
#[derive(Config, Debug, PartialEq)]
pub struct JudgeNetConfig {
    /// Channels of the first convolution.
    #[config(default = 16)]
    pub conv1_channels: usize,
    /// Channels of the second convolution.
    #[config(default = 32)]
    pub conv2_channels: usize,
    /// Width of the feature layer (the Fréchet distance's dimension).
    #[config(default = 128)]
    pub features: usize,
    /// Seed of the initial weights ([`score_nets::seeded_init`]).
    #[config(default = 0)]
    pub seed: u64,
}

impl JudgeNetConfig {
    /// Builds the network on `device`, its weights a function of the config alone.
    pub fn init<B: Backend>(&self, device: &B::Device) -> JudgeNet<B> {
        let pad = PaddingConfig2d::Explicit(2, 2, 2, 2);
        let net = JudgeNet {
            conv1: Conv2dConfig::new([1, self.conv1_channels], [5, 5])
                .with_padding(pad.clone())
                .init(device),
            conv2: Conv2dConfig::new([self.conv1_channels, self.conv2_channels], [5, 5])
                .with_padding(pad)
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            hidden: LinearConfig::new(self.conv2_channels * (SIDE / 4) * (SIDE / 4), self.features)
                .init(device),
            output: LinearConfig::new(self.features, CLASSES).init(device),
        };
        score_nets::seeded_init(net, self.seed)
    }
}

/// The judge's CNN (see [`JudgeNetConfig`]).
#[derive(Module, Debug)]
pub struct JudgeNet<B: Backend> {
    /// First convolution, 1 → `conv1_channels`.
    pub conv1: Conv2d<B>,
    /// Second convolution, `conv1_channels` → `conv2_channels`.
    pub conv2: Conv2d<B>,
    /// 2×2 max-pooling, stride 2.
    pub pool: MaxPool2d,
    /// Dense layer to the features.
    pub hidden: Linear<B>,
    /// Dense layer to the logits.
    pub output: Linear<B>,
}

impl<B: Backend> JudgeNet<B> {
    /// The features (after the ReLU of the dense layer) of images with pixels on `[0, 1]`.
    ///
    /// # Shapes
    /// - `x`: `[n, 1, 28, 28]`
    /// - output: `[n, features]`
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = (x - PIXEL_MEAN) / PIXEL_STD;
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let [n, c, h, w] = x.dims();
        relu(self.hidden.forward(x.reshape([n, c * h * w])))
    }

    /// The logits of images with pixels on `[0, 1]`.
    ///
    /// # Shapes
    /// - `x`: `[n, 1, 28, 28]`
    /// - output: `[n, 10]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.output.forward(self.features(x))
    }

    /// Features and logits in one pass.
    ///
    /// # Shapes
    /// - `x`: `[n, 1, 28, 28]`
    /// - output: `([n, features], [n, 10])`
    pub fn features_and_logits(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let f = self.features(x);
        let logits = self.output.forward(f.clone());
        (f, logits)
    }
}
