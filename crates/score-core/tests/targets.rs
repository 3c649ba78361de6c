//! The analytic targets are the oracle for the whole workspace, so they are checked against
//! independent computations: finite differences of the exact log-density, quadrature of the
//! density, sample moments, and the closed form of a single Gaussian.

use approx::assert_relative_eq;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use proptest::prelude::*;
use score_core::tensor::{from_f64, to_f64};
use score_core::{
    AnySde, AutodiffScore, CoreError, DiagGaussian, EnergyFn, GaussianMixture, NoiseKey,
    NoiseSource, ScoreFn, Sde, SubVpSde, VeSde, VpSde,
};

type B = NdArray<f32>;

fn sdes() -> [AnySde; 3] {
    [
        AnySde::Ve(VeSde::default()),
        AnySde::Vp(VpSde::default()),
        AnySde::SubVp(SubVpSde::default()),
    ]
}

/// A 3-D mixture with unequal weights and anisotropic variances, so no symmetry hides a bug.
fn mixture_3d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.2, 0.5, 0.3],
        vec![
            vec![1.0, -2.0, 0.5],
            vec![-1.5, 0.0, 2.0],
            vec![0.0, 3.0, -1.0],
        ],
        vec![
            vec![0.3, 0.1, 0.5],
            vec![0.2, 0.4, 0.05],
            vec![1.0, 0.3, 0.2],
        ],
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn exact_score_is_the_gradient_of_the_exact_log_density(
        t in 1e-5f64..1.0,
        x in prop::collection::vec(-4.0f64..4.0, 3),
    ) {
        for sde in sdes() {
            let p = mixture_3d().at(&sde, t).unwrap();
            let s = p.score_f64(&x);
            for j in 0..3 {
                // Step scaled to the smallest std so the difference resolves the density's features.
                let h = 1e-5 * p.variances().iter().map(|v| v[j].sqrt()).fold(f64::INFINITY, f64::min);
                let (mut lo, mut hi) = (x.clone(), x.clone());
                lo[j] -= h;
                hi[j] += h;
                let fd = (p.log_prob_f64(&hi) - p.log_prob_f64(&lo)) / (2.0 * h);
                // Central differences in f64: truncation O(h²·|∂³ log p|) plus rounding
                // O(1e-16·|log p|/h); 1e-5 relative (with an absolute floor) covers both.
                let tol = 1e-5 * s[j].abs().max(1.0);
                prop_assert!((fd - s[j]).abs() < tol, "{sde:?} t={t} x={x:?} j={j}: fd={fd} exact={}", s[j]);
            }
        }
    }
}

#[test]
fn tensor_score_and_log_prob_match_host_f64() {
    let dev = Default::default();
    let m = mixture_3d();
    let ts = [1e-5, 0.01, 0.3, 0.7, 1.0];
    let xs: Vec<f64> = NoiseSource::new(5).normal_f64(ts.len(), 3, NoiseKey::new(0, 0));
    let xs: Vec<f64> = xs.iter().map(|v| 2.0 * v).collect();
    let x = from_f64::<B, 2>(&xs, [ts.len(), 3], &dev);
    let t = from_f64::<B, 1>(&ts, [ts.len()], &dev);
    for sde in sdes() {
        let target = m.diffused(sde);
        let s = to_f64(target.score(x.clone(), t.clone()));
        let lp = to_f64(target.log_prob(x.clone(), t.clone()));
        for (i, &ti) in ts.iter().enumerate() {
            // The tensor path sees t and x rounded to f32; use the same inputs on the host.
            let xi: Vec<f64> = xs[3 * i..3 * i + 3]
                .iter()
                .map(|&v| v as f32 as f64)
                .collect();
            let p = m.at(&sde, ti as f32 as f64).unwrap();
            let exact = p.score_f64(&xi);
            for j in 0..3 {
                // f32 arithmetic: ~1e-6 relative per operation, amplified by 1/var up to 1e5 at
                // t = 1e-5 under VP; compare relative to the score's scale.
                let scale = exact.iter().map(|v| v.abs()).fold(1.0, f64::max);
                assert!(
                    (s[3 * i + j] - exact[j]).abs() < 2e-4 * scale,
                    "{sde:?} t={ti}: tensor {} vs exact {}",
                    s[3 * i + j],
                    exact[j]
                );
            }
            let exact_lp = p.log_prob_f64(&xi);
            assert!(
                (lp[i] - exact_lp).abs() < 1e-4 * exact_lp.abs().max(10.0),
                "{sde:?} t={ti}: log p {} vs {exact_lp}",
                lp[i]
            );
        }
    }
}

