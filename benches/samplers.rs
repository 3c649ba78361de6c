//! Sampler throughput in sample·steps per second on the 2-D mixture of 8 Gaussians on a ring
//! (radius 4, std 0.2; `score_sample::testing::ring`) driven by score-core's exact tensor score
//! of the diffused mixture (`GaussianMixture::diffused`, the score users call), on NdArray (and
//! Flex with `--features flex`).
//!
//! The `pc_rd_langevin` figure compares with `../shared/perf/torch_ref.py`'s `pc_gmm_ve` line:
//! same SDE (VE, σ 0.01 → 10), same predictor (reverse diffusion), same corrector (one Langevin
//! step, snr 0.16), two score evaluations per step. Each step's noise comes from the
//! workspace's counter-based `NoiseSource` (host-side); the `step_parts` group times one
//! `NoiseSource::normal` draw and one score evaluation alone at the same size (and the noise
//! draw at 10,000 × 2), so one can see which dominates a sampler step.
//!
//! Sizes: by default a short CI run (1,000 samples × 10 steps, few criterion samples); set
//! `SCORE_BENCH_FULL=1` for the full size (10,000 samples, 100 steps per sampler run). Per-step
//! cost does not depend on the number of steps, so sample·steps/s is comparable with the
//! reference's 1,000-step run.

use burn::backend::NdArray;
use burn::tensor::{Tensor, backend::Backend, cast::ToElement};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use score_sample::testing::ring;
use score_sde::score_core::{AnySde, Marginal, NoiseKey, NoiseSource, ScoreFn, VeSde, schedule};
use score_sde::score_sample::{
    AdaptiveConfig, AdaptiveSdeConfig, AncestralVariance, AnnealedLangevinConfig, CorrectorKind,
    DdimConfig, DdpmSamplerConfig, DpmSolverConfig, DpmSolverKind, EdmConfig, LangevinConfig,
    OdeSolver, PcSamplerConfig, PredictorKind, ProbabilityFlowConfig, Sampler, SamplerConfig,
    Samples, Start, TimeGrid,
};

struct Size {
    n: usize,
    steps: usize,
}

fn size() -> Size {
    if std::env::var_os("SCORE_BENCH_FULL").is_some() {
        Size {
            n: 10_000,
            steps: 100,
        }
    } else {
        Size {
            n: 1_000,
            steps: 10,
        }
    }
}

