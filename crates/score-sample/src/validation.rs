//! Statistical validation against exact analytic scores (DESIGN.md §6), with fixed seeds.
//!
//! Sample quality is measured by the sliced Wasserstein-2 distance (64 directions) to exact
//! samples of the same size, compared with the distance between two independent exact sets
//! (`base`). On the 8-ring at n = 1000, `base` ≈ 0.49: it is dominated by the multinomial
//! fluctuation of the mode weights (±11 samples per mode), which any sampler's set carries too,
//! so a correct sampler lands near `base` and the bound is `SW2 ≤ 1.5·base`. Because that
//! statistic barely sees the shape of each mode, the ring tests also check the radial law (mean
//! and standard deviation of |x|), whose sampling error is small (see `check_ring`).

use burn::backend::NdArray;
use burn::tensor::Tensor;
use score_core::{
    AnySde, Marginal, NoiseKey, NoiseSource, ScoreFn, Sde, SubVpSde, VeSde, VpSde, tensor::to_f64,
};

use crate::testing::{HostScore, HostTarget, exact, first, host, radial_stats, ring, sw2_vs_exact};
use crate::*;

type B = NdArray<f32>;

const N: usize = 1000;
/// The multiple of the exact-vs-exact distance a sampler may reach (see the module docs).
const SW2_FACTOR: f64 = 1.5;

fn sdes() -> Vec<AnySde> {
    // σ_max = 10 covers the ring's diameter (8), as in the PyTorch reference.
    vec![
        AnySde::Ve(VeSde::new(0.01, 10.0).unwrap()),
        AnySde::Vp(VpSde::default()),
        AnySde::SubVp(SubVpSde::default()),
    ]
}

/// Asserts the SW2 bound and the radial law of samples of the 8-ring, and returns the SW2 ratio.
///
/// Radial law of the exact ring (n = 1000, seed 1001): mean 4.008, std 0.204. The standard error
/// of the mean radius is 0.204/√1000 ≈ 0.0065 and of its std ≈ 0.204/√2000 ≈ 0.0046; the bounds
/// (0.06 on the mean, 0.04 on the std) add to ~5 standard errors an allowance for the bias of a
/// 100–200-step discretisation (largest measured: 0.053 on the mean radius and 0.030 on the std,
/// both for 100 Euler steps of the VE probability-flow ODE).
fn check_ring(name: &str, x: &[f64]) -> f64 {
    let (d, base) = sw2_vs_exact(&ring(), x);
    let (rm, rs) = radial_stats(x);
    let (em, es) = radial_stats(&exact(&ring(), N, 1001));
    println!(
        "{name}: SW2 {d:.4} (exact-vs-exact {base:.4}, ratio {:.2}); |x| mean {rm:.4} std {rs:.4} (exact {em:.4} {es:.4})",
        d / base
    );
    assert!(
        d <= SW2_FACTOR * base,
        "{name}: SW2 {d} > {SW2_FACTOR} × {base}"
    );
    assert!((rm - em).abs() < 0.06, "{name}: mean radius {rm} vs {em}");
    assert!((rs - es).abs() < 0.04, "{name}: radial std {rs} vs {es}");
    d / base
}

#[test]
fn every_sde_sampler_matches_the_ring_under_ve_vp_subvp() {
    let dev = Default::default();
    let lang = CorrectorKind::Langevin {
        snr: 0.16,
        n_steps: 1,
    };
    let ald = CorrectorKind::AnnealedLangevin {
        snr: 0.16,
        n_steps: 1,
    };
    let configs = [
        (
            "Euler-Maruyama",
            PredictorKind::EulerMaruyama,
            CorrectorKind::None,
            200,
        ),
        (
            "reverse diffusion",
            PredictorKind::ReverseDiffusion,
            CorrectorKind::None,
            200,
        ),
        (
            "ancestral (posterior var)",
            PredictorKind::Ancestral(AncestralVariance::Posterior),
            CorrectorKind::None,
            200,
        ),
        (
            "ancestral (forward var)",
            PredictorKind::Ancestral(AncestralVariance::Forward),
            CorrectorKind::None,
            200,
        ),
        (
            "reverse diffusion + Langevin",
            PredictorKind::ReverseDiffusion,
            lang,
            100,
        ),
        (
            "Euler-Maruyama + annealed Langevin",
            PredictorKind::EulerMaruyama,
            ald,
            100,
        ),
    ];
    for sde in sdes() {
        let score = HostScore(ring().diffused(sde));
        for (name, predictor, corrector, steps) in configs {
            let sampler = PcSamplerConfig::new()
                .with_predictor(predictor)
                .with_corrector(corrector)
                .init(sde)
                .unwrap();
            let grid = TimeGrid::reverse(&sde, 1e-3, steps).unwrap();
            let out = sampler
                .sample::<B, 2, _>(&score, &grid, [N, 2], &NoiseSource::new(7), &dev)
                .unwrap();
            assert_eq!(out.nfe, steps * (1 + corrector.n_steps()));
            check_ring(&format!("{sde:?} {name}"), &host(out.x));
        }
    }
}

