//! The probability-flow ODE solvers, driven by score-core's exact tensor score of the diffused
//! ring: samples against the acceptance check of `score_sample::testing`, encode → decode, and
//! the solvers' orders.
//!
//! Error budget: a family-wise error rate of 0.05 over the 12 ODE runs (4 solvers × 3 SDEs).
//! Per run: SW at level 0.05·0.4/12 ≈ 1.7e-3 (599 floor replicates), each of 8 mode counts at
//! 0.05·0.3/96 ≈ 1.6e-4, each of 4 shape statistics at 0.05·0.3/48 ≈ 3.1e-4.
//!
//! The ODE maps the prior to the data deterministically, so it keeps two biases that the
//! reverse SDE's noise washes out: the discretisation error of fixed-step solvers, and the
//! mismatch between the prior `N(0, σ_max²I)` and the true `p_T` (under VE with σ_max = 10 the
//! ring adds variance 8 to the prior's 100, and the flow carries that 8 % error to `t = ε` as a
//! radial shrinkage of ~0.015 and a 5 % smaller radial variance, with RK45 as with RK4). Both
//! are in the bias table below, measured with 20,000 points and seed 77
//! (`SCORE_SAMPLE_BIAS_TABLE=1 cargo test -p score-sample --test ode -- --nocapture` prints it).

mod common;

use std::sync::OnceLock;

use burn::tensor::Tensor;
use common::*;
use score_core::{AnySde, NoiseKey, NoiseSource, Sde, VeSde, VpSde, tensor::to_f64};
use score_sample::testing::{
    BIAS_N, BIAS_SEED, Bias, ErrorBudget, RingAcceptance, local_stats, ring,
};
use score_sample::*;

const ODE_RUNS: usize = 12;
const ODE_SEED: u64 = 7;

/// Known biases of each solver on the ring (module docs).
fn ode_bias(sde: &str, solver: &str) -> Bias {
    let b = Bias::measured;
    match (sde, solver) {
        ("VE", "Euler") => b(-0.0382, -0.2176, -0.0699),
        ("VE", "Heun") => b(-0.0138, -0.0300, 0.0068),
        ("VE", "RK4") => b(-0.0150, -0.0459, -0.0065),
        ("VE", "RK45") => b(-0.0149, -0.0465, -0.0083),
        ("VP", "Euler") => b(0.0086, -0.0398, 0.0112),
        ("VP", "Heun") => b(-0.0047, 0.0172, 0.0401),
        ("VP", "RK4") => b(-0.0015, -0.0059, 0.0121),
        ("VP", "RK45") => b(-0.0015, -0.0054, 0.0108),
        ("sub-VP", "Euler") => b(0.0165, -0.0475, 0.0173),
        ("sub-VP", "Heun") => b(-0.0041, -0.0010, 0.0249),
        ("sub-VP", "RK4") => b(-0.0015, -0.0073, 0.0122),
        ("sub-VP", "RK45") => b(-0.0015, -0.0081, 0.0081),
        _ => panic!("no measured bias for {sde} {solver}"),
    }
}

fn ode_acceptance() -> &'static RingAcceptance {
    static CHECK: OnceLock<RingAcceptance> = OnceLock::new();
    CHECK.get_or_init(|| RingAcceptance::new(ring(), N, ErrorBudget::new(FWER, ODE_RUNS), true))
}

