//! Sliced Wasserstein distances: the average over unit directions `θ` of the 1-D Wasserstein
//! distance between the projections `θ·x` of two sample sets (Rabin et al. 2011; Bonneel et al.
//! 2015), with the exact 1-D distance between empirical laws computed by sorting.
//!
//! The directions are deterministic, so a distance is a pure function of its inputs: in 2-D,
//! `K` evenly spaced angles `θ_k = π(k + ½)/K` on the half circle (a midpoint quadrature of the
//! circle average; opposite directions give the same 1-D distance); in `d ≥ 3`, `K` Gaussian
//! vectors drawn from a [`NoiseSource`] with a fixed seed ([`DIRECTION_SEED`]) and normalised; in
//! 1-D, the single direction `1`.

use score_core::{NoiseKey, NoiseSource};

use crate::error::{EvalError, Result, points};

/// Seed of the [`NoiseSource`] that draws the projection directions in `d ≥ 3`.
pub const DIRECTION_SEED: u64 = 0x5eed_d1ec;

/// The cost whose average over the quantile coupling a 1-D distance takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    /// `|u − v|`: W1.
    Abs,
    /// `(u − v)²`: W2².
    Squared,
}

impl Cost {
    #[inline]
    fn of(self, u: f64, v: f64) -> f64 {
        match self {
            Self::Abs => (u - v).abs(),
            Self::Squared => (u - v) * (u - v),
        }
    }
}

/// An order-preserving map of finite f64 to u64 (sorting integers is faster than sorting floats
/// with a comparator, and the replicate loops of acceptance tests sort a lot).
#[inline]
fn key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

#[inline]
fn unkey(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut keys: Vec<u64> = values.map(key).collect();
    keys.sort_unstable();
    keys.into_iter().map(unkey).collect()
}

/// `∫₀¹ c(F⁻¹(u), G⁻¹(u)) du` for two sorted samples (empirical quantile functions), any sizes.
/// Breakpoints `i/n` and `j/m` are compared as integers `i·m` and `j·n`, so no rounding decides
/// which comes first.
fn quantile_cost(a: &[f64], b: &[f64], cost: Cost) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == m {
        return a.iter().zip(b).map(|(u, v)| cost.of(*u, *v)).sum::<f64>() / n as f64;
    }
    let total = (n * m) as f64;
    let (mut i, mut j, mut at, mut acc) = (0usize, 0usize, 0usize, 0.0);
    while i < n && j < m {
        let (next_a, next_b) = ((i + 1) * m, (j + 1) * n);
        let next = next_a.min(next_b);
        acc += (next - at) as f64 * cost.of(a[i], b[j]);
        at = next;
        if next_a == next {
            i += 1;
        }
        if next_b == next {
            j += 1;
        }
    }
    acc / total
}

/// Exact 1-Wasserstein distance between the empirical laws of two 1-D samples (any sizes).
///
/// ```
/// // A copy shifted by δ is at W1 distance exactly δ.
/// let a = [0.3, -1.2, 2.5, 0.0];
/// let b: Vec<f64> = a.iter().map(|x| x + 0.7).collect();
/// let w = score_eval::w1_1d(&a, &b).unwrap();
/// assert!((w - 0.7).abs() < 1e-12);
/// ```
pub fn w1_1d(a: &[f64], b: &[f64]) -> Result<f64> {
    one_d(a, b, Cost::Abs)
}

/// Exact squared 2-Wasserstein distance between the empirical laws of two 1-D samples.
pub fn w2_squared_1d(a: &[f64], b: &[f64]) -> Result<f64> {
    one_d(a, b, Cost::Squared)
}

fn one_d(a: &[f64], b: &[f64], cost: Cost) -> Result<f64> {
    points("first sample", a, 1, 1)?;
    points("second sample", b, 1, 1)?;
    Ok(quantile_cost(
        &sorted(a.iter().copied()),
        &sorted(b.iter().copied()),
        cost,
    ))
}