#[test]
fn every_ode_solver_matches_the_ring_under_ve_vp_subvp() {
    let dev = Default::default();
    let solvers = [
        ("Euler", OdeSolver::Euler, 100),
        ("Heun", OdeSolver::Heun, 50),
        ("RK4", OdeSolver::Rk4, 25),
        ("RK45", OdeSolver::Dopri5(AdaptiveConfig::new()), 1),
    ];
    for sde in sdes() {
        let score = HostScore(ring().diffused(sde));
        for (name, solver, steps) in solvers {
            let ode = ProbabilityFlowConfig::new()
                .with_solver(solver)
                .init(sde)
                .unwrap();
            let grid = TimeGrid::reverse(&sde, 1e-3, steps).unwrap();
            let out = ode
                .sample::<B, 2, _>(&score, &grid, [N, 2], &NoiseSource::new(7), &dev)
                .unwrap();
            check_ring(
                &format!("{sde:?} ODE {name} (NFE {})", out.nfe),
                &host(out.x),
            );
        }
    }
}

#[test]
fn ddpm_sampler_with_the_exact_noise_matches_the_ring() {
    let dev = Default::default();
    // VP's discrete betas for N = 200 (β_min/N → β_max/N), so that 200 steps reach N(0, I).
    let ddpm = DdpmSamplerConfig::new()
        .with_n_steps(200)
        .with_beta_start(0.1 / 200.0)
        .with_beta_end(20.0 / 200.0)
        .init()
        .unwrap();
    let abar = ddpm.alphas_cumprod().to_vec();
    // The exact ε-prediction: ε(x, i) = −√(1 − ᾱ_i)·∇log p_i(x), p_i the ring pushed through
    // x_i = √ᾱ_i·x_0 + √(1 − ᾱ_i)·ε.
    let model = |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let i = score_core::schedule::ddpm_step(first(t.clone()), 200);
        let k = Marginal {
            mean_coef: abar[i].sqrt(),
            std: (1.0 - abar[i]).sqrt(),
        };
        HostTarget(ring().perturbed(k))
            .score(x, t)
            .mul_scalar(-(1.0 - abar[i]).sqrt())
    };
    for variance in [AncestralVariance::Forward, AncestralVariance::Posterior] {
        let sampler = DdpmSampler::from_betas(ddpm.betas().to_vec(), variance).unwrap();
        let out = sampler
            .sample::<B, 2, _>(&model, [N, 2], &NoiseSource::new(4), &dev)
            .unwrap();
        assert_eq!(out.nfe, 200);
        check_ring(&format!("DDPM {variance:?}"), &host(out.x));
    }
}

#[test]
fn langevin_and_mala_mix_on_a_fuzzy_ring() {
    let dev = Default::default();
    // The ring blurred to component std √1.04 ≈ 1.02: neighbouring modes (3.06 apart) overlap,
    // so a local sampler can move between them. Start far from equilibrium: N(0, 4² I).
    let fuzzy = ring().perturbed(Marginal {
        mean_coef: 1.0,
        std: 1.0,
    });
    let target = HostTarget(fuzzy.clone());
    let x0 = NoiseSource::new(3)
        .normal::<B, 2>([N, 2], NoiseKey::new(0, 0), &dev)
        .mul_scalar(4.0);
    // ε = 0.05, 300 steps: the slowest (radial) relaxation time is ~σ²/ε ≈ 20 steps, so 300 steps
    // equilibrate; the unadjusted chain's O(ε) variance bias is ~ε/2 ≈ 2.5 % of the variance.
    let cfg = LangevinConfig::new(0.05, 300);
    let ula = cfg
        .init()
        .unwrap()
        .sample(&target, x0.clone(), 0.0, &NoiseSource::new(5))
        .unwrap();
    let mala = cfg
        .init_mala()
        .unwrap()
        .sample(&target, x0, 0.0, &NoiseSource::new(5))
        .unwrap();
    assert_eq!(ula.nfe, 300);
    assert_eq!(mala.samples.nfe, 301);
    // Exact-vs-exact SW2 is ≈ 0.29 here; same 1.5× bound as on the ring.
    for (name, x) in [("Langevin", host(ula.x)), ("MALA", host(mala.samples.x))] {
        let (d, base) = sw2_vs_exact(&fuzzy, &x);
        println!(
            "{name}: SW2 {d:.4} (exact-vs-exact {base:.4}, ratio {:.2})",
            d / base
        );
        assert!(d <= SW2_FACTOR * base, "{name}: {d} vs {base}");
    }
    // At this step size MALA accepts nearly everything (measured 0.996); a rate below 0.9 would
    // mean a wrong proposal density.
    println!("MALA acceptance rate {:.3}", mala.acceptance_rate);
    assert!(mala.acceptance_rate > 0.9 && mala.acceptance_rate <= 1.0);
}

