//! # score-sde
//!
//! Score-based generative modelling on [burn](https://burn.dev), generic over backends: the same
//! code runs on the CPU (NdArray, Flex) or the GPU (wgpu, CUDA), chosen by this crate's features.
//!
//! This facade re-exports the workspace's crates and names the backend the features selected:
//!
//! - [`score_core`]: SDEs, noise schedules, score traits, exact analytic targets, noise;
//! - [`score_nets`]: time embeddings, time-conditioned MLPs, energy networks, U-Net, `ScoreModel`;
//! - [`score_train`]: score-matching losses and the training loop;
//! - [`score_sample`]: Langevin, predictor–corrector, probability-flow ODE, likelihoods;
//! - [`score_data`]: MNIST (IDX reader, burn datasets) and the toy 2-D sets;
//! - [`score_eval`]: sample-quality metrics and the MNIST judge;
//! - [`mnist`]: the MNIST job behind `cargo run --release --example mnist_ve_sde`;
//! - [`plot`]: PNG figures of samples, score fields, loss curves and image grids;
//! - [`memory`]: keeping freed memory in the process (faster CPU training with glibc).
//!
//! ```
//! use score_sde::backend::Selected;
//! use score_sde::score_core::{GaussianMixture, ScoreFn, VpSde};
//! use burn::tensor::Tensor;
//! let dev = Default::default();
//! let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(VpSde::default());
//! let s = target.score(Tensor::<Selected, 2>::zeros([4, 2], &dev), Tensor::full([4], 0.5, &dev));
//! assert_eq!(s.dims(), [4, 2]);
//! ```

#![warn(missing_docs)]

pub mod memory;
pub mod mnist;
pub mod plot;

// The Rust blocks of the Markdown documentation run as doc tests of this crate.
#[doc = include_str!("../docs/guide.md")]
#[cfg(doctest)]
pub struct GuideDoctests;

#[doc = include_str!("../docs/maths.md")]
#[cfg(doctest)]
pub struct MathsDoctests;

#[doc = include_str!("../docs/architecture.md")]
#[cfg(doctest)]
pub struct ArchitectureDoctests;

/// burn itself, at the version these crates are built on (0.21), so a program can name
/// `Tensor`, `Backend` or a device without adding burn with matching features.
pub use burn;
pub use score_core;
pub use score_data;
pub use score_eval;
pub use score_nets;
pub use score_sample;
pub use score_train;

/// Backends selected by the crate features (`ndarray` and `flex` by default, so Flex is selected;
/// `wgpu`, `cuda`).
pub mod backend {
    pub use burn::backend::Autodiff;

    /// The NdArray CPU backend in f32.
    #[cfg(feature = "ndarray")]
    pub type NdArray = burn::backend::NdArray<f32>;
    /// burn's Flex CPU backend.
    #[cfg(feature = "flex")]
    pub type Flex = burn::backend::Flex;
    /// The wgpu GPU backend (Vulkan, Metal, DX12; Mesa's lavapipe on machines without a GPU).
    #[cfg(feature = "wgpu")]
    pub type Wgpu = burn::backend::Wgpu;
    /// The CUDA backend.
    #[cfg(feature = "cuda")]
    pub type Cuda = burn::backend::Cuda;

    /// The backend the features select, by preference CUDA > wgpu > Flex > NdArray.
    #[cfg(feature = "cuda")]
    pub type Selected = Cuda;
    /// The backend the features select, by preference CUDA > wgpu > Flex > NdArray.
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    pub type Selected = Wgpu;
    /// The backend the features select, by preference CUDA > wgpu > Flex > NdArray.
    #[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu"))))]
    pub type Selected = Flex;
    /// The backend the features select, by preference CUDA > wgpu > Flex > NdArray.
    #[cfg(all(
        feature = "ndarray",
        not(any(feature = "cuda", feature = "wgpu", feature = "flex"))
    ))]
    pub type Selected = NdArray;

    /// [`Selected`] with automatic differentiation, for training.
    #[cfg(any(
        feature = "ndarray",
        feature = "flex",
        feature = "wgpu",
        feature = "cuda"
    ))]
    pub type SelectedAutodiff = Autodiff<Selected>;
}

/// The names most programs need, in one import.
///
/// ```
/// use score_sde::prelude::*;
///
/// let dev = Default::default();
/// let sde = VeSde::new(0.01, 10.0).unwrap();
/// // An exact target: the 8-Gaussian ring, diffused by the SDE.
/// let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap().diffused(sde);
/// let sampler = PcSamplerConfig::new().init(sde).unwrap();
/// let grid = TimeGrid::reverse(&sde, 1e-3, 20).unwrap();
/// let start = Start::<Selected, 2>::Prior { shape: [16, 2], device: dev };
/// let out = sampler.generate(&target, &grid, start, &NoiseSource::new(0)).unwrap();
/// assert_eq!(out.x.dims(), [16, 2]);
///
/// // A network becomes a score under any one SDE.
/// let net = TimeMlpConfig::new(2).init::<Selected>(&Default::default()).unwrap();
/// let model = ScoreModel::new(net, sde, Parameterization::Noise);
/// let s = model.score(Tensor::zeros([4, 2], &Default::default()), Tensor::full([4], 0.5, &Default::default()));
/// assert_eq!(s.dims(), [4, 2]);
/// ```
pub mod prelude {
    pub use burn::backend::Autodiff;
    pub use burn::tensor::backend::{AutodiffBackend, Backend};
    pub use burn::tensor::{Device, Tensor};

    #[cfg(any(
        feature = "ndarray",
        feature = "flex",
        feature = "wgpu",
        feature = "cuda"
    ))]
    pub use crate::backend::{Selected, SelectedAutodiff};

    pub use score_core::{
        AnySde, GaussianMixture, NoiseKey, NoiseSource, ScoreFn, Sde, SubVpSde, VeSde, VpSde,
    };
    pub use score_nets::{Parameterization, ScoreModel, TimeMlp, TimeMlpConfig, UNet, UNetConfig};
    pub use score_sample::{
        AdaptiveConfig, Edm, EdmConfig, Likelihood, LikelihoodConfig, OdeSolver, PcSampler,
        PcSamplerConfig, ProbabilityFlow, ProbabilityFlowConfig, Sampler, SamplerConfig, Samples,
        Start, TimeGrid,
    };
    pub use score_train::{EmaConfig, SdeLoss, Trainer, TrainerConfig};
}
