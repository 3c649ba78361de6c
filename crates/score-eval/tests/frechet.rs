//! The Fréchet distance against closed forms: Gaussians with diagonal covariances
//! (`d² = ‖Δμ‖² + Σ (√aᵢ − √bᵢ)²`), commuting and rotated covariances, identical sets, and the
//! sample version within a stated bound.

use score_core::{NoiseKey, NoiseSource};
use score_eval::{EvalError, clopper_pearson, frechet_distance, frechet_distance_gaussians};

fn diag(d: &[f64]) -> Vec<f64> {
    let n = d.len();
    let mut c = vec![0.0; n * n];
    for (i, v) in d.iter().enumerate() {
        c[i * n + i] = *v;
    }
    c
}

/// `R diag(d) Rᵀ` for the rotation by `theta` in the (0, 1) plane.
fn rotated(d: &[f64], theta: f64) -> Vec<f64> {
    let n = d.len();
    let mut r = diag(&vec![1.0; n]);
    let (s, c) = theta.sin_cos();
    r[0] = c;
    r[1] = -s;
    r[n] = s;
    r[n + 1] = c;
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n).map(|k| r[i * n + k] * d[k] * r[j * n + k]).sum();
        }
    }
    out
}

#[test]
fn diagonal_gaussians_match_the_closed_form() {
    let (ma, mb): ([f64; 4], [f64; 4]) = ([0.5, -1.0, 2.0, 0.0], [1.5, 1.0, 2.0, -0.25]);
    let (a, b): ([f64; 4], [f64; 4]) = ([4.0, 1.0, 0.25, 2.0], [1.0, 9.0, 0.25, 0.5]);
    let expected: f64 = ma
        .iter()
        .zip(&mb)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        + a.iter()
            .zip(&b)
            .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
            .sum::<f64>();
    let d = frechet_distance_gaussians(&ma, &diag(&a), &mb, &diag(&b), 4).unwrap();
    assert!((d - expected).abs() < 1e-12 * expected, "{d} vs {expected}");
}

#[test]
fn a_common_rotation_changes_nothing() {
    // Rotating both covariances by the same orthogonal matrix is an isometry of the Gaussians.
    let (a, b): ([f64; 3], [f64; 3]) = ([4.0, 1.0, 0.25], [1.0, 9.0, 0.36]);
    let expected: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
        .sum();
    let z = [0.0; 3];
    let d = frechet_distance_gaussians(&z, &rotated(&a, 0.7), &z, &rotated(&b, 0.7), 3).unwrap();
    assert!((d - expected).abs() < 1e-12 * expected, "{d} vs {expected}");
}

#[test]
fn non_commuting_covariances_in_2d() {
    // In 2-D, tr √M = √(tr M + 2√det M) for M = A^{1/2} B A^{1/2} (Cayley–Hamilton), with
    // det M = det A · det B: a closed form for covariances that do not commute.
    let a = [2.0, 0.6, 0.6, 1.0];
    let b = rotated(&[3.0, 0.5], 0.4);
    let det = |m: &[f64]| m[0] * m[3] - m[1] * m[2];
    let tr_m: f64 = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| a[i * 2 + j] * b[j * 2 + i])
        .sum();
    let tr_sqrt = (tr_m + 2.0 * (det(&a) * det(&b)).sqrt()).sqrt();
    let expected = a[0] + a[3] + b[0] + b[3] - 2.0 * tr_sqrt;
    let d = frechet_distance_gaussians(&[0.0; 2], &a, &[0.0; 2], &b, 2).unwrap();
    assert!((d - expected).abs() < 1e-12, "{d} vs {expected}");
}

#[test]
fn identical_sets_are_at_distance_zero() {
    // 300 points in 20 dimensions with correlated coordinates (and 10 points in 20 dimensions:
    // a rank-deficient covariance, whose zero eigenvalues rounding may push below zero).
    for n in [300, 10] {
        let z = NoiseSource::new(3).normal_f64(n, 20, NoiseKey::new(0, 0));
        let x: Vec<f64> = z
            .chunks(20)
            .flat_map(|p| (0..20).map(move |i| p[i] + 0.5 * p[(i + 1) % 20]))
            .collect();
        let d = frechet_distance(&x, &x, 20).unwrap();
        let scale: f64 = score_eval::covariance(&x, 20)
            .unwrap()
            .iter()
            .step_by(21)
            .sum();
        assert!(d <= 1e-9 * scale, "n = {n}: {d} (trace {scale})");
    }
}

#[test]
fn sample_distance_converges_to_the_gaussian_one() {
    // N(0, diag(1, 4)) against N((1, 0), diag(4, 1)): d² = 1 + 1 + 1 = 3. With n = 20 000 points
    // per set the plug-in estimate's bias is O(dim/n) and its standard deviation about
    // 2‖Δμ‖σ/√n + O(1/√n) ≈ 0.03; 0.15 is five of those.
    let n = 20_000;
    let sample = |seed: u64, mean: [f64; 2], std: [f64; 2]| -> Vec<f64> {
        NoiseSource::new(seed)
            .normal_f64(n, 2, NoiseKey::new(0, 0))
            .chunks(2)
            .flat_map(|z| [mean[0] + std[0] * z[0], mean[1] + std[1] * z[1]])
            .collect()
    };
    let a = sample(1, [0.0, 0.0], [1.0, 2.0]);
    let b = sample(2, [1.0, 0.0], [2.0, 1.0]);
    let d = frechet_distance(&a, &b, 2).unwrap();
    assert!((d - 3.0).abs() < 0.15, "{d}");
}

#[test]
fn distance_grows_with_a_shift() {
    let a = NoiseSource::new(5).normal_f64(500, 3, NoiseKey::new(0, 0));
    let mut last = frechet_distance(&a, &a, 3).unwrap();
    for delta in [0.5, 1.0, 2.0, 4.0] {
        let b: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 3 == 0 { v + delta } else { *v })
            .collect();
        let d = frechet_distance(&a, &b, 3).unwrap();
        // Same covariance: the distance is exactly the squared shift.
        assert!((d - delta * delta).abs() < 1e-9, "{delta}: {d}");
        assert!(d > last);
        last = d;
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    assert_eq!(
        frechet_distance(&[1.0, 2.0], &[1.0, 2.0], 0),
        Err(EvalError::ZeroDimension)
    );
    assert!(matches!(
        frechet_distance(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2),
        Err(EvalError::Ragged { .. })
    ));
    assert!(matches!(
        frechet_distance(&[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0], 2),
        Err(EvalError::TooFewPoints { .. })
    ));
    assert!(matches!(
        frechet_distance_gaussians(&[0.0], &[1.0, 0.0], &[0.0], &[1.0], 1),
        Err(EvalError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        frechet_distance_gaussians(&[f64::NAN], &[1.0], &[0.0], &[1.0], 1),
        Err(EvalError::NonFinite { .. })
    ));
}

#[test]
fn clopper_pearson_matches_published_values() {
    // 5 of 10: (0.187086, 0.812914) (Clopper & Pearson 1934; any exact-interval table).
    let (lo, hi) = clopper_pearson(5, 10, 0.05).unwrap();
    assert!(
        (lo - 0.187_086).abs() < 1e-6 && (hi - 0.812_914).abs() < 1e-6,
        "{lo} {hi}"
    );
    // All successes: the lower end solves p^n = α/2.
    let (lo, hi) = clopper_pearson(20, 20, 0.05).unwrap();
    assert!((lo - 0.025f64.powf(1.0 / 20.0)).abs() < 1e-12 && hi == 1.0);
    assert!(clopper_pearson(3, 2, 0.05).is_err());
}