#[test]
fn mala_rejects_when_steps_are_too_large() {
    // A step of ε = 2 on N(0, 0.04 I) overshoots by a factor 1 − ε/0.04 = −49: the Metropolis
    // correction must reject almost every move and keep the chain where it was.
    let dev = Default::default();
    let narrow = score_core::DiagGaussian::new(vec![0.0, 0.0], vec![0.04, 0.04])
        .unwrap()
        .to_mixture();
    let x0 = NoiseSource::new(3)
        .normal::<B, 2>([200, 2], NoiseKey::new(0, 0), &dev)
        .mul_scalar(0.2);
    let out = LangevinConfig::new(2.0, 20)
        .init_mala()
        .unwrap()
        .sample(&HostTarget(narrow), x0.clone(), 0.0, &NoiseSource::new(1))
        .unwrap();
    assert!(
        out.acceptance_rate < 0.01,
        "acceptance {}",
        out.acceptance_rate
    );
    let moved = to_f64(out.samples.x - x0)
        .iter()
        .filter(|v| v.abs() > 0.0)
        .count();
    assert!(moved <= 2 * (0.01 * 200.0 * 20.0) as usize);
}

#[test]
fn annealed_langevin_matches_the_ring() {
    let dev = Default::default();
    let sde = VeSde::new(0.01, 10.0).unwrap();
    // NCSN: 20 geometric levels 10 → 0.01 (a uniform grid of VE times), 30 steps per level,
    // ε = 5e-6 so α_i/σ_i² = ε/σ_L² = 0.05 at every level; final denoising step.
    let sampler = AnnealedLangevinConfig::new(5e-6)
        .with_steps_per_level(30)
        .init(sde)
        .unwrap();
    let grid = TimeGrid::uniform(1.0, 0.0, 19).unwrap();
    let sigmas: Vec<f64> = grid.times().iter().map(|&t| sde.sigma(t)).collect();
    let smld = sde.smld_sigmas(20).unwrap();
    for (a, b) in sigmas.iter().zip(&smld) {
        assert!((a - b).abs() < 1e-12 * b.max(1.0));
    }
    let out = sampler
        .sample::<B, 2, _>(
            &HostScore(ring().diffused(sde)),
            &grid,
            [N, 2],
            &NoiseSource::new(9),
            &dev,
        )
        .unwrap();
    assert_eq!(out.nfe, 20 * 30 + 1);
    check_ring("annealed Langevin", &host(out.x));
}

type A = burn::backend::Autodiff<NdArray<f32>>;

/// Mean absolute error of the RK45 likelihood with the exact divergence against the exact
/// `log p_ε`, and the Hutchinson estimate's error in units of its standard error.
#[test]
fn likelihood_matches_the_exact_log_density() {
    let dev = Default::default();
    let n = 48;
    let sde = VpSde::default();
    let target = ring().diffused(sde);
    let eps = 1e-5;
    let x = ring().sample::<B>(n, &NoiseSource::new(11), NoiseKey::new(0, 0), &dev);
    // The ODE computes log p_ε; at ε = 1e-5 the VP kernel adds variance 1e-6 to the data's 0.04,
    // so p_ε and p_0 differ by < 1e-4 nats at these points, but we compare with p_ε exactly.
    let exact = to_f64(target.log_prob(x.clone(), Tensor::full([n], eps as f32, &dev)));
    let grid = TimeGrid::forward(&sde, eps, 1).unwrap();
    // Tight tolerances: rtol = atol = 1e-6 (f32 state: ~1e-7 relative round-off per step).
    let tight = OdeSolver::Dopri5(AdaptiveConfig::new().with_rtol(1e-6).with_atol(1e-6));
    let lik = LikelihoodConfig::new()
        .with_solver(tight)
        .init(sde)
        .unwrap();
    let out = lik
        .log_prob::<A, 2, _>(&target, &grid, x.clone(), &NoiseSource::new(0))
        .unwrap();
    assert!(out.std_err.is_none());
    let got = to_f64(out.log_prob);
    let mae = got
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / n as f64;
    let worst = got
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "exact divergence: mean |error| {mae:.2e} nats, worst {worst:.2e} (NFE {}, log p ≈ {:.3})",
        out.nfe, exact[0]
    );
    assert!(mae < 1e-2, "mean abs error {mae}");

    // Hutchinson with K = 16 Rademacher probes at the default tolerances. Probe noise is
    // independent across samples, so the mean error over the batch has standard error
    // sqrt(Σ se_i²)/n; the estimate must lie within 3 of them (the ODE error, < 1e-2 nats as
    // shown above, is far below that).
    let hutch = LikelihoodConfig::new()
        .with_divergence(Divergence::Hutchinson {
            probe: ProbeKind::Rademacher,
            n_probes: 16,
        })
        .init(sde)
        .unwrap();
    let out = hutch
        .log_prob::<A, 2, _>(&target, &grid, x, &NoiseSource::new(1))
        .unwrap();
    let se = to_f64(out.std_err.unwrap());
    let got = to_f64(out.log_prob);
    let mean_err = got.iter().zip(&exact).map(|(a, b)| a - b).sum::<f64>() / n as f64;
    let se_mean = se.iter().map(|s| s * s).sum::<f64>().sqrt() / n as f64;
    let within = got
        .iter()
        .zip(&exact)
        .zip(&se)
        .filter(|((a, b), s)| (*a - *b).abs() <= 3.0 * **s)
        .count();
    println!(
        "Hutchinson: mean error {mean_err:.3e} nats, its standard error {se_mean:.3e} ({:.2} SE); {within}/{n} samples within 3 of their own SE; NFE {}",
        mean_err / se_mean,
        out.nfe
    );
    assert!(se_mean > 0.0);
    assert!(mean_err.abs() <= 3.0 * se_mean);

    // Gaussian probes (higher variance than Rademacher), K = 8 on the first 16 points.
    let gauss = LikelihoodConfig::new()
        .with_divergence(Divergence::Hutchinson {
            probe: ProbeKind::Gaussian,
            n_probes: 8,
        })
        .init(sde)
        .unwrap();
    let x16 = ring().sample::<B>(16, &NoiseSource::new(11), NoiseKey::new(0, 0), &dev);
    let out = gauss
        .log_prob::<A, 2, _>(&target, &grid, x16, &NoiseSource::new(2))
        .unwrap();
    let se = to_f64(out.std_err.unwrap());
    let got = to_f64(out.log_prob);
    let mean_err = got.iter().zip(&exact).map(|(a, b)| a - b).sum::<f64>() / 16.0;
    let se_mean = se.iter().map(|s| s * s).sum::<f64>().sqrt() / 16.0;
    println!(
        "Hutchinson (Gaussian, K = 8, n = 16): mean error {mean_err:.3e} nats, SE {se_mean:.3e}"
    );
    assert!(mean_err.abs() <= 3.0 * se_mean);
}

