//! Every reverse-SDE sampler, driven by score-core's exact tensor score of the diffused ring
//! (`GaussianMixture::diffused`, the score users call), against the acceptance check of
//! `score_sample::testing` (DESIGN.md §6).
//!
//! Error budget: a family-wise error rate of 0.05 over the 20 sampler runs of this file (6
//! predictor–corrector configurations × 3 SDEs, 2 DDPM variances); the per-check levels are in
//! `common::sde_acceptance`. Seeds are fixed (`PC_SEED`, `DDPM_SEED`, and the reference and floor
//! seeds of `score_sample::testing`), fixed before any of these checks was run.
//!
//! Each sampler's own discretisation bias is passed in from `common::pc_bias` and the DDPM table
//! below: measured once with 20,000 points and seed 77 (three standard errors of that
//! measurement widen the bounds). To re-measure, run
//! `SCORE_SAMPLE_BIAS_TABLE=1 cargo test -p score-sample --test sde_samplers -- --nocapture`:
//! the tests then sample 20,000 points with seed 77 and print the table instead of asserting.

mod common;

use burn::tensor::Tensor;
use common::*;
use score_core::{AnySde, Marginal, NoiseSource, ScoreFn, schedule, tensor::to_f64};
use score_sample::testing::{BIAS_N, BIAS_SEED, Bias, local_stats, ring};
use score_sample::*;

/// Sample size and seed of a run: the test's, or the bias measurement's.
fn size_and_seed(seed: u64) -> (usize, u64) {
    if measuring_bias() {
        (BIAS_N, BIAS_SEED)
    } else {
        (N, seed)
    }
}

/// Runs the 6 predictor–corrector configurations under one SDE and checks each.
fn pc_samplers_match_the_ring(sde: AnySde) {
    let dev = Default::default();
    let (n, seed) = size_and_seed(PC_SEED);
    let score = ring().diffused(sde);
    let mut failed = Vec::new();
    for (name, predictor, corrector, steps) in pc_configs() {
        let sampler = PcSamplerConfig::new()
            .with_predictor(predictor)
            .with_corrector(corrector)
            .init(sde)
            .unwrap();
        let grid = TimeGrid::reverse(&sde, 1e-3, steps).unwrap();
        let out = sampler
            .sample::<B, 2, _>(&score, &grid, [n, 2], &NoiseSource::new(seed), &dev)
            .unwrap();
        assert_eq!(out.nfe, steps * (1 + corrector.n_steps()));
        let x = to_f64(out.x);
        let label = format!("{} {name}", sde_name(&sde));
        if measuring_bias() {
            print_bias(&label, &x);
            continue;
        }
        let report = sde_acceptance().check(&x, &pc_bias(sde_name(&sde), name));
        println!("{label}: {report}");
        if !report.passed() {
            failed.push(label);
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn every_pc_sampler_matches_the_ring_under_ve() {
    pc_samplers_match_the_ring(sdes()[0]);
}

#[test]
fn every_pc_sampler_matches_the_ring_under_vp() {
    pc_samplers_match_the_ring(sdes()[1]);
}

#[test]
fn every_pc_sampler_matches_the_ring_under_sub_vp() {
    pc_samplers_match_the_ring(sdes()[2]);
}

/// Known biases of DDPM's two variance choices (measured as described in the module docs).
/// The posterior variance β̃ is the right choice for a point-mass x₀ and too small for the ring's
/// spread, the forward variance β too large (Ho et al. 2020, §3.2): the two bracket the truth.
fn ddpm_bias(variance: AncestralVariance) -> Bias {
    match variance {
        AncestralVariance::Forward => Bias::measured(-0.0018, 0.0454, 0.0533),
        AncestralVariance::Posterior => Bias::measured(-0.0022, -0.1419, -0.1309),
    }
}

#[test]
fn ddpm_sampler_with_the_exact_noise_matches_the_ring() {
    let dev = Default::default();
    let (n, seed) = size_and_seed(DDPM_SEED);
    let steps = 200;
    // VP's discrete betas for N = 200 (β_min/N → β_max/N), so that 200 steps reach N(0, I).
    let ddpm = DdpmSamplerConfig::new()
        .with_n_steps(steps)
        .with_beta_start(0.1 / steps as f64)
        .with_beta_end(20.0 / steps as f64)
        .init()
        .unwrap();
    let abar = ddpm.alphas_cumprod().to_vec();
    // The exact ε-prediction: ε(x, i) = −√(1 − ᾱ_i)·∇log p_i(x), with p_i the ring pushed
    // through x_i = √ᾱ_i·x_0 + √(1 − ᾱ_i)·ε: score-core's tensor score of that mixture.
    let model = |x: Tensor<B, 2>, t: Tensor<B, 1>| {
        let i = schedule::ddpm_step(first(t.clone()), steps);
        let k = Marginal {
            mean_coef: abar[i].sqrt(),
            std: (1.0 - abar[i]).sqrt(),
        };
        ring()
            .perturbed(k)
            .score(x, t)
            .mul_scalar(-(1.0 - abar[i]).sqrt())
    };
    let mut failed = Vec::new();
    for variance in [AncestralVariance::Forward, AncestralVariance::Posterior] {
        let sampler = DdpmSampler::from_betas(ddpm.betas().to_vec(), variance).unwrap();
        let out = sampler
            .sample::<B, 2, _>(&model, [n, 2], &NoiseSource::new(seed), &dev)
            .unwrap();
        assert_eq!(out.nfe, steps);
        let x = to_f64(out.x);
        let label = format!("DDPM {variance:?}");
        if measuring_bias() {
            print_bias(&label, &x);
            continue;
        }
        let report = sde_acceptance().check(&x, &ddpm_bias(variance));
        println!("{label}: {report}");
        if !report.passed() {
            failed.push(label);
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn the_tensor_score_agrees_with_the_host_oracle() {
    // score-core's tensor score (f32, batched softmax) against its f64 host formula at points
    // drawn from p_t itself, for every SDE and times from 1e-3 to T. The f32 path rounds the
    // component log-densities (up to ~|x − mμ|²/2v ≈ 10³ in magnitude near t = 0) to ~1e-4
    // absolute, which moves responsibilities by as much in relative terms; hence the tolerance
    // 1e-3·(1 + |s|).
    let dev = Default::default();
    for sde in sdes() {
        let target = ring().diffused(sde);
        for (j, t) in [1e-3, 0.01, 0.1, 0.5, 1.0].into_iter().enumerate() {
            let p_t = target.at(t).unwrap();
            let x = testing_points(&p_t, 200, j as u64);
            let s = to_f64(target.score(
                score_core::tensor::from_f64::<B, 2>(&x, [200, 2], &dev),
                Tensor::full([200], t, &dev),
            ));
            for (p, got) in x.chunks(2).zip(s.chunks(2)) {
                let want = p_t.score_f64(p);
                let scale = 1.0 + want[0].hypot(want[1]);
                let err = (got[0] - want[0]).hypot(got[1] - want[1]);
                assert!(
                    err < 1e-3 * scale,
                    "{} t = {t}: {got:?} vs {want:?}",
                    sde_name(&sde)
                );
            }
        }
    }
}

fn testing_points(p: &score_core::GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
    score_sample::testing::exact(p, n, 500 + seed)
}

fn print_bias(label: &str, x: &[f64]) {
    let b = local_stats(x, &ring()).as_bias();
    println!(
        "BIAS {label}: b({:+.4}, {:+.4}, {:+.4})",
        b.radial_mean, b.radial_var, b.tangential_var
    );
}
