//! The acceptance check can fail: broken samplers, run at the real tests' sample size and seed,
//! must fail the very checks (same reference, same floor, same error budget, same bias
//! allowance) that the real sampler passes in `sde_samplers.rs`.
//!
//! The real sampler is the library's default predictor–corrector sampler under VE (reverse
//! diffusion + one Langevin corrector step at snr 0.16, 100 steps), driven by score-core's exact
//! tensor score of the diffused ring. Each broken one changes a single thing:
//!
//! - the corrector's snr × 4 (0.64): Langevin steps 16 times too long, whose unadjusted bias
//!   inflates each mode's variance by tens of percent;
//! - the exact score × 0.8: samples a tempered law, each mode's variance grows by ~60 %;
//! - the exact score of the ring with its means rotated by 10°: every mode sits 0.70 off its
//!   place, tangentially;
//! - the exact score of the ring with the first mode's weight raised by 5 points (0.175), taken
//!   evenly from the other seven.

mod common;

use burn::tensor::Tensor;
use common::*;
use score_core::{AnySde, GaussianMixture, NoiseSource, ScoreFn, VeSde, tensor::to_f64};
use score_sample::testing::{Report, ring};
use score_sample::*;

fn sample<F: ScoreFn<B, 2>>(score: &F, corrector: CorrectorKind) -> Vec<f64> {
    let sde = VeSde::new(0.01, 10.0).unwrap();
    let sampler = PcSamplerConfig::new()
        .with_predictor(PredictorKind::ReverseDiffusion)
        .with_corrector(corrector)
        .init(sde)
        .unwrap();
    let grid = TimeGrid::reverse(&sde, 1e-3, 100).unwrap();
    let out = sampler
        .sample::<B, 2, _>(
            score,
            &grid,
            [N, 2],
            &NoiseSource::new(PC_SEED),
            &Default::default(),
        )
        .unwrap();
    to_f64(out.x)
}

#[test]
fn broken_samplers_fail_the_checks_the_real_one_passes() {
    let sde = VeSde::new(0.01, 10.0).unwrap();
    let (name, predictor, corrector, steps) = pc_configs()[4];
    assert_eq!(
        (name, predictor, steps),
        (
            "reverse diffusion + Langevin",
            PredictorKind::ReverseDiffusion,
            100
        ),
        "the real sampler is sde_samplers.rs's VE reverse diffusion + Langevin run"
    );
    assert_eq!(sde_name(&AnySde::Ve(sde)), "VE");
    let bias = pc_bias("VE", name);
    let check = sde_acceptance();
    let exact = ring().diffused(sde);

    let real = check.check(&sample(&exact, corrector), &bias);
    println!("real sampler: {real}");
    assert!(real.passed(), "the real sampler must pass: {real}");

    let snr4 = CorrectorKind::Langevin {
        snr: 0.64,
        n_steps: 1,
    };
    let scaled = |x: Tensor<B, 2>, t: Tensor<B, 1>| exact.score(x, t).mul_scalar(0.8);
    let rotated = {
        let a = 10f64.to_radians();
        let r = ring();
        let means = r
            .means()
            .iter()
            .map(|m| {
                vec![
                    a.cos() * m[0] - a.sin() * m[1],
                    a.sin() * m[0] + a.cos() * m[1],
                ]
            })
            .collect();
        GaussianMixture::new(r.weights().to_vec(), means, r.variances().to_vec())
            .unwrap()
            .diffused(sde)
    };
    let reweighted = {
        let r = ring();
        let mut w = vec![0.125 - 0.05 / 7.0; 8];
        w[0] = 0.175;
        GaussianMixture::new(w, r.means().to_vec(), r.variances().to_vec())
            .unwrap()
            .diffused(sde)
    };
    // Each with the check that its defect must trip (a prediction, not a measurement): too
    // long corrector steps and a shrunken score widen the modes; the rotation moves them
    // tangentially; the weight moves mode 0's count.
    let broken: [(&str, Report, &str); 4] = [
        (
            "snr × 4",
            check.check(&sample(&exact, snr4), &bias),
            "variance ratio",
        ),
        (
            "score × 0.8",
            check.check(&sample(&scaled, corrector), &bias),
            "variance ratio",
        ),
        (
            "means rotated 10°",
            check.check(&sample(&rotated, corrector), &bias),
            "tangential mean",
        ),
        (
            "first weight +5 points",
            check.check(&sample(&reweighted, corrector), &bias),
            "mode 0: count",
        ),
    ];
    for (what, report, _) in &broken {
        println!("{what}: {report}");
    }
    for (what, report, expected) in &broken {
        assert!(
            !report.passed(),
            "{what} passed the acceptance check: {report}"
        );
        assert!(
            report.failures.iter().any(|f| f.contains(expected)),
            "{what} should fail on its {expected}: {report}"
        );
    }
}