/// A set of unit projection directions for points of one dimension (see the module docs), with
/// the sliced W1 and W2² distances over them.
///
/// ```
/// use score_eval::SlicedWasserstein;
/// let sw = SlicedWasserstein::new(2, 64).unwrap();
/// // Shifting a 2-D set by v moves every projection by θ·v, and the mean of (θ·v)² over evenly
/// // spaced directions is exactly |v|²/2.
/// let a = [0.0, 0.0, 1.0, 0.5, -2.0, 1.0];
/// let b: Vec<f64> = a.chunks(2).flat_map(|p| [p[0] + 0.3, p[1] - 0.4]).collect();
/// let d2 = sw.w2_squared(&a, &b).unwrap();
/// assert!((d2 - 0.25 / 2.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SlicedWasserstein {
    dim: usize,
    directions: Vec<f64>,
}

/// The sorted projections of one point set on every direction of a [`SlicedWasserstein`]
/// (direction-major), so that a reference set is projected once and compared many times.
#[derive(Debug, Clone, PartialEq)]
pub struct Projections {
    n_points: usize,
    values: Vec<f64>,
}

impl Projections {
    /// Number of projected points.
    pub fn n_points(&self) -> usize {
        self.n_points
    }

    fn direction(&self, k: usize) -> &[f64] {
        &self.values[k * self.n_points..(k + 1) * self.n_points]
    }
}

impl SlicedWasserstein {
    /// The deterministic directions for dimension `dim` (`n_directions` of them; one in 1-D).
    pub fn new(dim: usize, n_directions: usize) -> Result<Self> {
        if dim == 0 {
            return Err(EvalError::ZeroDimension);
        }
        if n_directions == 0 {
            return Err(EvalError::InvalidParameter {
                name: "n_directions",
                value: 0.0,
                reason: "at least one direction is needed",
            });
        }
        let directions = match dim {
            1 => vec![1.0],
            2 => (0..n_directions)
                .flat_map(|k| {
                    let th = std::f64::consts::PI * (k as f64 + 0.5) / n_directions as f64;
                    [th.cos(), th.sin()]
                })
                .collect(),
            _ => {
                let raw = NoiseSource::new(DIRECTION_SEED).normal_f64(
                    n_directions,
                    dim,
                    NoiseKey::new(0, 0),
                );
                raw.chunks(dim)
                    .flat_map(|v| {
                        // A standard normal vector is zero with probability 0.
                        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                        v.iter().map(move |x| x / norm)
                    })
                    .collect()
            }
        };
        Ok(Self { dim, directions })
    }

    /// Dimension of the points.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of directions.
    pub fn n_directions(&self) -> usize {
        self.directions.len() / self.dim
    }

    /// The unit directions, row-major `n_directions × dim`.
    pub fn directions(&self) -> &[f64] {
        &self.directions
    }

    /// Projects a row-major point set on every direction and sorts each projection.
    pub fn project(&self, x: &[f64]) -> Result<Projections> {
        let n = points("point set", x, self.dim, 1)?;
        let mut values = Vec::with_capacity(n * self.n_directions());
        for dir in self.directions.chunks(self.dim) {
            values.extend(sorted(
                x.chunks(self.dim)
                    .map(|p| p.iter().zip(dir).map(|(a, b)| a * b).sum::<f64>()),
            ));
        }
        Ok(Projections {
            n_points: n,
            values,
        })
    }

    fn average(&self, a: &Projections, b: &Projections, cost: Cost) -> f64 {
        let k = self.n_directions();
        (0..k)
            .map(|j| quantile_cost(a.direction(j), b.direction(j), cost))
            .sum::<f64>()
            / k as f64
    }

    /// Sliced W1: the mean over directions of the 1-D W1 distance.
    pub fn w1(&self, a: &[f64], b: &[f64]) -> Result<f64> {
        Ok(self.w1_projected(&self.project(a)?, &self.project(b)?))
    }

    /// Sliced W2²: the mean over directions of the squared 1-D W2 distance.
    pub fn w2_squared(&self, a: &[f64], b: &[f64]) -> Result<f64> {
        Ok(self.w2_squared_projected(&self.project(a)?, &self.project(b)?))
    }

