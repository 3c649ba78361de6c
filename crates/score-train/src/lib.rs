//! # score-train
//!
//! Score-matching losses and a training loop that survives interruption.
//!
//! - [`loss`]: every objective behind one [`Loss`] trait — explicit ([`ExplicitScoreMatching`]),
//!   denoising ([`DenoisingScoreMatching`]), sliced ([`SlicedScoreMatching`]), multi-scale NCSN
//!   ([`MultiScaleDsm`]), continuous-time ([`SdeLoss`], with [`Weighting`] λ(t) and
//!   [`TimeSampling`] as values) and DDPM's ε-loss ([`DdpmLoss`]);
//! - [`view`]: how a loss reads a score off a score network ([`AsScore`]), an energy network
//!   (`−∇x E`, [`AsEnergy`]), a network's raw output ([`AsOutput`]) or an analytic target
//!   ([`Exact`]) — second-order losses lift the model one autodiff level (DESIGN.md §4);
//! - [`train`]: [`Trainer`], generic over `B: AutodiffBackend` — Adam with warm-up, global
//!   gradient-norm clipping, [`Ema`], an evaluation hook, a progress bar and a CSV loss history;
//! - [`checkpoint`]: atomic, validated checkpoints from which a run resumes bit for bit;
//! - `distributed` (feature `distributed`): data-parallel training across devices and processes
//!   on burn-collective, with a watchdog on every collective call;
//! - [`error`]: the typed [`TrainError`].
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use score_core::{GaussianMixture, NoiseKey, NoiseSource, VeSde};
//! use score_train::{Exact, Loss, SdeLoss};
//! type B = Autodiff<NdArray<f32>>;
//! let dev = Default::default();
//! let sde = VeSde::new(0.01, 5.0).unwrap();
//! let target = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
//! let x0 = target.sample::<B>(256, &NoiseSource::new(0), NoiseKey::new(0, 0), &dev);
//! let loss = SdeLoss::new(sde).unwrap().with_view(Exact);
//! let value = loss.loss(&target.diffused(sde), x0, &NoiseSource::new(1), 0).into_scalar();
//! assert!(value.is_finite());
//! ```

#![warn(missing_docs)]

pub mod adam;
pub mod checkpoint;
#[cfg(feature = "distributed")]
pub mod distributed;
pub mod ema;
pub mod error;
pub mod loss;
pub mod train;
pub mod view;

pub use adam::FusedAdam;
pub use checkpoint::Checkpoint;
#[cfg(feature = "distributed")]
pub use distributed::{CollectiveFailure, CommStats, DataParallel, NodeAddress, run_orchestrator};
pub use ema::{Ema, EmaConfig, EmaWarmup};
pub use error::{Result, TrainError};
pub use loss::{
    DdpmLoss, DdpmTarget, DdpmView, DenoisingScoreMatching, ExplicitScoreMatching, Loss,
    MultiScaleDsm, Objective, Projection, Reduction, SdeLoss, SlicedEstimator, SlicedScoreMatching,
    TimeSampling, Viewed, Weighting,
};
pub use train::{EvalHook, HistoryRow, TrainReport, Trainer, TrainerConfig};
pub use view::{AsEnergy, AsOutput, AsScore, Exact, LiftedScoreView, ScoreView};