#[test]
fn encode_then_decode_returns_the_input() {
    let dev = Default::default();
    let x = ring().sample::<B>(200, &NoiseSource::new(12), NoiseKey::new(0, 0), &dev);
    for sde in [
        AnySde::Vp(VpSde::default()),
        AnySde::Ve(VeSde::new(0.01, 10.0).unwrap()),
    ] {
        let score = HostScore(ring().diffused(sde));
        let tight = OdeSolver::Dopri5(AdaptiveConfig::new().with_rtol(1e-6).with_atol(1e-6));
        let ode = ProbabilityFlowConfig::new()
            .with_solver(tight)
            .init(sde)
            .unwrap();
        let up = TimeGrid::forward(&sde, 1e-3, 1).unwrap();
        let z = ode.encode(&score, &up, x.clone()).unwrap();
        // The latent is a draw from (nearly) the prior: its per-coordinate std matches σ_T
        // within 15 % (400 values: the std's standard error is ~3.5 %).
        let zs = to_f64(z.x.clone());
        let std = (zs.iter().map(|v| v * v).sum::<f64>() / zs.len() as f64).sqrt();
        assert!(
            (std / sde.prior_std() - 1.0).abs() < 0.15,
            "{sde:?}: latent std {std}"
        );
        let back = ode.decode(&score, &up.reversed(), z.x).unwrap();
        let err = to_f64(back.x - x.clone())
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        println!(
            "{sde:?}: encode → decode max |error| {err:.2e} (NFE {} + {})",
            z.nfe, back.nfe
        );
        assert!(err < 1e-3, "{sde:?}: round trip error {err}");
    }
}

#[test]
fn heun_and_rk4_beat_euler_at_equal_nfe() {
    let dev = Default::default();
    let sde = VpSde::default();
    let score = HostScore(ring().diffused(sde));
    let z = sde.prior_sample::<B, 2>([200, 2], &NoiseSource::new(13), NoiseKey::new(0, 0), &dev);
    let solve = |solver, steps| {
        let ode = ProbabilityFlowConfig::new()
            .with_solver(solver)
            .init(sde)
            .unwrap();
        let grid = TimeGrid::reverse(&sde, 1e-3, steps).unwrap();
        ode.decode(&score, &grid, z.clone()).unwrap()
    };
    // Reference: RK4 with 400 steps (its error is ~(48/400)⁴ ≈ 2e-4 of the 12-step RK4 error).
    let reference = to_f64(solve(OdeSolver::Rk4, 400).x);
    let rms = |x: Tensor<B, 2>| {
        let v = to_f64(x);
        (v.iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / v.len() as f64)
            .sqrt()
    };
    // NFE 48 each: Euler 48 steps, Heun 24, RK4 12.
    let euler = solve(OdeSolver::Euler, 48);
    let heun = solve(OdeSolver::Heun, 24);
    let rk4 = solve(OdeSolver::Rk4, 12);
    assert_eq!((euler.nfe, heun.nfe, rk4.nfe), (48, 48, 48));
    let (e, h, r) = (rms(euler.x), rms(heun.x), rms(rk4.x));
    println!("RMS error at NFE 48: Euler {e:.3e}, Heun {h:.3e}, RK4 {r:.3e}");
    assert!(h < e && r < e, "Euler {e}, Heun {h}, RK4 {r}");
}

/// A correlated 2-D Gaussian `N(μ, Σ)` and its exact perturbed score under an SDE, on the host.
#[derive(Clone, Copy)]
struct Gauss2 {
    mu: [f64; 2],
    cov: [[f64; 2]; 2],
}

fn inv2(m: [[f64; 2]; 2]) -> [[f64; 2]; 2] {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    [
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ]
}

impl Gauss2 {
    /// `Σ_t = m²Σ + s²I` and `m·μ`.
    fn at(&self, k: Marginal) -> ([f64; 2], [[f64; 2]; 2]) {
        let (m, s2) = (k.mean_coef, k.std * k.std);
        let c = self.cov;
        (
            [m * self.mu[0], m * self.mu[1]],
            [
                [m * m * c[0][0] + s2, m * m * c[0][1]],
                [m * m * c[1][0], m * m * c[1][1] + s2],
            ],
        )
    }
}