    /// [`Self::w1`] of two sets projected by this `SlicedWasserstein` (see [`Self::project`]).
    pub fn w1_projected(&self, a: &Projections, b: &Projections) -> f64 {
        self.average(a, b, Cost::Abs)
    }

    /// [`Self::w2_squared`] of two sets projected by this `SlicedWasserstein`.
    pub fn w2_squared_projected(&self, a: &Projections, b: &Projections) -> f64 {
        self.average(a, b, Cost::Squared)
    }
}

/// Sliced W1 between two row-major point sets of dimension `dim` over `n_directions`
/// deterministic directions (see [`SlicedWasserstein`]). The sets may differ in size.
pub fn sliced_w1(a: &[f64], b: &[f64], dim: usize, n_directions: usize) -> Result<f64> {
    SlicedWasserstein::new(dim, n_directions)?.w1(a, b)
}

/// Sliced W2² between two row-major point sets of dimension `dim` over `n_directions`
/// deterministic directions (see [`SlicedWasserstein`]). The sets may differ in size.
pub fn sliced_w2_squared(a: &[f64], b: &[f64], dim: usize, n_directions: usize) -> Result<f64> {
    SlicedWasserstein::new(dim, n_directions)?.w2_squared(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    #[test]
    fn sort_keys_preserve_order_and_value() {
        let mut v = vec![
            3.5,
            -0.0,
            0.0,
            -1e-300,
            1e300,
            -7.25,
            2.0,
            f64::MIN_POSITIVE,
        ];
        let s = sorted(v.iter().copied());
        v.sort_by(f64::total_cmp);
        assert_eq!(s, v);
    }

    #[test]
    fn unequal_sizes_follow_the_quantile_functions() {
        // F⁻¹ of {0, 1} is 0 on [0, ½), 1 on [½, 1); G⁻¹ of {0, ½, 1} is 0, ½, 1 on thirds. They
        // differ by ½ on [⅓, ⅔): W1 = ⅙, W2² = ¼·⅓ = 1/12.
        let (a, b) = ([1.0, 0.0], [0.5, 1.0, 0.0]);
        assert_relative_eq!(w1_1d(&a, &b).unwrap(), 1.0 / 6.0, epsilon = 1e-15);
        assert_relative_eq!(w2_squared_1d(&a, &b).unwrap(), 1.0 / 12.0, epsilon = 1e-15);
        // A point mass against any sample: the mean absolute / squared deviation from it.
        let c = [2.0, -1.0, 4.0];
        assert_relative_eq!(w1_1d(&[1.0], &c).unwrap(), 2.0, epsilon = 1e-15);
        assert_relative_eq!(
            w2_squared_1d(&c, &[1.0]).unwrap(),
            14.0 / 3.0,
            epsilon = 1e-15
        );
    }

    #[test]
    fn a_shifted_copy_is_at_distance_delta() {
        let a: Vec<f64> = (0..50)
            .map(|i| ((i * 37) % 50) as f64 * 0.1 - 2.0)
            .collect();
        let b: Vec<f64> = a.iter().map(|x| x - 0.75).collect();
        assert_relative_eq!(w1_1d(&a, &b).unwrap(), 0.75, epsilon = 1e-12);
        assert_relative_eq!(w2_squared_1d(&a, &b).unwrap(), 0.5625, epsilon = 1e-12);
        // In d dimensions the mean of (θ·v)² over the 2-D half-circle grid is |v|²/2 exactly,
        // and the mean of |θ·v| is |v|·(1/K)Σ|cos(θ_k − φ)|.
        let sw = SlicedWasserstein::new(2, 16).unwrap();
        let pts: Vec<f64> = a.iter().flat_map(|x| [*x, 0.5 * x * x]).collect();
        let v = [0.3, -0.4];
        let moved: Vec<f64> = pts
            .chunks(2)
            .flat_map(|p| [p[0] + v[0], p[1] + v[1]])
            .collect();
        assert_relative_eq!(sw.w2_squared(&pts, &moved).unwrap(), 0.125, epsilon = 1e-12);
        let expect = sw
            .directions()
            .chunks(2)
            .map(|d| (d[0] * v[0] + d[1] * v[1]).abs())
            .sum::<f64>()
            / 16.0;
        assert_relative_eq!(sw.w1(&pts, &moved).unwrap(), expect, epsilon = 1e-12);
    }

    #[test]
    fn directions_are_unit_and_deterministic() {
        for dim in [1, 2, 3, 7] {
            let sw = SlicedWasserstein::new(dim, 32).unwrap();
            assert_eq!(sw, SlicedWasserstein::new(dim, 32).unwrap());
            for d in sw.directions().chunks(dim) {
                let norm: f64 = d.iter().map(|x| x * x).sum();
                assert_relative_eq!(norm, 1.0, epsilon = 1e-12);
            }
        }
        assert_eq!(SlicedWasserstein::new(1, 32).unwrap().n_directions(), 1);
        assert_eq!(SlicedWasserstein::new(5, 32).unwrap().n_directions(), 32);
    }

    #[test]
    fn gaussian_directions_are_isotropic() {
        // For uniform unit θ in d = 4, E[(θ·v)²] = |v|²/d with Var[(θ·v)²] = |v|⁴·(3/(d(d+2)) −
        // 1/d²) = |v|⁴/48. Over K = 4096 directions the mean's standard error is
        // |v|²/√(48·4096) ≈ 0.0022|v|²; the bound is 5 of them.
        let k = 4096;
        let sw = SlicedWasserstein::new(4, k).unwrap();
        let v = [1.0, -2.0, 0.5, 0.0];
        let v2: f64 = v.iter().map(|x| x * x).sum();
        let mean = sw
            .directions()
            .chunks(4)
            .map(|d| d.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>().powi(2))
            .sum::<f64>()
            / k as f64;
        let se = v2 / (48.0 * k as f64).sqrt();
        assert!((mean - v2 / 4.0).abs() < 5.0 * se, "{mean} vs {}", v2 / 4.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            SlicedWasserstein::new(0, 4).unwrap_err(),
            EvalError::ZeroDimension
        );
        assert!(matches!(
            SlicedWasserstein::new(2, 0),
            Err(EvalError::InvalidParameter { .. })
        ));
        assert!(matches!(
            sliced_w1(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2, 4),
            Err(EvalError::Ragged { len: 3, dim: 2, .. })
        ));
        assert!(matches!(
            sliced_w2_squared(&[1.0, f64::NAN], &[1.0, 2.0], 2, 4),
            Err(EvalError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            w1_1d(&[], &[1.0]),
            Err(EvalError::TooFewPoints { min: 1, got: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn metric_properties(
            a in proptest::collection::vec(-10.0f64..10.0, 2..40),
            b in proptest::collection::vec(-10.0f64..10.0, 2..40),
            c in proptest::collection::vec(-10.0f64..10.0, 2..40),
        ) {
            let (a, b, c) = (even(a), even(b), even(c));
            let sw = SlicedWasserstein::new(2, 8).unwrap();
            let ab = sw.w1(&a, &b).unwrap();
            prop_assert!((ab - sw.w1(&b, &a).unwrap()).abs() < 1e-9);
            prop_assert!(sw.w1(&a, &a).unwrap() == 0.0);
            // Per direction W1 ≤ W2 (Jensen), so sliced W1 ≤ √(sliced W2²) (Jensen again).
            prop_assert!(ab <= sw.w2_squared(&a, &b).unwrap().sqrt() + 1e-9);
            // Sliced W1 is a metric on empirical laws.
            let bc = sw.w1(&b, &c).unwrap();
            prop_assert!(sw.w1(&a, &c).unwrap() <= ab + bc + 1e-9);
            // A point set repeated twice is the same empirical law.
            let twice: Vec<f64> = a.iter().chain(&a).copied().collect();
            prop_assert!(sw.w2_squared(&a, &twice).unwrap() < 1e-12);
        }
    }

    fn even(mut v: Vec<f64>) -> Vec<f64> {
        v.truncate(v.len() / 2 * 2);
        v
    }
}
