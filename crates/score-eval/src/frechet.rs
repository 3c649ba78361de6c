//! The Fréchet (2-Wasserstein) distance between Gaussians, and between point sets through their
//! first two moments — the distance behind FID (Heusel et al. 2017, eq. 6), here on any features
//! (the MNIST judge's 128 classifier features, see [`crate::judge`]).
//!
//! `d² = ‖μa − μb‖² + tr(Ca + Cb − 2 (Ca^{1/2} Cb Ca^{1/2})^{1/2})` (Dowson & Landau 1982). Both
//! square roots come from symmetric eigendecompositions in f64 (nalgebra's `SymmetricEigen`), with
//! the eigenvalues that rounding pushes below zero clamped to zero, so rank-deficient sample
//! covariances (fewer points than dimensions) are measured too.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{EvalError, Result, points};
use crate::moments::{covariance, mean};

/// The squared Fréchet distance between `N(mean_a, cov_a)` and `N(mean_b, cov_b)` in `dim`
/// dimensions (covariances row-major `dim × dim`, symmetric positive semi-definite).
///
/// Rounding can leave a result of order `1e-15·tr(Ca + Cb)` below zero; it is returned as zero.
///
/// ```
/// use score_eval::frechet_distance_gaussians;
/// // Diagonal covariances: d² = ‖Δμ‖² + Σ (√aᵢ − √bᵢ)² = 1 + (2 − 1)² + (1 − 3)² = 6.
/// let d = frechet_distance_gaussians(&[0.0, 0.0], &[4.0, 0.0, 0.0, 1.0],
///                                    &[1.0, 0.0], &[1.0, 0.0, 0.0, 9.0], 2).unwrap();
/// assert!((d - 6.0).abs() < 1e-12);
/// ```
///
/// # Errors
/// [`EvalError::ZeroDimension`], [`EvalError::DimensionMismatch`] for vectors or matrices of the
/// wrong length, [`EvalError::NonFinite`] for a NaN or infinite entry.
pub fn frechet_distance_gaussians(
    mean_a: &[f64],
    cov_a: &[f64],
    mean_b: &[f64],
    cov_b: &[f64],
    dim: usize,
) -> Result<f64> {
    if dim == 0 {
        return Err(EvalError::ZeroDimension);
    }
    for (what, v, len) in [
        ("mean_a", mean_a, dim),
        ("mean_b", mean_b, dim),
        ("cov_a", cov_a, dim * dim),
        ("cov_b", cov_b, dim * dim),
    ] {
        if v.len() != len {
            return Err(EvalError::DimensionMismatch {
                what,
                expected: len,
                got: v.len(),
            });
        }
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(EvalError::NonFinite { what, index, value });
        }
    }
    let shift: f64 = mean_a
        .iter()
        .zip(mean_b)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    // Symmetrised, so that a covariance accumulated in another order is still exactly symmetric.
    let sym = |c: &[f64]| {
        let m = DMatrix::from_row_slice(dim, dim, c);
        (&m + m.transpose()) * 0.5
    };
    let (ca, cb) = (sym(cov_a), sym(cov_b));
    let sqrt_a = psd_sqrt(ca.clone());
    let inner = &sqrt_a * &cb * &sqrt_a;
    let tr_sqrt: f64 = SymmetricEigen::new((&inner + inner.transpose()) * 0.5)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    Ok((shift + ca.trace() + cb.trace() - 2.0 * tr_sqrt).max(0.0))
}

/// The principal square root of a symmetric positive semi-definite matrix, `V diag(√λ) Vᵀ`.
fn psd_sqrt(c: DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(c);
    let root = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&root) * eig.eigenvectors.transpose()
}

/// The squared Fréchet distance between the Gaussians fitted to two row-major point sets of
/// dimension `dim` (sample mean and unbiased covariance of each; at least two points each).
///
/// ```
/// use score_eval::frechet_distance;
/// let a = [0.0, 0.0, 1.0, 1.0, 2.0, 0.5];
/// assert!(frechet_distance(&a, &a, 2).unwrap() < 1e-12);
/// ```
///
/// # Errors
/// As [`frechet_distance_gaussians`], and [`EvalError::Ragged`] / [`EvalError::TooFewPoints`] for
/// a buffer that does not split into at least two points.
pub fn frechet_distance(a: &[f64], b: &[f64], dim: usize) -> Result<f64> {
    points("a", a, dim, 2)?;
    points("b", b, dim, 2)?;
    frechet_distance_gaussians(
        &mean(a, dim)?,
        &covariance(a, dim)?,
        &mean(b, dim)?,
        &covariance(b, dim)?,
        dim,
    )
}