/// Host-evaluated closure score of a [`Gauss2`] under `sde`: `−Σ_t⁻¹(x − mμ)`.
fn gauss2_score<S: Sde + Copy>(
    g: Gauss2,
    sde: S,
) -> impl Fn(Tensor<B, 2>, Tensor<B, 1>) -> Tensor<B, 2> {
    move |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let (dims, dev) = (x.dims(), x.device());
        let t = first(t);
        let (mean, cov) = g.at(sde.marginal(t));
        let p = inv2(cov);
        let mut v = to_f64(x);
        for pt in v.chunks_mut(2) {
            let d = [pt[0] - mean[0], pt[1] - mean[1]];
            pt[0] = -(p[0][0] * d[0] + p[0][1] * d[1]);
            pt[1] = -(p[1][0] * d[0] + p[1][1] * d[1]);
        }
        score_core::tensor::from_f64(&v, dims, &dev)
    }
}

fn mean_var(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count() as f64;
    let m = v.clone().sum::<f64>() / n;
    (m, v.map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0))
}

const G: Gauss2 = Gauss2 {
    mu: [1.0, -1.0],
    cov: [[1.0, 0.8], [0.8, 1.0]],
};

#[test]
fn inpainting_reproduces_the_gaussian_conditional() {
    let dev = Default::default();
    let n = 2000;
    let sde = VpSde::default();
    let a = 0.5;
    // x₂ | x₁ = a ~ N(μ₂ + Σ₂₁/Σ₁₁·(a − μ₁), Σ₂₂ − Σ₂₁²/Σ₁₁) = N(−1.4, 0.36).
    let (cm, cv) = (-1.0 + 0.8 * (a - 1.0), 1.0 - 0.64);
    let observed = Tensor::<B, 2>::from_data(
        burn::tensor::TensorData::new([a as f32, 0.0].repeat(n), [n, 2]),
        &dev,
    );
    let mask = Tensor::<B, 2>::from_data(
        burn::tensor::TensorData::new([1.0f32, 0.0].repeat(n), [n, 2]),
        &dev,
    );
    let sampler = PcSamplerConfig::new()
        .with_predictor(PredictorKind::ReverseDiffusion)
        .with_corrector(CorrectorKind::Langevin {
            snr: 0.16,
            n_steps: 1,
        })
        .init(sde)
        .unwrap();
    let inpainter = Inpainter::new(sampler);
    let grid = TimeGrid::reverse(&sde, 1e-3, 200).unwrap();
    let out = inpainter
        .sample(
            &gauss2_score(G, sde),
            &grid,
            observed,
            mask,
            &NoiseSource::new(21),
        )
        .unwrap();
    let x = to_f64(out.x);
    assert!(
        x.chunks(2).all(|p| p[0] == a as f32 as f64),
        "known coordinate kept"
    );
    let (m, v) = mean_var(x.chunks(2).map(|p| p[1]));
    // Sampling error with n = 2000: SE(mean) = √(0.36/2000) ≈ 0.013, SE(var) ≈ 0.36·√(2/2000)
    // ≈ 0.011. Replacement inpainting is itself approximate: the unknown coordinate is driven by
    // a freshly noised copy of the observation instead of the conditional law of x_t given y,
    // which inflates the variance. Measured with this seed: mean −1.376 (bias +0.024), variance
    // 0.411 (bias +0.051, 14 %). Bounds: 0.06 on the mean (4.5 SE), 0.07 on the variance (the
    // method's bias plus ~2 SE).
    println!("inpainting: conditional mean {m:.4} (exact {cm}), variance {v:.4} (exact {cv})");
    assert!((m - cm).abs() < 0.06, "mean {m} vs {cm}");
    assert!((v - cv).abs() < 0.07, "variance {v} vs {cv}");
}

#[test]
fn inpainting_works_on_images() {
    // Rank 4: [n, 1, 2, 2] images of independent pixels N(0.5, 0.1²); the top row is observed.
    let dev = Default::default();
    let n = 400;
    let sde = VpSde::default();
    let pixels = score_core::DiagGaussian::new(vec![0.5; 4], vec![0.01; 4]).unwrap();
    let score = HostScore(pixels.to_mixture().diffused(sde));
    let observed = Tensor::<B, 4>::full([n, 1, 2, 2], 0.9, &dev);
    let mask = Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new([1.0f32, 1.0, 0.0, 0.0].repeat(n), [n, 1, 2, 2]),
        &dev,
    );
    let sampler = PcSamplerConfig::new().init(sde).unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 100).unwrap();
    let out = Inpainter::new(sampler)
        .sample(&score, &grid, observed, mask, &NoiseSource::new(22))
        .unwrap();
    assert_eq!(out.x.dims(), [n, 1, 2, 2]);
    let x = to_f64(out.x);
    assert!(
        x.chunks(4)
            .all(|p| p[0] == 0.9f32 as f64 && p[1] == 0.9f32 as f64)
    );
    // Independent pixels: the unknown ones keep their marginal N(0.5, 0.01). 800 values:
    // SE(mean) ≈ 0.0035, SE(var) ≈ 0.0005; bounds at ~6 SE.
    let (m, v) = mean_var(x.chunks(4).flat_map(|p| [p[2], p[3]]));
    println!("image inpainting: unknown pixels mean {m:.4} var {v:.5}");
    assert!(
        (m - 0.5).abs() < 0.02 && (v - 0.01).abs() < 0.003,
        "mean {m}, var {v}"
    );
}