fn bench_backend<B: Backend>(c: &mut Criterion, backend: &str) {
    let dev = B::Device::default();
    let Size { n, steps } = size();
    let noise = NoiseSource::new(0);
    let ve = VeSde::new(0.01, 10.0).unwrap();
    let ring = ring();
    let score = ring.diffused(ve);
    let grid = TimeGrid::reverse(&ve, 1e-5, steps).unwrap();
    let mut group = c.benchmark_group(format!("samplers/{backend}/n{n}"));
    group.throughput(Throughput::Elements((n * steps) as u64));

    let pcs = [
        (
            "pc_rd_langevin",
            PredictorKind::ReverseDiffusion,
            CorrectorKind::Langevin {
                snr: 0.16,
                n_steps: 1,
            },
        ),
        (
            "pc_euler_maruyama",
            PredictorKind::EulerMaruyama,
            CorrectorKind::None,
        ),
        (
            "pc_reverse_diffusion",
            PredictorKind::ReverseDiffusion,
            CorrectorKind::None,
        ),
        (
            "pc_ancestral",
            PredictorKind::Ancestral(AncestralVariance::Posterior),
            CorrectorKind::None,
        ),
        (
            "pc_none_annealed_langevin",
            PredictorKind::None,
            CorrectorKind::AnnealedLangevin {
                snr: 0.16,
                n_steps: 1,
            },
        ),
    ];
    for (name, predictor, corrector) in pcs {
        let sampler = PcSamplerConfig::new()
            .with_predictor(predictor)
            .with_corrector(corrector)
            .init(ve)
            .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = sampler
                    .sample::<B, 2, _>(&score, &grid, [n, 2], &noise, &dev)
                    .unwrap();
                out.x.into_data()
            })
        });
    }

    // Annealed Langevin: `steps` levels × 1 step per level.
    let ald = AnnealedLangevinConfig::new(5e-6)
        .with_steps_per_level(1)
        .with_denoise(false)
        .init(ve)
        .unwrap();
    let levels = TimeGrid::uniform(1.0, 0.0, steps - 1).unwrap();
    group.bench_function("annealed_langevin", |b| {
        b.iter(|| {
            ald.sample::<B, 2, _>(&score, &levels, [n, 2], &noise, &dev)
                .unwrap()
                .x
                .into_data()
        })
    });

    // Langevin and MALA on the static ring (score-core's mixture score and energy).
    let x0 = ring.sample::<B>(n, &noise, NoiseKey::new(0, 0), &dev);
    let langevin = LangevinConfig::new(0.01, steps);
    let ula = langevin.init().unwrap();
    group.bench_function("langevin", |b| {
        b.iter(|| {
            ula.sample(&ring, x0.clone(), 0.0, &noise)
                .unwrap()
                .x
                .into_data()
        })
    });
    let mala = langevin.init_mala().unwrap();
    group.bench_function("mala_core_mixture", |b| {
        b.iter(|| {
            mala.sample(&ring, x0.clone(), 0.0, &noise)
                .unwrap()
                .samples
                .x
                .into_data()
        })
    });

    // DDPM's linear betas 1e-4 → 0.02 over `steps` steps, with the exact ε of the ring:
    // ε(x, i) = −√(1 − ᾱ_i)·∇log p_i(x), p_i the ring pushed through √ᾱ_i·x_0 + √(1 − ᾱ_i)·ε
    // (score-core's tensor score of that mixture). Step i arrives as t = ddpm_time(i, N).
    let ddpm = DdpmSamplerConfig::new().with_n_steps(steps).init().unwrap();
    let abar = ddpm.alphas_cumprod().to_vec();
    let eps_model = |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let i = schedule::ddpm_step(t.clone().slice(0..1).into_scalar().to_f64(), steps);
        let s = (1.0 - abar[i]).sqrt();
        let k = Marginal {
            mean_coef: abar[i].sqrt(),
            std: s,
        };
        ring.perturbed(k).score(x, t).mul_scalar(-s)
    };
    group.bench_function("ddpm", |b| {
        b.iter(|| {
            ddpm.sample::<B, 2, _>(&eps_model, [n, 2], &noise, &dev)
                .unwrap()
                .x
                .into_data()
        })
    });

    for (name, solver) in [
        ("ode_euler", OdeSolver::Euler),
        ("ode_heun", OdeSolver::Heun),
        ("ode_rk4", OdeSolver::Rk4),
    ] {
        let ode = ProbabilityFlowConfig::new()
            .with_solver(solver)
            .init(ve)
            .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                ode.sample::<B, 2, _>(&score, &grid, [n, 2], &noise, &dev)
                    .unwrap()
                    .x
                    .into_data()
            })
        });
    }
    group.finish();

    // The few-step samplers, each picked by value (SamplerConfig) and run through the one
    // Sampler call on its own natural grid; throughput in sample·NFE per second, since their NFE
    // per step differ (EDM 2 per step, 3S 3, the adaptive solver its own).
    let mut group = c.benchmark_group(format!("samplers/{backend}/n{n}/few_step"));
    let sde = AnySde::Ve(ve);
    for (name, choice) in [
        ("ddim_eta0", SamplerConfig::Ddim(DdimConfig::new())),
        ("edm_heun", SamplerConfig::Edm(EdmConfig::new())),
        (
            "dpm_solver_2m",
            SamplerConfig::DpmSolver(DpmSolverConfig::new()),
        ),
        (
            "dpm_solver_3s",
            SamplerConfig::DpmSolver(DpmSolverConfig::new().with_kind(DpmSolverKind::Singlestep3)),
        ),
        (
            "adaptive_sde",
            SamplerConfig::AdaptiveSde(AdaptiveSdeConfig::new()),
        ),
    ] {
        let sampler = choice.init(sde).unwrap();
        let grid = sampler.grid(1e-5, steps).unwrap();
        let run = || -> Samples<B, 2> {
            sampler
                .generate(&score, &grid, Start::prior([n, 2], &dev), &noise)
                .unwrap()
        };
        group.throughput(Throughput::Elements((n * run().nfe) as u64));
        group.bench_function(name, |b| b.iter(|| run().x.into_data()));
    }
    group.finish();

    // RK45 chooses its own steps: its throughput is in sample·NFE (score evaluations) per second.
    let rk45 = ProbabilityFlowConfig::new()
        .with_solver(OdeSolver::Dopri5(AdaptiveConfig::new()))
        .init(ve)
        .unwrap();
    let end_points = TimeGrid::reverse(&ve, 1e-5, 1).unwrap();
    let nfe = rk45
        .sample::<B, 2, _>(&score, &end_points, [n, 2], &noise, &dev)
        .unwrap()
        .nfe;
    let mut group = c.benchmark_group(format!("samplers/{backend}/n{n}/per_nfe"));
    group.throughput(Throughput::Elements((n * nfe) as u64));
    group.bench_function(format!("ode_rk45_nfe{nfe}"), |b| {
        b.iter(|| {
            rk45.sample::<B, 2, _>(&score, &end_points, [n, 2], &noise, &dev)
                .unwrap()
                .x
                .into_data()
        })
    });
    group.finish();

    // One step's parts alone, per sample: the noise draw (host ChaCha8 + upload) and one exact
    // score evaluation, at the samplers' size; and the noise draw at 10,000 × 2 whatever the
    // size. A PC step with a corrector costs two of each.
    let mut group = c.benchmark_group(format!("samplers/{backend}/step_parts"));
    let mut sizes = vec![n];
    if n != 10_000 {
        sizes.push(10_000);
    }
    for m in sizes {
        group.throughput(Throughput::Elements(m as u64));
        group.bench_function(format!("noise_normal_{m}x2"), |b| {
            let mut step = 0;
            b.iter(|| {
                step += 1;
                noise
                    .normal::<B, 2>([m, 2], NoiseKey::new(step, 0), &dev)
                    .into_data()
            })
        });
    }
    group.throughput(Throughput::Elements(n as u64));
    let x = ring.sample::<B>(n, &noise, NoiseKey::new(1, 0), &dev);
    let t = Tensor::<B, 1>::full([n], 0.5, &dev);
    group.bench_function(format!("exact_score_{n}x2"), |b| {
        b.iter(|| score.score(x.clone(), t.clone()).into_data())
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_backend::<NdArray<f32>>(c, "ndarray");
    #[cfg(feature = "flex")]
    bench_backend::<burn::backend::Flex>(c, "flex");
}

fn config() -> Criterion {
    if std::env::var_os("SCORE_BENCH_FULL").is_some() {
        Criterion::default()
            .sample_size(10)
            .measurement_time(std::time::Duration::from_secs(10))
    } else {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(std::time::Duration::from_millis(200))
            .measurement_time(std::time::Duration::from_millis(800))
    }
}

criterion_group! { name = group; config = config(); targets = benches }
criterion_main!(group);
