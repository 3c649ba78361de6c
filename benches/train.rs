//! Training steps per second of seed 000's time-conditioned MLP (hidden 128 × 3, sinusoidal time
//! embedding 128 + 2-layer MLP) with each score-matching loss, batch 256, one full step each
//! (loss, backward, global-norm clipping, Adam, EMA), on the feature-selected backend
//! (`--features flex` for Flex; NdArray by default).
//!
//! The DDPM ε-loss step is the same work as `python ../shared/perf/torch_ref.py dsm`; run both in
//! one sitting and compare (see the score-train README section of the report):
//!
//! ```text
//! cargo bench --bench train -- ddpm_eps && python /work/shared/perf/torch_ref.py dsm
//! ```
//!
//! Set `SCORE_BENCH_FULL=1` for criterion's full sampling; the default is a short CI-sized run.

use std::time::Duration;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use score_sde::backend::SelectedAutodiff;
use score_sde::score_core::{AnySde, GaussianMixture, NoiseKey, NoiseSource, VeSde, VpSde};
use score_sde::score_nets::cpu_ops::with_reference_ops;
use score_sde::score_nets::{
    EnergyMlpConfig, NoiseConditionalEnergyConfig, Parameterization, ScoreModel,
    TimeEmbeddingConfig, TimeMlp, TimeMlpConfig,
};
use score_sde::score_train::{
    AsEnergy, AsOutput, DdpmLoss, DenoisingScoreMatching, ExplicitScoreMatching, FusedAdam, Loss,
    MultiScaleDsm, SdeLoss, SlicedScoreMatching, Trainer, TrainerConfig,
};

type B = SelectedAutodiff;
const BATCH: usize = 256;

fn full() -> bool {
    std::env::var_os("SCORE_BENCH_FULL").is_some()
}

/// Seed 000's network: 2 → [128, 128, 128] → 2 with a 128-wide sinusoidal embedding + MLP.
fn seed_mlp() -> TimeMlp<B> {
    TimeMlpConfig::new(2)
        .with_hidden_size(128)
        .with_num_layers(3)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(128))
        .init::<B>(&Default::default())
        .expect("valid config")
}

fn batch() -> Tensor<B, 2> {
    GaussianMixture::ring(8, 4.0, 0.2).unwrap().sample::<B>(
        BATCH,
        &NoiseSource::new(0),
        NoiseKey::new(0, 0),
        &Default::default(),
    )
}

/// The group every step is timed in: one step an element; CI-sized unless `SCORE_BENCH_FULL`.
fn step_group(c: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group("train_step_b256");
    group.throughput(Throughput::Elements(1));
    if !full() {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
    }
    group
}

/// Benchmarks one optimisation step of `model` under `loss`.
fn bench_loss<M, L>(c: &mut Criterion, name: &str, model: M, loss: L)
where
    M: AutodiffModule<B> + Clone,
    L: Loss<B, M, 2>,
{
    let config = TrainerConfig::new()
        .with_steps(u64::MAX)
        .with_learning_rate(1e-3);
    let mut trainer = Trainer::new(model, config).expect("valid config");
    let x0 = batch();
    let mut group = step_group(c);
    // `train_step` reads the loss and the gradient norm back, so the step has run when it returns.
    group.bench_function(name, |b| {
        b.iter(|| trainer.train_step(&loss, x0.clone()).expect("finite loss"))
    });
    group.finish();
}

/// Where the DDPM step's time goes: the loss's forward and backward passes alone, without the
/// gradient collection, clipping, Adam and EMA of a full step.
fn bench_forward_backward(c: &mut Criterion) {
    let model = seed_mlp();
    let loss = DdpmLoss::new(1e-4, 0.02, 1000).unwrap();
    let x0 = batch();
    let noise = NoiseSource::new(0);
    let mut group = step_group(c);
    group.bench_function("ddpm_eps_forward_backward_only", |b| {
        b.iter(|| {
            let l = loss.loss(&model, x0.clone(), &noise, 0);
            let grads = l.backward();
            model.output.weight.grad(&grads).map(|g| g.into_data())
        })
    });
    // The like-for-like twin of `torch_ref.py dsm`'s step: loss, backward and Adam (the trainer's
    // `FusedAdam`), nothing else (no clipping, EMA or loss read-back, which the full `Trainer`
    // step adds).
    let mut optim = FusedAdam::init::<B, TimeMlp<B>>(&AdamConfig::new());
    let mut bare = Some(seed_mlp());
    let mut step = 0u64;
    group.bench_function("ddpm_eps_loss_backward_adam", |b| {
        b.iter(|| {
            let m = bare.take().expect("model between steps");
            let l = loss.loss(&m, x0.clone(), &noise, step);
            let grads = GradientsParams::from_grads(l.backward(), &m);
            bare = Some(optim.step(1e-3, m, grads));
            step += 1;
        })
    });
    group.finish();
}