#[test]
fn posterior_sampling_adds_the_likelihood_score() {
    let dev = Default::default();
    let n = 2000;
    let sde = VpSde::default();
    // Observation y = x₁ + N(0, σ_y²) of the correlated Gaussian G.
    let (y, sy2) = (2.0, 0.25);
    // Exact time-dependent likelihood p_t(y | x_t): x₀ | x_t is Gaussian with mean
    // μ + K(x_t − mμ), K = mΣΣ_t⁻¹, covariance C = Σ − mKΣ; so y | x_t ~ N(h·E[x₀|x_t],
    // hᵀCh + σ_y²) with h = e₁, and ∇ log p_t(y | x_t) = Kᵀh·(y − h·E[x₀|x_t])/(hᵀCh + σ_y²).
    let likelihood = move |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let (dims, dev) = (x.dims(), x.device());
        let k = sde.marginal(first(t));
        let (mean_t, cov_t) = G.at(k);
        let p = inv2(cov_t);
        let s = G.cov;
        let m = k.mean_coef;
        let kk = [
            [
                m * (s[0][0] * p[0][0] + s[0][1] * p[1][0]),
                m * (s[0][0] * p[0][1] + s[0][1] * p[1][1]),
            ],
            [
                m * (s[1][0] * p[0][0] + s[1][1] * p[1][0]),
                m * (s[1][0] * p[0][1] + s[1][1] * p[1][1]),
            ],
        ];
        // C₁₁ = Σ₁₁ − m·(KΣ)₁₁.
        let c11 = s[0][0] - m * (kk[0][0] * s[0][0] + kk[0][1] * s[1][0]);
        let var = c11 + sy2;
        let mut v = to_f64(x);
        for pt in v.chunks_mut(2) {
            let e1 = G.mu[0] + kk[0][0] * (pt[0] - mean_t[0]) + kk[0][1] * (pt[1] - mean_t[1]);
            let r = (y - e1) / var;
            pt[0] = kk[0][0] * r;
            pt[1] = kk[0][1] * r;
        }
        score_core::tensor::from_f64(&v, dims, &dev)
    };
    let posterior = PosteriorScore::new(gauss2_score(G, sde), likelihood);
    let sampler = PcSamplerConfig::new()
        .with_predictor(PredictorKind::ReverseDiffusion)
        .with_corrector(CorrectorKind::None)
        .init(sde)
        .unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 200).unwrap();
    let out = sampler
        .sample::<B, 2, _>(&posterior, &grid, [n, 2], &NoiseSource::new(23), &dev)
        .unwrap();
    let x = to_f64(out.x);
    // Posterior of x₀: gain g = Σh/(Σ₁₁ + σ_y²) = (0.8, 0.64); mean μ + g(y − μ₁) = (1.8, −0.36);
    // covariance Σ − g hᵀΣ: var₁ = 1 − 0.8 = 0.2, var₂ = 1 − 0.64·0.8 = 0.488.
    let (m1, v1) = mean_var(x.chunks(2).map(|p| p[0]));
    let (m2, v2) = mean_var(x.chunks(2).map(|p| p[1]));
    println!(
        "posterior: mean ({m1:.4}, {m2:.4}) exact (1.8, -0.36); var ({v1:.4}, {v2:.4}) exact (0.2, 0.488)"
    );
    // n = 2000: SE(mean) ≤ √(0.488/2000) ≈ 0.016, SE(var) ≤ 0.488·√(2/2000) ≈ 0.015; bounds at
    // 4 SE (the 200-step discretisation bias of this smooth problem is far smaller).
    assert!(
        (m1 - 1.8).abs() < 0.04 && (m2 + 0.36).abs() < 0.064,
        "means {m1} {m2}"
    );
    assert!(
        (v1 - 0.2).abs() < 0.04 && (v2 - 0.488).abs() < 0.06,
        "vars {v1} {v2}"
    );
}

#[test]
fn the_same_seed_gives_the_same_samples() {
    let dev = Default::default();
    let sde = VeSde::new(0.01, 10.0).unwrap();
    let score = HostScore(ring().diffused(sde));
    let sampler = PcSamplerConfig::new().init(sde).unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 20).unwrap();
    let run = |seed| {
        to_f64(
            sampler
                .sample::<B, 2, _>(&score, &grid, [64, 2], &NoiseSource::new(seed), &dev)
                .unwrap()
                .x,
        )
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    // Per-sample noise does not depend on the batch: the first 16 of 64 equal a batch of 16
    // when the score acts per sample.
    let small = to_f64(
        PcSamplerConfig::new()
            .with_corrector(CorrectorKind::None)
            .init(sde)
            .unwrap()
            .sample::<B, 2, _>(&score, &grid, [16, 2], &NoiseSource::new(5), &dev)
            .unwrap()
            .x,
    );
    let big = to_f64(
        PcSamplerConfig::new()
            .with_corrector(CorrectorKind::None)
            .init(sde)
            .unwrap()
            .sample::<B, 2, _>(&score, &grid, [64, 2], &NoiseSource::new(5), &dev)
            .unwrap()
            .x,
    );
    assert_eq!(&big[..32], &small[..]);
}

