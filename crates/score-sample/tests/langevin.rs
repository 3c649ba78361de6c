//! Langevin, MALA and annealed Langevin dynamics driven by score-core's exact tensor scores
//! (the static mixture for Langevin and MALA, the VE-diffused ring for annealed Langevin),
//! against the acceptance check of `score_sample::testing`.
//!
//! Error budget: a family-wise error rate of 0.05 over the 3 sampler runs of this file (Langevin
//! and MALA on the blurred ring, annealed Langevin on the ring), split as in
//! `score_sample::testing`: per run SW at 0.05·0.4/3 ≈ 6.7e-3, each of 8 mode counts at
//! 0.05·0.3/24 = 6.25e-4, each of 4 shape statistics (ring only) at 0.05·0.3/12 = 1.25e-3.

mod common;

use common::*;
use score_core::{EnergyFn, Marginal, NoiseKey, NoiseSource, VeSde, tensor::to_f64};
use score_sample::testing::{
    BIAS_N, BIAS_SEED, Bias, ErrorBudget, RingAcceptance, local_stats, ring,
};
use score_sample::*;

const RUNS: usize = 3;

#[test]
fn langevin_and_mala_mix_on_a_blurred_ring() {
    let dev = Default::default();
    // The ring blurred to component std √1.04 ≈ 1.02: neighbouring modes (3.06 apart) overlap,
    // so a local sampler moves between them. Start far from equilibrium: N(0, 4² I), an
    // isotropic start, so every iterate keeps the ring's rotational symmetry and each mode's
    // nearest-mean count stays Binomial(n, 1/8). The modes overlap, so only SW and the counts
    // are checked (no per-mode shape statistics).
    let fuzzy = ring().perturbed(Marginal {
        mean_coef: 1.0,
        std: 1.0,
    });
    let check = RingAcceptance::new(fuzzy.clone(), N, ErrorBudget::new(FWER, RUNS), false);
    let x0 = NoiseSource::new(3)
        .normal::<B, 2>([N, 2], NoiseKey::new(0, 0), &dev)
        .mul_scalar(4.0);
    // ε = 0.05, 300 steps: the slowest (radial) relaxation time is ~v/ε ≈ 20 steps, so 300 steps
    // equilibrate. The unadjusted chain's own bias is known for a Gaussian of variance v:
    // x' = (1 − ε/v)x + √(2ε)z has stationary variance v/(1 − ε/(2v)), a relative change of
    // ε/(2v − ε) ≈ 2.5 % at v = 1.04. It enters the SW allowance (`Bias::sw_allowance`, with σ
    // the component std 1.02). MALA's Metropolis step removes it.
    let cfg = LangevinConfig::new(0.05, 300);
    let ula = cfg
        .init()
        .unwrap()
        .sample(&fuzzy, x0.clone(), 0.0, &NoiseSource::new(5))
        .unwrap();
    let mala = cfg
        .init_mala()
        .unwrap()
        .sample(&fuzzy, x0, 0.0, &NoiseSource::new(5))
        .unwrap();
    assert_eq!(ula.nfe, 300);
    assert_eq!(mala.samples.nfe, 301);
    let v = fuzzy.variances()[0][0];
    let ula_var = 0.05 / (2.0 * v - 0.05);
    let mut failed = Vec::new();
    for (name, x, bias) in [
        (
            "Langevin",
            to_f64(ula.x),
            Bias::known(0.0, ula_var, ula_var),
        ),
        ("MALA", to_f64(mala.samples.x), Bias::NONE),
    ] {
        let report = check.check(&x, &bias);
        println!("{name}: {report}");
        if !report.passed() {
            failed.push(name);
        }
    }
    // At this step size (ε/v ≈ 0.05) MALA accepts nearly everything; a rate below 0.9 would
    // mean a wrong proposal density.
    println!("MALA acceptance rate {:.3}", mala.acceptance_rate);
    assert!(mala.acceptance_rate > 0.9 && mala.acceptance_rate <= 1.0);
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn mala_rejects_when_steps_are_too_large() {
    // A step of ε = 2 on N(0, 0.04 I) overshoots by a factor 1 − ε/0.04 = −49: the Metropolis
    // correction must reject almost every move and keep the chain where it was.
    let dev = Default::default();
    let narrow = score_core::DiagGaussian::new(vec![0.0, 0.0], vec![0.04, 0.04])
        .unwrap()
        .to_mixture();
    // score-core's static mixture is both the score and the energy MALA needs.
    let _: &dyn EnergyFn<B, 2> = &narrow;
    let x0 = NoiseSource::new(3)
        .normal::<B, 2>([200, 2], NoiseKey::new(0, 0), &dev)
        .mul_scalar(0.2);
    let out = LangevinConfig::new(2.0, 20)
        .init_mala()
        .unwrap()
        .sample(&narrow, x0.clone(), 0.0, &NoiseSource::new(1))
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

/// Known bias of annealed Langevin at the settings below, measured with 20,000 points and seed
/// 77 (`SCORE_SAMPLE_BIAS_TABLE=1 cargo test -p score-sample --test langevin -- --nocapture`).
/// Each mode comes out ~32 % too wide: with `α_i = 0.05·σ_i²`, a chain relaxes within a mode of
/// variance `0.04 + σ_i²` in `(0.04 + σ_i²)/α_i` steps — 40 at σ = 0.2 but 8,000 at σ = 0.01 —
/// so the 30 steps of the low levels cannot shrink the spread the modes had at higher levels.
fn annealed_bias() -> Bias {
    Bias::measured(-0.0018, 0.3189, 0.3363)
}

#[test]
fn annealed_langevin_matches_the_ring() {
    let dev = Default::default();
    let sde = VeSde::new(0.01, 10.0).unwrap();
    let (n, seed) = if measuring_bias() {
        (BIAS_N, BIAS_SEED)
    } else {
        (N, 9)
    };
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
            &ring().diffused(sde),
            &grid,
            [n, 2],
            &NoiseSource::new(seed),
            &dev,
        )
        .unwrap();
    assert_eq!(out.nfe, 20 * 30 + 1);
    let x = to_f64(out.x);
    if measuring_bias() {
        let b = local_stats(&x, &ring()).as_bias();
        println!(
            "BIAS annealed Langevin: b({:+.4}, {:+.4}, {:+.4})",
            b.radial_mean, b.radial_var, b.tangential_var
        );
        return;
    }
    let check = RingAcceptance::new(ring(), N, ErrorBudget::new(FWER, RUNS), true);
    let report = check.check(&x, &annealed_bias());
    println!("annealed Langevin: {report}");
    assert!(report.passed(), "{report}");
}