/// One bare step (loss, backward, Adam; nothing else) of `model` under `loss`, timed as `name`;
/// with `reference`, the loss and its backward run on burn's own ops (`with_reference_ops`:
/// nested autodiff for the second-order losses), the A-B pair of one binary.
fn bench_bare<M, L>(c: &mut Criterion, name: &str, model: M, loss: L, reference: bool)
where
    M: AutodiffModule<B> + Clone,
    L: Loss<B, M, 2>,
{
    let x0 = batch();
    let noise = NoiseSource::new(0);
    let mut group = step_group(c);
    let mut optim = FusedAdam::init::<B, M>(&AdamConfig::new());
    let mut bare = Some(model);
    let mut step = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            let m = bare.take().expect("model between steps");
            let grads = || {
                let l = loss.loss(&m, x0.clone(), &noise, step);
                GradientsParams::from_grads(l.backward(), &m)
            };
            let grads = if reference {
                with_reference_ops(grads)
            } else {
                grads()
            };
            bare = Some(optim.step(1e-3, m, grads));
            step += 1;
        })
    });
    group.finish();
}

/// The like-for-like twins of the second-order PyTorch steps, each beside the same step on
/// nested autodiff:
/// - `energy_dsm_2x128_*`: `../shared/perf/torch_energy_dsm.py`, denoising score matching at
///   σ = 0.5 of an energy MLP 2 → 128 → 128 → 1 (SiLU), whose score `−∇x E` makes it second
///   order;
/// - `esm_exact_trace_*`, `ssm_vr_1proj_*`: `benches/reference/torch_second_order.py`, explicit
///   (exact trace) and sliced (one Gaussian projection, variance-reduced) score matching of
///   seed 000's MLP read as the score.
fn bench_second_order_bare(c: &mut Criterion) {
    let energy = || {
        EnergyMlpConfig::new(2)
            .with_num_layers(2)
            .init::<B>(&Default::default())
            .unwrap()
    };
    let dsm = || {
        DenoisingScoreMatching::new(0.5)
            .unwrap()
            .with_view(AsEnergy)
    };
    let esm = || ExplicitScoreMatching::new().with_view(AsOutput);
    let ssm = || SlicedScoreMatching::new(1).unwrap().with_view(AsOutput);
    for (suffix, reference) in [("loss_backward_adam", false), ("nested_autodiff", true)] {
        let name = format!("energy_dsm_2x128_{suffix}");
        bench_bare(c, &name, energy(), dsm(), reference);
        let name = format!("esm_exact_trace_{suffix}");
        bench_bare(c, &name, seed_mlp(), esm(), reference);
        let name = format!("ssm_vr_1proj_{suffix}");
        bench_bare(c, &name, seed_mlp(), ssm(), reference);
    }
}

fn benches(c: &mut Criterion) {
    let ve = VeSde::new(0.01, 10.0).unwrap();
    let vp = VpSde::default();
    let score_model = |sde: AnySde| ScoreModel::new(seed_mlp(), sde, Parameterization::Noise);
    // The reference comparison: DDPM's ε-loss over 1000 linear betas, the net's raw output as ε̂.
    bench_forward_backward(c);
    bench_second_order_bare(c);
    bench_loss(
        c,
        "ddpm_eps",
        seed_mlp(),
        DdpmLoss::new(1e-4, 0.02, 1000).unwrap(),
    );
    bench_loss(
        c,
        "sde_vp",
        score_model(AnySde::Vp(vp)),
        SdeLoss::new(vp).unwrap(),
    );
    bench_loss(
        c,
        "sde_ve",
        score_model(AnySde::Ve(ve)),
        SdeLoss::new(ve).unwrap(),
    );
    bench_loss(
        c,
        "dsm_sigma0.5",
        score_model(AnySde::Ve(ve)),
        DenoisingScoreMatching::new(0.5).unwrap().with_time(0.5),
    );
    bench_loss(
        c,
        "ncsn_l10",
        score_model(AnySde::Ve(ve)),
        MultiScaleDsm::new(ve, 10).unwrap(),
    );
    // Second-order losses differentiate the network's input Jacobian (nested autodiff).
    bench_loss(
        c,
        "ssm_vr_1proj",
        seed_mlp(),
        SlicedScoreMatching::new(1).unwrap().with_view(AsOutput),
    );
    bench_loss(
        c,
        "esm_exact_trace",
        seed_mlp(),
        ExplicitScoreMatching::new().with_view(AsOutput),
    );
    // Energy networks (seed 001): s = −∇x E, so DSM is second order and ESM third order.
    let energy = || {
        EnergyMlpConfig::new(2)
            .init::<B>(&Default::default())
            .unwrap()
    };
    bench_loss(
        c,
        "energy_dsm",
        energy(),
        DenoisingScoreMatching::new(0.5)
            .unwrap()
            .with_view(AsEnergy),
    );
    let nc_energy = NoiseConditionalEnergyConfig::new(2)
        .init::<B>(&Default::default())
        .unwrap();
    bench_loss(
        c,
        "energy_ncsn_l10",
        nc_energy,
        MultiScaleDsm::new(ve, 10).unwrap().with_view(AsEnergy),
    );
    bench_loss(
        c,
        "energy_esm",
        energy(),
        ExplicitScoreMatching::new().with_view(AsEnergy),
    );
}

criterion_group!(train, benches);
criterion_main!(train);