#[test]
fn a_non_finite_state_names_the_step_and_time() {
    let dev = Default::default();
    let sde = VpSde::default();
    // A score that turns NaN below t = 0.5.
    let score = |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let t0 = first(t);
        if t0 < 0.5 {
            x.mul_scalar(f32::NAN)
        } else {
            x.neg()
        }
    };
    let grid = TimeGrid::uniform(1.0, 0.0, 10).unwrap();
    // Step i starts at t_i = 1 − i/10: step 6 (t_6 = 0.4) is the first to evaluate the NaN, and its
    // state lives at t_7 = 0.3.
    let err = PcSamplerConfig::new()
        .with_corrector(CorrectorKind::None)
        .init(sde)
        .unwrap()
        .sample::<B, 2, _>(&score, &grid, [4, 2], &NoiseSource::new(0), &dev)
        .unwrap_err();
    match err {
        SampleError::NonFinite { step, t } => {
            assert!(step == 6 && (t - 0.3).abs() < 1e-12, "{err}")
        }
        other => panic!("unexpected {other}"),
    }
    let err = ProbabilityFlowConfig::new()
        .init(sde)
        .unwrap()
        .decode(
            &score,
            &TimeGrid::new(vec![1.0, 0.001]).unwrap(),
            Tensor::<B, 2>::ones([4, 2], &dev),
        )
        .unwrap_err();
    assert!(matches!(err, SampleError::NonFinite { .. }), "{err}");
    let err = LangevinConfig::new(0.1, 5)
        .init()
        .unwrap()
        .sample(
            &|x: Tensor<B, 2>, _t: Tensor<B, 1>| x.mul_scalar(f32::INFINITY),
            Tensor::<B, 2>::ones([2, 2], &dev),
            0.0,
            &NoiseSource::new(0),
        )
        .unwrap_err();
    assert_eq!(err, SampleError::NonFinite { step: 0, t: 0.0 });
    assert_eq!(
        err.to_string(),
        "non-finite value in the sampler state at step 0 (t = 0)"
    );
}

#[test]
fn bad_configurations_are_rejected_with_the_value() {
    let sde = VpSde::default();
    assert_eq!(
        LangevinConfig::new(-1.0, 10).init().unwrap_err(),
        SampleError::InvalidConfig {
            name: "step_size",
            value: -1.0,
            reason: "must be positive and finite"
        }
    );
    assert!(matches!(
        LangevinConfig::new(0.1, 0).init(),
        Err(SampleError::InvalidConfig {
            name: "n_steps",
            ..
        })
    ));
    assert!(matches!(
        PcSamplerConfig::new()
            .with_corrector(CorrectorKind::Langevin {
                snr: 0.0,
                n_steps: 1
            })
            .init(sde),
        Err(SampleError::InvalidConfig {
            name: "snr",
            value: 0.0,
            ..
        })
    ));
    assert!(matches!(
        ProbabilityFlowConfig::new()
            .with_solver(OdeSolver::Dopri5(AdaptiveConfig::new().with_rtol(f64::NAN)))
            .init(sde),
        Err(SampleError::InvalidConfig { name: "rtol", .. })
    ));
    assert!(matches!(
        LikelihoodConfig::new()
            .with_divergence(Divergence::Hutchinson {
                probe: ProbeKind::Gaussian,
                n_probes: 1
            })
            .init(sde),
        Err(SampleError::InvalidConfig {
            name: "n_probes",
            value: 1.0,
            ..
        })
    ));
    assert!(matches!(
        DdpmSampler::from_betas(vec![0.1, 1.5], AncestralVariance::Forward),
        Err(SampleError::InvalidConfig {
            name: "beta",
            value: 1.5,
            ..
        })
    ));
    assert!(matches!(
        DdpmSamplerConfig::new().with_beta_start(-1.0).init(),
        Err(SampleError::Core(
            score_core::CoreError::InvalidBetas { .. }
        ))
    ));
    assert!(matches!(
        AnnealedLangevinConfig::new(0.0).init(sde),
        Err(SampleError::InvalidConfig {
            name: "step_size",
            ..
        })
    ));
    // Grids must run the right way and stay inside [0, T].
    let dev = Default::default();
    let score = |x: Tensor<B, 2>, _t: Tensor<B, 1>| x.neg();
    let pc = PcSamplerConfig::new().init(sde).unwrap();
    let up = TimeGrid::uniform(0.1, 1.0, 4).unwrap();
    assert!(matches!(
        pc.sample::<B, 2, _>(&score, &up, [2, 2], &NoiseSource::new(0), &dev),
        Err(SampleError::WrongDirection { .. })
    ));
    let too_long = TimeGrid::uniform(2.0, 0.1, 4).unwrap();
    assert!(matches!(
        pc.sample::<B, 2, _>(&score, &too_long, [2, 2], &NoiseSource::new(0), &dev),
        Err(SampleError::Core(
            score_core::CoreError::TimeOutOfRange { .. }
        ))
    ));
    let ode = ProbabilityFlowConfig::new().init(sde).unwrap();
    assert!(matches!(
        ode.encode(&score, &up.reversed(), Tensor::<B, 2>::ones([2, 2], &dev)),
        Err(SampleError::WrongDirection { .. })
    ));
    // A tiny step budget is reported, not looped on.
    let ode = ProbabilityFlowConfig::new()
        .with_solver(OdeSolver::Dopri5(AdaptiveConfig::new().with_max_steps(2)))
        .init(sde)
        .unwrap();
    let ring_score = HostScore(ring().diffused(sde));
    assert!(matches!(
        ode.decode(
            &ring_score,
            &TimeGrid::new(vec![1.0, 1e-3]).unwrap(),
            Tensor::<B, 2>::ones([2, 2], &dev)
        ),
        Err(SampleError::TooManySteps { max_steps: 2, .. })
    ));
    // The inpainting mask must match the observation.
    let err = Inpainter::new(pc)
        .sample(
            &score,
            &TimeGrid::reverse(&sde, 1e-3, 2).unwrap(),
            Tensor::<B, 2>::ones([2, 2], &dev),
            Tensor::<B, 2>::ones([2, 1], &dev),
            &NoiseSource::new(0),
        )
        .unwrap_err();
    assert!(matches!(err, SampleError::ShapeMismatch { .. }), "{err}");
}