#[test]
fn image_shaped_inputs_use_the_flattened_dimension() {
    // A 4-D target seen as [n, 1, 2, 2] images gives the same score as the [n, 4] points.
    let dev = Default::default();
    let g = DiagGaussian::new(vec![0.0, 1.0, 2.0, 3.0], vec![1.0, 0.5, 2.0, 0.25])
        .unwrap()
        .to_mixture()
        .diffused(VpSde::default());
    let x2 = Tensor::<B, 2>::ones([2, 4], &dev);
    let t = Tensor::<B, 1>::full([2], 0.5, &dev);
    let s2 = to_f64(g.score(x2.clone(), t.clone()));
    let s4 = to_f64(g.score(x2.reshape([2, 1, 2, 2]), t));
    assert_eq!(s2, s4);
}

#[test]
fn density_integrates_to_one_on_a_grid() {
    // Midpoint rule on a grid wide enough that the tails beyond it are < 1e-9; for smooth
    // Gaussians the rule's error at this spacing (≤ std/10) is far below 1e-6.
    let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
    let cases = [
        (ring.clone(), 0.02),
        (ring.at(&VpSde::default(), 0.1).unwrap(), 0.03),
        (ring.at(&VeSde::default(), 0.2).unwrap(), 0.03),
    ];
    for (p, h) in cases {
        // Every component's mean lies within |μ| of the origin; 8 std beyond it the mass is < 1e-14.
        let reach = p
            .means()
            .iter()
            .flatten()
            .fold(0.0f64, |a, m| a.max(m.abs()));
        let half = reach + 8.0 * p.variances()[0][0].sqrt();
        let n = (2.0 * half / h).ceil() as usize;
        let mut total = 0.0;
        for i in 0..n {
            for j in 0..n {
                let x = [-half + (i as f64 + 0.5) * h, -half + (j as f64 + 0.5) * h];
                total += p.log_prob_f64(&x).exp();
            }
        }
        total *= h * h;
        assert!((total - 1.0).abs() < 1e-3, "integral {total}");
    }
}

#[test]
fn sample_moments_match_exact_moments() {
    let m = mixture_3d();
    let n = 100_000;
    let xs = m.sample_f64(n, &NoiseSource::new(11), NoiseKey::new(0, 0));
    let (mean, cov) = (m.mean(), m.covariance());
    for j in 0..3 {
        let mj = xs.iter().skip(j).step_by(3).sum::<f64>() / n as f64;
        // Standard error of a sample mean: sqrt(var/n) ≤ sqrt(4/1e5) ≈ 6.3e-3 here; 5 SE.
        let se = (cov[4 * j] / n as f64).sqrt();
        assert!(
            (mj - mean[j]).abs() < 5.0 * se,
            "mean {j}: {mj} vs {}",
            mean[j]
        );
    }
    for a in 0..3 {
        for b in 0..3 {
            let c = xs
                .chunks(3)
                .map(|r| (r[a] - mean[a]) * (r[b] - mean[b]))
                .sum::<f64>()
                / n as f64;
            // Standard error of a covariance entry is at most sqrt(E[(x_a x_b)²]/n); with the
            // fourth moments of this mixture bounded by ~30, 5 SE ≈ 5·sqrt(30/1e5) ≈ 0.09.
            let exact = cov[3 * a + b];
            assert!((c - exact).abs() < 0.09, "cov[{a}{b}] {c} vs {exact}");
        }
    }
    // Sample i does not depend on how many are drawn.
    let few = m.sample_f64(10, &NoiseSource::new(11), NoiseKey::new(0, 0));
    assert_eq!(&xs[..30], &few[..]);
    // Tensor sampling yields the same values (rounded to f32).
    let dev = Default::default();
    let tx = to_f64(m.sample::<B>(10, &NoiseSource::new(11), NoiseKey::new(0, 0), &dev));
    for (a, b) in tx.iter().zip(&few) {
        assert_relative_eq!(*a, *b as f32 as f64);
    }
}

#[test]
fn diag_gaussian_closed_forms_agree_with_its_mixture() {
    let g = DiagGaussian::new(vec![1.0, -1.0], vec![0.5, 2.0]).unwrap();
    let m = g.to_mixture();
    let x = [0.3, 0.7];
    assert_relative_eq!(g.log_prob_f64(&x), m.log_prob_f64(&x), max_relative = 1e-12);
    let (a, b) = (g.score_f64(&x), m.score_f64(&x));
    assert_relative_eq!(a[0], b[0], max_relative = 1e-12);
    assert_relative_eq!(a[1], b[1], max_relative = 1e-12);
    let k = VpSde::default().marginal(0.4);
    let gp = g.perturbed(k);
    assert_relative_eq!(gp.variance()[1], k.mean_coef.powi(2) * 2.0 + k.std.powi(2));
    assert_relative_eq!(
        gp.log_prob_f64(&x),
        m.perturbed(k).log_prob_f64(&x),
        max_relative = 1e-12
    );
    assert_eq!(g.dim(), 2);
    assert_eq!(g.mean(), &[1.0, -1.0]);
}

