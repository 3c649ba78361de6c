//! The MNIST judge: a small CNN classifier that says how good generated digits are.
//!
//! Trained once on MNIST's training set (98.5 % or more test accuracy; the shipped weights live
//! in the repository's `data/judge/`, see [`store`]), it reports for a set of images in `[0, 1]`
//! ([`Judge::evaluate`], an [`MnistReport`]):
//!
//! - the histogram of predicted classes and its entropy (`ln 10` ≈ 2.303 nats when all digits are
//!   equally frequent);
//! - the fraction classified with confidence (maximum softmax probability) of at least
//!   [`CONFIDENT`], with its exact (Clopper–Pearson) 95 % interval: the judge is trained with
//!   outlier exposure (Hendrycks et al. 2019, see [`train`]) to be unsure on pixel noise and
//!   blurred digits, so this is the fraction that looks like a digit;
//! - the Fréchet distance between the judge's 128 penultimate features of the images and of a
//!   fixed reference of [`REFERENCE_SIZE`] test images (FID's construction, Heusel et al. 2017,
//!   on an MNIST classifier instead of Inception), beside [`Judge::floor`], the same distance for
//!   [`FLOOR_SIZE`] real training images: what a perfect generator of that many samples scores.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use score_eval::judge::{Judge, JudgeTrainingConfig};
//! # fn main() -> score_eval::Result<()> {
//! let dev = Default::default();
//! let (judge, _) = Judge::<Flex>::load_or_train::<Autodiff<Flex>>(
//!     &Judge::<Flex>::default_dir(), &score_data::mnist::default_dir(),
//!     &JudgeTrainingConfig::shipped(), &dev)?;
//! let images = vec![0.5f32; 16 * 784]; // a generator's samples, pixels on [0, 1]
//! let report = judge.evaluate(&images, 16)?;
//! println!("{}", serde_json::to_string(&report).unwrap());
//! # Ok(()) }
//! ```

pub mod junk;
pub mod net;
pub mod store;
pub mod train;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::activation::softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use score_core::{NoiseKey, NoiseSource};
use score_data::mnist::{Mnist, Split};
use serde::Serialize;

pub use junk::{box_blur, gaussian_noise, uniform_noise};
pub use net::{CLASSES, JudgeNet, JudgeNetConfig, PIXELS, SIDE};
pub use store::Manifest;
pub use train::{JudgeTrainingConfig, train_judge};

use crate::error::{EvalError, Result};
use crate::frechet::frechet_distance_gaussians;
use crate::moments::{covariance, mean};
use crate::stats::clopper_pearson;

/// The confidence (maximum softmax probability) from which an image counts as a recognised digit.
pub const CONFIDENT: f64 = 0.9;
/// Test images in the Fréchet reference.
pub const REFERENCE_SIZE: usize = 1000;
/// Training images measured by [`Judge::floor`].
pub const FLOOR_SIZE: usize = 256;
/// Seed of the choice of the reference and floor images.
const SUBSET_SEED: u64 = 0x006a_7564_6765;
/// Images per forward pass.
const INFER_BATCH: usize = 250;

/// What the judge says about a set of images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MnistReport {
    /// Number of images.
    pub n: usize,
    /// How many images the judge assigns to each digit (most probable class).
    pub histogram: [usize; CLASSES],
    /// Entropy of the class frequencies in nats (`ln 10` ≈ 2.303 at most).
    pub class_entropy: f64,
    /// Images classified with confidence ≥ [`CONFIDENT`].
    pub confident: usize,
    /// `confident / n`.
    pub confident_fraction: f64,
    /// Exact (Clopper–Pearson) 95 % interval of the confident fraction.
    pub confident_interval: (f64, f64),
    /// Squared Fréchet distance between the images' judge features and the test reference's.
    pub frechet: f64,
}

/// Where a judge returned by [`Judge::load_or_train`] came from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Provenance {
    /// Read from the cache, as recorded in its manifest.
    Loaded(Manifest),
    /// Trained now because the cache could not be used.
    Trained {
        /// Why the cache could not be used.
        reason: String,
        /// Training time in seconds (not counting loading the data or measuring accuracy).
        train_seconds: f64,
        /// Accuracy on the 10 000 test images.
        test_accuracy: f64,
    },
}

/// The MNIST judge: a trained [`JudgeNet`] and the feature moments of its test reference.
#[derive(Debug, Clone)]
pub struct Judge<B: Backend> {
    net: JudgeNet<B>,
    device: B::Device,
    reference_mean: Vec<f64>,
    reference_cov: Vec<f64>,
}

/// `count` distinct indices below `n`, fixed by `stream`.
fn fixed_subset(n: usize, count: usize, stream: u32) -> Vec<usize> {
    let mut p = train::permutation(n, &NoiseSource::new(SUBSET_SEED), NoiseKey::new(0, stream));
    p.truncate(count);
    p
}

fn bytes_to_unit(images: &[u8]) -> Vec<f32> {
    images.iter().map(|&v| f32::from(v) / 255.0).collect()
}