#[test]
fn bits_per_dim_of_a_gaussian_model_on_dequantised_pixels() {
    // 8-bit "images" [n, 1, 2, 2] dequantised to [−1, 1]; the model p_y = N(0, I). By hand:
    // bpd = −(log p_y + d·ln 2 − d·ln 256)/(d·ln 2).
    let dev = Default::default();
    let pixels = Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(vec![0.0f32, 255.0, 128.0, 7.0], [1, 1, 2, 2]),
        &dev,
    );
    let deq = Dequantization::new().with_scale(2.0).with_shift(-1.0);
    deq.validate().unwrap();
    let y = deq.dequantize(pixels, &NoiseSource::new(0), NoiseKey::new(0, 0));
    let yv = to_f64(y.clone());
    for (v, k) in yv.iter().zip([0.0, 255.0, 128.0, 7.0]) {
        assert!(*v >= 2.0 * k / 256.0 - 1.0 && *v < 2.0 * (k + 1.0) / 256.0 - 1.0);
    }
    let d = 4.0;
    let log_p: f64 = yv
        .iter()
        .map(|v| -0.5 * v * v - 0.5 * (std::f64::consts::TAU).ln())
        .sum();
    let bpd = to_f64(deq.bits_per_dim(Tensor::<B, 1>::from_floats([log_p as f32], &dev), 4))[0];
    let by_hand = -(log_p + d * 2f64.ln() - d * 256f64.ln()) / (d * 2f64.ln());
    assert!((bpd - by_hand).abs() < 1e-5, "{bpd} vs {by_hand}");
    assert!(Dequantization::new().with_scale(0.0).validate().is_err());
}

#[test]
fn likelihood_of_images_in_bits_per_dim() {
    // Rank-4 data: 8-bit 2×2 images dequantised to [−1, 1], under a model whose density is known:
    // independent pixels N(0, 0.5²) diffused by VP. The ODE likelihood (exact divergence, 4
    // backward passes per evaluation) must give the exact bits/dim within 4e-3 bits, i.e.
    // 4e-3·4·ln 2 ≈ 1.1e-2 nats per image: the 1e-2-nat tolerance of the ring test.
    let dev = Default::default();
    let n = 8;
    let sde = VpSde::default();
    let model = score_core::DiagGaussian::new(vec![0.0; 4], vec![0.25; 4])
        .unwrap()
        .to_mixture()
        .diffused(sde);
    let pixels = NoiseSource::new(31)
        .uniform::<B, 4>([n, 1, 2, 2], NoiseKey::new(0, 0), &dev)
        .mul_scalar(256.0)
        .floor();
    let deq = Dequantization::new().with_scale(2.0).with_shift(-1.0);
    let y = deq.dequantize(pixels, &NoiseSource::new(32), NoiseKey::new(0, 0));
    let eps = 1e-5;
    let exact = deq.bits_per_dim(
        model.log_prob(y.clone(), Tensor::full([n], eps as f32, &dev)),
        4,
    );
    let lik = LikelihoodConfig::new().init(sde).unwrap();
    let grid = TimeGrid::forward(&sde, eps, 1).unwrap();
    let out = lik
        .log_prob::<A, 4, _>(&model, &grid, y, &NoiseSource::new(0))
        .unwrap();
    let got = to_f64(deq.bits_per_dim(out.log_prob, 4));
    let exact = to_f64(exact);
    let worst = got
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "images: bits/dim {:.4} (exact {:.4}), worst |error| {worst:.2e} bits",
        got[0], exact[0]
    );
    assert!(worst < 4e-3, "bits/dim error {worst}");
}
