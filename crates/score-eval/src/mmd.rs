//! Maximum mean discrepancy with a Gaussian (RBF) kernel `k(x, y) = exp(−|x − y|²/(2h²))`:
//! the unbiased estimate `MMD²_u` of Gretton et al. 2012 (JMLR, eq. 3),
//!
//! `MMD²_u = Σ_{i≠j} k(x_i, x_j)/(m(m−1)) + Σ_{i≠j} k(y_i, y_j)/(n(n−1)) − 2 Σ_{i,j} k(x_i, y_j)/(mn)`,
//!
//! whose expectation is the population `MMD² = E k(X, X') + E k(Y, Y') − 2 E k(X, Y)` (so it
//! can be slightly negative when the laws agree). Cost `O((m + n)²·d)`.

use crate::error::{Result, points, positive};

/// How the kernel bandwidth `h` is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bandwidth {
    /// A given `h > 0`.
    Fixed(f64),
    /// The median heuristic: `h` = the median Euclidean distance between distinct points of the
    /// pooled sample (see [`median_heuristic`]).
    Median,
}

/// Points of each set that the median heuristic looks at (the first ones): it needs a scale, not
/// a precise median, and all pairs of larger sets would cost `O(n²)` memory.
pub const MEDIAN_MAX_POINTS: usize = 1000;

/// The RBF kernel `exp(−|x − y|²/(2h²))`.
#[inline]
pub fn rbf_kernel(x: &[f64], y: &[f64], h: f64) -> f64 {
    (-sq_dist(x, y) / (2.0 * h * h)).exp()
}

#[inline]
fn sq_dist(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// The median heuristic bandwidth: the median (upper middle value for an even count) of the
/// Euclidean distances between all pairs of distinct points in the pool of the first
/// [`MEDIAN_MAX_POINTS`] points of each set.
pub fn median_heuristic(a: &[f64], b: &[f64], dim: usize) -> Result<f64> {
    points("first sample", a, dim, 1)?;
    points("second sample", b, dim, 1)?;
    let take = |x: &[f64]| x.len().min(MEDIAN_MAX_POINTS * dim);
    let pool: Vec<&[f64]> = a[..take(a)]
        .chunks(dim)
        .chain(b[..take(b)].chunks(dim))
        .collect();
    let mut d2 = Vec::with_capacity(pool.len() * (pool.len() - 1) / 2);
    for i in 0..pool.len() {
        for j in i + 1..pool.len() {
            d2.push(sq_dist(pool[i], pool[j]));
        }
    }
    let mid = d2.len() / 2;
    let (_, median, _) = d2.select_nth_unstable_by(mid, f64::total_cmp);
    positive("median heuristic bandwidth", median.sqrt())
}

/// The unbiased estimate `MMD²_u` (module docs) between two row-major point sets of dimension
/// `dim`, each with at least two points.
///
/// ```
/// use score_eval::{Bandwidth, mmd2_unbiased};
/// // a = {0, 1}, b = {0, 2} in 1-D with h = 1: by hand, e^{−1/2} + e^{−2} − ½(1 + e^{−2} + 2e^{−1/2}).
/// let got = mmd2_unbiased(&[0.0, 1.0], &[0.0, 2.0], 1, Bandwidth::Fixed(1.0)).unwrap();
/// let e = |x: f64| x.exp();
/// let by_hand = e(-0.5) + e(-2.0) - 0.5 * (1.0 + e(-2.0) + 2.0 * e(-0.5));
/// assert!((got - by_hand).abs() < 1e-15);
/// ```
pub fn mmd2_unbiased(a: &[f64], b: &[f64], dim: usize, bandwidth: Bandwidth) -> Result<f64> {
    let m = points("first sample", a, dim, 2)?;
    let n = points("second sample", b, dim, 2)?;
    let h = match bandwidth {
        Bandwidth::Fixed(h) => positive("bandwidth", h)?,
        Bandwidth::Median => median_heuristic(a, b, dim)?,
    };
    let within = |x: &[f64], count: usize| {
        let pts: Vec<&[f64]> = x.chunks(dim).collect();
        let mut s = 0.0;
        for i in 0..count {
            for j in i + 1..count {
                s += rbf_kernel(pts[i], pts[j], h);
            }
        }
        2.0 * s / (count * (count - 1)) as f64
    };
    let mut cross = 0.0;
    for x in a.chunks(dim) {
        for y in b.chunks(dim) {
            cross += rbf_kernel(x, y, h);
        }
    }
    Ok(within(a, m) + within(b, n) - 2.0 * cross / (m * n) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EvalError;
    use approx::assert_relative_eq;

    #[test]
    fn far_apart_sets_give_the_within_terms() {
        // With the sets 1e3 apart the cross term vanishes (e^{−5e5}); what remains is the mean
        // within-set kernel of each: a = {0, 1}: e^{−1/2}; b = {1000, 1000.5, 1002}: the mean of
        // e^{−1/8}, e^{−2}, e^{−9/8}.
        let got = mmd2_unbiased(
            &[0.0, 1.0],
            &[1000.0, 1000.5, 1002.0],
            1,
            Bandwidth::Fixed(1.0),
        )
        .unwrap();
        let e = |x: f64| x.exp();
        let expect = e(-0.5) + (e(-0.125) + e(-2.0) + e(-1.125)) / 3.0;
        assert_relative_eq!(got, expect, epsilon = 1e-15);
    }

    #[test]
    fn median_heuristic_by_hand() {
        // Pool {0, 1, 3} ∪ {6}: distances 1, 3, 6, 2, 5, 3 → sorted 1 2 3 3 5 6, upper middle 3.
        let h = median_heuristic(&[0.0, 1.0, 3.0], &[6.0], 1).unwrap();
        assert_relative_eq!(h, 3.0);
        // Scaling the data scales the bandwidth, and MMD with the median bandwidth is invariant.
        let (a, b) = ([0.0, 1.0, 3.0, 4.0], [2.0, 6.0, 7.0]);
        let scaled = |x: &[f64]| x.iter().map(|v| 10.0 * v).collect::<Vec<_>>();
        let m1 = mmd2_unbiased(&a, &b, 1, Bandwidth::Median).unwrap();
        let m2 = mmd2_unbiased(&scaled(&a), &scaled(&b), 1, Bandwidth::Median).unwrap();
        assert_relative_eq!(m1, m2, epsilon = 1e-12);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            mmd2_unbiased(&[1.0], &[1.0, 2.0], 1, Bandwidth::Median),
            Err(EvalError::TooFewPoints { min: 2, got: 1, .. })
        ));
        assert!(matches!(
            mmd2_unbiased(&[1.0, 2.0], &[1.0, 2.0], 1, Bandwidth::Fixed(0.0)),
            Err(EvalError::InvalidParameter {
                name: "bandwidth",
                ..
            })
        ));
        // All points equal: no scale to take a median of.
        assert!(matches!(
            median_heuristic(&[1.0, 1.0], &[1.0], 1),
            Err(EvalError::InvalidParameter { .. })
        ));
    }
}
