//! First and second moments of a point set, and their errors against known moments or against
//! another set: the Euclidean norm of the mean difference and the Frobenius norm of the
//! covariance difference.

use crate::error::{EvalError, Result, points};

/// Mean of a row-major point set of dimension `dim`.
pub fn mean(x: &[f64], dim: usize) -> Result<Vec<f64>> {
    let n = points("point set", x, dim, 1)?;
    let mut m = vec![0.0; dim];
    for p in x.chunks(dim) {
        for (a, b) in m.iter_mut().zip(p) {
            *a += b;
        }
    }
    Ok(m.into_iter().map(|v| v / n as f64).collect())
}

/// Unbiased sample covariance (divisor `n − 1`), row-major `dim × dim`; at least two points.
pub fn covariance(x: &[f64], dim: usize) -> Result<Vec<f64>> {
    let n = points("point set", x, dim, 2)?;
    let m = mean(x, dim)?;
    let mut c = vec![0.0; dim * dim];
    for p in x.chunks(dim) {
        for i in 0..dim {
            for j in 0..dim {
                c[i * dim + j] += (p[i] - m[i]) * (p[j] - m[j]);
            }
        }
    }
    Ok(c.into_iter().map(|v| v / (n - 1) as f64).collect())
}

/// How far a set's first two moments are from others.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentErrors {
    /// `|mean − reference mean|` (Euclidean).
    pub mean: f64,
    /// `‖covariance − reference covariance‖_F` (Frobenius).
    pub covariance: f64,
}

fn norm_of_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Moment errors of a point set against a known mean (`dim`) and covariance (row-major
/// `dim × dim`), e.g. the exact moments of a target ([`score_core::GaussianMixture::mean`],
/// [`score_core::GaussianMixture::covariance`]).
///
/// ```
/// use score_eval::moment_errors;
/// // (±1, 0), (0, ±1): mean 0, covariance 2/3·I (divisor n − 1 = 3).
/// let x = [1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0];
/// let e = moment_errors(&x, 2, &[0.0, 0.0], &[1.0, 0.0, 0.0, 1.0]).unwrap();
/// assert!(e.mean.abs() < 1e-15);
/// assert!((e.covariance - (2.0 * (1.0f64 / 3.0).powi(2)).sqrt()).abs() < 1e-15);
/// ```
pub fn moment_errors(
    x: &[f64],
    dim: usize,
    reference_mean: &[f64],
    reference_covariance: &[f64],
) -> Result<MomentErrors> {
    for (what, expected, got) in [
        ("reference mean", dim, reference_mean.len()),
        (
            "reference covariance",
            dim * dim,
            reference_covariance.len(),
        ),
    ] {
        if got != expected {
            return Err(EvalError::DimensionMismatch {
                what,
                expected,
                got,
            });
        }
    }
    Ok(MomentErrors {
        mean: norm_of_difference(&mean(x, dim)?, reference_mean),
        covariance: norm_of_difference(&covariance(x, dim)?, reference_covariance),
    })
}

/// Moment errors between two point sets of dimension `dim`.
pub fn moment_errors_between(a: &[f64], b: &[f64], dim: usize) -> Result<MomentErrors> {
    moment_errors(a, dim, &mean(b, dim)?, &covariance(b, dim)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn moments_by_hand() {
        // (1, 2), (3, 0), (5, 4): mean (3, 2); deviations (−2, 0), (0, −2), (2, 2):
        // covariance [[8, 4], [4, 8]]/2.
        let x = [1.0, 2.0, 3.0, 0.0, 5.0, 4.0];
        assert_eq!(mean(&x, 2).unwrap(), vec![3.0, 2.0]);
        assert_eq!(covariance(&x, 2).unwrap(), vec![4.0, 2.0, 2.0, 4.0]);
        let e = moment_errors_between(&x, &x, 2).unwrap();
        assert_eq!((e.mean, e.covariance), (0.0, 0.0));
        let shifted: Vec<f64> = x.iter().map(|v| v + 1.0).collect();
        let e = moment_errors_between(&shifted, &x, 2).unwrap();
        assert_relative_eq!(e.mean, 2f64.sqrt(), epsilon = 1e-14);
        assert_relative_eq!(e.covariance, 0.0, epsilon = 1e-14);
    }

    #[test]
    fn reference_sizes_are_checked() {
        assert!(matches!(
            moment_errors(&[1.0, 2.0, 3.0, 4.0], 2, &[0.0], &[1.0; 4]),
            Err(EvalError::DimensionMismatch {
                what: "reference mean",
                expected: 2,
                got: 1
            })
        ));
        assert!(matches!(
            covariance(&[1.0, 2.0], 2),
            Err(EvalError::TooFewPoints { min: 2, got: 1, .. })
        ));
    }
}
