//! Determinism and bad input: the same seed gives the same samples (and per-sample noise does
//! not depend on the batch), a NaN/∞ names its step and time, and invalid configurations and
//! grids are rejected with the offending value.

mod common;

use burn::tensor::Tensor;
use common::*;
use score_core::{NoiseSource, VeSde, VpSde, tensor::to_f64};
use score_sample::testing::ring;
use score_sample::*;

#[test]
fn the_same_seed_gives_the_same_samples() {
    let dev = Default::default();
    let sde = VeSde::new(0.01, 10.0).unwrap();
    let score = ring().diffused(sde);
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
    let ring_score = ring().diffused(sde);
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
