//! The 2-D demo: the ring of 8 Gaussians (radius 4, std 0.2).
//!
//! 1. Sample it with the predictor–corrector sampler driven by its exact score.
//! 2. Train a time-conditioned MLP with the continuous-time SDE loss (VE SDE), with a progress
//!    bar, and sample the trained model with the same sampler.
//! 3. Draw the samples, the learned and exact score fields, and the loss curve as PNG files, and
//!    print the sliced Wasserstein distance of each sample set to exact samples.
//!
//! `cargo run --release --example ring_2d -- --steps 4000 --out docs/img`

use std::path::PathBuf;

use anyhow::Result;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use clap::Parser;
use plotters::style::{BLACK, BLUE, RED};
use score_sde::plot::{self, PointSet};
use score_sde::score_core::tensor::{from_f64, to_f64};
use score_sde::score_core::{AnySde, GaussianMixture, NoiseKey, NoiseSource, ScoreFn, VeSde};
use score_sde::score_nets::{Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlpConfig};
use score_sde::score_sample::{PcSamplerConfig, TimeGrid};
use score_sde::score_train::{EmaConfig, SdeLoss, Trainer, TrainerConfig};

type I = NdArray<f32>;
type B = Autodiff<I>;

#[derive(Parser, Debug)]
#[command(about = "Score-based generative modelling of a 2-D ring of Gaussians")]
struct Args {
    /// Training steps (batch 256).
    #[arg(long, default_value_t = 4000)]
    steps: u64,
    /// Samples drawn from each sampler.
    #[arg(long, default_value_t = 4000)]
    samples: usize,
    /// Sampler steps.
    #[arg(long, default_value_t = 500)]
    sampler_steps: usize,
    /// Output directory for the PNG figures and the loss history.
    #[arg(long, default_value = "runs/ring_2d")]
    out: PathBuf,
}

/// Sliced 2-Wasserstein distance (squared, averaged over 64 evenly spaced directions) between
/// two sample sets, from score-eval.
fn sliced_w2(a: &[f64], b: &[f64]) -> f64 {
    score_eval::sliced_w2_squared(a, b, 2, 64).expect("finite 2-D samples")
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let dev = Default::default();
    let ring = GaussianMixture::ring(8, 4.0, 0.2)?;
    let sde = VeSde::new(0.05, 10.0)?;
    let n = args.samples;
    let exact = ring.sample_f64(n, &NoiseSource::new(1), NoiseKey::new(0, 0));
    let exact2 = ring.sample_f64(n, &NoiseSource::new(2), NoiseKey::new(0, 0));
    println!(
        "two exact sample sets: sliced W2² = {:.4}",
        sliced_w2(&exact, &exact2)
    );

    // 1. The sampler on the exact score.
    let sampler = PcSamplerConfig::new().init(sde)?;
    let grid = TimeGrid::reverse(&sde, 1e-3, args.sampler_steps)?;
    let target = ring.diffused(sde);
    let out = sampler.sample::<I, 2, _>(&target, &grid, [n, 2], &NoiseSource::new(3), &dev)?;
    let pc_exact = to_f64(out.x);
    println!(
        "PC sampler, exact score: sliced W2² = {:.4} ({} score evaluations)",
        sliced_w2(&pc_exact, &exact),
        out.nfe
    );

    // 2. Train a network with the continuous-time loss.
    let net = TimeMlpConfig::new(2)
        .with_seed(0)
        .with_hidden_size(128)
        .with_num_layers(3)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(64))
        .init::<B>(&dev)?;
    let model = ScoreModel::new(net, AnySde::Ve(sde), Parameterization::Noise);
    let config = TrainerConfig::new()
        .with_steps(args.steps)
        .with_learning_rate(2e-3)
        .with_warmup_steps(100)
        .with_ema(EmaConfig::new().with_decay(0.995))
        .with_history_csv(Some(args.out.join("ring_loss.csv")))
        .with_progress(true);
    let mut trainer = Trainer::new(model, config)?;
    let data =
        |step: u64| ring.sample::<B>(256, &NoiseSource::new(77), NoiseKey::new(step, 0), &dev);
    let report = trainer.fit(&SdeLoss::new(sde)?, data, &mut ())?;
    println!(
        "trained {} steps at {:.0} steps/s",
        args.steps, report.steps_per_sec
    );
    let model = trainer.ema();
    let out = sampler.sample::<I, 2, _>(model, &grid, [n, 2], &NoiseSource::new(4), &dev)?;
    let pc_trained = to_f64(out.x);
    println!(
        "PC sampler, trained score: sliced W2² = {:.4}",
        sliced_w2(&pc_trained, &exact)
    );

    // 3. Figures.
    let set = |label, xy, color| PointSet { label, xy, color };
    plot::scatter_panels(
        &args.out.join("ring_samples.png"),
        "8-ring: exact samples vs predictor-corrector samples",
        &[
            set("exact", &exact, BLACK),
            set("PC, exact score", &pc_exact, BLUE),
            set("PC, trained MLP", &pc_trained, RED),
        ],
        6.0,
    )?;
    let side = 21;
    let pts: Vec<f64> = (0..side * side)
        .flat_map(|k| {
            let (i, j) = (k / side, k % side);
            let c = |u: usize| -6.0 + 12.0 * u as f64 / (side - 1) as f64;
            [c(j), c(i)]
        })
        .collect();
    let t = 0.2;
    let xs = from_f64::<I, 2>(&pts, [side * side, 2], &dev);
    let ts = Tensor::<I, 1>::full([side * side], t, &dev);
    let learned = to_f64(model.score(xs.clone(), ts.clone()));
    let exact_field = to_f64(target.score(xs, ts));
    let bg = set("data", &exact, BLACK);
    plot::score_field(
        &args.out.join("ring_score_exact.png"),
        &format!("exact score at t = {t}"),
        &pts,
        &exact_field,
        Some(bg),
        6.0,
    )?;
    plot::score_field(
        &args.out.join("ring_score_learned.png"),
        &format!("learned score at t = {t}"),
        &pts,
        &learned,
        Some(bg),
        6.0,
    )?;
    let (steps, losses): (Vec<f64>, Vec<f64>) = trainer
        .history()
        .iter()
        .map(|r| (r.step as f64, r.loss))
        .unzip();
    plot::loss_curve(
        &args.out.join("ring_loss.png"),
        "continuous-time SDE loss (VE), batch 256",
        &steps,
        &losses,
    )?;
    println!("figures written to {}", args.out.display());
    Ok(())
}