#[test]
fn autodiff_score_of_the_energy_equals_the_exact_score() {
    type A = Autodiff<B>;
    let dev = Default::default();
    let target = GaussianMixture::ring(8, 4.0, 0.2)
        .unwrap()
        .diffused(VeSde::default());
    let x = Tensor::<B, 2>::from_floats([[3.9, 0.1], [0.0, -4.2], [1.0, 1.0]], &dev);
    let t = Tensor::<B, 1>::full([3], 0.2, &dev);
    let exact = to_f64(ScoreFn::<B, 2>::score(&target, x.clone(), t.clone()));
    let via_energy = to_f64(AutodiffScore::<_, A>::new(target.clone()).score(x.clone(), t.clone()));
    for (a, b) in exact.iter().zip(&via_energy) {
        assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} vs {b}");
    }
    // The energy is the negative exact log-density.
    let e = to_f64(EnergyFn::<B, 2>::energy(&target, x, t));
    let p = target.at(0.2f32 as f64).unwrap();
    assert_relative_eq!(
        -e[0],
        p.log_prob_f64(&[3.9f32 as f64, 0.1f32 as f64]),
        max_relative = 1e-5
    );
}

#[test]
fn invalid_targets_are_rejected_with_values() {
    assert_eq!(
        GaussianMixture::new(vec![], vec![], vec![]),
        Err(CoreError::EmptyMixture)
    );
    assert_eq!(
        GaussianMixture::new(vec![1.0, -0.5], vec![vec![0.0]; 2], vec![vec![1.0]; 2]),
        Err(CoreError::InvalidWeight {
            index: 1,
            weight: -0.5
        })
    );
    assert_eq!(
        GaussianMixture::new(vec![1.0], vec![vec![0.0, 0.0]], vec![vec![1.0, 0.0]]),
        Err(CoreError::InvalidVariance {
            component: 0,
            coord: 1,
            value: 0.0
        })
    );
    assert_eq!(
        GaussianMixture::new(
            vec![1.0, 1.0],
            vec![vec![0.0], vec![0.0, 1.0]],
            vec![vec![1.0]; 2]
        ),
        Err(CoreError::DimensionMismatch {
            what: "mixture mean",
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        DiagGaussian::new(vec![0.0; 3], vec![1.0; 2]),
        Err(CoreError::DimensionMismatch {
            what: "Gaussian variances",
            expected: 3,
            got: 2
        })
    );
    assert_eq!(
        DiagGaussian::new(vec![0.0], vec![f64::NAN])
            .unwrap_err()
            .to_string(),
        "variance of component 0, coordinate 0 must be positive and finite, got NaN"
    );
    assert!(matches!(
        GaussianMixture::ring(8, 4.0, 0.2).unwrap().at(&VpSde::default(), 1.5),
        Err(CoreError::TimeOutOfRange { t, .. }) if t == 1.5
    ));
    assert!(matches!(
        GaussianMixture::ring(0, 4.0, 0.2),
        Err(CoreError::TooFewSteps { got: 0, .. })
    ));
}

#[test]
fn deserialising_validates_like_the_constructors() {
    // Round trips of valid values.
    let ring = GaussianMixture::ring(8, 4.0, 0.2).unwrap();
    let back: GaussianMixture =
        serde_json::from_str(&serde_json::to_string(&ring).unwrap()).unwrap();
    assert_eq!(back.n_components(), 8);
    for (a, b) in back.weights().iter().zip(ring.weights()) {
        assert_relative_eq!(*a, *b, max_relative = 1e-15);
    }
    let ve = VeSde::new(0.05, 10.0).unwrap();
    let ve_back: VeSde = serde_json::from_str(&serde_json::to_string(&ve).unwrap()).unwrap();
    assert_eq!(ve_back, ve);
    let vp = VpSde::new(0.1, 20.0).unwrap();
    let vp_back: VpSde = serde_json::from_str(&serde_json::to_string(&vp).unwrap()).unwrap();
    assert_eq!(vp_back, vp);

    // Invalid values are errors that name the problem, not objects that panic later.
    let err = |r: Result<GaussianMixture, serde_json::Error>| r.unwrap_err().to_string();
    assert!(
        err(serde_json::from_str(
            r#"{"weights":[],"means":[],"vars":[]}"#
        ))
        .contains("at least one component"),
        "empty mixture"
    );
    let e = err(serde_json::from_str(
        r#"{"weights":[1.0],"means":[[0.0,0.0]],"vars":[[1.0]]}"#,
    ));
    assert!(e.contains("mixture variance"), "{e}");
    let e = serde_json::from_str::<VeSde>(r#"{"sigma_min":10.0,"sigma_max":0.05}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("10"), "{e}");
    assert!(serde_json::from_str::<VpSde>(r#"{"beta_min":-1.0,"beta_max":20.0}"#).is_err());
    assert!(serde_json::from_str::<SubVpSde>(r#"{"beta_min":5.0,"beta_max":1.0}"#).is_err());
    assert!(
        serde_json::from_str::<DiagGaussian>(r#"{"mean":[0.0],"var":[0.0]}"#)
            .unwrap_err()
            .to_string()
            .contains("variance")
    );
}
