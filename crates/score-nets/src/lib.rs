//! # score-nets
//!
//! Score networks on burn, generic over backends:
//!
//! - [`embedding`]: sinusoidal, Gaussian Fourier and linear time embeddings, optionally followed
//!   by an MLP;
//! - [`mlp`]: a time-conditioned MLP for low-dimensional data with concat / add / FiLM /
//!   adaptive-LayerNorm conditioning, twice differentiable;
//! - [`energy`]: energy MLPs `E(x)` and `E(x, t)` implementing score-core's
//!   [`EnergyFn`](score_core::EnergyFn);
//! - [`unet`]: a U-Net for images (GroupNorm residual blocks with the time embedding, skips,
//!   self-attention), for 28×28 and 32×32 inputs;
//! - [`model`]: [`ScoreModel`], the one place where a network's output (score, noise, denoised)
//!   becomes a score;
//! - [`layers`]: the shared pieces (twice-differentiable dense layer, activations, lazy
//!   parameter materialisation, seeded initialisation);
//! - [`checkpoint`]: saving and loading weights with burn's recorders, with typed errors for
//!   corrupt files and wrong shapes;
//! - [`record`]: the file plumbing shared with score-train's checkpoints (checksum, atomic
//!   writes, records checked against the module before burn loads them);
//! - [`import`]: weights from safetensors and PyTorch files (burn-store), with the key mapping
//!   of a PyTorch U-Net;
//! - [`error`]: typed errors.
//!
//! ## Second-order gradients
//!
//! Losses that differentiate the network's input gradient (energy nets, explicit and sliced
//! score matching) nest autodiff: with `Inner = Autodiff<B>` and `Outer = Autodiff<Inner>`, lift
//! the model with [`AutodiffModule::from_inner`](burn::module::AutodiffModule::from_inner) and
//! the input with `Tensor::<Outer, D>::from_inner(x).require_grad()`; the input gradient of the
//! outer graph is an `Inner` tensor that still depends on the parameters. Every network here
//! computes its dense layers as matmuls for that reason (burn's fused `linear` op has no second
//! derivative), and every `init` materialises the lazy parameters before returning.
//!
//! ## Precision pitfalls met while testing (burn 0.21)
//!
//! - burn-ndarray evaluates `sigmoid` in f32 even on `NdArray<f64>`; [`Activation::Silu`] is
//!   therefore written with `tanh`, which is exact in f64.
//! - The default float dtype of a device lives in a process-wide registry, fixed by the first
//!   tensor created there; `NdArray<f32>` and `NdArray<f64>` share the device `Cpu`, so one test
//!   binary must not mix them (this crate's f64 oracle tests live in binaries of their own).
//! - burn-ndarray's kernels are generic over the element type and get instantiated, unoptimised,
//!   in debug test crates; the U-Net tests run on Flex, whose kernels are compiled in burn-flex.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::module::AutodiffModule;
//! use burn::tensor::Tensor;
//! use score_core::energy_score;
//! use score_nets::{EnergyMlp, EnergyMlpConfig};
//! type Inner = Autodiff<NdArray<f32>>;
//! type Outer = Autodiff<Inner>;
//! let dev = Default::default();
//! let energy = EnergyMlpConfig::new(2).with_hidden_size(16).init::<Inner>(&dev).unwrap();
//! let x = Tensor::<Inner, 2>::ones([8, 2], &dev);
//! let t = Tensor::<Inner, 1>::zeros([8], &dev);
//! // Score −∇x E on the inner graph, differentiable in the parameters.
//! let lifted: EnergyMlp<Outer> = AutodiffModule::from_inner(energy.clone());
//! let s = energy_score::<Outer, _, 2>(&lifted, x, t);
//! let loss = s.square().sum();
//! let grads = loss.backward();
//! assert!(energy.output.weight.grad(&grads).is_some());
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
pub mod cpu_ops;
pub mod embedding;
pub mod energy;
pub mod error;
pub mod import;
pub mod layers;
pub mod mlp;
pub mod model;
pub mod record;
pub mod unet;

pub use checkpoint::{load_module, save_module};
pub use embedding::{EmbeddingKind, TimeEmbedding, TimeEmbeddingConfig};
pub use energy::{
    EnergyMlp, EnergyMlpConfig, NoiseConditionalEnergy, NoiseConditionalEnergyConfig,
};
pub use error::{NetsError, Result};
pub use import::{ImportReport, UNET_PYTORCH_KEYS, WeightFormat, import_weights};
pub use layers::{
    Activation, dense, dense_act, layer_norm, materialize, param_shapes, param_values, seeded_init,
};
pub use mlp::{Conditioning, TimeMlp, TimeMlpConfig};
pub use model::{Parameterization, ScoreModel, TimeNet};
pub use unet::{AttentionBlock, AttentionBlockConfig, ResBlock, ResBlockConfig, UNet, UNetConfig};
