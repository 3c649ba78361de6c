//! The energy distance of Székely & Rizzo (2013, eq. 2.1): `2E|X − Y| − E|X − X'| − E|Y − Y'|`,
//! zero exactly when the laws agree (for laws with a first moment). The estimate here is
//! unbiased: the within-set means run over distinct pairs (U-statistics), the cross mean over all
//! pairs. Cost `O((m + n)²·d)`.

use crate::error::{Result, points};

fn dist(x: &[f64], y: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt()
}

/// Mean Euclidean distance over distinct pairs of one set.
fn within(x: &[f64], dim: usize, n: usize) -> f64 {
    let pts: Vec<&[f64]> = x.chunks(dim).collect();
    let mut s = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            s += dist(pts[i], pts[j]);
        }
    }
    2.0 * s / (n * (n - 1)) as f64
}

/// Unbiased energy distance (module docs) between two row-major point sets of dimension `dim`,
/// each with at least two points.
///
/// ```
/// // a = {0, 1}, b = {3, 5}: cross mean (3 + 5 + 2 + 4)/4 = 3.5, within means 1 and 2.
/// let e = score_eval::energy_distance(&[0.0, 1.0], &[3.0, 5.0], 1).unwrap();
/// assert!((e - (2.0 * 3.5 - 1.0 - 2.0)).abs() < 1e-15);
/// ```
pub fn energy_distance(a: &[f64], b: &[f64], dim: usize) -> Result<f64> {
    let m = points("first sample", a, dim, 2)?;
    let n = points("second sample", b, dim, 2)?;
    let mut cross = 0.0;
    for x in a.chunks(dim) {
        for y in b.chunks(dim) {
            cross += dist(x, y);
        }
    }
    Ok(2.0 * cross / (m * n) as f64 - within(a, dim, m) - within(b, dim, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn two_dimensional_case_by_hand() {
        // a = {(0,0), (3,4)}, b = {(0,0), (0,1)}: cross distances 0, 1, 5, √18; within 5 and 1.
        let e = energy_distance(&[0.0, 0.0, 3.0, 4.0], &[0.0, 0.0, 0.0, 1.0], 2).unwrap();
        let cross = (0.0 + 1.0 + 5.0 + 18f64.sqrt()) / 4.0;
        assert_relative_eq!(e, 2.0 * cross - 5.0 - 1.0, epsilon = 1e-14);
    }

    #[test]
    fn symmetric_and_shift_invariant() {
        let a = [0.1, 2.0, -1.0, 0.5, 3.0];
        let b = [1.0, -2.0, 0.3];
        let ab = energy_distance(&a, &b, 1).unwrap();
        assert_relative_eq!(ab, energy_distance(&b, &a, 1).unwrap(), epsilon = 1e-14);
        let shift = |x: &[f64]| x.iter().map(|v| v + 7.5).collect::<Vec<_>>();
        assert_relative_eq!(
            ab,
            energy_distance(&shift(&a), &shift(&b), 1).unwrap(),
            epsilon = 1e-12
        );
    }
}