/// Runs the 4 solvers under one SDE and checks each.
fn ode_solvers_match_the_ring(sde: AnySde) {
    let dev = Default::default();
    let (n, seed) = if measuring_bias() {
        (BIAS_N, BIAS_SEED)
    } else {
        (N, ODE_SEED)
    };
    let solvers = [
        ("Euler", OdeSolver::Euler, 100),
        ("Heun", OdeSolver::Heun, 50),
        ("RK4", OdeSolver::Rk4, 25),
        ("RK45", OdeSolver::Dopri5(AdaptiveConfig::new()), 1),
    ];
    let score = ring().diffused(sde);
    let mut failed = Vec::new();
    for (name, solver, steps) in solvers {
        let ode = ProbabilityFlowConfig::new()
            .with_solver(solver)
            .init(sde)
            .unwrap();
        let grid = TimeGrid::reverse(&sde, 1e-3, steps).unwrap();
        let out = ode
            .sample::<B, 2, _>(&score, &grid, [n, 2], &NoiseSource::new(seed), &dev)
            .unwrap();
        let x = to_f64(out.x);
        let label = format!("{} ODE {name} (NFE {})", sde_name(&sde), out.nfe);
        if measuring_bias() {
            let b = local_stats(&x, &ring()).as_bias();
            println!(
                "BIAS {label}: b({:+.4}, {:+.4}, {:+.4})",
                b.radial_mean, b.radial_var, b.tangential_var
            );
            continue;
        }
        let report = ode_acceptance().check(&x, &ode_bias(sde_name(&sde), name));
        println!("{label}: {report}");
        if !report.passed() {
            failed.push(label);
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn every_ode_solver_matches_the_ring_under_ve() {
    ode_solvers_match_the_ring(sdes()[0]);
}

#[test]
fn every_ode_solver_matches_the_ring_under_vp() {
    ode_solvers_match_the_ring(sdes()[1]);
}

#[test]
fn every_ode_solver_matches_the_ring_under_sub_vp() {
    ode_solvers_match_the_ring(sdes()[2]);
}

#[test]
fn encode_then_decode_returns_the_input() {
    let dev = Default::default();
    let x = ring().sample::<B>(200, &NoiseSource::new(12), NoiseKey::new(0, 0), &dev);
    for sde in [
        AnySde::Vp(VpSde::default()),
        AnySde::Ve(VeSde::new(0.01, 10.0).unwrap()),
    ] {
        let score = ring().diffused(sde);
        let tight = OdeSolver::Dopri5(AdaptiveConfig::new().with_rtol(1e-6).with_atol(1e-6));
        let ode = ProbabilityFlowConfig::new()
            .with_solver(tight)
            .init(sde)
            .unwrap();
        let up = TimeGrid::forward(&sde, 1e-3, 1).unwrap();
        let z = ode.encode(&score, &up, x.clone()).unwrap();
        // The latent of exact data is a draw from p_T, whose per-coordinate variance is
        // m(T)²·(8 + 0.04) + s(T)² (the ring's spread, pushed forward); 400 values estimate the
        // std to a standard error of 1/√800 ≈ 3.5 %, so 5 of them (18 %) is the bound.
        let zs = to_f64(z.x.clone());
        let k = sde.marginal(sde.t_max());
        let want = (k.mean_coef.powi(2) * 8.04 + k.std.powi(2)).sqrt();
        let std = (zs.iter().map(|v| v * v).sum::<f64>() / zs.len() as f64).sqrt();
        assert!(
            (std / want - 1.0).abs() < 5.0 / 800f64.sqrt(),
            "{sde:?}: latent std {std} vs {want}"
        );
        let back = ode.decode(&score, &up.reversed(), z.x).unwrap();
        let err = to_f64(back.x - x.clone())
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        println!(
            "{}: encode → decode max |error| {err:.2e} (NFE {} + {})",
            sde_name(&sde),
            z.nfe,
            back.nfe
        );
        // Tolerances 1e-6 over a path of length ~10: 1e-3 leaves room for f32 round-off.
        assert!(err < 1e-3, "{sde:?}: round trip error {err}");
    }
}

#[test]
fn heun_and_rk4_beat_euler_at_equal_nfe() {
    let dev = Default::default();
    let sde = VpSde::default();
    let score = ring().diffused(sde);
    let z = sde.prior_sample::<B, 2>([200, 2], &NoiseSource::new(13), NoiseKey::new(0, 0), &dev);
    let solve = |solver, steps| {
        let ode = ProbabilityFlowConfig::new()
            .with_solver(solver)
            .init(sde)
            .unwrap();
        let grid = TimeGrid::reverse(&sde, 1e-3, steps).unwrap();
        ode.decode(&score, &grid, z.clone()).unwrap()
    };
    // Reference: RK4 with 400 steps (its error is ~(12/400)⁴ ≈ 1e-6 of the 12-step RK4 error).
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
