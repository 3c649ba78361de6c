//! The main job: train a VE-SDE score model on MNIST, draw digits, and judge them.
//!
//! `cargo run --release --example mnist_ve_sde` runs the defaults (see the README for what they
//! give and how long they take); `-- --help` lists the options. The pipeline itself is
//! [`score_sde::mnist::run`]; this file is its command line.
//!
//! Backends: Flex on the CPU by default; `--features wgpu` or `--features cuda` run the same code
//! on a GPU.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use score_sde::backend::{Selected, SelectedAutodiff};
use score_sde::mnist::{MnistJobConfig, judge_idx, run};
use score_sde::score_eval::judge::MnistReport;
use score_sde::score_sample::{
    CorrectorKind, DpmSolverConfig, EdmConfig, OdeSolver, PcSamplerConfig, ProbabilityFlowConfig,
    SamplerConfig,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SamplerName {
    /// EDM's Heun sampler (Karras et al. 2022, Algorithm 2): 2N − 1 evaluations.
    EdmHeun,
    /// DPM-Solver++ 2M: N evaluations.
    Dpm2m,
    /// Predictor–corrector: reverse diffusion + one Langevin corrector step (snr configurable).
    Pc,
    /// Reverse-diffusion predictor alone (Euler–Maruyama-like), no corrector.
    ReverseDiffusion,
    /// The probability-flow ODE with Heun's method on a uniform time grid.
    Ode,
}

/// Train a VE-SDE score model on MNIST and draw digits.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate of Adam.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warm-up steps of the learning rate.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// EMA decay of the weights sampled from.
    #[arg(long, default_value_t = 0.999)]
    ema: f64,
    /// Base channel count of the U-Net (32: `UNetConfig::mnist()`).
    #[arg(long, default_value_t = 32)]
    channels: usize,
    /// The sampler.
    #[arg(long, value_enum, default_value_t = SamplerName::EdmHeun)]
    sampler: SamplerName,
    /// Sampler steps.
    #[arg(long, default_value_t = 128)]
    sample_steps: usize,
    /// EDM's stochastic churn `S_churn` for `edm-heun` (0: the deterministic sampler); above 0
    /// with EDM's other stochastic settings (`S_tmin` 0.05, `S_tmax` 50, `S_noise` 1.003).
    #[arg(long, default_value_t = 80.0)]
    churn: f64,
    /// Signal-to-noise ratio of the PC sampler's Langevin corrector.
    #[arg(long, default_value_t = 0.16)]
    snr: f64,
    /// Number of samples drawn and judged.
    #[arg(long, default_value_t = 256)]
    samples: usize,
    /// Test images whose bits/dim is estimated by the probability-flow likelihood (0: skip).
    #[arg(long, default_value_t = 16)]
    bpd_images: usize,
    /// Output directory.
    #[arg(long, default_value = "out/mnist_ve_sde")]
    out: PathBuf,
    /// Continue from the checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
    /// Skip training: sample and judge from this checkpoint.
    #[arg(long)]
    sample_only: Option<PathBuf>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory of the four MNIST files (default: the repository's data/mnist).
    #[arg(long, env = "SCORE_SDE_MNIST_DIR")]
    data_dir: Option<PathBuf>,
    /// Train on the first this many images only.
    #[arg(long)]
    train_images: Option<usize>,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: u64,
    /// Skip the classifier judge.
    #[arg(long)]
    no_judge: bool,
    /// Only judge the images of this IDX file (uint8, n × 28 × 28, e.g. another program's
    /// samples) and exit; may be given several times.
    #[arg(long, value_name = "FILE")]
    judge_idx: Vec<PathBuf>,
}

fn sampler(args: &Args) -> SamplerConfig {
    match args.sampler {
        SamplerName::EdmHeun if args.churn > 0.0 => match MnistJobConfig::default_sampler() {
            SamplerConfig::Edm(edm) => SamplerConfig::Edm(edm.with_s_churn(args.churn)),
            other => other,
        },
        SamplerName::EdmHeun => SamplerConfig::Edm(EdmConfig::new().with_s_churn(args.churn)),
        SamplerName::Dpm2m => SamplerConfig::DpmSolver(DpmSolverConfig::new()),
        SamplerName::Pc => SamplerConfig::Pc(PcSamplerConfig::new().with_corrector(
            CorrectorKind::Langevin {
                snr: args.snr,
                n_steps: 1,
            },
        )),
        SamplerName::ReverseDiffusion => {
            SamplerConfig::Pc(PcSamplerConfig::new().with_corrector(CorrectorKind::None))
        }
        SamplerName::Ode => SamplerConfig::ProbabilityFlow(
            ProbabilityFlowConfig::new().with_solver(OdeSolver::Heun),
        ),
    }
}

/// The judge's verdict on one set of images, as one line.
fn verdict(j: &MnistReport) -> String {
    let (lo, hi) = j.confident_interval;
    format!(
        "confident (p ≥ 0.9) {:.1} % [95 % CI {:.1}–{:.1} %], class entropy {:.3} nats (uniform 2.303), MNIST-FID {:.2}, classes {:?}",
        100.0 * j.confident_fraction,
        100.0 * lo,
        100.0 * hi,
        j.class_entropy,
        j.frechet,
        j.histogram
    )
}

fn main() -> anyhow::Result<()> {
    // Freed activation buffers stay in the process for the next step (10–15 % of a CPU step).
    score_sde::memory::keep_freed_memory();
    let args = Args::parse();
    if cfg!(debug_assertions) {
        eprintln!(
            "note: this is an unoptimised build, many times slower; for the fast one run\n      \
             cargo run --release --example mnist_ve_sde"
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(score_sde::score_data::mnist::default_dir);
    let mut cfg = MnistJobConfig::new(data_dir);
    if !args.judge_idx.is_empty() {
        let device = Default::default();
        for path in &args.judge_idx {
            let (j, floor) = judge_idx::<SelectedAutodiff, Selected>(
                path,
                &cfg.data_dir,
                &cfg.judge_dir,
                &device,
            )
            .with_context(|| format!("judging {}", path.display()))?;
            println!(
                "{}: {} images, {}; MNIST-FID floor {floor:.2}",
                path.display(),
                j.n,
                verdict(&j)
            );
        }
        return Ok(());
    }
    cfg.out_dir = args.out.clone();
    cfg.steps = args.steps;
    cfg.batch_size = args.batch_size;
    cfg.learning_rate = args.lr;
    cfg.warmup_steps = args.warmup;
    cfg.ema_decay = args.ema;
    cfg.unet = cfg.unet.clone().with_base_channels(args.channels);
    cfg.sampler = sampler(&args);
    cfg.sample_steps = args.sample_steps;
    cfg.samples = args.samples;
    cfg.bpd_images = args.bpd_images;
    cfg.resume = args.resume;
    cfg.sample_only = args.sample_only.clone();
    cfg.seed = args.seed;
    cfg.train_images = args.train_images;
    cfg.checkpoint_every = args.checkpoint_every;
    cfg.judge = !args.no_judge;

    let device = Default::default();
    let report = run::<SelectedAutodiff, Selected>(&cfg, &device)
        .with_context(|| format!("the MNIST job (outputs in {})", cfg.out_dir.display()))?;
    let w = &report.wall_seconds;
    println!(
        "backend {}: {} steps ({:.2} steps/s), sampler {:?} {} NFE; wall {:.0} s (train {:.0}, sample {:.0}, judge {:.0}, bits/dim {:.0})",
        report.backend,
        report.step,
        report.steps_per_sec,
        args.sampler,
        report.nfe,
        w.total,
        w.train,
        w.sample,
        w.judge,
        w.bpd
    );
    if let Some(j) = &report.judge {
        println!("judge on {} samples: {}", j.n, verdict(j));
    }
    if let Some(f) = report.fid_floor {
        println!("MNIST-FID floor (train vs test): {f:.2}");
    }
    if let Some((b, se)) = report.bits_per_dim {
        println!(
            "bits/dim: {b:.3} ± {se:.3} ({} test images)",
            cfg.bpd_images
        );
    }
    println!("outputs in {}", cfg.out_dir.display());
    Ok(())
}