fn data_error(e: score_data::DataError) -> EvalError {
    EvalError::Data {
        reason: e.to_string(),
    }
}

fn gather(m: &Mnist, indices: &[usize]) -> Vec<u8> {
    indices
        .iter()
        .flat_map(|&i| m.image(i).iter().copied())
        .collect()
}

impl<B: Backend> Judge<B> {
    /// The repository's `data/judge`, where the shipped weights live.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/judge")
    }

    /// A judge from a trained network, with its reference computed from MNIST's test split
    /// (the [`REFERENCE_SIZE`] images of a fixed seeded choice).
    ///
    /// # Errors
    /// [`EvalError::TooFewPoints`] when `test` holds fewer than [`REFERENCE_SIZE`] images.
    pub fn new(net: JudgeNet<B>, test: &Mnist, device: &B::Device) -> Result<Self> {
        if test.len() < REFERENCE_SIZE {
            return Err(EvalError::TooFewPoints {
                what: "test reference",
                min: REFERENCE_SIZE,
                got: test.len(),
            });
        }
        let images = gather(test, &fixed_subset(test.len(), REFERENCE_SIZE, 0));
        let (_, feats) = infer(&net, &bytes_to_unit(&images), device);
        let dim = feats.len() / REFERENCE_SIZE;
        Ok(Self {
            reference_mean: mean(&feats, dim)?,
            reference_cov: covariance(&feats, dim)?,
            net,
            device: device.clone(),
        })
    }

    /// Loads the judge of `config` from `dir` (see [`store::load`]), its reference from the
    /// MNIST files in `mnist_dir`.
    ///
    /// # Errors
    /// [`EvalError::Io`] / [`EvalError::Corrupt`] for a missing or damaged cache,
    /// [`EvalError::Data`] when MNIST cannot be read.
    pub fn load(
        dir: &Path,
        mnist_dir: &Path,
        config: &JudgeTrainingConfig,
        device: &B::Device,
    ) -> Result<(Self, Manifest)> {
        let (net, manifest) = store::load::<B>(dir, config, device)?;
        let test = Mnist::load(mnist_dir, Split::Test).map_err(data_error)?;
        Ok((Self::new(net, &test, device)?, manifest))
    }

    /// Loads the judge of `config` from `dir`; when the cache is missing, damaged or was written
    /// for another configuration, says why on stderr, retrains on the autodiff backend `A` (with
    /// a progress bar), measures its test accuracy and writes the cache anew.
    ///
    /// # Errors
    /// [`EvalError::Data`] when MNIST cannot be read, [`EvalError::Io`] when the new cache
    /// cannot be written; a bad cache is never an error.
    pub fn load_or_train<A>(
        dir: &Path,
        mnist_dir: &Path,
        config: &JudgeTrainingConfig,
        device: &B::Device,
    ) -> Result<(Self, Provenance)>
    where
        A: AutodiffBackend<InnerBackend = B> + Backend<Device = B::Device>,
    {
        let reason = match store::load::<B>(dir, config, device) {
            Ok((net, manifest)) => {
                let test = Mnist::load(mnist_dir, Split::Test).map_err(data_error)?;
                return Ok((Self::new(net, &test, device)?, Provenance::Loaded(manifest)));
            }
            Err(e @ (EvalError::Io { .. } | EvalError::Corrupt { .. })) => e.to_string(),
            Err(e) => return Err(e),
        };
        eprintln!("score-eval judge: retraining, the cache cannot be used ({reason})");
        let train = Mnist::load(mnist_dir, Split::Train).map_err(data_error)?;
        let test = Mnist::load(mnist_dir, Split::Test).map_err(data_error)?;
        let start = Instant::now();
        let net = train_judge::<A>(config, &train.images, &train.labels, device, true)?;
        let train_seconds = start.elapsed().as_secs_f64();
        let test_accuracy = accuracy(&net, &test.images, &test.labels, device);
        eprintln!(
            "score-eval judge: trained in {train_seconds:.1} s, test accuracy {:.2} %",
            100.0 * test_accuracy
        );
        store::save(
            dir,
            &net,
            config,
            test_accuracy,
            train_seconds,
            std::any::type_name::<A>(),
        )?;
        Ok((
            Self::new(net, &test, device)?,
            Provenance::Trained {
                reason,
                train_seconds,
                test_accuracy,
            },
        ))
    }

    /// The network.
    pub fn net(&self) -> &JudgeNet<B> {
        &self.net
    }

    /// Class probabilities, row-major `n × 10`, of `n` images with pixels on `[0, 1]`.
    ///
    /// # Errors
    /// As [`Judge::evaluate`].
    pub fn probabilities(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        check_images(images, n)?;
        Ok(infer(&self.net, images, &self.device).0)
    }

    /// The confidence (maximum class probability) of each of `n` images on `[0, 1]`.
    ///
    /// # Errors
    /// As [`Judge::evaluate`].
    pub fn confidences(&self, images: &[f32], n: usize) -> Result<Vec<f64>> {
        Ok(self
            .probabilities(images, n)?
            .chunks(CLASSES)
            .map(|p| f64::from(p.iter().copied().fold(0.0, f32::max)))
            .collect())
    }

    /// Fraction of MNIST images (bytes, row-major `n × 784`) whose most probable class is their
    /// label.
    ///
    /// # Errors
    /// [`EvalError::DimensionMismatch`] when the buffers disagree.
    pub fn accuracy(&self, images: &[u8], labels: &[u8]) -> Result<f64> {
        check_images(images, labels.len())?;
        Ok(accuracy(&self.net, images, labels, &self.device))
    }

    /// The report on `n` images with pixels on `[0, 1]` (row-major `n × 784`).
    ///
    /// # Errors
    /// [`EvalError::DimensionMismatch`] when `images` does not hold `n` images,
    /// [`EvalError::TooFewPoints`] for fewer than two, [`EvalError::NonFinite`] for a NaN pixel.
    pub fn evaluate(&self, images: &[f32], n: usize) -> Result<MnistReport> {
        check_images(images, n)?;
        if n < 2 {
            return Err(EvalError::TooFewPoints {
                what: "images",
                min: 2,
                got: n,
            });
        }
        if let Some((index, &v)) = images.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                what: "images",
                index,
                value: f64::from(v),
            });
        }
        let (probs, feats) = infer(&self.net, images, &self.device);
        let mut histogram = [0usize; CLASSES];
        let mut confident = 0;
        for p in probs.chunks(CLASSES) {
            let k = argmax(p);
            histogram[k] += 1;
            confident += usize::from(f64::from(p[k]) >= CONFIDENT);
        }
        let class_entropy = -histogram
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let q = c as f64 / n as f64;
                q * q.ln()
            })
            .sum::<f64>();
        let dim = self.reference_mean.len();
        let frechet = frechet_distance_gaussians(
            &mean(&feats, dim)?,
            &covariance(&feats, dim)?,
            &self.reference_mean,
            &self.reference_cov,
            dim,
        )?;
        Ok(MnistReport {
            n,
            histogram,
            class_entropy,
            confident,
            confident_fraction: confident as f64 / n as f64,
            confident_interval: clopper_pearson(confident, n, 0.05)?,
            frechet,
        })
    }

    /// [`Judge::evaluate`] on images stored as IDX bytes (0 = black, 255 = white).
    ///
    /// # Errors
    /// As [`Judge::evaluate`].
    pub fn evaluate_u8(&self, images: &[u8], n: usize) -> Result<MnistReport> {
        check_images(images, n)?;
        self.evaluate(&bytes_to_unit(images), n)
    }

    /// The Fréchet distance of [`FLOOR_SIZE`] training images (a fixed seeded choice) to the
    /// reference: the distance a perfect generator of that many samples is expected to reach.
    ///
    /// # Errors
    /// [`EvalError::TooFewPoints`] when `train` holds fewer than [`FLOOR_SIZE`] images.
    pub fn floor(&self, train: &Mnist) -> Result<f64> {
        if train.len() < FLOOR_SIZE {
            return Err(EvalError::TooFewPoints {
                what: "training images",
                min: FLOOR_SIZE,
                got: train.len(),
            });
        }
        let images = gather(train, &fixed_subset(train.len(), FLOOR_SIZE, 1));
        Ok(self.evaluate_u8(&images, FLOOR_SIZE)?.frechet)
    }
}

