//! Training the judge: cross-entropy on MNIST's training set, plus outlier exposure (Hendrycks
//! et al. 2019, eq. 1): every minibatch also holds junk images (uniform and Gaussian pixel noise,
//! heavily blurred digits) whose target is the uniform distribution over the ten classes, so that
//! the trained net is unsure on what is not a digit. Adam with a cosine learning-rate decay.

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use score_core::{NoiseKey, NoiseSource};

use super::junk::box_blur;
use super::net::{CLASSES, JudgeNet, JudgeNetConfig, PIXELS, SIDE};
use crate::error::EvalError;

/// How the judge is trained. The defaults produce the shipped weights (`data/judge/`).
#[derive(Config, Debug, PartialEq)]
pub struct JudgeTrainingConfig {
    /// The network.
    pub net: JudgeNetConfig,
    /// Passes over the training set.
    #[config(default = 3)]
    pub epochs: usize,
    /// Real digits per minibatch.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Junk images per minibatch (a third uniform noise, a third Gaussian noise, a third
    /// blurred digits), with the uniform distribution over the classes as target.
    #[config(default = 48)]
    pub outliers_per_batch: usize,
    /// Adam's initial learning rate, decayed to zero along a half cosine.
    #[config(default = 2e-3)]
    pub learning_rate: f64,
    /// Seed of the minibatch order and of the junk images.
    #[config(default = 0)]
    pub seed: u64,
}

impl JudgeTrainingConfig {
    /// The configuration of the shipped judge.
    pub fn shipped() -> Self {
        Self::new(JudgeNetConfig::new())
    }
}

/// A permutation of `0..n` drawn from `noise` under `key` (Fisher–Yates).
pub(crate) fn permutation(n: usize, noise: &NoiseSource, key: NoiseKey) -> Vec<usize> {
    let u = noise.uniform_f64(1, n, key);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((u[i] * (i + 1) as f64) as usize).min(i);
        p.swap(i, j);
    }
    p
}

/// Trains a judge on `n` MNIST images (`images`: row-major `n × 784` bytes, `labels`: `n` class
/// indices) on the autodiff backend `A`, with a progress bar when `progress` is set, and returns
/// the trained network on `A`'s inner backend.
///
/// # Errors
/// [`EvalError::DimensionMismatch`] when the buffers disagree, [`EvalError::InvalidParameter`]
/// for a label above 9 or an empty configuration (no epoch, no batch).
pub fn train_judge<A: AutodiffBackend>(
    config: &JudgeTrainingConfig,
    images: &[u8],
    labels: &[u8],
    device: &A::Device,
    progress: bool,
) -> crate::Result<JudgeNet<A::InnerBackend>> {
    let n = labels.len();
    if images.len() != n * PIXELS {
        return Err(EvalError::DimensionMismatch {
            what: "training images (bytes)",
            expected: n * PIXELS,
            got: images.len(),
        });
    }
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= CLASSES) {
        return Err(EvalError::InvalidParameter {
            name: "label",
            value: l as f64,
            reason: "must be a class index below 10",
        });
    }
    for (name, v) in [("epochs", config.epochs), ("batch_size", config.batch_size)] {
        if v == 0 || n < config.batch_size {
            return Err(EvalError::InvalidParameter {
                name,
                value: v as f64,
                reason: "must be positive, with at least one batch of training images",
            });
        }
    }
    let noise = NoiseSource::new(config.seed);
    let (order_noise, junk_noise) = (noise.derive(1), noise.derive(2));
    let steps_per_epoch = n / config.batch_size;
    let total = (steps_per_epoch * config.epochs) as u64;
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "judge {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut model: JudgeNet<A> = config.net.init(device);
    let mut optim = AdamConfig::new().init::<A, JudgeNet<A>>();
    let (b, k) = (config.batch_size, config.outliers_per_batch);
    let rows = b + k;
    let mut step = 0u64;
    for epoch in 0..config.epochs {
        let order = permutation(n, &order_noise, NoiseKey::new(epoch as u64, 0));
        for chunk in order.chunks_exact(b) {
            let mut x = Vec::with_capacity(rows * PIXELS);
            let mut target = vec![0.0f32; rows * CLASSES];
            for (r, &i) in chunk.iter().enumerate() {
                x.extend(
                    images[i * PIXELS..(i + 1) * PIXELS]
                        .iter()
                        .map(|&p| p as f32 / 255.0),
                );
                target[r * CLASSES + labels[i] as usize] = 1.0;
            }
            x.extend(junk_batch(k, images, n, &junk_noise, step));
            target[b * CLASSES..].fill(1.0 / CLASSES as f32);
            let x = Tensor::<A, 4>::from_data(TensorData::new(x, [rows, 1, SIDE, SIDE]), device);
            let target =
                Tensor::<A, 2>::from_data(TensorData::new(target, [rows, CLASSES]), device);
            let loss = -(log_softmax(model.forward(x), 1) * target)
                .sum_dim(1)
                .mean();
            let progress_frac = step as f64 / total as f64;
            let lr =
                config.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress_frac).cos());
            if step.is_multiple_of(20) {
                let l: f32 = loss.clone().into_scalar().elem();
                bar.set_message(format!("epoch {} loss {l:.4}", epoch + 1));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            step += 1;
            bar.inc(1);
        }
    }
    bar.finish();
    Ok(model.valid())
}

/// The `k` junk images of training step `step`: a third uniform noise, a third Gaussian noise of
/// random mean in `[0, 0.5]` and standard deviation in `[0.1, 0.6]` (clipped to `[0, 1]`; this
/// covers noise with MNIST's own pixel moments), the rest training digits box-blurred with a
/// radius of 3 to 5 pixels.
fn junk_batch(k: usize, images: &[u8], n: usize, noise: &NoiseSource, step: u64) -> Vec<f32> {
    let (ku, kg) = (k / 3, k / 3);
    let kb = k - ku - kg;
    let mut out = Vec::with_capacity(k * PIXELS);
    out.extend(
        noise
            .uniform_f64(ku, PIXELS, NoiseKey::new(step, 0))
            .into_iter()
            .map(|v| v as f32),
    );
    let params = noise.uniform_f64(kg + kb, 2, NoiseKey::new(step, 1));
    let z = noise.normal_f64(kg, PIXELS, NoiseKey::new(step, 2));
    for (row, p) in z.chunks(PIXELS).zip(params.chunks(2)) {
        let (mean, std) = (0.5 * p[0], 0.1 + 0.5 * p[1]);
        out.extend(row.iter().map(|z| (mean + std * z).clamp(0.0, 1.0) as f32));
    }
    for p in params[2 * kg..].chunks(2) {
        let i = ((p[0] * n as f64) as usize).min(n - 1);
        let radius = 3 + ((p[1] * 3.0) as usize).min(2);
        let img: Vec<f32> = images[i * PIXELS..(i + 1) * PIXELS]
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect();
        out.extend(box_blur(&img, radius));
    }
    out
}