fn check_images<T>(images: &[T], n: usize) -> Result<()> {
    if images.len() != n * PIXELS {
        return Err(EvalError::DimensionMismatch {
            what: "image values (n × 784)",
            expected: n * PIXELS,
            got: images.len(),
        });
    }
    Ok(())
}

/// Class probabilities (row-major `n × 10`) and features (row-major `n × features`, in f64) of
/// the images with pixels on `[0, 1]` in `images` (row-major `n × 784`), in batches of 250.
pub fn infer<B: Backend>(
    net: &JudgeNet<B>,
    images: &[f32],
    device: &B::Device,
) -> (Vec<f32>, Vec<f64>) {
    let mut probs = Vec::with_capacity(images.len() / PIXELS * CLASSES);
    let mut feats = Vec::new();
    for chunk in images.chunks(INFER_BATCH * PIXELS) {
        let m = chunk.len() / PIXELS;
        let x =
            Tensor::<B, 4>::from_data(TensorData::new(chunk.to_vec(), [m, 1, SIDE, SIDE]), device);
        let (f, logits) = net.features_and_logits(x);
        probs.extend(softmax(logits, 1).into_data().iter::<f32>());
        feats.extend(f.into_data().iter::<f64>());
    }
    (probs, feats)
}

/// Fraction of `images` (bytes, row-major `n × 784`) whose most probable class is the label.
pub fn accuracy<B: Backend>(
    net: &JudgeNet<B>,
    images: &[u8],
    labels: &[u8],
    device: &B::Device,
) -> f64 {
    let (probs, _) = infer(net, &bytes_to_unit(images), device);
    let hits = probs
        .chunks(CLASSES)
        .zip(labels)
        .filter(|(p, l)| argmax(p) == usize::from(**l))
        .count();
    hits as f64 / labels.len().max(1) as f64
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}
